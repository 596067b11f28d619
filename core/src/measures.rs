//! The Arrow schemas of the results tables and the names of the measures.
//!
//! `progress` is long format: one row per (trial, attempt, step, measure).
//! `trials` has one row per trial with every parameter as a typed column.

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

/// Test accuracy at which a trial counts as grokked (`grokked_at` in `trials`).
pub const GROKKED_ACCURACY: f64 = 0.95;

fn utc_millis() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
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
        Field::new(c::ERROR, DataType::Utf8, true),
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
    }
}
