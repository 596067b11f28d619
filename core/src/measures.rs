//! The Arrow schemas of the results tables and the names of the measures.
//!
//! `progress` is long format: one row per (trial, attempt, step, measure).
//! `spectra` is long format too: one row per (trial, attempt, step, matrix, frequency).
//! `curves` is long format: one row per (trial, attempt, step, curve, t).
//! `trials` has one row per trial with every parameter as a typed column.
//! `phases` has one row per analysed trial: its phase boundaries and class.
//!
//! Measures travel typed ([`crate::Measure`]): scalars become `progress`
//! rows, spectra `spectra` rows and curves `curves` rows; the names here are
//! the `measure`, `matrix` and `curve` values.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Column: sweep name.
pub const SWEEP: &str = "sweep";
/// Column: trial id.
pub const TRIAL_ID: &str = "trial_id";
/// Column: attempt number, starting at 1.
pub const ATTEMPT: &str = "attempt";
/// Column: training step (= epoch, training is full batch).
pub const STEP: &str = "step";
/// Column: measure name (dictionary-encoded).
pub const MEASURE: &str = "measure";
/// Column: measure value.
pub const VALUE: &str = "value";
/// Column: when the worker computed the row (UTC).
pub const WALL_TIME: &str = "wall_time";

/// Measure: mean cross-entropy on the training pairs (computed in f64).
pub const TRAIN_LOSS: &str = "train_loss";
/// Measure: mean cross-entropy on the test pairs (computed in f64).
pub const TEST_LOSS: &str = "test_loss";
/// Measure: accuracy over the p classes on the training pairs.
pub const TRAIN_ACCURACY: &str = "train_accuracy";
/// Measure: accuracy over the p classes on the test pairs.
pub const TEST_ACCURACY: &str = "test_accuracy";
/// Measure: Σθ² over every parameter.
pub const SUM_SQUARED_WEIGHTS: &str = "sum_squared_weights";

/// Measure: cross-entropy on the training pairs of the logits restricted to
/// the key frequencies found at this step (plus the constant term).
pub const RESTRICTED_LOSS: &str = "restricted_loss";
/// Measure: cross-entropy on the training pairs of the logits with the key
/// frequencies found at this step removed.
pub const EXCLUDED_LOSS: &str = "excluded_loss";
/// Measure: restricted loss with the key frequencies of the trial's final
/// model (the paper's definition), at every checkpoint step.
pub const RESTRICTED_LOSS_FINAL_K: &str = "restricted_loss_final_k";
/// Measure: excluded loss with the key frequencies of the final model, at every checkpoint step.
pub const EXCLUDED_LOSS_FINAL_K: &str = "excluded_loss_final_k";
/// Measure: Gini coefficient of the p Fourier-component norms of W_E.
pub const GINI_W_E: &str = "gini_w_e";
/// Measure: Gini coefficient of the p Fourier-component norms of W_L = W_U[:, :p]ᵀ W_out.
pub const GINI_W_L: &str = "gini_w_l";
/// Measure: number of key frequencies found at this step.
pub const KEY_FREQUENCY_COUNT: &str = "key_frequency_count";
/// Measure: fraction of MLP neurons whose best frequency explains more than
/// [`KEY_FVE_THRESHOLD`] of their variance.
pub const KEY_NEURON_FRACTION: &str = "key_neuron_fraction";

/// Transformer measures: the Frobenius norm of each weight matrix, in this
/// order W_E, W_pos, W_Q, W_K, W_V, W_O, W_in, W_out, W_U (norm spikes of the
/// last layer are the "slingshot" of Thilak et al. 2022).
pub const WEIGHT_NORMS: [&str; 9] =
    ["norm_w_e", "norm_w_pos", "norm_w_q", "norm_w_k", "norm_w_v", "norm_w_o", "norm_w_in", "norm_w_out", "norm_w_u"];
/// Transformer measure: effective rank (exp of the entropy of the normalised singular values) of W_E's number rows.
pub const EFFECTIVE_RANK_W_E: &str = "effective_rank_w_e";
/// Transformer measure: effective rank of W_L = W_out · W_U[:, :p].
pub const EFFECTIVE_RANK_W_L: &str = "effective_rank_w_l";
/// Transformer measure: fraction of training pairs whose float32 softmax
/// probability of the label is exactly 1 (softmax collapse, Prieto et al. 2025).
pub const SOFTMAX_COLLAPSE: &str = "softmax_collapse";
/// Transformer measure: fraction of training pairs whose float32 cross-entropy is exactly 0.
pub const ZERO_LOSS_FRACTION: &str = "zero_loss_fraction";

/// Diffusion measure: Gini coefficient of the P Fourier-component norms of the operand representations.
pub const GINI_OPERAND: &str = "gini_operand";
/// Diffusion measure: Shannon entropy (nats) of the 2D-DFT power of the centred
/// block-FFN pre-activations over (a, b), summed over neurons, constant term excluded.
pub const SPECTRAL_ENTROPY: &str = "spectral_entropy";
/// Diffusion measure: the critical timestep on the training pairs (see [`decision_curve`]).
pub const CRITICAL_TIMESTEP_TRAIN: &str = "critical_timestep_train";
/// Diffusion measure: the critical timestep on the test pairs.
pub const CRITICAL_TIMESTEP_TEST: &str = "critical_timestep_test";
/// Diffusion measure: fraction of test samples whose x0-prediction at the
/// first decision point is judged a wrong class and whose final sample is right.
pub const MODE_SHIFT_FRACTION: &str = "mode_shift_fraction";

/// Which pairs a decision curve is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairSet {
    /// Training pairs.
    Train,
    /// Test pairs.
    Test,
}

/// Diffusion curve: accuracy of the class of x̂0 at sampling time t on the training pairs.
pub const DECISION_ACCURACY_TRAIN: &str = "decision_accuracy_train";
/// Diffusion curve: the same on the test pairs.
pub const DECISION_ACCURACY_TEST: &str = "decision_accuracy_test";
/// Diffusion curve: fraction of operand-switched samples that end on the new sum, against the switch time.
pub const SWITCH_FOLLOWS_NEW: &str = "switch_follows_new";
/// Diffusion curve: fraction of operand-switched samples that end on the old sum, against the switch time.
pub const SWITCH_FOLLOWS_OLD: &str = "switch_follows_old";

/// The decision curve's name for a pair set.
pub fn decision_curve(pairs: PairSet) -> &'static str {
    match pairs {
        PairSet::Train => DECISION_ACCURACY_TRAIN,
        PairSet::Test => DECISION_ACCURACY_TEST,
    }
}

/// Fraction of variance a frequency must explain for a neuron to count as owned by it.
pub const KEY_FVE_THRESHOLD: f64 = 0.85;

/// Test accuracy at which a trial counts as grokked (`grokked_at` in `trials`).
pub const GROKKED_ACCURACY: f64 = 0.95;

fn utc_millis() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// Column of `spectra`: which matrix or population the spectrum is of.
pub const MATRIX: &str = "matrix";
/// Column of `spectra`: frequency k (0 is the constant term).
pub const FREQUENCY: &str = "frequency";
/// Column of `spectra`: the value at that frequency.
pub const NORM: &str = "norm";

/// What a `spectra` row describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpectrumMatrix {
    /// Norm of frequency k of the token embedding W_E (numbers only):
    /// √(‖c_{2k−1}‖² + ‖c_{2k}‖²) over the cos and sin components of `F W_E`; ‖c_0‖ at k = 0.
    WE,
    /// The same for W_L = W_U[:, :p]ᵀ W_out.
    WL,
    /// Number of MLP neurons (transformer) or block-FFN neurons (diffusion)
    /// whose best frequency is k with FVE above [`KEY_FVE_THRESHOLD`]; the key
    /// frequencies of a step are the k with a non-zero count.
    KeyNeurons,
    /// Diffusion: norm of frequency k of the operand representations (the
    /// bottleneck output of each class's prototype image, or the operand
    /// embedding), over the P classes, as for W_E.
    Operand,
}

impl SpectrumMatrix {
    /// Every kind, in table order.
    pub const ALL: [SpectrumMatrix; 4] = [SpectrumMatrix::WE, SpectrumMatrix::WL, SpectrumMatrix::KeyNeurons, SpectrumMatrix::Operand];

    /// Name in the `matrix` column.
    pub fn as_str(self) -> &'static str {
        match self {
            SpectrumMatrix::WE => "W_E",
            SpectrumMatrix::WL => "W_L",
            SpectrumMatrix::KeyNeurons => "key_neurons",
            SpectrumMatrix::Operand => "operand",
        }
    }

    /// Parse a `matrix` column value.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|matrix| matrix.as_str() == name)
    }
}

/// Column of `curves`: which curve.
pub const CURVE: &str = "curve";
/// Column of `curves`: sampling time t in [0, 1].
pub const T: &str = "t";

/// Schema of the `curves` table.
pub fn curves_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(SWEEP, DataType::Utf8, false),
        Field::new(TRIAL_ID, DataType::Utf8, false),
        Field::new(ATTEMPT, DataType::Int32, false),
        Field::new(STEP, DataType::Int64, false),
        Field::new(CURVE, DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)), false),
        Field::new(T, DataType::Float64, false),
        Field::new(VALUE, DataType::Float64, false),
        Field::new(WALL_TIME, utc_millis(), false),
    ]))
}

/// Schema of the `spectra` table.
pub fn spectra_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(SWEEP, DataType::Utf8, false),
        Field::new(TRIAL_ID, DataType::Utf8, false),
        Field::new(ATTEMPT, DataType::Int32, false),
        Field::new(STEP, DataType::Int64, false),
        Field::new(MATRIX, DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)), false),
        Field::new(FREQUENCY, DataType::Int32, false),
        Field::new(NORM, DataType::Float64, false),
        Field::new(WALL_TIME, utc_millis(), false),
    ]))
}

/// Schema of the `progress` table.
pub fn progress_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(SWEEP, DataType::Utf8, false),
        Field::new(TRIAL_ID, DataType::Utf8, false),
        Field::new(ATTEMPT, DataType::Int32, false),
        Field::new(STEP, DataType::Int64, false),
        Field::new(MEASURE, DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)), false),
        Field::new(VALUE, DataType::Float64, false),
        Field::new(WALL_TIME, utc_millis(), false),
    ]))
}

/// Columns of the `trials` table, in order.
pub mod trials_columns {
    /// Sweep name.
    pub const SWEEP: &str = "sweep";
    /// Trial id.
    pub const TRIAL_ID: &str = "trial_id";
    /// Family.
    pub const FAMILY: &str = "family";
    /// Modulus p.
    pub const MODULUS: &str = "modulus";
    /// Training fraction.
    pub const DATA_FRACTION: &str = "data_fraction";
    /// Weight decay.
    pub const WEIGHT_DECAY: &str = "weight_decay";
    /// Images per symbol (diffusion only, else null).
    pub const IMAGE_DIVERSITY: &str = "image_diversity";
    /// Model seed.
    pub const SEED: &str = "seed";
    /// Data-split seed.
    pub const DATA_SEED: &str = "data_seed";
    /// Learning rate (the `lr` axis, else `training.lr`). These four columns
    /// are null in tables written before their axes existed.
    pub const LR: &str = "lr";
    /// Multiplier on every initial weight.
    pub const INIT_SCALE: &str = "init_scale";
    /// adamw, grokfast_ema, grokfast_ma or orthograd.
    pub const OPTIMIZER: &str = "optimizer";
    /// softmax or stablemax (transformer only, else null).
    pub const LOSS: &str = "loss";
    /// queued, running, done, failed, cancelled.
    pub const STATUS: &str = "status";
    /// The current (for finished trials: final) attempt; `progress` holds only its rows.
    pub const ATTEMPT: &str = "attempt";
    /// Attempts that failed or lapsed.
    pub const FAILURES: &str = "failures";
    /// Worker of the current attempt.
    pub const WORKER: &str = "worker";
    /// When the current attempt was leased.
    pub const STARTED_AT: &str = "started_at";
    /// When the trial finished.
    pub const FINISHED_AT: &str = "finished_at";
    /// Seconds the final attempt took.
    pub const WALL_SECONDS: &str = "wall_seconds";
    /// Epochs trained by the final attempt.
    pub const EPOCHS: &str = "epochs";
    /// Final train loss.
    pub const FINAL_TRAIN_LOSS: &str = "final_train_loss";
    /// Final test loss.
    pub const FINAL_TEST_LOSS: &str = "final_test_loss";
    /// Final train accuracy.
    pub const FINAL_TRAIN_ACCURACY: &str = "final_train_accuracy";
    /// Final test accuracy.
    pub const FINAL_TEST_ACCURACY: &str = "final_test_accuracy";
    /// First evaluated epoch with test accuracy ≥ 0.95, null if never.
    pub const GROKKED_AT: &str = "grokked_at";
    /// Key frequencies of the final model (transformer), ascending, comma-separated.
    pub const KEY_FREQUENCIES: &str = "key_frequencies";
    /// Held-out accuracy of the classifier that judged the generated images (diffusion, N > 1).
    pub const JUDGE_ACCURACY: &str = "judge_accuracy";
    /// Path of the last checkpoint of the final attempt, relative to the sweep's results directory.
    pub const FINAL_CHECKPOINT: &str = "final_checkpoint";
    /// Why the trial failed.
    pub const ERROR: &str = "error";
}

/// Schema of the `trials` table.
pub fn trials_schema() -> SchemaRef {
    use trials_columns as c;
    let nullable_f64 = |name| Field::new(name, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        Field::new(c::SWEEP, DataType::Utf8, false),
        Field::new(c::TRIAL_ID, DataType::Utf8, false),
        Field::new(c::FAMILY, DataType::Utf8, false),
        Field::new(c::MODULUS, DataType::Int32, false),
        Field::new(c::DATA_FRACTION, DataType::Float64, false),
        Field::new(c::WEIGHT_DECAY, DataType::Float64, false),
        Field::new(c::IMAGE_DIVERSITY, DataType::Int32, true),
        Field::new(c::SEED, DataType::Int64, false),
        Field::new(c::DATA_SEED, DataType::Int64, false),
        // Nullable so that tables written before these columns read with nulls.
        Field::new(c::LR, DataType::Float64, true),
        Field::new(c::INIT_SCALE, DataType::Float64, true),
        Field::new(c::OPTIMIZER, DataType::Utf8, true),
        Field::new(c::LOSS, DataType::Utf8, true),
        Field::new(c::STATUS, DataType::Utf8, false),
        Field::new(c::ATTEMPT, DataType::Int32, false),
        Field::new(c::FAILURES, DataType::Int32, false),
        Field::new(c::WORKER, DataType::Utf8, true),
        Field::new(c::STARTED_AT, utc_millis(), true),
        Field::new(c::FINISHED_AT, utc_millis(), true),
        nullable_f64(c::WALL_SECONDS),
        Field::new(c::EPOCHS, DataType::Int64, true),
        nullable_f64(c::FINAL_TRAIN_LOSS),
        nullable_f64(c::FINAL_TEST_LOSS),
        nullable_f64(c::FINAL_TRAIN_ACCURACY),
        nullable_f64(c::FINAL_TEST_ACCURACY),
        Field::new(c::GROKKED_AT, DataType::Int64, true),
        Field::new(c::KEY_FREQUENCIES, DataType::Utf8, true),
        nullable_f64(c::JUDGE_ACCURACY),
        Field::new(c::FINAL_CHECKPOINT, DataType::Utf8, true),
        Field::new(c::ERROR, DataType::Utf8, true),
    ]))
}

/// Columns of the `phases` table, in order (rules in the README, "The `phases` table").
pub mod phases_columns {
    /// Sweep name.
    pub const SWEEP: &str = "sweep";
    /// Trial id.
    pub const TRIAL_ID: &str = "trial_id";
    /// Attempt whose series were analysed.
    pub const ATTEMPT: &str = "attempt";
    /// Family.
    pub const FAMILY: &str = "family";
    /// Trial status when analysed.
    pub const STATUS: &str = "status";
    /// Last step with a recorded measure.
    pub const LAST_STEP: &str = "last_step";
    /// Train accuracy first ≥ 0.99.
    pub const TRAIN_ACCURACY_99_AT: &str = "train_accuracy_99_at";
    /// Train loss first < 0.01.
    pub const TRAIN_LOSS_BELOW_0_01_AT: &str = "train_loss_below_0_01_at";
    /// Test accuracy first ≥ 0.95 (`grokked_at` of `trials`).
    pub const TEST_ACCURACY_95_AT: &str = "test_accuracy_95_at";
    /// Test accuracy first ≥ 0.99.
    pub const TEST_ACCURACY_99_AT: &str = "test_accuracy_99_at";
    /// Test loss first < 1.
    pub const TEST_LOSS_BELOW_1_AT: &str = "test_loss_below_1_at";
    /// Test loss first < 0.01.
    pub const TEST_LOSS_BELOW_0_01_AT: &str = "test_loss_below_0_01_at";
    /// End of memorisation (transformer).
    pub const MEMORISATION_END: &str = "memorisation_end";
    /// End of circuit formation (transformer).
    pub const CIRCUIT_FORMATION_END: &str = "circuit_formation_end";
    /// End of cleanup (transformer).
    pub const CLEANUP_END: &str = "cleanup_end";
    /// Where the trial was at its last step.
    pub const PHASE_AT_END: &str = "phase_at_end";
    /// Train accuracy first ≥ the class accuracy (0.9), within the budget.
    pub const CLASS_TRAIN_AT: &str = "class_train_at";
    /// Test accuracy first ≥ the class accuracy, within the budget.
    pub const CLASS_TEST_AT: &str = "class_test_at";
    /// Liu et al.'s class.
    pub const CLASS: &str = "class";
    /// First step with a critical timestep on the test pairs (diffusion).
    pub const CRITICAL_TIMESTEP_FIRST_AT: &str = "critical_timestep_first_at";
    /// Last critical timestep on the test pairs (diffusion).
    pub const CRITICAL_TIMESTEP: &str = "critical_timestep";
    /// Whether the operand-switch result flips at the critical timestep (diffusion).
    pub const SWITCH_FLIPS: &str = "switch_flips";
    /// Columns not reached, comma-separated.
    pub const NOT_REACHED: &str = "not_reached";
    /// Why each was not reached.
    pub const NOTES: &str = "notes";
    /// The rule settings used, as JSON.
    pub const SETTINGS: &str = "settings";
}

/// Schema of the `phases` table.
pub fn phases_schema() -> SchemaRef {
    use phases_columns as c;
    let step = |name| Field::new(name, DataType::Int64, true);
    Arc::new(Schema::new(vec![
        Field::new(c::SWEEP, DataType::Utf8, false),
        Field::new(c::TRIAL_ID, DataType::Utf8, false),
        Field::new(c::ATTEMPT, DataType::Int32, false),
        Field::new(c::FAMILY, DataType::Utf8, false),
        Field::new(c::STATUS, DataType::Utf8, false),
        step(c::LAST_STEP),
        step(c::TRAIN_ACCURACY_99_AT),
        step(c::TRAIN_LOSS_BELOW_0_01_AT),
        step(c::TEST_ACCURACY_95_AT),
        step(c::TEST_ACCURACY_99_AT),
        step(c::TEST_LOSS_BELOW_1_AT),
        step(c::TEST_LOSS_BELOW_0_01_AT),
        step(c::MEMORISATION_END),
        step(c::CIRCUIT_FORMATION_END),
        step(c::CLEANUP_END),
        Field::new(c::PHASE_AT_END, DataType::Utf8, false),
        step(c::CLASS_TRAIN_AT),
        step(c::CLASS_TEST_AT),
        Field::new(c::CLASS, DataType::Utf8, false),
        step(c::CRITICAL_TIMESTEP_FIRST_AT),
        Field::new(c::CRITICAL_TIMESTEP, DataType::Float64, true),
        Field::new(c::SWITCH_FLIPS, DataType::Boolean, true),
        Field::new(c::NOT_REACHED, DataType::Utf8, false),
        Field::new(c::NOTES, DataType::Utf8, false),
        Field::new(c::SETTINGS, DataType::Utf8, false),
    ]))
}

/// A schema that does not match what groksweep writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schema mismatch: {0}")]
pub struct SchemaMismatch(String);

/// Check that `found` has the columns of `expected` with the same types, in order.
pub fn validate_schema(expected: &Schema, found: &Schema) -> Result<(), SchemaMismatch> {
    if expected.fields().len() != found.fields().len() {
        return Err(SchemaMismatch(format!("expected {} columns, found {}", expected.fields().len(), found.fields().len())));
    }
    for (want, have) in expected.fields().iter().zip(found.fields()) {
        if want.name() != have.name() || want.data_type() != have.data_type() {
            return Err(SchemaMismatch(format!(
                "expected column `{}` of type {}, found `{}` of type {}",
                want.name(),
                want.data_type(),
                have.name(),
                have.data_type()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_validate_against_themselves_and_not_each_other() {
        assert!(validate_schema(&progress_schema(), &progress_schema()).is_ok());
        assert!(validate_schema(&trials_schema(), &trials_schema()).is_ok());
        assert!(validate_schema(&progress_schema(), &trials_schema()).is_err());
        assert!(validate_schema(&spectra_schema(), &progress_schema()).is_err());
        assert!(validate_schema(&phases_schema(), &phases_schema()).is_ok());
        assert!(validate_schema(&phases_schema(), &trials_schema()).is_err());
    }

    #[test]
    fn spectrum_matrix_names_round_trip() {
        for matrix in SpectrumMatrix::ALL {
            assert_eq!(SpectrumMatrix::parse(matrix.as_str()), Some(matrix));
        }
        assert_eq!(SpectrumMatrix::parse("W_X"), None);
        assert!(validate_schema(&curves_schema(), &spectra_schema()).is_err());
    }
}
