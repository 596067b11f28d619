//! The custom training loop: full batch AdamW with linear warm-up, measures
//! every `eval_every` epochs into a [`MeasureSink`].

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use sweep_core::measures::{GROKKED_ACCURACY, SUM_SQUARED_WEIGHTS, TEST_ACCURACY, TEST_LOSS, TRAIN_ACCURACY, TRAIN_LOSS};
use sweep_core::{Split, StopRule, TrainingSettings, TrialParams};

use super::data::TrialData;
use super::eval::{LossAccuracy, evaluate};
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
/// `eval_every` steps and at the last step.
pub fn train<B: AutodiffBackend>(spec: &TrainSpec, device: &B::Device, sink: &mut dyn MeasureSink) -> Result<TrainOutcome, SinkError> {
    let params = &spec.params;
    let modulus = params.modulus as usize;
    let config = TransformerConfig::new(modulus)
        .with_d_model(spec.training.d_model as usize)
        .with_n_heads(spec.training.n_heads as usize)
        .with_d_mlp(spec.training.d_mlp as usize)
        .with_seed(params.seed);
    let mut model: Transformer<B> = config.init(device);
    let split = Split::new(params.modulus, params.data_fraction, params.data_seed);
    let data = TrialData::<B>::new(&split, params.modulus, device);
    let eval_data = TrialData::<B::InnerBackend>::new(&split, params.modulus, device);
    let mut optimizer = optimizer_config(params.weight_decay).init::<B, Transformer<B>>();
    let max_epochs = spec.stop.max_epochs as u64;
    let eval_every = spec.training.eval_every.max(1) as u64;
    let train_count = data.train.len() as f64;

    let mut grokked_at = None;
    let mut streak = 0u32;
    let mut step = 0u64;
    loop {
        if step % eval_every == 0 || step == max_epochs {
            let valid = model.valid();
            let train_measures = evaluate(&valid, &eval_data.train, modulus);
            let test_measures = evaluate(&valid, &eval_data.test, modulus);
            let measures = [
                (TRAIN_LOSS, train_measures.loss),
                (TEST_LOSS, test_measures.loss),
                (TRAIN_ACCURACY, train_measures.accuracy),
                (TEST_ACCURACY, test_measures.accuracy),
                (SUM_SQUARED_WEIGHTS, valid.sum_squared_weights()),
            ];
            sink.record(step as i64, &measures)?;
            if grokked_at.is_none() && test_measures.accuracy >= GROKKED_ACCURACY {
                grokked_at = Some(step as i64);
            }
            let reached_target = spec.stop.target_test_accuracy.is_some_and(|target| test_measures.accuracy >= target);
            streak = if reached_target { streak + 1 } else { 0 };
            let stopped_early = streak >= spec.stop.patience;
            if step == max_epochs || stopped_early {
                return Ok(TrainOutcome { epochs: step as i64, train: train_measures, test: test_measures, grokked_at, stopped_early });
            }
        }
        if sink.cancelled() {
            return Err(SinkError::Cancelled);
        }
        let logits = model.forward(data.train.tokens.clone()).logits; // [n_train, d_vocab]
        let log_probabilities = log_softmax(logits, 1);
        let loss = (log_probabilities * data.train.one_hot.clone()).sum().div_scalar(-train_count);
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        let lr = learning_rate(spec.training.lr, spec.training.warmup_steps, step);
        model = optimizer.step(lr, model, gradients);
        step += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestAutodiffBackend;
    use crate::sink::CollectingSink;
    use sweep_core::Family;

    fn tiny_spec(weight_decay: f64, max_epochs: u32) -> TrainSpec {
        TrainSpec {
            params: TrialParams { family: Family::Transformer, modulus: 11, data_fraction: 0.6, weight_decay, seed: 1, data_seed: 2, image_diversity: None },
            training: TrainingSettings { lr: 1e-2, warmup_steps: 5, eval_every: 20, d_model: 32, n_heads: 4, d_mlp: 64 },
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
        let steps: Vec<i64> = sink.steps();
        assert_eq!(steps, (0..=200).step_by(20).collect::<Vec<_>>());
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
