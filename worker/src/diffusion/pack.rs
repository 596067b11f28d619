//! The diffusion family as a [`PackFamily`]: K trials of one modulus, model
//! size and image settings stacked into one [`Dit`]. Every step each member
//! uses every one of its own training pairs once, with images, times and
//! noise freshly drawn from its own generator (exactly its single run's
//! draws), padded to the pack's largest split with rows of no loss weight;
//! each member's flow-matching MSE is normalised by its own pairs and pixels.
//! On a CPU backend a step's rows are cut into parts after they are drawn,
//! one thread each (`crate::parts`).

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use sweep_core::split::SplitMix64;
use sweep_core::{DiffusionSettings, FamilySettings, OperandInput, Split, TrialLease, TrialParams};
use sweep_glyphs::{DEFAULT_MIN_DISTANCE, DistinctnessError, GlyphSet, GlyphSetError, check_distinct};
use tracing::info;

use super::classifier::{ClassifierError, ClassifierKey, load_or_train};
use super::data::{HostDraw, ImageBank};
use super::flow::interpolate;
use super::judge::{ExemplarJudge, Judge};
use super::measures::Evaluator;
use super::model::{Dit, DitConfig, PackOperands, TIME_FEATURES, time_features};
use crate::family::{Evaluation, FamilyContext, FamilyError, LocalCheckpoints, PackFamily};
use crate::grad_filter::GradientFilter;
use crate::optim::PackAdamW;
use crate::parts;
use crate::scale::scale_weights;
use crate::sink::MeasureSink;
use crate::stack;

/// Why a diffusion trial cannot be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiffusionError {
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
    settings: &DiffusionSettings,
    context: &FamilyContext,
    set: &GlyphSet,
    bank: &ImageBank,
    device: &B::Device,
) -> Result<Judge<B::InnerBackend>, DiffusionError> {
    if bank.per_class() == 1 {
        return Ok(Judge::Exemplar(ExemplarJudge::new(bank.prototypes(), bank.pixels())));
    }
    let key = ClassifierKey { classes: bank.classes(), glyphs: *set, images_per_class: settings.judge_images_per_class as usize };
    let (classifier, origin) = load_or_train::<B>(&key, &context.cache_dir, device)?;
    info!(held_out_accuracy = classifier.held_out_accuracy(), origin = ?origin, "judge classifier ready");
    if classifier.held_out_accuracy() < settings.judge_min_accuracy {
        return Err(DiffusionError::WeakJudge { accuracy: classifier.held_out_accuracy(), required: settings.judge_min_accuracy });
    }
    Ok(Judge::Classifier(Box::new(classifier)))
}

/// One prepared diffusion trial.
#[derive(Debug)]
pub struct DiffusionMember<B: AutodiffBackend> {
    model: Dit<B>,
    data: MemberData<B>,
    filter: GradientFilter,
}

#[derive(Debug)]
struct MemberData<B: AutodiffBackend> {
    params: TrialParams,
    train_pairs: Vec<(usize, usize)>,
    bank: ImageBank,
    rng: SplitMix64,
    evaluator: Evaluator<B::InnerBackend>,
    judge_accuracy: Option<f64>,
}

/// A pack of diffusion trials.
#[derive(Debug)]
pub struct DiffusionPack<B: AutodiffBackend> {
    model: Dit<B>,
    optimizer: PackAdamW<B>,
    members: Vec<MemberData<B>>,
    input: OperandInput,
    step_threads: usize,
    part_threads: parts::PartThreads,
    device: B::Device,
}

/// Fewest rows (images, summed over the pack's trials) one part of a step is given.
const MIN_ROWS_PER_PART: usize = 64;

/// One step's inputs of a pack: every member's draws, padded to the largest.
struct PackDraw<B: AutodiffBackend> {
    /// Noisy images, [K, rows, pixels].
    x_t: Tensor<B, 3>,
    /// Time features, [K, rows, TIME_FEATURES].
    time: Tensor<B, 3>,
    operands: PackOperands<B>,
    /// Targets, [K, rows, pixels].
    x0: Tensor<B, 3>,
    /// Loss weight of each row, [K · rows, 1]: 1 / (n_k · pixels) on member k's pairs, 0 on padding.
    weights: Tensor<B, 2>,
}

impl<B: AutodiffBackend> DiffusionPack<B> {
    /// This step's draws of every member (each from its own generator, in
    /// the order of its single run), cut into the step's parts: in each,
    /// every member's rows of that part, padded to the part's largest.
    fn draw(&mut self) -> Vec<PackDraw<B>> {
        let rows = self.members.iter().map(|member| member.train_pairs.len()).max().unwrap_or(0) * self.members.len();
        let parts = parts::parts_for::<B>(rows, MIN_ROWS_PER_PART, self.step_threads, &self.device);
        self.draw_in(parts)
    }

    /// [`DiffusionPack::draw`] cut into `parts` parts.
    fn draw_in(&mut self, parts: usize) -> Vec<PackDraw<B>> {
        let input = self.input;
        let draws: Vec<HostDraw> =
            self.members.iter_mut().map(|member| HostDraw::draw(&member.bank, &member.train_pairs, input, None, &mut member.rng)).collect();
        let counts: Vec<usize> = draws.iter().map(HostDraw::len).collect();
        if parts == 1 {
            // Not cut: the draws are the part, without a copy.
            return vec![self.pack_draw(draws.into_iter().zip(counts.iter().copied()).collect(), &counts)];
        }
        let pixels = self.members[0].bank.pixels();
        (0..parts)
            .map(|part| {
                let pieces: Vec<(HostDraw, usize)> = draws
                    .iter()
                    .map(|draw| {
                        let range = parts::part_range(draw.len(), part, parts);
                        // A part that holds none of a member's rows pads it with its first.
                        let real = range.len();
                        (draw.rows(if real == 0 { 0..1 } else { range }, pixels), real)
                    })
                    .collect();
                self.pack_draw(pieces, &counts)
            })
            .collect()
    }

    /// The model's inputs from one part's `pieces` of every member's draw
    /// (with how many of each piece's rows are real), each row weighted by
    /// its member's whole draw of `counts[k]` pairs.
    fn pack_draw(&self, pieces: Vec<(HostDraw, usize)>, counts: &[usize]) -> PackDraw<B> {
        let rows = pieces.iter().map(|(piece, _)| piece.len()).max().unwrap_or(0);
        let trials = pieces.len();
        let pixels = self.members[0].bank.pixels();
        let classes = self.members[0].bank.classes();
        let (mut a_images, mut b_images, mut x0, mut noise) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut times, mut a_rows, mut b_rows) = (Vec::new(), Vec::new(), Vec::new());
        let mut weights = vec![0f32; trials * rows];
        for (trial, ((piece, real), count)) in pieces.into_iter().zip(counts).enumerate() {
            let weight = 1.0 / (count * pixels) as f32;
            weights[trial * rows..trial * rows + real].fill(weight);
            let piece = piece.padded(rows, pixels);
            a_images.extend(piece.a_images);
            b_images.extend(piece.b_images);
            x0.extend(piece.x0);
            noise.extend(piece.noise);
            times.extend(piece.times);
            a_rows.extend(piece.pairs.iter().map(|pair| (trial * classes + pair.0) as i64));
            b_rows.extend(piece.pairs.iter().map(|pair| (trial * classes + pair.1) as i64));
        }
        let device = &self.device;
        let flat = |values: Vec<f32>| Tensor::<B, 2>::from_data(TensorData::new(values, [trials * rows, pixels]), device);
        let t: Vec<f32> = times.iter().map(|&t| t as f32).collect();
        let t = Tensor::<B, 2>::from_data(TensorData::new(t, [trials * rows, 1]), device);
        let x0 = flat(x0);
        let x_t = interpolate(x0.clone(), flat(noise), t).reshape([trials, rows, pixels]);
        let features = time_features::<B>(&times, device).reshape([trials, rows, TIME_FEATURES]);
        let operands = match self.input {
            OperandInput::Image => {
                PackOperands::Images(flat(a_images).reshape([trials, rows, pixels]), flat(b_images).reshape([trials, rows, pixels]))
            }
            OperandInput::Token => {
                let column = |values: Vec<i64>| Tensor::<B, 1, Int>::from_data(TensorData::new(values, [trials * rows]), device);
                PackOperands::Tokens(column(a_rows), column(b_rows))
            }
        };
        let weights = Tensor::from_data(TensorData::new(weights, [trials * rows, 1]), device);
        PackDraw { x_t, time: features, operands, x0: x0.reshape([trials, rows, pixels]), weights }
    }
}

/// The flow-matching loss of one part of a step: Σ over its rows of the
/// row's weight times its squared error.
fn draw_loss<B: AutodiffBackend>(model: &Dit<B>, draw: &PackDraw<B>) -> Tensor<B, 1> {
    let PackDraw { x_t, time, operands, x0, weights } = draw;
    let x0_hat = model.forward_pack(x_t.clone(), time.clone(), operands.clone()).x0; // [K, rows, pixels]
    let [trials, rows, pixels] = x0_hat.dims();
    let squared = (x0_hat - x0.clone()).powi_scalar(2).reshape([trials * rows, pixels]).sum_dim(1); // [K · rows, 1]
    (squared * weights.clone()).sum()
}

impl<B: AutodiffBackend> PackFamily<B> for DiffusionPack<B> {
    type Member = DiffusionMember<B>;

    const NAME: &'static str = "diffusion";

    fn prepare(lease: &TrialLease, context: &FamilyContext, device: &B::Device) -> Result<Self::Member, FamilyError> {
        let FamilySettings::Diffusion(settings) = &lease.family else {
            return Err(FamilyError::WrongFamily { expected: Self::NAME, found: lease.family.family().to_string() });
        };
        let params = &lease.params;
        let classes = params.modulus as usize;
        let set = GlyphSet::new(settings.glyph_seed, settings.image_size as usize, settings.augmentation).map_err(DiffusionError::from)?;
        set.check_classes(params.modulus).map_err(DiffusionError::from)?;
        check_distinct(&set, params.modulus, DEFAULT_MIN_DISTANCE).map_err(DiffusionError::from)?;
        let bank = ImageBank::generate(&set, classes, params.image_diversity.unwrap_or(1) as usize);
        let judge = judge::<B>(settings, context, &set, &bank, device)?;
        let judge_accuracy = judge.held_out_accuracy();
        let split = Split::new(params.modulus, params.data_fraction, params.data_seed);
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
        Ok(DiffusionMember {
            model: scale_weights(config.init(device), params.init_scale),
            filter: GradientFilter::new(params.optimizer, &lease.training),
            data: MemberData {
                params: params.clone(),
                train_pairs: split.train.iter().map(|&(a, b)| (a as usize, b as usize)).collect(),
                bank,
                rng: SplitMix64::new(params.seed ^ 0x6461_7461),
                evaluator,
                judge_accuracy,
            },
        })
    }

    fn stack(members: Vec<Self::Member>, context: &FamilyContext, device: &B::Device) -> Self {
        let input = if members[0].model.operand_embed.is_some() { OperandInput::Token } else { OperandInput::Image };
        let filter = members[0].filter.clone();
        let optimizer = PackAdamW::new(members.iter().map(|member| member.data.params.weight_decay).collect(), filter);
        let (models, members): (Vec<Dit<B>>, Vec<MemberData<B>>) = members.into_iter().map(|member| (member.model, member.data)).unzip();
        DiffusionPack {
            model: stack::stack(models),
            optimizer,
            members,
            input,
            step_threads: context.step_threads,
            part_threads: parts::PartThreads::for_backend::<B>(context.step_threads, device),
            device: device.clone(),
        }
    }

    fn step(&mut self, learning_rates: &[f64]) {
        let draws = self.draw();
        let gradients = self.part_threads.gradients(&self.model, &draws, draw_loss);
        self.optimizer.step_in_place(&mut self.part_threads, learning_rates, &mut self.model, gradients, &self.device);
    }

    fn evaluate(&self, index: usize) -> Evaluation {
        let member = &self.members[index];
        let evaluation = member.evaluator.evaluate(&stack::one_trial(self.model.valid(), index));
        Evaluation {
            train_loss: evaluation.train_loss,
            test_loss: evaluation.test_loss,
            train_accuracy: evaluation.train_accuracy,
            test_accuracy: evaluation.test_accuracy,
            key_frequencies: evaluation.key_frequencies.iter().map(|&k| k as u32).collect(),
            judge_accuracy: member.judge_accuracy,
            measures: evaluation.measures(),
        }
    }

    fn checkpoint(&self, _index: usize, _step: i64) -> Result<Option<Vec<u8>>, FamilyError> {
        Ok(None)
    }

    fn record_final(&self, _: usize, _: &Evaluation, _: &LocalCheckpoints, _: &mut dyn MeasureSink) -> Result<(), FamilyError> {
        Ok(())
    }

    fn keep(&mut self, keep: &[usize]) {
        self.model = stack::keep_trials(self.model.clone(), keep, &self.device);
        self.optimizer.keep_trials(keep, &self.device);
        stack::keep_items(&mut self.members, keep);
    }
}

#[cfg(test)]
#[path = "pack_tests.rs"]
mod tests;
