//! AdamW for a pack: every trial has its own learning rate, decoupled weight
//! decay and step counter (bias correction), applied row by row to
//! parameters whose leading dimension is the trial.
//!
//! For each trial k and parameter θ with gradient g (the recipe of both
//! families: betas (0.9, 0.98), eps 1e-8), exactly burn 0.21's `AdamW` step:
//! m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², t_k ← t_k + 1,
//! θ ← θ·(1 − lr_k·λ_k) − lr_k · (m / (1−β₁^t_k)) / (√(v / (1−β₂^t_k)) + ε).
//! Each parameter is viewed as [K, n] and every per-trial factor is a [K, 1]
//! column, burn-flex's vectorised per-row-scalar broadcast. A trial that
//! leaves the pack takes its rows of the moments with it. The pack's
//! [`GradientFilter`] (Grokfast, ⊥Grad) turns g into what AdamW sees first.

use std::collections::HashMap;

use burn::module::{AutodiffModule, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

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

    /// One step of every trial, trial k at learning rate `learning_rates[k]`.
    pub fn step<M: AutodiffModule<B>>(
        &mut self,
        learning_rates: &[f64],
        module: M,
        mut gradients: GradientsParams,
        device: &B::Device,
    ) -> M {
        assert_eq!(learning_rates.len(), self.trials(), "one learning rate per trial");
        for step in &mut self.steps {
            *step += 1;
        }
        let column = |values: Vec<f32>| per_trial_column::<B::InnerBackend>(&values, device);
        let decay = column(self.weight_decay.iter().zip(learning_rates).map(|(wd, lr)| (1.0 - lr * wd) as f32).collect());
        let rates = column(learning_rates.iter().map(|&lr| lr as f32).collect());
        let first_correction = column(self.steps.iter().map(|&t| 1.0 - BETA_1.powi(t)).collect());
        let second_correction = column(self.steps.iter().map(|&t| 1.0 - BETA_2.powi(t)).collect());
        let mut mapper = StepMapper::<B> {
            gradients: &mut gradients,
            moments: &mut self.moments,
            filter: &self.filter,
            filter_states: &mut self.filter_states,
            decay,
            rates,
            first_correction,
            second_correction,
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

struct StepMapper<'a, B: AutodiffBackend> {
    gradients: &'a mut GradientsParams,
    moments: &'a mut HashMap<ParamId, Moments<B::InnerBackend>>,
    filter: &'a GradientFilter,
    filter_states: &'a mut HashMap<ParamId, FilterState<B::InnerBackend>>,
    decay: Tensor<B::InnerBackend, 2>,
    rates: Tensor<B::InnerBackend, 2>,
    first_correction: Tensor<B::InnerBackend, 2>,
    second_correction: Tensor<B::InnerBackend, 2>,
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
        let (first, second) = match self.moments.remove(&id) {
            Some((first, second)) => (
                first.mul_scalar(BETA_1).add(gradient.clone().mul_scalar(1.0 - BETA_1)),
                second.mul_scalar(BETA_2).add(gradient.square().mul_scalar(1.0 - BETA_2)),
            ),
            None => (gradient.clone().mul_scalar(1.0 - BETA_1), gradient.square().mul_scalar(1.0 - BETA_2)),
        };
        let first_corrected = first.clone() / self.first_correction.clone();
        let second_corrected = second.clone() / self.second_correction.clone();
        let delta = first_corrected / second_corrected.sqrt().add_scalar(EPSILON);
        let updated = theta * self.decay.clone() - delta * self.rates.clone();
        self.moments.insert(id, (first, second));
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
