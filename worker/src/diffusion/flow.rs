//! Rectified flow with x0-prediction (t = 0 clean, t = 1 noise):
//! x_t = (1 − t)·x0 + t·ε, the model predicts x̂0, and the sampler's velocity
//! is v = (x_t − x̂0) / max(t, t_min), integrated by Euler from t = 1 to 0.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// x_t = (1 − t)·x0 + t·ε, with one t per row. Shapes: x0, noise [batch, pixels]; t [batch, 1].
pub fn interpolate<B: Backend>(x0: Tensor<B, 2>, noise: Tensor<B, 2>, t: Tensor<B, 2>) -> Tensor<B, 2> {
    x0 * (t.clone().neg() + 1.0) + noise * t
}

/// The velocity the sampler uses: v = (x_t − x̂0) / max(t, t_min),
/// so that x_{t−Δ} = x_t − Δ·v. For the exact x0 it equals ε − x0.
pub fn velocity<B: Backend>(x_t: Tensor<B, 2>, x0_hat: Tensor<B, 2>, t: f64, t_min: f64) -> Tensor<B, 2> {
    (x_t - x0_hat).div_scalar(t.max(t_min))
}

/// The sampler's times: t_i = 1 − i/steps for i = 0..=steps.
pub fn time_grid(steps: usize) -> Vec<f64> {
    (0..=steps).map(|i| 1.0 - i as f64 / steps as f64).collect()
}

/// Euler integration from x_1 = `noise` to t = 0 in `steps` steps. `predict`
/// is called once per step with (x_t, t, step index) and returns x̂0; it may
/// look at or change what it predicts from (the decision curve and the
/// operand switch do). Returns the final sample.
pub fn euler_sample<B: Backend>(
    noise: Tensor<B, 2>,
    steps: usize,
    t_min: f64,
    mut predict: impl FnMut(Tensor<B, 2>, f64, usize) -> Tensor<B, 2>,
) -> Tensor<B, 2> {
    let times = time_grid(steps);
    let mut x = noise;
    for step in 0..steps {
        let (t, t_next) = (times[step], times[step + 1]);
        let x0_hat = predict(x.clone(), t, step);
        x = x.clone() - velocity(x, x0_hat, t, t_min).mul_scalar(t - t_next);
    }
    x
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;
    use sweep_core::split::SplitMix64;

    use super::*;
    use crate::backend::TestBackend;
    use crate::host;

    fn random(rows: usize, columns: usize, seed: u64) -> Tensor<TestBackend, 2> {
        let values = crate::random::normal_samples(&mut SplitMix64::new(seed), rows * columns, 1.0);
        Tensor::from_data(TensorData::new(values, [rows, columns]), &Default::default())
    }

    fn close(a: Tensor<TestBackend, 2>, b: Tensor<TestBackend, 2>, tolerance: f32) {
        for (x, y) in host(a).iter().zip(host(b)) {
            assert!((x - y).abs() <= tolerance, "{x} vs {y}");
        }
    }

    #[test]
    fn interpolation_ends_and_velocity_identity() {
        let (x0, noise) = (random(3, 5, 1), random(3, 5, 2));
        let device = Default::default();
        let at = |t: f32| Tensor::<TestBackend, 2>::from_data(TensorData::new(vec![t; 3], [3, 1]), &device);
        close(interpolate(x0.clone(), noise.clone(), at(0.0)), x0.clone(), 0.0);
        close(interpolate(x0.clone(), noise.clone(), at(1.0)), noise.clone(), 0.0);
        for t in [0.1f32, 0.5, 0.9] {
            // The velocity recovered from the exact x0 is ε − x0 at every t,
            // and equals the finite difference of the path.
            let x_t = interpolate(x0.clone(), noise.clone(), at(t));
            close(velocity(x_t.clone(), x0.clone(), t as f64, 1e-3), noise.clone() - x0.clone(), 1e-5);
            let earlier = interpolate(x0.clone(), noise.clone(), at(t - 0.05));
            close((x_t - earlier).div_scalar(0.05), noise.clone() - x0.clone(), 1e-4);
        }
    }

    #[test]
    fn euler_with_the_exact_predictor_recovers_x0() {
        let (x0, noise) = (random(4, 6, 3), random(4, 6, 4));
        let mut seen = Vec::new();
        let sample = euler_sample(noise.clone(), 10, 0.01, |x_t, t, step| {
            // The path is straight: x_t is exactly on it at every step.
            let device = Default::default();
            let t_column = Tensor::<TestBackend, 2>::from_data(TensorData::new(vec![t as f32; 4], [4, 1]), &device);
            close(x_t, interpolate(x0.clone(), noise.clone(), t_column), 1e-5);
            seen.push((step, t));
            x0.clone()
        });
        close(sample, x0, 1e-5);
        assert_eq!(seen.len(), 10);
        assert_eq!(seen[0], (0, 1.0));
        assert!((seen[9].1 - 0.1).abs() < 1e-12);
        assert_eq!(time_grid(4), vec![1.0, 0.75, 0.5, 0.25, 0.0]);
    }
}
