//! The custom training loop: full batch AdamW with linear warm-up, every
//! measure every `eval_every` epochs, checkpoints every `checkpoint_every`
//! epochs, and after the last step the paper's measures with the final
//! model's key frequencies over those checkpoints.

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::backend::{AutodiffBackend, Backend};
use sweep_core::measures::{EXCLUDED_LOSS_FINAL_K, RESTRICTED_LOSS_FINAL_K};
use sweep_core::{Split, StopRule, TrainingSettings, TrialParams};

use super::checkpoint::{self, CheckpointInfo};
use super::data::PairBatch;
use super::eval::LossAccuracy;
use super::measures::Evaluator;
use super::model::{Transformer, TransformerConfig};
use crate::sink::{MeasureSink, SinkError};
use crate::stopping::StopTracker;

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

/// AdamW as both recipes set it: betas (0.9, 0.98), eps 1e-8, decoupled weight decay.
pub(crate) fn optimizer_config(weight_decay: f64) -> AdamWConfig {
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

    let mut checkpoints: Vec<(i64, Vec<u8>)> = Vec::new();
    let mut tracker = StopTracker::default();
    let mut step = 0u64;
    loop {
        let mut finishing = None;
        let evaluate_now = step % eval_every == 0 || step == max_epochs;
        let checkpoint_due = checkpoint_every > 0 && step % checkpoint_every == 0;
        let valid = (evaluate_now || checkpoint_due).then(|| model.valid());
        if let Some(valid) = valid.as_ref().filter(|_| evaluate_now) {
            let evaluation = evaluator.evaluate(valid);
            sink.record(step as i64, &evaluation.rows())?;
            let stopped_early = tracker.observe(step as i64, evaluation.test.accuracy, &spec.stop);
            if step == max_epochs || stopped_early {
                finishing = Some(TrainOutcome {
                    epochs: step as i64,
                    train: evaluation.train,
                    test: evaluation.test,
                    grokked_at: tracker.grokked_at(),
                    stopped_early,
                    key_frequencies: evaluation.key_frequencies,
                });
            }
        }
        if let Some(valid) = valid.as_ref().filter(|_| finishing.is_some() || checkpoint_due) {
            let bytes = checkpoint::save(valid, &CheckpointInfo { step: step as i64, params: params.clone() })?;
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
        let loss = cross_entropy(logits, train_batch.one_hot.clone());
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        let lr = learning_rate(spec.training.lr, spec.training.warmup_steps, step);
        model = optimizer.step(lr, model, gradients);
        step += 1;
    }
}

/// Mean cross-entropy over the d_vocab logits against one-hot labels, in a
/// form that keeps f32 precise when the loss is tiny (the authors used an f64
/// log-softmax for this): per row, softplus(z) with z = LSE_{i≠c}(x_i) − x_c.
/// Its gradient is sigmoid(z) spread over the other classes by their softmax
/// and −sigmoid(z) on the label, so neither side rounds to 1 − 1 = 0 the way
/// `softmax − one_hot` does in f32 once the label's probability is within
/// 6e-8 of 1. softplus(z) = relu(z) + ln(1 + e^−|z|) never overflows.
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, one_hot: Tensor<B, 2>) -> Tensor<B, 1> {
    let label_logit = (logits.clone() * one_hot.clone()).sum_dim(1); // [n, 1]
    let others = logits + one_hot.mul_scalar(-1e30); // the label's logit pushed out of the sum
    let shift = others.clone().max_dim(1).detach();
    let others_lse = (others - shift.clone()).exp().sum_dim(1).log() + shift; // [n, 1]
    let z = others_lse - label_logit;
    (relu(z.clone()) + z.abs().neg().exp().log1p()).mean()
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
        sink.record(
            *step,
            &[(RESTRICTED_LOSS_FINAL_K.to_string(), measured.restricted), (EXCLUDED_LOSS_FINAL_K.to_string(), measured.excluded)],
        )?;
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
            params: TrialParams {
                family: Family::Transformer,
                modulus: 11,
                data_fraction: 0.6,
                weight_decay,
                seed: 1,
                data_seed: 2,
                image_diversity: None,
            },
            training: TrainingSettings {
                lr: 1e-2,
                warmup_steps: 5,
                eval_every: 20,
                d_model: 32,
                n_heads: 4,
                d_mlp: 64,
                checkpoint_every: 100,
            },
            stop: StopRule { max_epochs, target_test_accuracy: None, patience: 1 },
        }
    }

    /// Row-wise f64 reference of d loss / d logits, with the label's entry
    /// written as −Σ_{i≠c} p_i so it keeps its precision.
    fn reference_gradient(row: &[f64], label: usize) -> Vec<f64> {
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let denominator: f64 = row.iter().map(|x| (x - max).exp()).sum();
        let softmax: Vec<f64> = row.iter().map(|x| (x - max).exp() / denominator).collect();
        let others: f64 = softmax.iter().enumerate().filter(|(i, _)| *i != label).map(|(_, p)| p).sum();
        softmax.iter().enumerate().map(|(i, p)| if i == label { -others } else { *p }).collect()
    }

    #[test]
    fn cross_entropy_matches_f64_and_keeps_tiny_gradients() {
        use burn::tensor::{Tensor, TensorData};
        let device = Default::default();
        // Row 0: an ordinary row. Row 1: margin 20 over 4 classes, loss ≈ 3·e^−20 ≈ 6e-9,
        // where an f32 `log_softmax` gives the label a gradient of exactly 0.
        let rows = [vec![0.3f32, -1.2, 2.0, 0.5], vec![20.0f32, 0.0, 0.0, 0.0]];
        let labels = [2usize, 0];
        let logits: Vec<f32> = rows.iter().flatten().copied().collect();
        let mut one_hot = vec![0f32; 8];
        one_hot[labels[0]] = 1.0;
        one_hot[4 + labels[1]] = 1.0;
        let logits = Tensor::<TestAutodiffBackend, 2>::from_data(TensorData::new(logits, [2, 4]), &device).require_grad();
        let one_hot = Tensor::<TestAutodiffBackend, 2>::from_data(TensorData::new(one_hot, [2, 4]), &device);
        let loss = cross_entropy(logits.clone(), one_hot);
        let value: f32 = loss.clone().into_scalar();
        let gradients = loss.backward();
        let gradient: Vec<f32> = logits.grad(&gradients).expect("gradient").into_data().to_vec().expect("f32");
        let mut expected_loss = 0.0;
        for (index, (row, &label)) in rows.iter().zip(&labels).enumerate() {
            let row: Vec<f64> = row.iter().map(|&x| x as f64).collect();
            let expected = reference_gradient(&row, label);
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
            expected_loss += (lse - row[label]) / 2.0;
            for (column, want) in expected.iter().enumerate() {
                let got = gradient[index * 4 + column] as f64 * 2.0; // the mean over 2 rows halves it
                assert!((got - want).abs() <= 1e-5 * want.abs().max(1e-3), "row {index} column {column}: {got} vs {want}");
            }
        }
        assert!((value as f64 - expected_loss).abs() < 1e-6, "{value} vs {expected_loss}");
        // The label's gradient in the confident row is −3e^−20 to 1e-5 relative, not 0.
        assert!(gradient[4] < 0.0 && ((gradient[4] as f64 * 2.0) / (-3.0 * (-20f64).exp()) - 1.0).abs() < 1e-5);
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
