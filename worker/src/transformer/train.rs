//! The custom training loop: full batch AdamW with linear warm-up, every
//! measure every `eval_every` epochs, checkpoints every `checkpoint_every`
//! epochs, and after the last step the paper's measures with the final
//! model's key frequencies over those checkpoints.

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use sweep_core::measures::{EXCLUDED_LOSS_FINAL_K, GROKKED_ACCURACY, RESTRICTED_LOSS_FINAL_K};
use sweep_core::{Split, StopRule, TrainingSettings, TrialParams};

use super::checkpoint::{self, CheckpointInfo};
use super::data::PairBatch;
use super::eval::LossAccuracy;
use super::measures::Evaluator;
use super::model::{Transformer, TransformerConfig};
use crate::sink::{MeasureSink, SinkError};

/// Everything a transformer trial needs.
#[derive(Debug, Clone)]
pub struct TrainSpec {
    /// Grid point.
    pub params: TrialParams,
    /// Fixed settings.
    pub training: TrainingSettings,
    /// Stop rule.
    pub stop: StopRule,
}

/// The last evaluation and what the run reached.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    /// Epochs trained.
    pub epochs: i64,
    /// Final train loss and accuracy.
    pub train: LossAccuracy,
    /// Final test loss and accuracy.
    pub test: LossAccuracy,
    /// First evaluated epoch with test accuracy ≥ 0.95.
    pub grokked_at: Option<i64>,
    /// True when the early-stop rule ended the run.
    pub stopped_early: bool,
    /// Key frequencies of the final model, ascending.
    pub key_frequencies: Vec<usize>,
}

/// Why a trial's training ended without an outcome.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The sink refused the rows or asked to stop.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A checkpoint could not be written or read back.
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
}

/// AdamW as the recipe sets it: betas (0.9, 0.98), eps 1e-8, decoupled weight decay.
fn optimizer_config(weight_decay: f64) -> AdamWConfig {
    AdamWConfig::new().with_beta_1(0.9).with_beta_2(0.98).with_epsilon(1e-8).with_weight_decay(weight_decay as f32)
}

/// Learning rate of step `step` (0-based): `lr · min(step / warmup, 1)`; step 0 has lr 0.
pub fn learning_rate(base: f64, warmup_steps: u32, step: u64) -> f64 {
    if warmup_steps == 0 {
        return base;
    }
    base * (step as f64 / warmup_steps as f64).min(1.0)
}

/// Train a transformer trial, sending measures to `sink` at step 0, every
/// `eval_every` steps and at the last step, and checkpoints at step 0, every
/// `checkpoint_every` steps and at the last step. The checkpoints of the run
/// are kept in memory until it ends (about 4 bytes per parameter each), when
/// the restricted and excluded loss with the final key frequencies are
/// computed over them and recorded at their steps.
pub fn train<B: AutodiffBackend>(spec: &TrainSpec, device: &B::Device, sink: &mut dyn MeasureSink) -> Result<TrainOutcome, TrainError> {
    let params = &spec.params;
    let config = TransformerConfig::new(params.modulus as usize)
        .with_d_model(spec.training.d_model as usize)
        .with_n_heads(spec.training.n_heads as usize)
        .with_d_mlp(spec.training.d_mlp as usize)
        .with_seed(params.seed);
    let mut model: Transformer<B> = config.init(device);
    let split = Split::new(params.modulus, params.data_fraction, params.data_seed);
    let train_batch = PairBatch::<B>::new(&split.train, params.modulus, device);
    let evaluator = Evaluator::<B::InnerBackend>::new(&split, params.modulus, device);
    let mut optimizer = optimizer_config(params.weight_decay).init::<B, Transformer<B>>();
    let max_epochs = spec.stop.max_epochs as u64;
    let eval_every = spec.training.eval_every.max(1) as u64;
    let checkpoint_every = spec.training.checkpoint_every as u64;
    let train_count = train_batch.len() as f64;

    let mut checkpoints: Vec<(i64, Vec<u8>)> = Vec::new();
    let mut grokked_at = None;
    let mut streak = 0u32;
    let mut step = 0u64;
    loop {
        let mut finishing = None;
        if step % eval_every == 0 || step == max_epochs {
            let valid = model.valid();
            let evaluation = evaluator.evaluate(&valid);
            sink.record(step as i64, &evaluation.rows())?;
            if grokked_at.is_none() && evaluation.test.accuracy >= GROKKED_ACCURACY {
                grokked_at = Some(step as i64);
            }
            let reached_target = spec.stop.target_test_accuracy.is_some_and(|target| evaluation.test.accuracy >= target);
            streak = if reached_target { streak + 1 } else { 0 };
            let stopped_early = streak >= spec.stop.patience;
            if step == max_epochs || stopped_early {
                finishing = Some(TrainOutcome {
                    epochs: step as i64,
                    train: evaluation.train,
                    test: evaluation.test,
                    grokked_at,
                    stopped_early,
                    key_frequencies: evaluation.key_frequencies,
                });
            }
        }
        if finishing.is_some() || (checkpoint_every > 0 && step % checkpoint_every == 0) {
            let bytes = checkpoint::save(&model.valid(), &CheckpointInfo { step: step as i64, params: params.clone() })?;
            sink.checkpoint(step as i64, bytes.clone())?;
            checkpoints.push((step as i64, bytes));
        }
        if let Some(outcome) = finishing {
            record_final_k_measures::<B>(&evaluator, &checkpoints, &outcome.key_frequencies, device, sink)?;
            return Ok(outcome);
        }
        if sink.cancelled() {
            return Err(SinkError::Cancelled.into());
        }
        let logits = model.forward(train_batch.tokens.clone()).logits; // [n_train, d_vocab]
        let log_probabilities = log_softmax(logits, 1);
        let loss = (log_probabilities * train_batch.one_hot.clone()).sum().div_scalar(-train_count);
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        let lr = learning_rate(spec.training.lr, spec.training.warmup_steps, step);
        model = optimizer.step(lr, model, gradients);
        step += 1;
    }
}

/// The authors' definition: K fixed from the final model, reused at every
/// earlier checkpoint. Each checkpoint is read back from its bytes.
fn record_final_k_measures<B: AutodiffBackend>(
    evaluator: &Evaluator<B::InnerBackend>,
    checkpoints: &[(i64, Vec<u8>)],
    final_keys: &[usize],
    device: &B::Device,
    sink: &mut dyn MeasureSink,
) -> Result<(), TrainError> {
    for (step, bytes) in checkpoints {
        if sink.cancelled() {
            return Err(SinkError::Cancelled.into());
        }
        let (model, _) = checkpoint::load::<B::InnerBackend>(bytes, device)?;
        let measured = evaluator.restricted_excluded_with(&model, final_keys);
        sink.record(*step, &[(RESTRICTED_LOSS_FINAL_K.to_string(), measured.restricted), (EXCLUDED_LOSS_FINAL_K.to_string(), measured.excluded)])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestAutodiffBackend;
    use crate::sink::CollectingSink;
    use sweep_core::Family;
    use sweep_core::measures::TRAIN_LOSS;

    fn tiny_spec(weight_decay: f64, max_epochs: u32) -> TrainSpec {
        TrainSpec {
            params: TrialParams { family: Family::Transformer, modulus: 11, data_fraction: 0.6, weight_decay, seed: 1, data_seed: 2, image_diversity: None },
            training: TrainingSettings { lr: 1e-2, warmup_steps: 5, eval_every: 20, d_model: 32, n_heads: 4, d_mlp: 64, checkpoint_every: 100 },
            stop: StopRule { max_epochs, target_test_accuracy: None, patience: 1 },
        }
    }

    #[test]
    fn warm_up_is_linear_from_zero() {
        assert_eq!(learning_rate(1e-3, 10, 0), 0.0);
        assert!((learning_rate(1e-3, 10, 5) - 5e-4).abs() < 1e-15);
        assert_eq!(learning_rate(1e-3, 10, 50), 1e-3);
        assert_eq!(learning_rate(1e-3, 0, 0), 1e-3);
    }

    #[test]
    fn training_memorises_the_training_pairs_and_reports_every_eval() {
        let mut sink = CollectingSink::default();
        let outcome = train::<TestAutodiffBackend>(&tiny_spec(0.1, 200), &Default::default(), &mut sink).expect("trains");
        assert_eq!(outcome.epochs, 200);
        assert_eq!(sink.steps_of(TRAIN_LOSS), (0..=200).step_by(20).collect::<Vec<_>>());
        assert_eq!(sink.checkpoints.iter().map(|c| c.0).collect::<Vec<_>>(), vec![0, 100, 200]);
        assert_eq!(sink.steps_of(RESTRICTED_LOSS_FINAL_K), vec![0, 100, 200]);
        // At the last step K is the same either way, so both definitions agree there.
        let last = |name| sink.value(200, name).expect("measured at the last step");
        assert_eq!(last(RESTRICTED_LOSS_FINAL_K), last(sweep_core::measures::RESTRICTED_LOSS));
        assert_eq!(last(EXCLUDED_LOSS_FINAL_K), last(sweep_core::measures::EXCLUDED_LOSS));
        let first_loss = sink.value(0, TRAIN_LOSS).expect("loss at step 0");
        assert!((first_loss - (11f64).ln()).abs() < 1.0, "initial loss {first_loss} should be near ln 11");
        assert!(outcome.train.loss < 0.1 * first_loss, "loss fell from {first_loss} to {}", outcome.train.loss);
        assert_eq!(outcome.train.accuracy, 1.0);
    }

    #[test]
    fn same_seeds_give_identical_series_and_other_seeds_do_not() {
        let run = |seed: u64| {
            let mut spec = tiny_spec(1.0, 40);
            spec.params.seed = seed;
            let mut sink = CollectingSink::default();
            train::<TestAutodiffBackend>(&spec, &Default::default(), &mut sink).expect("trains");
            sink.rows
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn early_stop_ends_when_the_target_is_held() {
        let mut spec = tiny_spec(0.1, 400);
        spec.params.data_fraction = 0.9;
        spec.stop.target_test_accuracy = Some(0.01);
        spec.stop.patience = 2;
        let mut sink = CollectingSink::default();
        let outcome = train::<TestAutodiffBackend>(&spec, &Default::default(), &mut sink).expect("trains");
        assert!(outcome.stopped_early);
        assert!(outcome.epochs < 400);
    }
}
