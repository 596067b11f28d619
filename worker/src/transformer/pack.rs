//! The transformer family as a [`PackFamily`]: K trials of one modulus and
//! size stacked into one [`Transformer`], trained full batch with the loss
//! of each trial normalised by its own number of training pairs, per-trial
//! AdamW ([`PackAdamW`]), and every measure of a member from a pack-of-one
//! slice of the stack. After its last step a member's final-K losses are
//! computed over its checkpoints, read back from the worker's disk. The
//! loss is softmax or StableMax cross-entropy, one per pack (it is in the
//! pack key), and so is the optimiser's gradient filter. On a CPU backend a
//! step's batch is cut into parts, one thread each (`crate::parts`).

use burn::module::AutodiffModule;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::backend::{AutodiffBackend, Backend};
use sweep_core::measures::{EXCLUDED_LOSS_FINAL_K, RESTRICTED_LOSS_FINAL_K};
use sweep_core::{FamilySettings, LossKind, Measure, Split, TrialLease, TrialParams};

use super::checkpoint::{self, CheckpointInfo};
use super::data::PackBatch;
use super::measures::Evaluator;
use super::model::{Transformer, TransformerConfig};
use crate::family::{Evaluation, FamilyContext, FamilyError, LocalCheckpoints, PackFamily};
use crate::grad_filter::GradientFilter;
use crate::optim::PackAdamW;
use crate::parts;
use crate::scale::scale_weights;
use crate::sink::MeasureSink;
use crate::stack;

/// One prepared transformer trial.
#[derive(Debug)]
pub struct TransformerMember<B: AutodiffBackend> {
    params: TrialParams,
    model: Transformer<B>,
    train_pairs: Vec<(u32, u32)>,
    evaluator: Evaluator<B::InnerBackend>,
    filter: GradientFilter,
}

/// A pack of transformer trials.
#[derive(Debug)]
pub struct TransformerPack<B: AutodiffBackend> {
    model: Transformer<B>,
    optimizer: PackAdamW<B>,
    members: Vec<MemberData<B>>,
    /// The training batch in parts, one per thread of a step (`crate::parts`).
    parts: Vec<PackBatch<B>>,
    step_threads: usize,
    part_threads: parts::PartThreads,
    modulus: u32,
    loss: LossKind,
    device: B::Device,
}

#[derive(Debug)]
struct MemberData<B: AutodiffBackend> {
    params: TrialParams,
    train_pairs: Vec<(u32, u32)>,
    evaluator: Evaluator<B::InnerBackend>,
}

/// The pack's training pairs as the batches of a step's parts
/// ([`parts::parts_for`] of them): each trial's pairs cut into contiguous
/// runs, every row weighted by 1/n_k of its trial's whole split.
fn batches_of<B: AutodiffBackend>(members: &[MemberData<B>], modulus: u32, step_threads: usize, device: &B::Device) -> Vec<PackBatch<B>> {
    let rows = members.iter().map(|member| member.train_pairs.len()).max().unwrap_or(0) * members.len();
    batches_in(members, modulus, parts::parts_for::<B>(rows, MIN_ROWS_PER_PART, step_threads, device), device)
}

/// Fewest inputs (summed over the pack's trials) one part of a step is given.
const MIN_ROWS_PER_PART: usize = 256;

/// [`batches_of`] with `parts` parts.
fn batches_in<B: AutodiffBackend>(members: &[MemberData<B>], modulus: u32, parts: usize, device: &B::Device) -> Vec<PackBatch<B>> {
    let counts: Vec<usize> = members.iter().map(|member| member.train_pairs.len()).collect();
    (0..parts)
        .map(|part| {
            let pairs: Vec<&[(u32, u32)]> =
                members.iter().map(|member| &member.train_pairs[parts::part_range(member.train_pairs.len(), part, parts)]).collect();
            PackBatch::weighted(&pairs, &counts, modulus, device)
        })
        .collect()
}

impl<B: AutodiffBackend> TransformerPack<B> {
    /// Member `index` as a pack of one, without autodiff.
    fn member_model(&self, index: usize) -> Transformer<B::InnerBackend> {
        stack::one_trial(self.model.valid(), index)
    }
}

/// The training loss of a pack on its batch: Σ_k (1/n_k) Σ_{i ≤ n_k} ℓ_ki,
/// ℓ the `loss` cross-entropy over the p + 1 logits (for a pack of one, the
/// trial's mean training loss L_n).
pub fn pack_loss<B: Backend>(model: &Transformer<B>, batch: &PackBatch<B>, loss: LossKind) -> Tensor<B, 1> {
    let logits = model.forward(&batch.inputs).logits; // [K, rows, d_vocab]
    let [trials, rows, d_vocab] = logits.dims();
    let (logits, one_hot) = (logits.reshape([trials * rows, d_vocab]), batch.one_hot.clone());
    let per_row = match loss {
        LossKind::Softmax => cross_entropy_rows(logits, one_hot),
        LossKind::Stablemax => stablemax_cross_entropy_rows(logits, one_hot),
    }; // [K · rows, 1]
    (per_row * batch.weights.clone()).sum()
}

impl<B: AutodiffBackend> PackFamily<B> for TransformerPack<B> {
    type Member = TransformerMember<B>;

    const NAME: &'static str = "transformer";

    fn prepare(lease: &TrialLease, _context: &FamilyContext, device: &B::Device) -> Result<Self::Member, FamilyError> {
        let FamilySettings::Transformer(sizes) = &lease.family else {
            return Err(FamilyError::WrongFamily { expected: Self::NAME, found: lease.family.family().to_string() });
        };
        let params = lease.params.clone();
        let config = TransformerConfig::new(params.modulus as usize)
            .with_d_model(sizes.d_model as usize)
            .with_n_heads(sizes.n_heads as usize)
            .with_d_mlp(sizes.d_mlp as usize)
            .with_seed(params.seed);
        let split = Split::new(params.modulus, params.data_fraction, params.data_seed);
        Ok(TransformerMember {
            model: scale_weights(config.init(device), params.init_scale),
            evaluator: Evaluator::new(&split, params.modulus, params.loss_kind(), device),
            train_pairs: split.train,
            filter: GradientFilter::new(params.optimizer, &lease.training),
            params,
        })
    }

    fn stack(members: Vec<Self::Member>, context: &FamilyContext, device: &B::Device) -> Self {
        let (modulus, loss) = (members[0].params.modulus, members[0].params.loss_kind());
        let optimizer = PackAdamW::new(members.iter().map(|member| member.params.weight_decay).collect(), members[0].filter.clone());
        let mut models = Vec::with_capacity(members.len());
        let mut data = Vec::with_capacity(members.len());
        for member in members {
            models.push(member.model);
            data.push(MemberData { params: member.params, train_pairs: member.train_pairs, evaluator: member.evaluator });
        }
        let step_threads = context.step_threads;
        let parts = batches_of(&data, modulus, step_threads, device);
        TransformerPack {
            model: stack::stack(models),
            optimizer,
            members: data,
            parts,
            step_threads,
            part_threads: parts::PartThreads::for_backend::<B>(step_threads, device),
            modulus,
            loss,
            device: device.clone(),
        }
    }

    fn step(&mut self, learning_rates: &[f64]) {
        let kind = self.loss;
        let gradients = self.part_threads.gradients(&self.model, &self.parts, |model, part| pack_loss(model, part, kind));
        self.optimizer.step_in_place(&mut self.part_threads, learning_rates, &mut self.model, gradients, &self.device);
    }

    fn evaluate(&self, index: usize) -> Evaluation {
        let evaluation = self.members[index].evaluator.evaluate(&self.member_model(index));
        Evaluation {
            train_loss: evaluation.train.loss,
            test_loss: evaluation.test.loss,
            train_accuracy: evaluation.train.accuracy,
            test_accuracy: evaluation.test.accuracy,
            key_frequencies: evaluation.key_frequencies.iter().map(|&k| k as u32).collect(),
            judge_accuracy: None,
            measures: evaluation.measures(),
        }
    }

    fn checkpoint(&self, index: usize, step: i64) -> Result<Option<Vec<u8>>, FamilyError> {
        let info = CheckpointInfo { step, params: self.members[index].params.clone() };
        Ok(Some(checkpoint::save(&self.member_model(index), &info)?))
    }

    /// The authors' definition: K fixed from the final model, reused at
    /// every checkpoint, each read back from the worker's disk.
    fn record_final(
        &self,
        index: usize,
        last: &Evaluation,
        checkpoints: &LocalCheckpoints,
        sink: &mut dyn MeasureSink,
    ) -> Result<(), FamilyError> {
        let final_keys: Vec<usize> = last.key_frequencies.iter().map(|&k| k as usize).collect();
        let evaluator = &self.members[index].evaluator;
        for saved in checkpoints.read() {
            let (step, bytes) = saved?;
            if sink.cancelled() {
                return Err(crate::sink::SinkError::Cancelled.into());
            }
            let (model, _) = checkpoint::load::<B::InnerBackend>(&bytes, &self.device)?;
            let measured = evaluator.restricted_excluded_with(&model, &final_keys);
            sink.record(
                step,
                vec![
                    Measure::scalar(RESTRICTED_LOSS_FINAL_K, measured.restricted),
                    Measure::scalar(EXCLUDED_LOSS_FINAL_K, measured.excluded),
                ],
            )?;
        }
        Ok(())
    }

    fn keep(&mut self, keep: &[usize]) {
        self.model = stack::keep_trials(self.model.clone(), keep, &self.device);
        self.optimizer.keep_trials(keep, &self.device);
        stack::keep_items(&mut self.members, keep);
        self.parts = batches_of(&self.members, self.modulus, self.step_threads, &self.device);
    }
}

/// Cross-entropy of each row of d_vocab logits against its one-hot label, in a
/// form that keeps f32 precise when the loss is tiny (the authors used an f64
/// log-softmax for this): per row, softplus(z) with z = LSE_{i≠c}(x_i) − x_c.
/// Its gradient is sigmoid(z) spread over the other classes by their softmax
/// and −sigmoid(z) on the label, so neither side rounds to 1 − 1 = 0 the way
/// `softmax − one_hot` does in f32 once the label's probability is within
/// 6e-8 of 1. softplus(z) = relu(z) + ln(1 + e^−|z|) never overflows.
///
/// # Shapes
/// - `logits`, `one_hot`: [rows, d_vocab]
/// - output: [rows, 1]
pub fn cross_entropy_rows<B: Backend>(logits: Tensor<B, 2>, one_hot: Tensor<B, 2>) -> Tensor<B, 2> {
    let label_logit = (logits.clone() * one_hot.clone()).sum_dim(1); // [n, 1]
    let others = logits + one_hot.mul_scalar(-1e30); // the label's logit pushed out of the sum
    let shift = others.clone().max_dim(1).detach();
    let others_lse = (others - shift.clone()).exp().sum_dim(1).log() + shift; // [n, 1]
    let z = others_lse - label_logit;
    relu(z.clone()) + z.abs().neg().exp().log1p()
}

/// StableMax cross-entropy of each row (Prieto et al. 2025), with s(x) =
/// x + 1 for x ≥ 0 and 1 / (1 − x) for x < 0 (the second branch taken at
/// min(x, 0), so neither branch is ever infinite and s'(0) = 1). Like [`cross_entropy_rows`] it is taken as ln(1 + r) with r = Σ_{i≠c}
/// s(x_i) / s(x_c), so a tiny loss keeps its digits in f32 and its gradient
/// never forms 1 − 1.
///
/// # Shapes
/// - `logits`, `one_hot`: [rows, d_vocab]
/// - output: [rows, 1]
pub fn stablemax_cross_entropy_rows<B: Backend>(logits: Tensor<B, 2>, one_hot: Tensor<B, 2>) -> Tensor<B, 2> {
    let negative = logits.clone().lower_elem(0.0);
    let below = logits.clone().clamp_max(0.0).neg().add_scalar(1.0).recip();
    let s = logits.add_scalar(1.0).mask_where(negative, below);
    let label_s = (s.clone() * one_hot.clone()).sum_dim(1); // [n, 1]
    let others = (s * one_hot.neg().add_scalar(1.0)).sum_dim(1);
    (others / label_s).log1p()
}

#[cfg(test)]
#[path = "pack_tests.rs"]
mod tests;
