//! AdamW for a pack: every trial has its own learning rate, decoupled weight
//! decay and step counter (bias correction), applied row by row to
//! parameters whose leading dimension is the trial.
//!
//! For each trial k and parameter θ with gradient g (the recipe of both
//! families: betas (0.9, 0.98), eps 1e-8), exactly burn 0.21's `AdamW` step:
//! m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², t_k ← t_k + 1,
//! θ ← θ·(1 − lr_k·λ_k) − lr_k · (m / (1−β₁^t_k)) / (√(v / (1−β₂^t_k)) + ε).
//! Each parameter is viewed as [K, n]. A trial that leaves the pack takes its
//! rows of the moments with it. The pack's [`GradientFilter`] (Grokfast,
//! ⊥Grad) turns g into what AdamW sees first.
//!
//! How ([`Update`]): on the CPU backends one pass over each parameter's host
//! values updates θ, m and v in place, every row with its trial's factors,
//! cut into chunks that run on the rayon pool the step runs on (the pack's
//! step threads); burn-flex hands a tensor's values over without a copy
//! when nothing else holds them. Written as tensor operations, the same
//! update was about fifteen passes, each allocating a tensor of the
//! parameter's size, on one thread: at p = 47 a pack of 8's 1.7 M parameters
//! took about a fifth of its step (bench/RESULTS.md, "Session 20"). On the
//! cubecl backends (CUDA, wgpu) the values stay on the device and the
//! update is tensor operations, every per-trial factor a [K, 1] column.
//! Both compute each element in the same f32 operations in the same order.

use std::collections::HashMap;

use burn::module::{AutodiffModule, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use crate::grad_filter::{FilterState, GradientFilter};
use crate::layout::per_trial_column;

/// β₁ of both recipes.
const BETA_1: f32 = 0.9;
/// β₂ of both recipes.
const BETA_2: f32 = 0.98;
/// ε of both recipes.
const EPSILON: f32 = 1e-8;

/// Learning rate of step `step` (0-based): `lr · min(step / warmup, 1)`; step 0 has lr 0.
pub fn learning_rate(base: f64, warmup_steps: u32, step: u64) -> f64 {
    if warmup_steps == 0 {
        return base;
    }
    base * (step as f64 / warmup_steps as f64).min(1.0)
}

/// First and second moments of one parameter, as [K, n].
type Moments<B> = (Tensor<B, 2>, Tensor<B, 2>);

/// The optimiser of one pack.
#[derive(Debug)]
pub struct PackAdamW<B: AutodiffBackend> {
    weight_decay: Vec<f64>,
    steps: Vec<i32>,
    moments: HashMap<ParamId, Moments<B::InnerBackend>>,
    filter: GradientFilter,
    filter_states: HashMap<ParamId, FilterState<B::InnerBackend>>,
}

impl<B: AutodiffBackend> PackAdamW<B> {
    /// An optimiser for a pack whose trial k has decoupled weight decay
    /// `weight_decay[k]`, its gradients passed through `filter` first.
    pub fn new(weight_decay: Vec<f64>, filter: GradientFilter) -> Self {
        let steps = vec![0; weight_decay.len()];
        PackAdamW { weight_decay, steps, moments: HashMap::new(), filter, filter_states: HashMap::new() }
    }

    /// Trials in the pack.
    pub fn trials(&self) -> usize {
        self.weight_decay.len()
    }

    /// One step of every trial, trial k at learning rate `learning_rates[k]`:
    /// on the host on the CPU backends, by tensor operations on the cubecl
    /// ones ([`Update`]). The host update's chunks run on the rayon pool this
    /// is called on, if any (else one after another).
    pub fn step<M: AutodiffModule<B>>(&mut self, learning_rates: &[f64], module: M, gradients: GradientsParams, device: &B::Device) -> M {
        let update = if crate::backend::is_cubecl(&B::name(device)) { Update::Tensors } else { Update::Host };
        self.step_by(update, learning_rates, module, gradients, device)
    }

    /// [`PackAdamW::step`] of `module` where it stands, on the pool of
    /// `threads` (the pack's step threads run the host update's chunks).
    /// The module is taken out of its place for the step
    /// ([`crate::stack::take`]), so that its values are held by it alone and
    /// the host update changes them in place instead of copying them.
    pub(crate) fn step_in_place<M: AutodiffModule<B>>(
        &mut self,
        threads: &mut crate::parts::PartThreads,
        learning_rates: &[f64],
        module: &mut M,
        gradients: GradientsParams,
        device: &B::Device,
    ) {
        let taken = crate::stack::take(module);
        *module = threads.install(|| self.step(learning_rates, taken, gradients, device));
    }

    /// [`PackAdamW::step`] by `update`.
    fn step_by<M: AutodiffModule<B>>(
        &mut self,
        update: Update,
        learning_rates: &[f64],
        module: M,
        mut gradients: GradientsParams,
        device: &B::Device,
    ) -> M {
        assert_eq!(learning_rates.len(), self.trials(), "one learning rate per trial");
        for step in &mut self.steps {
            *step += 1;
        }
        let factors: Vec<TrialFactors> = (0..self.trials())
            .map(|k| TrialFactors {
                decay: (1.0 - learning_rates[k] * self.weight_decay[k]) as f32,
                rate: learning_rates[k] as f32,
                first_correction: 1.0 - BETA_1.powi(self.steps[k]),
                second_correction: 1.0 - BETA_2.powi(self.steps[k]),
            })
            .collect();
        let columns = (update == Update::Tensors).then(|| FactorColumns::new(&factors, device));
        let mut mapper = StepMapper::<B> {
            gradients: &mut gradients,
            moments: &mut self.moments,
            filter: &self.filter,
            filter_states: &mut self.filter_states,
            factors,
            columns,
            device: device.clone(),
        };
        module.map(&mut mapper)
    }

    /// Forget every trial not in `trials` (ascending indices into the pack).
    pub fn keep_trials(&mut self, trials: &[usize], device: &B::Device) {
        let indices: Vec<i64> = trials.iter().map(|&trial| trial as i64).collect();
        let indices =
            Tensor::<B::InnerBackend, 1, burn::tensor::Int>::from_data(burn::tensor::TensorData::new(indices, [trials.len()]), device);
        for (first, second) in self.moments.values_mut() {
            *first = first.clone().select(0, indices.clone());
            *second = second.clone().select(0, indices.clone());
        }
        self.filter_states = std::mem::take(&mut self.filter_states).into_iter().map(|(id, state)| (id, state.select(&indices))).collect();
        self.weight_decay = trials.iter().map(|&trial| self.weight_decay[trial]).collect();
        self.steps = trials.iter().map(|&trial| self.steps[trial]).collect();
    }
}

/// How a step updates the parameters (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Update {
    /// One pass over the host values of each parameter ([`adamw_rows`]).
    Host,
    /// Tensor operations on the backend, per-trial factors as [K, 1] columns.
    Tensors,
}

/// Trial k's factors of one step: θ·decay − rate · (m / first_correction) /
/// (√(v / second_correction) + ε).
#[derive(Debug, Clone, Copy)]
struct TrialFactors {
    decay: f32,
    rate: f32,
    first_correction: f32,
    second_correction: f32,
}

/// [`TrialFactors`] as [K, 1] columns on the backend, for [`Update::Tensors`]:
/// multiplying a [K, n] tensor by one is burn-flex's vectorised
/// per-row-scalar broadcast.
struct FactorColumns<B: Backend> {
    decay: Tensor<B, 2>,
    rates: Tensor<B, 2>,
    first_correction: Tensor<B, 2>,
    second_correction: Tensor<B, 2>,
}

impl<B: Backend> FactorColumns<B> {
    fn new(factors: &[TrialFactors], device: &B::Device) -> Self {
        let column = |of: fn(&TrialFactors) -> f32| per_trial_column::<B>(&factors.iter().map(of).collect::<Vec<_>>(), device);
        FactorColumns {
            decay: column(|f| f.decay),
            rates: column(|f| f.rate),
            first_correction: column(|f| f.first_correction),
            second_correction: column(|f| f.second_correction),
        }
    }
}

/// Elements of a parameter's row updated as one piece of work on the pool.
const CHUNK: usize = 16 * 1024;

/// The AdamW step of rows `theta`, [K, n] row-major, with gradient
/// `gradient` and moments `first`, `second` (all [K, n]), row k with
/// `factors[k]`: θ, m and v are updated in place. In chunks of [`CHUNK`]
/// elements on the current rayon pool when called on one, else in order.
/// Each element takes the f32 operations of the tensor update in its order.
fn adamw_rows(theta: &mut [f32], gradient: &[f32], first: &mut [f32], second: &mut [f32], factors: &[TrialFactors]) {
    let n = theta.len() / factors.len().max(1);
    assert!(
        theta.len() == n * factors.len() && gradient.len() == theta.len() && first.len() == theta.len() && second.len() == theta.len(),
        "θ, g, m and v are [K, n] with one row per trial"
    );
    let chunk = |factors: &TrialFactors, theta: &mut [f32], gradient: &[f32], first: &mut [f32], second: &mut [f32]| {
        let (one_minus_beta_1, one_minus_beta_2) = (1.0 - BETA_1, 1.0 - BETA_2);
        for (((theta, &g), m), v) in theta.iter_mut().zip(gradient).zip(first.iter_mut()).zip(second.iter_mut()) {
            *m = *m * BETA_1 + g * one_minus_beta_1;
            *v = *v * BETA_2 + g * g * one_minus_beta_2;
            let delta = (*m / factors.first_correction) / ((*v / factors.second_correction).sqrt() + EPSILON);
            *theta = *theta * factors.decay - delta * factors.rate;
        }
    };
    if n == 0 {
        return;
    }
    let width = CHUNK.min(n);
    if rayon::current_thread_index().is_some() {
        theta
            .par_chunks_mut(n)
            .zip(gradient.par_chunks(n))
            .zip(first.par_chunks_mut(n))
            .zip(second.par_chunks_mut(n))
            .zip(factors.par_iter())
            .for_each(|((((theta, gradient), first), second), factors)| {
                theta
                    .par_chunks_mut(width)
                    .zip(gradient.par_chunks(width))
                    .zip(first.par_chunks_mut(width))
                    .zip(second.par_chunks_mut(width))
                    .for_each(|(((theta, gradient), first), second)| chunk(factors, theta, gradient, first, second))
            });
    } else {
        for ((((theta, gradient), first), second), factors) in
            theta.chunks_mut(n).zip(gradient.chunks(n)).zip(first.chunks_mut(n)).zip(second.chunks_mut(n)).zip(factors)
        {
            chunk(factors, theta, gradient, first, second);
        }
    }
}

struct StepMapper<'a, B: AutodiffBackend> {
    gradients: &'a mut GradientsParams,
    moments: &'a mut HashMap<ParamId, Moments<B::InnerBackend>>,
    filter: &'a GradientFilter,
    filter_states: &'a mut HashMap<ParamId, FilterState<B::InnerBackend>>,
    factors: Vec<TrialFactors>,
    /// The factors on the backend, for [`Update::Tensors`] (else `None`).
    columns: Option<FactorColumns<B::InnerBackend>>,
    device: B::Device,
}

impl<B: AutodiffBackend> StepMapper<'_, B> {
    /// θ, m and v after the step by tensor operations (`columns`).
    fn by_tensors(
        columns: &FactorColumns<B::InnerBackend>,
        theta: Tensor<B::InnerBackend, 2>,
        gradient: Tensor<B::InnerBackend, 2>,
        moments: Option<Moments<B::InnerBackend>>,
    ) -> (Tensor<B::InnerBackend, 2>, Moments<B::InnerBackend>) {
        let (first, second) = match moments {
            Some((first, second)) => (
                first.mul_scalar(BETA_1).add(gradient.clone().mul_scalar(1.0 - BETA_1)),
                second.mul_scalar(BETA_2).add(gradient.square().mul_scalar(1.0 - BETA_2)),
            ),
            None => (gradient.clone().mul_scalar(1.0 - BETA_1), gradient.square().mul_scalar(1.0 - BETA_2)),
        };
        let first_corrected = first.clone() / columns.first_correction.clone();
        let second_corrected = second.clone() / columns.second_correction.clone();
        let delta = first_corrected / second_corrected.sqrt().add_scalar(EPSILON);
        let updated = theta * columns.decay.clone() - delta * columns.rates.clone();
        (updated, (first, second))
    }

    /// θ, m and v after the step on the host ([`adamw_rows`]); new moments
    /// start at zero (m = 0·β₁ + (1−β₁)g is the tensor update's (1−β₁)g).
    fn on_host(
        &self,
        theta: Tensor<B::InnerBackend, 2>,
        gradient: Tensor<B::InnerBackend, 2>,
        moments: Option<Moments<B::InnerBackend>>,
    ) -> (Tensor<B::InnerBackend, 2>, Moments<B::InnerBackend>) {
        let dims = theta.dims();
        let values = |tensor: Tensor<B::InnerBackend, 2>| tensor.into_data();
        let (mut theta, gradient) = (values(theta), values(gradient));
        let (mut first, mut second) = match moments {
            Some((first, second)) => (values(first), values(second)),
            None => (TensorData::zeros::<f32, _>(dims), TensorData::zeros::<f32, _>(dims)),
        };
        adamw_rows(
            theta.as_mut_slice::<f32>().expect("host update of an f32 parameter (checked by the caller)"),
            gradient.as_slice::<f32>().expect("an f32 parameter has an f32 gradient"),
            first.as_mut_slice::<f32>().expect("the first moment is f32"),
            second.as_mut_slice::<f32>().expect("the second moment is f32"),
            &self.factors,
        );
        let tensor = |data: TensorData| Tensor::<B::InnerBackend, 2>::from_data(data, &self.device);
        (tensor(theta), (tensor(first), tensor(second)))
    }
}

impl<B: AutodiffBackend> ModuleMapper<B> for StepMapper<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(gradient) = self.gradients.remove::<B::InnerBackend, D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let shape = tensor.shape();
        let trials = shape.dims::<D>()[0];
        let per_trial = shape.num_elements() / trials;
        let theta = tensor.inner().reshape([trials, per_trial]);
        let gradient = gradient.reshape([trials, per_trial]);
        let gradient = if *self.filter == GradientFilter::Identity {
            gradient
        } else {
            let mut state = self.filter_states.remove(&id);
            let filtered = self.filter.apply(&mut state, &theta, gradient);
            if let Some(state) = state {
                self.filter_states.insert(id, state);
            }
            filtered
        };
        let moments = self.moments.remove(&id);
        let (updated, moments) = match &self.columns {
            Some(columns) => Self::by_tensors(columns, theta, gradient, moments),
            None if theta.dtype() == DType::F32 && gradient.dtype() == DType::F32 => self.on_host(theta, gradient, moments),
            None => Self::by_tensors(&FactorColumns::new(&self.factors, &self.device), theta, gradient, moments),
        };
        self.moments.insert(id, moments);
        let updated = Tensor::<B, D>::from_inner(updated.reshape(shape)).require_grad();
        Param::from_mapped_value(id, updated, mapper)
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::optim::{AdamWConfig, Optimizer};
    use burn::tensor::TensorData;
    use burn::tensor::backend::Backend;

    use super::*;
    use crate::backend::TestAutodiffBackend;

    type AB = TestAutodiffBackend;

    fn host_f64<Bk: Backend, const D: usize>(tensor: Tensor<Bk, D>) -> Vec<f64> {
        tensor.into_data().iter::<f64>().collect()
    }

    #[derive(Module, Debug)]
    struct Weights<B: Backend> {
        w: Param<Tensor<B, 3>>,
    }

    fn weights(values: Vec<f32>, trials: usize) -> Weights<AB> {
        let per = values.len() / trials;
        Weights { w: Param::from_tensor(Tensor::from_data(TensorData::new(values, [trials, per / 2, 2]), &Default::default())) }
    }

    /// loss = Σ_k c_k · Σ (w_k · x)², different per trial.
    fn gradients(model: &Weights<AB>, scale: &[f32]) -> GradientsParams {
        let [trials, rows, columns] = model.w.dims();
        // The same inputs for every trial, so a trial sees the same loss in a pack and alone.
        let x: Vec<f32> = (0..trials * rows * columns).map(|i| 0.3 + (i % (rows * columns) % 5) as f32 * 0.1).collect();
        let x = Tensor::<AB, 3>::from_data(TensorData::new(x, [trials, rows, columns]), &Default::default());
        let scale = Tensor::<AB, 3>::from_data(TensorData::new(scale.to_vec(), [trials, 1, 1]), &Default::default());
        let loss = (model.w.val() * x).powi_scalar(2).mul(scale.repeat_dim(1, rows).repeat_dim(2, columns)).sum();
        GradientsParams::from_grads(loss.backward(), model)
    }

    #[test]
    fn a_pack_of_one_steps_exactly_as_burns_adamw() {
        let device = Default::default();
        let start: Vec<f32> = (0..8).map(|i| i as f32 * 0.25 - 1.0).collect();
        let mut ours = weights(start.clone(), 1);
        let mut theirs = weights(start, 1);
        let mut pack = PackAdamW::<AB>::new(vec![0.5], GradientFilter::Identity);
        let mut adamw = AdamWConfig::new()
            .with_beta_1(BETA_1)
            .with_beta_2(BETA_2)
            .with_epsilon(EPSILON)
            .with_weight_decay(0.5)
            .init::<AB, Weights<AB>>();
        for step in 0..5u64 {
            let lr = learning_rate(1e-2, 2, step);
            let grads = gradients(&ours, &[1.0]);
            ours = pack.step(&[lr], ours, grads, &device);
            let grads = gradients(&theirs, &[1.0]);
            theirs = adamw.step(lr, theirs, grads);
        }
        assert_eq!(host_f64(ours.w.val().inner()), host_f64(theirs.w.val().inner()));
    }

    /// Weights of `trials` rows of `per_trial` values, different per trial.
    fn wide_weights(trials: usize, per_trial: usize) -> Weights<AB> {
        weights((0..trials * per_trial).map(|i| ((i * 7919) % 1000) as f32 * 2e-3 - 1.0).collect(), trials)
    }

    #[test]
    fn the_host_update_equals_the_tensor_update_on_a_pool_and_off_it() {
        let device = Default::default();
        // 40,000 values a trial: each row is cut into 3 chunks on the pool.
        let (trials, per_trial) = (3, 40_000);
        assert!(per_trial > 2 * CHUNK);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("a pool of 2 threads");
        for filter in [GradientFilter::Identity, GradientFilter::Ema { alpha: 0.9, lambda: 2.0 }] {
            let run = |update: Update, on_pool: bool| {
                let mut model = wide_weights(trials, per_trial);
                let mut optimiser = PackAdamW::<AB>::new(vec![0.0, 1.0, 0.3], filter.clone());
                for step in 0..4u64 {
                    let grads = gradients(&model, &[1.0, 2.0, 0.5]);
                    let rates: Vec<f64> = [1e-2, 3e-3, 1e-3].iter().map(|&rate| learning_rate(rate, 2, step)).collect();
                    let stepped = |model| optimiser.step_by(update, &rates, model, grads, &device);
                    model = if on_pool { pool.install(|| stepped(model)) } else { stepped(model) };
                }
                let moments: Vec<Vec<f64>> =
                    optimiser.moments.values().flat_map(|(first, second)| [host_f64(first.clone()), host_f64(second.clone())]).collect();
                (host_f64(model.w.val().inner()), moments)
            };
            let by_tensors = run(Update::Tensors, false);
            assert_ne!(by_tensors.0, host_f64(wide_weights(trials, per_trial).w.val().inner()), "the steps moved the weights");
            assert_eq!(run(Update::Host, false), by_tensors, "{filter:?}: host update off a pool");
            assert_eq!(run(Update::Host, true), by_tensors, "{filter:?}: host update on a pool of 2 threads");
        }
    }

    #[test]
    fn the_host_update_of_one_row_is_the_adamw_formula() {
        // θ = 1, g = 0.5, first step (m = v = 0), lr 0.1, weight decay 0.2:
        // m = 0.05, v = 0.005, m̂ = 0.5, v̂ = 0.25, θ = 0.98 − 0.1 · 0.5 / (0.5 + ε).
        let factors = TrialFactors { decay: 1.0 - 0.1 * 0.2, rate: 0.1, first_correction: 1.0 - BETA_1, second_correction: 1.0 - BETA_2 };
        let (mut theta, mut first, mut second) = ([1.0f32], [0.0f32], [0.0f32]);
        adamw_rows(&mut theta, &[0.5], &mut first, &mut second, &[factors]);
        assert!((first[0] - 0.05).abs() < 1e-7 && (second[0] - 0.005).abs() < 1e-8, "m {}, v {}", first[0], second[0]);
        assert!((theta[0] - (0.98 - 0.1 * 0.5 / 0.5)).abs() < 1e-6, "θ {}", theta[0]);
    }

    #[test]
    fn each_trial_of_a_pack_steps_as_it_would_alone_and_a_leaver_takes_its_state() {
        for filter in [
            GradientFilter::Identity,
            GradientFilter::Ema { alpha: 0.9, lambda: 2.0 },
            GradientFilter::MovingAverage { window: 2, lambda: 5.0 },
            GradientFilter::Orthogonal,
        ] {
            a_pack_steps_as_its_trials_would_alone(filter);
        }
    }

    fn a_pack_steps_as_its_trials_would_alone(filter: GradientFilter) {
        let device = Default::default();
        let starts: Vec<Vec<f32>> = (0..3).map(|k| (0..8).map(|i| (i + 3 * k) as f32 * 0.1 - 0.7).collect()).collect();
        let (decays, scales, rates) = ([0.0, 1.0, 3.0], [1.0f32, 2.0, 0.5], [1e-2, 3e-3, 1e-3]);
        let mut alone = Vec::new();
        for k in 0..3 {
            let mut model = weights(starts[k].clone(), 1);
            let mut optimiser = PackAdamW::<AB>::new(vec![decays[k]], filter.clone());
            let mut trajectory = Vec::new();
            for step in 0..5u64 {
                let grads = gradients(&model, &[scales[k]]);
                model = optimiser.step(&[learning_rate(rates[k], 2, step)], model, grads, &device);
                trajectory.push(host_f64(model.w.val().inner()));
            }
            alone.push(trajectory);
        }
        let mut pack = weights(starts.concat(), 3);
        let mut optimiser = PackAdamW::<AB>::new(decays.to_vec(), filter.clone());
        for step in 0..4u64 {
            let grads = gradients(&pack, &scales);
            let lrs: Vec<f64> = rates.iter().map(|&rate| learning_rate(rate, 2, step)).collect();
            pack = optimiser.step(&lrs, pack, grads, &device);
        }
        let together = host_f64(pack.w.val().inner());
        for k in 0..3 {
            for (got, want) in together[k * 8..(k + 1) * 8].iter().zip(&alone[k][3]) {
                assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "{filter:?}, trial {k}: {got} vs {want}");
            }
        }
        // Trial 1 leaves: the others go on as before, trial 1's rows are gone.
        let pack = crate::stack::keep_trials(pack, &[0, 2], &device);
        optimiser.keep_trials(&[0, 2], &device);
        assert_eq!(optimiser.trials(), 2);
        let grads = gradients(&pack, &[scales[0], scales[2]]);
        let pack = optimiser.step(&[rates[0], rates[2]], pack, grads, &device);
        assert_eq!(pack.w.dims(), [2, 4, 2]);
        let after = host_f64(pack.w.val().inner());
        for (row, k) in [0, 2].into_iter().enumerate() {
            for (got, want) in after[row * 8..(row + 1) * 8].iter().zip(&alone[k][4]) {
                assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "{filter:?}, trial {k} after the leaver: {got} vs {want}");
            }
        }
    }
}
