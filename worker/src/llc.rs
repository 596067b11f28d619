//! The local learning coefficient (Lau et al. 2023; devinterp's estimator):
//! λ̂ = nβ · (E_SGLD[L_n(w)] − L_n(w*)), the expectation over SGLD chains
//! started at a trained point w* that sample the tempered, localised
//! posterior ∝ exp(−nβ L_n(w) − γ/2 ‖w − w*‖²). One step of a chain, on the
//! full batch (every training pair):
//!
//! w ← w − ε/2 · (nβ ∇L_n(w) + γ (w − w*)) + N(0, ε),
//!
//! with nβ = n / ln n by default (β = 1 / ln n, the "adaptive" temperature
//! of devinterp's SGLD). Each chain records L_n at the point it steps from,
//! `burn_in` steps are dropped, then `draws` are averaged.

use std::collections::HashMap;

use burn::module::{AutodiffModule, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Tensor};

/// The sampler's settings (defaults: devinterp's `estimate_learning_coeff`
/// and `SGLD`; ε and γ usually need calibrating for a model, as devinterp's
/// own guidance says).
#[derive(Debug, Clone, PartialEq)]
pub struct LlcSettings {
    /// Independent chains (devinterp: 10).
    pub chains: u32,
    /// Draws averaged per chain (devinterp: 100).
    pub draws: u32,
    /// Steps dropped at the start of each chain (devinterp: 0).
    pub burn_in: u32,
    /// Step size ε (devinterp's SGLD `lr`: 1e-3).
    pub epsilon: f64,
    /// Localisation γ (devinterp's `elasticity`/`localization`: 0).
    pub gamma: f64,
    /// nβ; `None` is n / ln n.
    pub nbeta: Option<f64>,
    /// Seed of the chains' noise.
    pub seed: u64,
}

impl Default for LlcSettings {
    fn default() -> Self {
        LlcSettings { chains: 10, draws: 100, burn_in: 0, epsilon: 1e-3, gamma: 0.0, nbeta: None, seed: 0 }
    }
}

impl LlcSettings {
    /// Every problem with these settings, as (setting, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut found = Vec::new();
        if self.chains == 0 {
            found.push(("chains", "must be at least 1".to_string()));
        }
        if self.draws == 0 {
            found.push(("draws", "must be at least 1".to_string()));
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            found.push(("epsilon", format!("{} must be a positive number", self.epsilon)));
        }
        if !(self.gamma.is_finite() && self.gamma >= 0.0) {
            found.push(("gamma", format!("{} must be a finite number ≥ 0", self.gamma)));
        }
        if let Some(nbeta) = self.nbeta.filter(|nbeta| !(nbeta.is_finite() && *nbeta > 0.0)) {
            found.push(("nbeta", format!("{nbeta} must be a positive number")));
        }
        found
    }

    /// nβ for `n` samples.
    pub fn nbeta_for(&self, n: usize) -> f64 {
        self.nbeta.unwrap_or_else(|| {
            let n = n.max(2) as f64;
            n / n.ln()
        })
    }
}

/// One estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct LlcEstimate {
    /// λ̂, the mean over chains.
    pub llc: f64,
    /// λ̂ of each chain.
    pub per_chain: Vec<f64>,
    /// L_n(w*).
    pub loss_at_start: f64,
    /// The nβ used.
    pub nbeta: f64,
}

/// Estimate the LLC of `start` (w*) under `loss` (L_n, as a scalar tensor),
/// `n` being the number of samples L_n averages over.
pub fn estimate<B: AutodiffBackend, M: AutodiffModule<B>>(
    start: &M,
    loss: impl Fn(&M) -> Tensor<B, 1>,
    n: usize,
    settings: &LlcSettings,
    device: &B::Device,
) -> LlcEstimate {
    let nbeta = settings.nbeta_for(n);
    let mut anchor = Anchor::<B> { values: HashMap::new() };
    start.clone().map(&mut anchor);
    let loss_at_start = scalar(loss(start));
    B::seed(device, settings.seed);
    let mut per_chain = Vec::with_capacity(settings.chains as usize);
    for _ in 0..settings.chains {
        let mut model = start.clone();
        let mut total = 0.0;
        for step in 0..settings.burn_in + settings.draws {
            let value = loss(&model);
            if step >= settings.burn_in {
                total += scalar(value.clone());
            }
            let mut gradients = GradientsParams::from_grads(value.backward(), &model);
            let mut mapper = SgldStep::<B> { gradients: &mut gradients, anchor: &anchor.values, nbeta, settings, device };
            model = model.map(&mut mapper);
        }
        per_chain.push(nbeta * (total / settings.draws as f64 - loss_at_start));
    }
    let llc = per_chain.iter().sum::<f64>() / per_chain.len() as f64;
    LlcEstimate { llc, per_chain, loss_at_start, nbeta }
}

fn scalar<B: Backend>(tensor: Tensor<B, 1>) -> f64 {
    tensor.into_data().iter::<f64>().next().unwrap_or(f64::NAN)
}

/// w* of every parameter, flattened.
struct Anchor<B: AutodiffBackend> {
    values: HashMap<ParamId, Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Anchor<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let flat = tensor.clone().inner().reshape([tensor.shape().num_elements()]);
        self.values.insert(id, flat);
        Param::from_mapped_value(id, tensor, mapper)
    }
}

struct SgldStep<'a, B: AutodiffBackend> {
    gradients: &'a mut GradientsParams,
    anchor: &'a HashMap<ParamId, Tensor<B::InnerBackend, 1>>,
    nbeta: f64,
    settings: &'a LlcSettings,
    device: &'a B::Device,
}

impl<B: AutodiffBackend> ModuleMapper<B> for SgldStep<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let (Some(gradient), Some(anchor)) = (self.gradients.remove::<B::InnerBackend, D>(id), self.anchor.get(&id)) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let shape = tensor.shape();
        let w = tensor.inner();
        let anchor = anchor.clone().reshape(shape.clone());
        let epsilon = self.settings.epsilon;
        let drift = gradient.mul_scalar(self.nbeta) + (w.clone() - anchor).mul_scalar(self.settings.gamma);
        let noise = Tensor::<B::InnerBackend, D>::random(shape, Distribution::Normal(0.0, 1.0), self.device).mul_scalar(epsilon.sqrt());
        let next = w - drift.mul_scalar(epsilon / 2.0) + noise;
        Param::from_mapped_value(id, Tensor::from_inner(next).require_grad(), mapper)
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::tensor::TensorData;

    use super::*;
    use crate::backend::TestAutodiffBackend;

    type AB = TestAutodiffBackend;

    #[derive(Module, Debug)]
    struct Point<B: Backend> {
        w: Param<Tensor<B, 1>>,
    }

    #[test]
    fn a_regular_quadratic_minimum_in_d_of_ten_directions_has_llc_d_over_2() {
        // L_n(w) = L0 + ½ Σ_{i<d} (w_i − w*_i)², flat in the other 10 − d
        // directions. The localised tempered posterior is Gaussian, so
        // E[nβ (L_n − L0)] = Σ_{i<d} nβ / (2 (nβ + γ)), → d/2 as γ/nβ → 0;
        // Euler steps of size ε inflate each variance by 1 / (1 − ε k / 4), k = nβ + γ.
        let device = Default::default();
        let centre: Vec<f32> = (0..10).map(|i| 0.1 * i as f32 - 0.4).collect();
        let start = Point::<AB> { w: Param::from_tensor(Tensor::from_data(TensorData::new(centre.clone(), [10]), &device)) };
        let n = 1000;
        let settings = LlcSettings { chains: 4, draws: 2000, burn_in: 200, epsilon: 1e-3, gamma: 1.0, nbeta: None, seed: 7 };
        for d in [1usize, 3] {
            let mask: Vec<f32> = (0..10).map(|i| if i < d { 1.0 } else { 0.0 }).collect();
            let mask = Tensor::<AB, 1>::from_data(TensorData::new(mask, [10]), &device);
            let centre = Tensor::<AB, 1>::from_data(TensorData::new(centre.clone(), [10]), &device);
            let loss =
                |point: &Point<AB>| ((point.w.val() - centre.clone()).powi_scalar(2) * mask.clone()).sum().mul_scalar(0.5).add_scalar(0.25);
            let estimate = estimate(&start, loss, n, &settings, &device);
            let nbeta = settings.nbeta_for(n);
            let k = nbeta + settings.gamma;
            let exact = d as f64 * nbeta / (2.0 * k) / (1.0 - settings.epsilon * k / 4.0);
            assert!((estimate.loss_at_start - 0.25).abs() < 1e-6);
            assert!((estimate.llc - exact).abs() < 0.1 * exact, "d = {d}: λ̂ {} vs {exact} (d/2 = {})", estimate.llc, d as f64 / 2.0);
            assert!((estimate.llc - d as f64 / 2.0).abs() < 0.15 * d as f64 / 2.0, "d = {d}: λ̂ {}", estimate.llc);
        }
    }

    #[test]
    fn settings_are_checked_and_nbeta_defaults_to_n_over_ln_n() {
        assert!(LlcSettings::default().problems().is_empty());
        let bad = LlcSettings { chains: 0, epsilon: 0.0, gamma: -1.0, nbeta: Some(f64::NAN), ..LlcSettings::default() };
        let fields: Vec<&str> = bad.problems().into_iter().map(|(field, _)| field).collect();
        assert_eq!(fields, ["chains", "epsilon", "gamma", "nbeta"]);
        assert!((LlcSettings::default().nbeta_for(1000) - 1000.0 / 1000f64.ln()).abs() < 1e-9);
    }
}
