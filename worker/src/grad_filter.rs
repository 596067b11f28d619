//! Gradient filters in front of AdamW: Grokfast's EMA and moving average
//! (Lee et al. 2024) and ⊥Grad (Prieto et al. 2025), as the authors'
//! reference code applies them. Each works on one parameter viewed as
//! [K, n], row k being trial k of the pack, so every trial is filtered on
//! its own; a pack has one filter (the optimiser is part of its pack key).
//!
//! - EMA: h ← g on the first step, then h ← α·h + (1 − α)·g; AdamW sees g + λ·h.
//! - Moving average: the last `window` gradients (this one included) are
//!   kept; once there are `window` of them AdamW sees g + λ·mean, before
//!   that g itself (the authors' `warmup=True`).
//! - ⊥Grad: per trial and parameter tensor, g⊥ = g − (w·g / (w·w + 1e-30))·w,
//!   rescaled to ‖g‖: AdamW sees g⊥ · ‖g‖ / (‖g⊥‖ + 1e-30).

use std::collections::VecDeque;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use sweep_core::{OptimizerKind, TrainingSettings};

/// The ε of ⊥Grad's reference code, in both denominators.
const ORTHOGRAD_EPSILON: f32 = 1e-30;

/// What happens to a gradient before AdamW sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum GradientFilter {
    /// Nothing: plain AdamW.
    Identity,
    /// Grokfast-EMA.
    Ema {
        /// Momentum α.
        alpha: f32,
        /// Amplification λ.
        lambda: f32,
    },
    /// Grokfast-MA.
    MovingAverage {
        /// Gradients averaged.
        window: usize,
        /// Amplification λ.
        lambda: f32,
    },
    /// ⊥Grad.
    Orthogonal,
}

impl GradientFilter {
    /// The filter of `kind`, with the sweep's settings for it.
    pub fn new(kind: OptimizerKind, training: &TrainingSettings) -> Self {
        match kind {
            OptimizerKind::Adamw => GradientFilter::Identity,
            OptimizerKind::GrokfastEma => {
                GradientFilter::Ema { alpha: training.grokfast_ema.alpha as f32, lambda: training.grokfast_ema.lambda as f32 }
            }
            OptimizerKind::GrokfastMa => GradientFilter::MovingAverage {
                window: training.grokfast_ma.window.max(1) as usize,
                lambda: training.grokfast_ma.lambda as f32,
            },
            OptimizerKind::Orthograd => GradientFilter::Orthogonal,
        }
    }

    /// The gradient AdamW sees for one parameter (`theta`, `gradient`: [K, n]),
    /// updating that parameter's `state`.
    pub fn apply<B: Backend>(&self, state: &mut Option<FilterState<B>>, theta: &Tensor<B, 2>, gradient: Tensor<B, 2>) -> Tensor<B, 2> {
        match self {
            GradientFilter::Identity => gradient,
            GradientFilter::Ema { alpha, lambda } => {
                let average = match state.take() {
                    Some(FilterState::Ema(previous)) => previous.mul_scalar(*alpha).add(gradient.clone().mul_scalar(1.0 - alpha)),
                    _ => gradient.clone(),
                };
                *state = Some(FilterState::Ema(average.clone()));
                gradient + average.mul_scalar(*lambda)
            }
            GradientFilter::MovingAverage { window, lambda } => {
                let mut ring = match state.take() {
                    Some(FilterState::Window(ring)) => ring,
                    _ => Window::default(),
                };
                let mean = ring.push(gradient.clone(), *window);
                *state = Some(FilterState::Window(ring));
                match mean {
                    Some(mean) => gradient + mean.mul_scalar(*lambda),
                    None => gradient,
                }
            }
            GradientFilter::Orthogonal => orthogonal(theta, gradient),
        }
    }
}

/// ⊥Grad's gradient, row by row.
fn orthogonal<B: Backend>(theta: &Tensor<B, 2>, gradient: Tensor<B, 2>) -> Tensor<B, 2> {
    let along = (theta.clone() * gradient.clone()).sum_dim(1); // [K, 1]
    let length = theta.clone().square().sum_dim(1).add_scalar(ORTHOGRAD_EPSILON);
    let across = gradient.clone() - theta.clone() * (along / length);
    let norm = gradient.square().sum_dim(1).sqrt();
    let across_norm = across.clone().square().sum_dim(1).sqrt().add_scalar(ORTHOGRAD_EPSILON);
    across * (norm / across_norm)
}

/// The last gradients of one parameter and their running sum, re-added
/// exactly once per `window` steps so rounding does not drift.
#[derive(Debug)]
pub struct Window<B: Backend> {
    ring: VecDeque<Tensor<B, 2>>,
    sum: Option<Tensor<B, 2>>,
    pushed_since_exact: usize,
}

impl<B: Backend> Default for Window<B> {
    fn default() -> Self {
        Window { ring: VecDeque::new(), sum: None, pushed_since_exact: 0 }
    }
}

impl<B: Backend> Window<B> {
    /// Add a gradient; the mean of the last `window` once there are that many.
    fn push(&mut self, gradient: Tensor<B, 2>, window: usize) -> Option<Tensor<B, 2>> {
        self.ring.push_back(gradient.clone());
        let mut sum = match self.sum.take() {
            Some(sum) => sum + gradient,
            None => gradient,
        };
        if self.ring.len() > window
            && let Some(oldest) = self.ring.pop_front()
        {
            sum = sum - oldest;
        }
        self.pushed_since_exact += 1;
        if self.pushed_since_exact >= window {
            sum = self.exact_sum().unwrap_or(sum);
            self.pushed_since_exact = 0;
        }
        self.sum = Some(sum.clone());
        (self.ring.len() == window).then(|| sum.div_scalar(window as f32))
    }

    fn exact_sum(&self) -> Option<Tensor<B, 2>> {
        self.ring.iter().cloned().reduce(|total, next| total + next)
    }
}

/// A filter's memory of one parameter.
#[derive(Debug)]
pub enum FilterState<B: Backend> {
    /// Grokfast-EMA's average, [K, n].
    Ema(Tensor<B, 2>),
    /// Grokfast-MA's window of gradients, each [K, n].
    Window(Window<B>),
}

impl<B: Backend> FilterState<B> {
    /// Keep the rows of the trials `indices` (those that stay in the pack).
    pub fn select(self, indices: &Tensor<B, 1, Int>) -> Self {
        let keep = |tensor: Tensor<B, 2>| tensor.select(0, indices.clone());
        match self {
            FilterState::Ema(average) => FilterState::Ema(keep(average)),
            FilterState::Window(window) => FilterState::Window(Window {
                ring: window.ring.into_iter().map(keep).collect(),
                sum: window.sum.map(keep),
                pushed_since_exact: window.pushed_since_exact,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;
    use crate::backend::TestBackend;

    type T = Tensor<TestBackend, 2>;

    fn tensor(values: &[f32], rows: usize) -> T {
        Tensor::from_data(TensorData::new(values.to_vec(), [rows, values.len() / rows]), &Default::default())
    }

    fn host(tensor: T) -> Vec<f64> {
        tensor.into_data().iter::<f64>().collect()
    }

    fn close(got: &[f64], want: &[f64], tolerance: f64) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= tolerance * w.abs().max(1.0), "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn the_ema_filter_on_a_step_then_a_constant_gradient_follows_its_closed_form() {
        // g_0 = a, then g_t = c: h_n = α^n a + (1 − α^n) c, and AdamW sees c + λ h_n.
        let (alpha, lambda) = (0.9f32, 2.0f32);
        let filter = GradientFilter::Ema { alpha, lambda };
        let (a, c) = ([1.0f32, -2.0, 0.5, 4.0], [0.25f32, 0.25, -1.0, 3.0]);
        let theta = tensor(&[0.0; 4], 2);
        let mut state = None;
        let first = host(filter.apply(&mut state, &theta, tensor(&a, 2)));
        close(&first, &a.map(|x| f64::from(x * (1.0 + lambda))), 1e-6);
        for n in 1..=30 {
            let seen = host(filter.apply(&mut state, &theta, tensor(&c, 2)));
            let decay = f64::from(alpha).powi(n);
            let want: Vec<f64> = a
                .iter()
                .zip(&c)
                .map(|(&a, &c)| f64::from(c) + f64::from(lambda) * (decay * f64::from(a) + (1.0 - decay) * f64::from(c)))
                .collect();
            close(&seen, &want, 1e-5);
        }
    }

    #[test]
    fn the_moving_average_waits_for_a_full_window_then_adds_its_mean() {
        let filter = GradientFilter::MovingAverage { window: 3, lambda: 5.0 };
        let theta = tensor(&[0.0; 2], 2);
        let mut state = None;
        // Row 0 sees 1, 2, 3, …; row 1 sees −1, −2, −3, ….
        for step in 1..=12i32 {
            let g = step as f32;
            let seen = host(filter.apply(&mut state, &theta, tensor(&[g, -g], 2)));
            let want = if step < 3 {
                vec![f64::from(g), -f64::from(g)]
            } else {
                let mean = f64::from(step - 1); // mean of step−2, step−1, step
                vec![f64::from(g) + 5.0 * mean, -(f64::from(g) + 5.0 * mean)]
            };
            close(&seen, &want, 1e-6);
        }
    }

    #[test]
    fn orthograd_is_orthogonal_to_the_weights_with_the_gradients_norm_per_trial() {
        let theta = [0.3f32, -1.2, 0.7, 2.0, /* trial 1 */ 0.0, 0.0, 0.0, 0.0, /* trial 2 */ 1.0, 1.0, 1.0, 1.0];
        let gradient = [0.5f32, 0.1, -0.4, 0.9, 1.0, -2.0, 0.5, 0.0, 2.0, 2.0, 2.0, 2.0];
        let seen = host(GradientFilter::Orthogonal.apply(&mut None, &tensor(&theta, 3), tensor(&gradient, 3)));
        let row = |values: &[f64], k: usize| values[4 * k..4 * k + 4].to_vec();
        let as_f64 = |values: &[f32]| values.iter().map(|&v| f64::from(v)).collect::<Vec<_>>();
        let (theta, gradient) = (as_f64(&theta), as_f64(&gradient));
        let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>();
        // Trial 0: orthogonal to w, with ‖g‖.
        let out = row(&seen, 0);
        assert!(dot(&out, &row(&theta, 0)).abs() < 1e-5, "{out:?}");
        assert!((dot(&out, &out).sqrt() - dot(&row(&gradient, 0), &row(&gradient, 0)).sqrt()).abs() < 1e-5);
        // Trial 1: zero weights (a bias at initialisation) leave the gradient as it is.
        close(&row(&seen, 1), &row(&gradient, 1), 1e-6);
        // Trial 2: a gradient along the weights has nothing across them.
        close(&row(&seen, 2), &[0.0; 4], 1e-6);
    }

    #[test]
    fn a_filters_state_follows_the_trials_that_stay() {
        let filter = GradientFilter::Ema { alpha: 0.5, lambda: 1.0 };
        let theta = tensor(&[0.0; 3], 3);
        let mut state = None;
        filter.apply(&mut state, &theta, tensor(&[1.0, 2.0, 3.0], 3));
        let indices = Tensor::<TestBackend, 1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &Default::default());
        let mut kept = state.map(|state| state.select(&indices));
        // h = 0.5·[1, 3] + 0.5·[0, 0] = [0.5, 1.5]; seen = 0 + h.
        let seen = host(filter.apply(&mut kept, &tensor(&[0.0; 2], 2), tensor(&[0.0, 0.0], 2)));
        close(&seen, &[0.5, 1.5], 1e-6);
    }
}
