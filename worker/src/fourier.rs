//! The real Fourier basis on Z_p and the host-side (f64) measures built on it:
//! Gini of Fourier norms, per-neuron frequency ownership (FVE), and the
//! restricted / excluded logits of Nanda et al. 2023.
//!
//! Conventions (../shared/science/transformer.md): `F` is p×p and orthonormal;
//! row 0 is the constant 1/√p, rows 2k−1 and 2k are cos(2πkx/p) and
//! sin(2πkx/p) scaled to unit length, k = 1..(p−1)/2. The modulus is odd (the
//! spec refuses even ones), so there is no Nyquist row. Grids over (a, b) are
//! row-major with a the row: index `a·p + b`.

use std::f64::consts::PI;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::host;

/// The basis `F` of one modulus.
#[derive(Debug, Clone, PartialEq)]
pub struct FourierBasis {
    modulus: usize,
    /// Row-major p×p.
    rows: Vec<f64>,
}

impl FourierBasis {
    /// Build `F` for an odd modulus p ≥ 3.
    ///
    /// # Panics
    /// When p is even or below 3 (sweep specs refuse those moduli).
    pub fn new(modulus: usize) -> Self {
        assert!(modulus >= 3 && modulus % 2 == 1, "the Fourier basis needs an odd modulus ≥ 3, got {modulus}");
        let p = modulus as f64;
        let mut rows = vec![0.0; modulus * modulus];
        for x in 0..modulus {
            rows[x] = 1.0 / p.sqrt();
            for k in 1..=Self::frequency_count_of(modulus) {
                let angle = 2.0 * PI * (k * x % modulus) as f64 / p;
                rows[(2 * k - 1) * modulus + x] = angle.cos() * (2.0 / p).sqrt();
                rows[2 * k * modulus + x] = angle.sin() * (2.0 / p).sqrt();
            }
        }
        FourierBasis { modulus, rows }
    }

    fn frequency_count_of(modulus: usize) -> usize {
        (modulus - 1) / 2
    }

    /// The modulus p.
    pub fn modulus(&self) -> usize {
        self.modulus
    }

    /// Number of non-constant frequencies, (p − 1)/2.
    pub fn frequency_count(&self) -> usize {
        Self::frequency_count_of(self.modulus)
    }

    /// Frequency of basis row `component`: 0 for the constant, k for rows 2k−1 and 2k.
    pub fn frequency_of(component: usize) -> usize {
        component.div_ceil(2)
    }

    /// The basis, row-major p×p.
    pub fn rows(&self) -> &[f64] {
        &self.rows
    }

    /// `F · M` for a row-major p×`columns` matrix M.
    pub fn transform_rows(&self, matrix: &[f64], columns: usize) -> Vec<f64> {
        let p = self.modulus;
        assert_eq!(matrix.len(), p * columns, "matrix must have p rows");
        let mut out = vec![0.0; p * columns];
        for component in 0..p {
            let target = &mut out[component * columns..(component + 1) * columns];
            for x in 0..p {
                let weight = self.rows[component * p + x];
                for (sum, value) in target.iter_mut().zip(&matrix[x * columns..(x + 1) * columns]) {
                    *sum += weight * value;
                }
            }
        }
        out
    }

    /// The 2D transform `F M Fᵀ` of a p×p grid over (a, b).
    pub fn transform_2d(&self, grid: &[f64]) -> Vec<f64> {
        let p = self.modulus;
        let along_a = self.transform_rows(grid, p); // [ka, b]
        let transposed = transpose(&along_a, p, p); // [b, ka]
        let along_b = self.transform_rows(&transposed, p); // [kb, ka]
        transpose(&along_b, p, p) // [ka, kb]
    }

    /// Norm of each of the p Fourier components of a p×`columns` matrix:
    /// the row norms of `F M`.
    pub fn component_norms(&self, matrix: &[f64], columns: usize) -> Vec<f64> {
        self.transform_rows(matrix, columns).chunks(columns).map(|row| row.iter().map(|v| v * v).sum::<f64>().sqrt()).collect()
    }

    /// Per-frequency norms from component norms: k = 0 is the constant
    /// component, k ≥ 1 combines cos and sin as √(c_{2k−1}² + c_{2k}²).
    pub fn frequency_norms(component_norms: &[f64]) -> Vec<f64> {
        let frequencies = component_norms.len() / 2;
        let mut norms = Vec::with_capacity(frequencies + 1);
        norms.push(component_norms[0]);
        for k in 1..=frequencies {
            norms.push(component_norms[2 * k - 1].hypot(component_norms[2 * k]));
        }
        norms
    }

    /// The unit directions of cos(w_k s) and sin(w_k s), s = (a + b) mod p,
    /// as functions of s: a grid over (a, b) with value `u(s)` has unit norm.
    /// They equal the documented 2D-basis directions (e[2k−1,2k−1] − e[2k,2k])/√2
    /// and (e[2k,2k−1] + e[2k−1,2k])/√2, i.e. (√2/p)·cos and (√2/p)·sin.
    pub fn sum_directions(&self, k: usize) -> [Vec<f64>; 2] {
        let p = self.modulus;
        let scale = 2f64.sqrt() / p as f64;
        let angle = |s: usize| 2.0 * PI * (k * s % p) as f64 / p as f64;
        [(0..p).map(|s| scale * angle(s).cos()).collect(), (0..p).map(|s| scale * angle(s).sin()).collect()]
    }
}

fn transpose(matrix: &[f64], rows: usize, columns: usize) -> Vec<f64> {
    let mut out = vec![0.0; rows * columns];
    for r in 0..rows {
        for c in 0..columns {
            out[c * rows + r] = matrix[r * columns + c];
        }
    }
    out
}

/// Gini coefficient of non-negative values (Hurley & Rickard): sort
/// ascending, G = 1 − 2 Σᵢ (cᵢ/‖c‖₁)·(N − i + ½)/N with i = 1..N.
/// 0 when all values are equal, (N − 1)/N when one is non-zero; 0 for all zeros.
pub fn gini(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let total: f64 = values.iter().sum();
    if values.is_empty() || total <= 0.0 {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let weighted: f64 = sorted.iter().enumerate().map(|(index, value)| (value / total) * ((n - (index + 1) as f64 + 0.5) / n)).sum();
    1.0 - 2.0 * weighted
}

/// Which frequency owns one MLP neuron.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NeuronFrequency {
    /// The frequency k ≥ 1 whose 3×3 block {0, 2k−1, 2k}² explains most variance.
    pub frequency: usize,
    /// Fraction of the centred activation variance that block explains (0 for a constant neuron).
    pub fve: f64,
}

/// Best frequency and FVE of every neuron from the squared 2D-DFT
/// coefficients of its centred activation grid.
///
/// `power` is `[ka, kb, neuron]` row-major: the squared coefficient of basis
/// rows (ka, kb) for each of `neurons` neurons. The block of frequency k is
/// every (ka, kb) whose frequencies are each 0 or k.
pub fn neuron_frequencies(power: &[f32], modulus: usize, neurons: usize) -> Vec<NeuronFrequency> {
    assert_eq!(power.len(), modulus * modulus * neurons, "power must be [p, p, neurons]");
    let frequencies = (modulus - 1) / 2;
    // For each neuron: energy at (0,0), at (0,k) ∪ (k,0), at (k,k), and in total.
    let mut constant = vec![0.0f64; neurons];
    let mut axis = vec![0.0f64; neurons * (frequencies + 1)];
    let mut diagonal = vec![0.0f64; neurons * (frequencies + 1)];
    let mut total = vec![0.0f64; neurons];
    for ka in 0..modulus {
        let fa = FourierBasis::frequency_of(ka);
        for kb in 0..modulus {
            let fb = FourierBasis::frequency_of(kb);
            let entries = &power[(ka * modulus + kb) * neurons..(ka * modulus + kb + 1) * neurons];
            for (neuron, &energy) in entries.iter().enumerate() {
                let energy = energy as f64;
                total[neuron] += energy;
                match (fa, fb) {
                    (0, 0) => constant[neuron] += energy,
                    (0, k) | (k, 0) => axis[neuron * (frequencies + 1) + k] += energy,
                    (a, b) if a == b => diagonal[neuron * (frequencies + 1) + a] += energy,
                    _ => {}
                }
            }
        }
    }
    (0..neurons)
        .map(|neuron| {
            if total[neuron] <= f64::MIN_POSITIVE {
                return NeuronFrequency { frequency: 1, fve: 0.0 };
            }
            let row = neuron * (frequencies + 1);
            let (frequency, block) = (1..=frequencies)
                .map(|k| (k, constant[neuron] + axis[row + k] + diagonal[row + k]))
                .max_by(|x, y| x.1.total_cmp(&y.1))
                .unwrap_or((1, 0.0));
            NeuronFrequency { frequency, fve: block / total[neuron] }
        })
        .collect()
}

/// The basis as a p×p tensor on `device`, for [`activation_power`].
pub fn basis_tensor<B: Backend>(basis: &FourierBasis, device: &B::Device) -> Tensor<B, 2> {
    let p = basis.modulus();
    let values: Vec<f32> = basis.rows().iter().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(values, [p, p]), device)
}

/// Squared 2D-DFT coefficients of the centred activations over the p² inputs
/// (rows in (a, b) order), as `[ka, kb, neuron]` for [`neuron_frequencies`].
/// Two matrix products with the basis on the backend: one over a, then one
/// over b for each ka (a batched product with the basis broadcast), so
/// nothing is permuted. Permuting [ka, b, n] to [b, ka, n] and back, as this
/// did until 2026-12-05, made burn-flex copy 2 · p² · neurons values one by
/// one: at p = 113 half of an evaluation's time (bench/RESULTS.md,
/// "Session 19").
pub fn activation_power<B: Backend>(basis: &Tensor<B, 2>, activations: Tensor<B, 2>) -> Vec<f32> {
    let p = basis.dims()[0];
    let [inputs, neurons] = activations.dims();
    assert_eq!(inputs, p * p, "activations must have one row per (a, b) pair");
    let centred = activations.clone() - activations.mean_dim(0);
    let along_a = basis.clone().matmul(centred.reshape([p, p * neurons])).reshape([p, p, neurons]); // [ka, b, n]
    let ordered = basis.clone().unsqueeze_dim::<3>(0).matmul(along_a); // [ka, kb, n]
    host(ordered.clone() * ordered)
}

/// Key frequencies (ascending) and the fraction of neurons above `threshold`.
pub fn key_frequencies(neurons: &[NeuronFrequency], threshold: f64) -> (Vec<usize>, f64) {
    let mut keys: Vec<usize> = neurons.iter().filter(|n| n.fve > threshold).map(|n| n.frequency).collect();
    let above = keys.len();
    keys.sort_unstable();
    keys.dedup();
    (keys, if neurons.is_empty() { 0.0 } else { above as f64 / neurons.len() as f64 })
}

/// The key-frequency part of logits, which depends on (a, b) only through
/// s = (a + b) mod p, plus the constant term.
#[derive(Debug, Clone)]
pub struct FrequencyProjection {
    modulus: usize,
    /// Per class c: mean of L[·, c] over all p² inputs (the constant 2D term).
    pub mean: Vec<f64>,
    /// `[s, c]`: Σ_{k∈K} P_k(L) at any input with (a + b) mod p = s.
    pub by_sum: Vec<f64>,
}

impl FrequencyProjection {
    /// Project `logits` (all p² inputs in (a, b) order, row stride `stride`,
    /// first p columns used) onto the cos/sin(w_k(a+b)) directions of `keys`.
    pub fn new(basis: &FourierBasis, logits: &[f32], stride: usize, keys: &[usize]) -> Self {
        let p = basis.modulus();
        assert_eq!(logits.len(), p * p * stride, "logits must cover all p² inputs");
        // Sum the logits over each anti-diagonal s = (a + b) mod p: every
        // direction is constant there, so projections need only these sums.
        let mut sums = vec![0.0f64; p * p]; // [s, c]
        for a in 0..p {
            for b in 0..p {
                let s = (a + b) % p;
                let row = &logits[(a * p + b) * stride..(a * p + b) * stride + p];
                for (sum, &value) in sums[s * p..(s + 1) * p].iter_mut().zip(row) {
                    *sum += value as f64;
                }
            }
        }
        let mut mean = vec![0.0f64; p];
        for s in 0..p {
            for c in 0..p {
                mean[c] += sums[s * p + c] / (p * p) as f64;
            }
        }
        let mut by_sum = vec![0.0f64; p * p];
        for &k in keys {
            for direction in basis.sum_directions(k) {
                // Coefficient per class: ⟨u, L[·, c]⟩ = Σ_s u(s) · sums[s, c].
                let mut coefficient = vec![0.0f64; p];
                for s in 0..p {
                    for c in 0..p {
                        coefficient[c] += direction[s] * sums[s * p + c];
                    }
                }
                for s in 0..p {
                    for c in 0..p {
                        by_sum[s * p + c] += direction[s] * coefficient[c];
                    }
                }
            }
        }
        FrequencyProjection { modulus: p, mean, by_sum }
    }

    /// Restricted logits of input (a, b): Σ_{k∈K} P_k(L) + the constant term.
    pub fn restricted(&self, a: usize, b: usize) -> Vec<f64> {
        let p = self.modulus;
        let s = (a + b) % p;
        self.by_sum[s * p..(s + 1) * p].iter().zip(&self.mean).map(|(projected, mean)| projected + mean).collect()
    }

    /// Excluded logits of input (a, b): L − Σ_{k∈K} P_k(L), given that input's logits.
    pub fn excluded(&self, a: usize, b: usize, logits: &[f32]) -> Vec<f64> {
        let p = self.modulus;
        let s = (a + b) % p;
        logits[..p].iter().zip(&self.by_sum[s * p..(s + 1) * p]).map(|(&value, projected)| value as f64 - projected).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const P: usize = 13;

    #[test]
    fn basis_is_orthonormal() {
        let basis = FourierBasis::new(P);
        let rows = basis.rows();
        for i in 0..P {
            for j in 0..P {
                let dot: f64 = (0..P).map(|x| rows[i * P + x] * rows[j * P + x]).sum();
                let expected = if i == j { 1.0 } else { 0.0 };
                assert!((dot - expected).abs() < 1e-10, "⟨F{i}, F{j}⟩ = {dot}");
            }
        }
    }

    #[test]
    fn dft_of_a_sum_wave_lands_on_the_two_documented_directions() {
        let basis = FourierBasis::new(P);
        for k in 1..=basis.frequency_count() {
            for (is_sin, wave) in [(false, f64::cos as fn(f64) -> f64), (true, f64::sin)] {
                let grid: Vec<f64> = (0..P * P).map(|i| wave(2.0 * PI * (k * ((i / P + i % P) % P)) as f64 / P as f64)).collect();
                let spectrum = basis.transform_2d(&grid);
                let (c, s) = (2 * k - 1, 2 * k);
                // The grid has norm p/√2 along a direction whose two entries
                // are ±1/√2, so each coefficient is ±p/2.
                let half = P as f64 / 2.0;
                let expected: Vec<((usize, usize), f64)> =
                    if is_sin { vec![((s, c), half), ((c, s), half)] } else { vec![((c, c), half), ((s, s), -half)] };
                for ka in 0..P {
                    for kb in 0..P {
                        let want = expected.iter().find(|(at, _)| *at == (ka, kb)).map_or(0.0, |(_, v)| *v);
                        let got = spectrum[ka * P + kb];
                        assert!((got - want).abs() < 1e-9, "k={k} sin={is_sin} ({ka},{kb}): {got} vs {want}");
                    }
                }
                // And the helper's directions are that wave at unit norm.
                let direction = &basis.sum_directions(k)[usize::from(is_sin)];
                let norm: f64 = (0..P * P).map(|i| direction[(i / P + i % P) % P].powi(2)).sum();
                assert!((norm - 1.0).abs() < 1e-12);
            }
        }
    }

    fn direct_gini(values: &[f64]) -> f64 {
        let n = values.len() as f64;
        let total: f64 = values.iter().sum();
        let pairs: f64 = values.iter().flat_map(|x| values.iter().map(move |y| (x - y).abs())).sum();
        pairs / (2.0 * n * total)
    }

    #[test]
    fn gini_known_values_and_the_direct_formula() {
        assert!(gini(&[2.5; 10]).abs() < 1e-12);
        let mut single = vec![0.0; 10];
        single[3] = 7.0;
        assert!((gini(&single) - 0.9).abs() < 1e-12);
        let mut rng = sweep_core::split::SplitMix64::new(9);
        for length in [2, 5, 57, 113] {
            let values: Vec<f64> = (0..length).map(|_| rng.next_f64() * 3.0).collect();
            assert!((gini(&values) - direct_gini(&values)).abs() < 1e-12, "length {length}");
        }
    }

    /// Squared 2D-DFT coefficients of centred activation grids, [ka, kb, neuron].
    fn power_of(basis: &FourierBasis, grids: &[Vec<f64>]) -> Vec<f32> {
        let neurons = grids.len();
        let mut power = vec![0f32; P * P * neurons];
        for (neuron, grid) in grids.iter().enumerate() {
            let mean = grid.iter().sum::<f64>() / grid.len() as f64;
            let centred: Vec<f64> = grid.iter().map(|v| v - mean).collect();
            for (index, coefficient) in basis.transform_2d(&centred).into_iter().enumerate() {
                power[index * neurons + neuron] = (coefficient * coefficient) as f32;
            }
        }
        power
    }

    #[test]
    fn activation_power_on_the_backend_equals_the_host_transform() {
        use crate::backend::TestBackend;
        let basis = FourierBasis::new(P);
        let mut rng = sweep_core::split::SplitMix64::new(7);
        let neurons = 5;
        let grids: Vec<Vec<f64>> = (0..neurons).map(|_| (0..P * P).map(|_| rng.next_f64() * 2.0 - 1.0).collect()).collect();
        // Rows in (a, b) order, one column per neuron.
        let values: Vec<f32> = (0..P * P).flat_map(|input| grids.iter().map(move |grid| grid[input] as f32)).collect();
        let device = Default::default();
        let activations = Tensor::<TestBackend, 2>::from_data(TensorData::new(values, [P * P, neurons]), &device);
        let got = activation_power(&basis_tensor::<TestBackend>(&basis, &device), activations);
        let want = power_of(&basis, &grids);
        let scale = want.iter().fold(0f32, |max, value| max.max(*value));
        assert_eq!(got.len(), want.len());
        for (index, (got, want)) in got.iter().zip(&want).enumerate() {
            assert!((got - want).abs() <= 1e-5 * scale, "[ka, kb, n] entry {index}: {got} vs {want}");
        }
    }

    #[test]
    fn constructed_neurons_are_owned_by_their_frequency() {
        let basis = FourierBasis::new(P);
        let w = |k: usize, x: usize| 2.0 * PI * (k * x % P) as f64 / P as f64;
        let grids: Vec<Vec<f64>> = vec![
            // A neuron of frequency 3: operand terms and the product term.
            (0..P * P).map(|i| 1.5 + (w(3, i / P) + 0.4).cos() + (w(3, i % P)).sin() + 2.0 * (w(3, i / P + i % P)).cos()).collect(),
            // Frequency 5, sum term only.
            (0..P * P).map(|i| (w(5, i / P + i % P) - 1.0).cos()).collect(),
            // Mixed 2 and 4 in equal parts: FVE ½ for either.
            (0..P * P).map(|i| (w(2, i / P + i % P)).cos() + (w(4, i / P + i % P)).sin()).collect(),
            // Dead neuron.
            vec![0.25; P * P],
        ];
        let neurons = neuron_frequencies(&power_of(&basis, &grids), P, grids.len());
        assert_eq!(neurons[0].frequency, 3);
        assert!((neurons[0].fve - 1.0).abs() < 1e-6, "{}", neurons[0].fve);
        assert_eq!(neurons[1].frequency, 5);
        assert!((neurons[1].fve - 1.0).abs() < 1e-6, "{}", neurons[1].fve);
        assert!((neurons[2].fve - 0.5).abs() < 1e-5, "{}", neurons[2].fve);
        assert_eq!(neurons[3].fve, 0.0);
        let (keys, fraction) = key_frequencies(&neurons, 0.85);
        assert_eq!(keys, vec![3, 5]);
        assert!((fraction - 0.5).abs() < 1e-12);
    }

    /// Logits Σ_{k∈K} α_k cos(w_k(a + b − c)) over all p² inputs, stride p + 1.
    pub(crate) fn fourier_logits(keys: &[(usize, f64)]) -> Vec<f32> {
        let stride = P + 1;
        let mut logits = vec![0f32; P * P * stride];
        for a in 0..P {
            for b in 0..P {
                for c in 0..P {
                    let value: f64 =
                        keys.iter().map(|&(k, alpha)| alpha * (2.0 * PI * (k * ((a + b + P - c) % P)) as f64 / P as f64).cos()).sum();
                    logits[(a * P + b) * stride + c] = value as f32;
                }
                logits[(a * P + b) * stride + P] = 9.0; // the `=` logit, never used
            }
        }
        logits
    }

    #[test]
    fn projection_of_a_pure_fourier_model_keeps_everything_in_k_and_nothing_outside() {
        let basis = FourierBasis::new(P);
        let logits = fourier_logits(&[(2, 3.0), (5, 4.0)]);
        let projection = FrequencyProjection::new(&basis, &logits, P + 1, &[2, 5]);
        let other = FrequencyProjection::new(&basis, &logits, P + 1, &[1, 3]);
        for (a, b) in [(0, 0), (3, 7), (12, 12), (5, 9)] {
            let row = &logits[(a * P + b) * (P + 1)..(a * P + b + 1) * (P + 1)];
            for (restricted, &full) in projection.restricted(a, b).iter().zip(row) {
                assert!((restricted - full as f64).abs() < 1e-5);
            }
            assert!(projection.excluded(a, b, row).iter().all(|v| v.abs() < 1e-5));
            // Other frequencies hold nothing: restricting to them leaves only the (zero) mean.
            assert!(other.restricted(a, b).iter().all(|v| v.abs() < 1e-5));
        }
    }
}
