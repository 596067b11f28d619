//! The diffusion training loop: every step uses every training pair once
//! with freshly drawn images, times and noise (AdamW, betas (0.9, 0.98),
//! linear warm-up), and every measure is recorded at step 0, every
//! `eval_every` steps and at the last step.

use std::path::PathBuf;

use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use sweep_core::split::SplitMix64;
use sweep_core::{DiffusionSettings, Split, StopRule, TrainingSettings, TrialParams};
use sweep_glyphs::{DEFAULT_MIN_DISTANCE, DistinctnessError, GlyphSet, GlyphSetError, check_distinct};
use tracing::info;

use super::classifier::{ClassifierError, ClassifierKey, load_or_train};
use super::data::{Batch, ImageBank};
use super::judge::{ExemplarJudge, Judge};
use super::measures::Evaluator;
use super::model::{Dit, DitConfig};
use crate::sink::{MeasureSink, SinkError};
use crate::stopping::StopTracker;
use crate::transformer::train::{learning_rate, optimizer_config};

/// Everything a diffusion trial needs.
#[derive(Debug, Clone)]
pub struct DiffusionSpec {
    /// Grid point (image diversity N defaults to 1).
    pub params: TrialParams,
    /// Learning rate, warm-up and eval cadence.
    pub training: TrainingSettings,
    /// Stop rule (one epoch = one step).
    pub stop: StopRule,
    /// The family's settings.
    pub diffusion: DiffusionSettings,
    /// Where the judge classifier is cached.
    pub cache_dir: PathBuf,
}

/// The last evaluation and what the run reached.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffusionOutcome {
    /// Steps trained.
    pub epochs: i64,
    /// Final flow-matching loss on the training pairs.
    pub train_loss: f64,
    /// Final flow-matching loss on the test pairs.
    pub test_loss: f64,
    /// Final generation accuracy on the training pairs.
    pub train_accuracy: f64,
    /// Final generation accuracy on the test pairs.
    pub test_accuracy: f64,
    /// First evaluated step with test generation accuracy ≥ 0.95.
    pub grokked_at: Option<i64>,
    /// True when the early-stop rule ended the run.
    pub stopped_early: bool,
    /// Held-out accuracy of the judge classifier (diverse N).
    pub judge_accuracy: Option<f64>,
}

/// Why a diffusion trial ended without an outcome.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiffusionError {
    /// The sink refused the rows or asked to stop.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The glyph settings are unusable for this modulus.
    #[error("symbol images: {0}")]
    Glyphs(#[from] GlyphSetError),
    /// Two classes' symbols look alike.
    #[error("symbol images: {0}")]
    LookAlike(#[from] DistinctnessError),
    /// The judge classifier could not be loaded or stored.
    #[error(transparent)]
    Classifier(#[from] ClassifierError),
    /// The judge classifier is not good enough to trust its verdicts.
    #[error(
        "the judge classifier reaches only {accuracy:.3} held-out accuracy (at least {required} is required before its verdicts are used); raise diffusion.judge_images_per_class or lower diffusion.augmentation"
    )]
    WeakJudge {
        /// Its held-out accuracy.
        accuracy: f64,
        /// The required accuracy.
        required: f64,
    },
}

/// Set up the judge: the exemplars for N = 1, the cached (or freshly trained) CNN otherwise.
fn judge<B: AutodiffBackend>(
    spec: &DiffusionSpec,
    set: &GlyphSet,
    bank: &ImageBank,
    device: &B::Device,
) -> Result<Judge<B::InnerBackend>, DiffusionError> {
    if bank.per_class() == 1 {
        return Ok(Judge::Exemplar(ExemplarJudge::new(bank.prototypes(), bank.pixels())));
    }
    let key = ClassifierKey { classes: bank.classes(), glyphs: *set, images_per_class: spec.diffusion.judge_images_per_class as usize };
    let (classifier, origin) = load_or_train::<B>(&key, &spec.cache_dir, device)?;
    info!(held_out_accuracy = classifier.held_out_accuracy(), origin = ?origin, "judge classifier ready");
    if classifier.held_out_accuracy() < spec.diffusion.judge_min_accuracy {
        return Err(DiffusionError::WeakJudge { accuracy: classifier.held_out_accuracy(), required: spec.diffusion.judge_min_accuracy });
    }
    Ok(Judge::Classifier(classifier))
}

/// Train a diffusion trial, sending measures to `sink`.
pub fn train<B: AutodiffBackend>(
    spec: &DiffusionSpec,
    device: &B::Device,
    sink: &mut dyn MeasureSink,
) -> Result<DiffusionOutcome, DiffusionError> {
    let (params, settings) = (&spec.params, &spec.diffusion);
    let classes = params.modulus as usize;
    let set = GlyphSet::new(settings.glyph_seed, settings.image_size as usize, settings.augmentation)?;
    set.check_classes(params.modulus)?;
    check_distinct(&set, params.modulus, DEFAULT_MIN_DISTANCE)?;
    let bank = ImageBank::generate(&set, classes, params.image_diversity.unwrap_or(1) as usize);
    let judge = judge::<B>(spec, &set, &bank, device)?;
    let judge_accuracy = judge.held_out_accuracy();

    let split = Split::new(params.modulus, params.data_fraction, params.data_seed);
    let train_pairs: Vec<(usize, usize)> = split.train.iter().map(|&(a, b)| (a as usize, b as usize)).collect();
    let evaluator = Evaluator::<B::InnerBackend>::new(settings, bank.clone(), &split, judge, params.seed ^ 0x6576_616c, device);
    let config = DitConfig {
        classes,
        image_size: settings.image_size as usize,
        patch_size: settings.patch_size as usize,
        d_model: settings.d_model as usize,
        n_heads: settings.n_heads as usize,
        d_ffn: settings.d_ffn as usize,
        operand_input: settings.operand_input,
        seed: params.seed,
    };
    let mut model: Dit<B> = config.init(device);
    let mut optimizer = optimizer_config(params.weight_decay).init::<B, Dit<B>>();
    let mut rng = SplitMix64::new(params.seed ^ 0x6461_7461);
    let max_epochs = spec.stop.max_epochs as u64;
    let eval_every = spec.training.eval_every.max(1) as u64;
    let mut tracker = StopTracker::default();
    let mut step = 0u64;
    loop {
        if step % eval_every == 0 || step == max_epochs {
            let evaluation = evaluator.evaluate(&model.valid());
            sink.record(step as i64, &evaluation.rows())?;
            let stopped_early = tracker.observe(step as i64, evaluation.test_accuracy, &spec.stop);
            if step == max_epochs || stopped_early {
                return Ok(DiffusionOutcome {
                    epochs: step as i64,
                    train_loss: evaluation.train_loss,
                    test_loss: evaluation.test_loss,
                    train_accuracy: evaluation.train_accuracy,
                    test_accuracy: evaluation.test_accuracy,
                    grokked_at: tracker.grokked_at(),
                    stopped_early,
                    judge_accuracy,
                });
            }
        }
        if sink.cancelled() {
            return Err(SinkError::Cancelled.into());
        }
        let batch = Batch::<B>::draw(&bank, &train_pairs, settings.operand_input, None, &mut rng, device);
        let (x_t, time) = batch.noisy_input(device);
        let x0_hat = model.forward(x_t, time, batch.operands).x0;
        let loss = (x0_hat - batch.x0).powi_scalar(2).mean();
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        let lr = learning_rate(spec.training.lr, spec.training.warmup_steps, step);
        model = optimizer.step(lr, model, gradients);
        step += 1;
    }
}

#[cfg(test)]
mod tests {
    use sweep_core::{Family, OperandInput};

    use super::*;
    use crate::backend::TestAutodiffBackend;
    use crate::sink::CollectingSink;

    fn tiny_spec(modulus: u32, fraction: f64, epochs: u32, input: OperandInput) -> DiffusionSpec {
        DiffusionSpec {
            params: TrialParams {
                family: Family::Diffusion,
                modulus,
                data_fraction: fraction,
                weight_decay: 0.0,
                seed: 1,
                data_seed: 1,
                image_diversity: Some(1),
            },
            training: TrainingSettings { lr: 3e-3, warmup_steps: 5, eval_every: epochs, ..TrainingSettings::default() },
            stop: StopRule { max_epochs: epochs, target_test_accuracy: None, patience: 1 },
            diffusion: DiffusionSettings {
                operand_input: input,
                image_size: 16,
                patch_size: 4,
                d_model: 32,
                n_heads: 2,
                d_ffn: 32,
                sample_steps: 10,
                decision_points: 5,
                switch_times: vec![0.8, 0.2],
                ..DiffusionSettings::default()
            },
            cache_dir: std::env::temp_dir(),
        }
    }

    #[test]
    fn a_tiny_model_overfits_one_pair() {
        // One training pair, 300 full-batch steps: the flow loss falls by far
        // and the sampler draws the right symbol from noise.
        let spec = tiny_spec(3, 0.12, 300, OperandInput::Token);
        let mut sink = CollectingSink::default();
        let outcome = train::<TestAutodiffBackend>(&spec, &Default::default(), &mut sink).expect("trains");
        let first_loss = sink.value(0, sweep_core::measures::TRAIN_LOSS).expect("recorded at step 0");
        assert!(outcome.train_loss < first_loss / 10.0, "loss {first_loss} → {}", outcome.train_loss);
        assert_eq!(outcome.train_accuracy, 1.0);
        assert_eq!(outcome.epochs, 300);
        assert!(outcome.judge_accuracy.is_none());
    }
}
