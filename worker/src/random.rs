//! Seeded random numbers that do not depend on the backend or on threads.

use sweep_core::split::SplitMix64;

/// Standard normal samples by Box–Muller over SplitMix64: fixed by the seed,
/// independent of backend and thread, stable across dependency upgrades.
pub(crate) fn normal_samples(rng: &mut SplitMix64, count: usize, scale: f64) -> Vec<f32> {
    let mut values = Vec::with_capacity(count);
    while values.len() < count {
        let u1 = rng.next_f64().max(f64::MIN_POSITIVE);
        let u2 = rng.next_f64();
        let radius = (-2.0 * u1.ln()).sqrt();
        let angle = 2.0 * std::f64::consts::PI * u2;
        values.push((radius * angle.cos() * scale) as f32);
        if values.len() < count {
            values.push((radius * angle.sin() * scale) as f32);
        }
    }
    values
}
