//! Every progress measure of one evaluated step, from one forward pass over
//! all p² inputs: loss and accuracy on each side of the split, restricted and
//! excluded loss, Gini of the Fourier norms of W_E and W_L, key frequencies
//! and the spectra; the norm of every weight matrix, the effective rank of
//! W_E and W_L, and float32 softmax collapse on the training pairs.
//!
//! The heavy part, the 2D DFT of the MLP activations (p² × d_mlp), is two
//! matrix products against the precomputed basis on the model's backend; the
//! rest is O(p²·p) host arithmetic in f64.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use sweep_core::measures::{
    EFFECTIVE_RANK_W_E, EFFECTIVE_RANK_W_L, EXCLUDED_LOSS, GINI_W_E, GINI_W_L, KEY_FREQUENCY_COUNT, KEY_FVE_THRESHOLD, KEY_NEURON_FRACTION,
    RESTRICTED_LOSS, SOFTMAX_COLLAPSE, SUM_SQUARED_WEIGHTS, SpectrumMatrix, TEST_ACCURACY, TEST_LOSS, TRAIN_ACCURACY, TRAIN_LOSS,
    WEIGHT_NORMS, ZERO_LOSS_FRACTION,
};
use sweep_core::{LossKind, Measure, Split};

use super::eval::{CollapseCounter, LossAccumulator, LossAccuracy};
use super::model::{PackInputs, SEQ_LEN, Transformer};
use crate::fourier::{FourierBasis, FrequencyProjection, activation_power, basis_tensor, gini, key_frequencies, neuron_frequencies};
use crate::host;
use crate::spectral::{effective_rank, singular_values};

/// Everything measured at one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Loss and accuracy on the training pairs.
    pub train: LossAccuracy,
    /// Loss and accuracy on the test pairs.
    pub test: LossAccuracy,
    /// Σθ².
    pub sum_squared_weights: f64,
    /// Restricted and excluded loss over the key frequencies found at this step.
    pub restricted_excluded: RestrictedExcluded,
    /// Gini of the Fourier-component norms of W_E.
    pub gini_w_e: f64,
    /// Gini of the Fourier-component norms of W_L.
    pub gini_w_l: f64,
    /// Key frequencies found at this step, ascending.
    pub key_frequencies: Vec<usize>,
    /// Fraction of MLP neurons with FVE above the threshold.
    pub key_neuron_fraction: f64,
    /// Per-frequency norms of W_E (index k = 0..=(p−1)/2).
    pub spectrum_w_e: Vec<f64>,
    /// Per-frequency norms of W_L.
    pub spectrum_w_l: Vec<f64>,
    /// Per frequency: neurons it owns with FVE above the threshold.
    pub key_neuron_counts: Vec<usize>,
    /// Frobenius norm of each weight matrix, in the order of [`WEIGHT_NORMS`].
    pub weight_norms: [f64; 9],
    /// Effective rank of W_E's number rows.
    pub effective_rank_w_e: f64,
    /// Effective rank of W_L.
    pub effective_rank_w_l: f64,
    /// Fraction of training pairs whose f32 softmax probability of the label is exactly 1.
    pub softmax_collapse: f64,
    /// Fraction of training pairs whose f32 cross-entropy is exactly 0.
    pub zero_loss_fraction: f64,
}

/// Restricted and excluded loss for one set of key frequencies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestrictedExcluded {
    /// Cross-entropy of Σ_{k∈K} P_k(L) + constant term, on the training pairs.
    pub restricted: f64,
    /// Cross-entropy of L − Σ_{k∈K} P_k(L), on the training pairs.
    pub excluded: f64,
}

impl Evaluation {
    /// The measures, typed: scalars, and the spectra of W_E, W_L and the key neurons.
    pub fn measures(&self) -> Vec<Measure> {
        let mut measures: Vec<Measure> = [
            (TRAIN_LOSS, self.train.loss),
            (TEST_LOSS, self.test.loss),
            (TRAIN_ACCURACY, self.train.accuracy),
            (TEST_ACCURACY, self.test.accuracy),
            (SUM_SQUARED_WEIGHTS, self.sum_squared_weights),
            (RESTRICTED_LOSS, self.restricted_excluded.restricted),
            (EXCLUDED_LOSS, self.restricted_excluded.excluded),
            (GINI_W_E, self.gini_w_e),
            (GINI_W_L, self.gini_w_l),
            (KEY_FREQUENCY_COUNT, self.key_frequencies.len() as f64),
            (KEY_NEURON_FRACTION, self.key_neuron_fraction),
            (EFFECTIVE_RANK_W_E, self.effective_rank_w_e),
            (EFFECTIVE_RANK_W_L, self.effective_rank_w_l),
            (SOFTMAX_COLLAPSE, self.softmax_collapse),
            (ZERO_LOSS_FRACTION, self.zero_loss_fraction),
        ]
        .into_iter()
        .chain(WEIGHT_NORMS.into_iter().zip(self.weight_norms))
        .map(|(name, value)| Measure::scalar(name, value))
        .collect();
        measures.push(Measure::spectrum(SpectrumMatrix::WE.as_str(), self.spectrum_w_e.clone()));
        measures.push(Measure::spectrum(SpectrumMatrix::WL.as_str(), self.spectrum_w_l.clone()));
        let counts = self.key_neuron_counts.iter().map(|&count| count as f64).collect();
        measures.push(Measure::spectrum(SpectrumMatrix::KeyNeurons.as_str(), counts));
        measures
    }
}

/// Precomputed inputs of the measures for one trial: all p² inputs, the
/// split as indices into them, and the Fourier basis on host and device.
/// It measures a pack of one (one trial taken out of its pack).
#[derive(Debug)]
pub struct Evaluator<B: Backend> {
    basis: FourierBasis,
    basis_tensor: Tensor<B, 2>,
    inputs: PackInputs<B>,
    train: Vec<(usize, usize)>,
    test: Vec<(usize, usize)>,
    loss: LossKind,
}

/// The matrices indexed by the p numbers, on the host in f64.
#[derive(Debug)]
struct NumberMatrices {
    /// W_E's number rows, [p, d_model].
    w_e: Vec<f64>,
    /// W_L, [p, d_mlp].
    w_l: Vec<f64>,
    d_model: usize,
    d_mlp: usize,
}

/// What the evaluation measures of W_E and W_L, from their [`NumberMatrices`].
#[derive(Debug)]
struct MatrixMeasures {
    /// Fourier component norms of W_E's number rows.
    w_e: Vec<f64>,
    /// Fourier component norms of W_L.
    w_l: Vec<f64>,
    effective_rank_w_e: f64,
    effective_rank_w_l: f64,
}

impl MatrixMeasures {
    fn of(basis: &FourierBasis, matrices: &NumberMatrices, p: usize) -> Self {
        MatrixMeasures {
            w_e: basis.component_norms(&matrices.w_e, matrices.d_model),
            w_l: basis.component_norms(&matrices.w_l, matrices.d_mlp),
            effective_rank_w_e: effective_rank(&singular_values(&matrices.w_e, p, matrices.d_model)),
            effective_rank_w_l: effective_rank(&singular_values(&matrices.w_l, p, matrices.d_mlp)),
        }
    }
}

/// Logits and activations of the model over all p² inputs, on the host.
#[derive(Debug)]
struct AllInputs {
    /// [p², d_vocab], row-major, inputs in (a, b) order.
    logits: Vec<f32>,
    stride: usize,
}

impl<B: Backend> Evaluator<B> {
    /// Prepare the measures of a trial with this split; its losses are `loss` cross-entropies.
    pub fn new(split: &Split, modulus: u32, loss: LossKind, device: &B::Device) -> Self {
        let p = modulus as usize;
        let mut tokens: Vec<[i64; SEQ_LEN]> = Vec::with_capacity(p * p);
        for a in 0..p {
            for b in 0..p {
                tokens.push([a as i64, b as i64, p as i64]);
            }
        }
        let basis = FourierBasis::new(p);
        let index = |pairs: &[(u32, u32)]| pairs.iter().map(|&(a, b)| (a as usize, b as usize)).collect();
        Evaluator {
            basis_tensor: basis_tensor(&basis, device),
            basis,
            inputs: PackInputs::new(&[tokens], p + 1, device),
            train: index(&split.train),
            test: index(&split.test),
            loss,
        }
    }

    fn modulus(&self) -> usize {
        self.basis.modulus()
    }

    /// Every measure of `model` (a pack of one) at this step.
    pub fn evaluate(&self, model: &Transformer<B>) -> Evaluation {
        let p = self.modulus();
        let matrices = self.number_matrices(model);
        // The measures of W_E and W_L are host work: on a thread of their
        // own, beside the forward pass over all p² inputs on this one.
        std::thread::scope(|scope| {
            let of_matrices = scope.spawn(|| MatrixMeasures::of(&self.basis, &matrices, p));
            self.evaluate_outputs(model, || of_matrices.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
        })
    }

    /// [`Evaluator::evaluate`] from the model's outputs over all p² inputs
    /// and `matrix()`, the measures of W_E and W_L, asked for last.
    fn evaluate_outputs(&self, model: &Transformer<B>, matrix: impl FnOnce() -> MatrixMeasures) -> Evaluation {
        let p = self.modulus();
        let output = model.forward(&self.inputs);
        let [_, inputs, d_mlp] = output.mlp_post.dims();
        let power = activation_power(&self.basis_tensor, output.mlp_post.reshape([inputs, d_mlp]));
        let all = AllInputs { stride: output.logits.dims()[2], logits: host(output.logits) };
        let neurons = neuron_frequencies(&power, p, d_mlp);
        let (keys, key_neuron_fraction) = key_frequencies(&neurons, KEY_FVE_THRESHOLD);
        let mut key_neuron_counts = vec![0usize; self.basis.frequency_count() + 1];
        for neuron in neurons.iter().filter(|neuron| neuron.fve > KEY_FVE_THRESHOLD) {
            key_neuron_counts[neuron.frequency] += 1;
        }
        let mut collapse = CollapseCounter::default();
        for &(a, b) in &self.train {
            let start = (a * p + b) * all.stride;
            collapse.add(&all.logits[start..start + p], (a + b) % p);
        }
        let (softmax_collapse, zero_loss_fraction) = collapse.fractions();
        let squared = model.squared_norms(0);
        let matrix = matrix();
        Evaluation {
            train: self.loss_over(&all, &self.train),
            test: self.loss_over(&all, &self.test),
            sum_squared_weights: squared.total(),
            restricted_excluded: self.restricted_excluded(&all, &keys),
            gini_w_e: gini(&matrix.w_e),
            gini_w_l: gini(&matrix.w_l),
            key_frequencies: keys,
            key_neuron_fraction,
            spectrum_w_e: FourierBasis::frequency_norms(&matrix.w_e),
            spectrum_w_l: FourierBasis::frequency_norms(&matrix.w_l),
            key_neuron_counts,
            weight_norms: squared.matrix_norms(),
            effective_rank_w_e: matrix.effective_rank_w_e,
            effective_rank_w_l: matrix.effective_rank_w_l,
            softmax_collapse,
            zero_loss_fraction,
        }
    }

    /// Restricted and excluded loss of `model` for a given set of key frequencies
    /// (the re-computation with the final model's K over saved checkpoints).
    pub fn restricted_excluded_with(&self, model: &Transformer<B>, keys: &[usize]) -> RestrictedExcluded {
        let logits = model.forward(&self.inputs).logits;
        let all = AllInputs { stride: logits.dims()[2], logits: host(logits) };
        self.restricted_excluded(&all, keys)
    }

    fn loss_over(&self, all: &AllInputs, pairs: &[(usize, usize)]) -> LossAccuracy {
        let p = self.modulus();
        let mut accumulator = LossAccumulator::new(self.loss);
        let mut row = vec![0.0; p];
        for &(a, b) in pairs {
            let start = (a * p + b) * all.stride;
            for (target, &value) in row.iter_mut().zip(&all.logits[start..start + p]) {
                *target = value as f64;
            }
            accumulator.add(&row, (a + b) % p);
        }
        accumulator.finish()
    }

    fn restricted_excluded(&self, all: &AllInputs, keys: &[usize]) -> RestrictedExcluded {
        let p = self.modulus();
        let projection = FrequencyProjection::new(&self.basis, &all.logits, all.stride, keys);
        let (mut restricted, mut excluded) = (LossAccumulator::new(self.loss), LossAccumulator::new(self.loss));
        for &(a, b) in &self.train {
            let start = (a * p + b) * all.stride;
            restricted.add(&projection.restricted(a, b), (a + b) % p);
            excluded.add(&projection.excluded(a, b, &all.logits[start..start + all.stride]), (a + b) % p);
        }
        RestrictedExcluded { restricted: restricted.finish().loss, excluded: excluded.finish().loss }
    }

    /// W_E's number rows and W_L = W_U[:, :p]ᵀ W_out, on the host.
    fn number_matrices(&self, model: &Transformer<B>) -> NumberMatrices {
        let p = self.modulus();
        let [_, _, d_model] = model.embed.dims();
        let [_, d_mlp, _] = model.w_out.dims();
        let embed: Vec<f64> = host(model.embed.val().narrow(1, 0, p)).into_iter().map(f64::from).collect();
        let unembed = host(model.unembed.val()); // [d_model, d_vocab]
        let w_out = host(model.w_out.val()); // [d_mlp, d_model]
        let d_vocab = unembed.len() / d_model;
        let mut w_l = vec![0.0f64; p * d_mlp];
        for c in 0..p {
            for neuron in 0..d_mlp {
                let out_row = &w_out[neuron * d_model..(neuron + 1) * d_model];
                w_l[c * d_mlp + neuron] = (0..d_model).map(|m| unembed[m * d_vocab + c] as f64 * out_row[m] as f64).sum();
            }
        }
        NumberMatrices { w_e: embed, w_l, d_model, d_mlp }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestBackend;
    use crate::transformer::model::TransformerConfig;
    use burn::module::Param;
    use burn::tensor::TensorData;
    use std::f64::consts::PI;

    use crate::fourier::tests::P;

    fn evaluator(fraction: f64) -> Evaluator<TestBackend> {
        Evaluator::new(&Split::new(P as u32, fraction, 4), P as u32, LossKind::Softmax, &Default::default())
    }

    #[test]
    fn a_random_model_is_near_chance_and_its_measures_are_in_range() {
        let model: Transformer<TestBackend> =
            TransformerConfig::new(P).with_d_model(16).with_n_heads(2).with_d_mlp(32).with_seed(1).init(&Default::default());
        let evaluation = evaluator(0.5).evaluate(&model);
        let ln_p = (P as f64).ln();
        for loss in [evaluation.train.loss, evaluation.test.loss] {
            assert!((loss - ln_p).abs() < 1.0, "loss {loss} of a random model should be near ln p = {ln_p}");
        }
        for gini in [evaluation.gini_w_e, evaluation.gini_w_l] {
            assert!((0.0..0.6).contains(&gini), "a random matrix has spread-out Fourier norms: gini {gini}");
        }
        assert_eq!(evaluation.spectrum_w_e.len(), P / 2 + 1);
        assert_eq!(evaluation.key_neuron_counts.iter().sum::<usize>() as f64 / 32.0, evaluation.key_neuron_fraction);
        let measures = evaluation.measures();
        assert_eq!(measures.len(), 24 + 3);
        let squares: f64 = evaluation.weight_norms.iter().map(|norm| norm * norm).sum();
        // The biases start at zero, so the nine matrices' squared norms are all of Σθ².
        assert!((model.sum_squared_weights(0) - squares).abs() < 1e-9 * squares, "{squares} vs {}", model.sum_squared_weights(0));
        assert_eq!(evaluation.softmax_collapse, 0.0, "a random model is far from collapse");
        assert!(evaluation.effective_rank_w_e > 0.5 * P as f64, "a random W_E has a spread spectrum: {}", evaluation.effective_rank_w_e);
        assert!(measures.iter().all(|measure| match &measure.value {
            sweep_core::MeasureValue::Scalar(value) => value.is_finite(),
            sweep_core::MeasureValue::Spectrum(values) => values.len() == P / 2 + 1 && values.iter().all(|v| v.is_finite()),
            sweep_core::MeasureValue::Curve(_) => false,
        }));
    }

    #[test]
    /// Logits exactly Σ_k α_k cos(w_k(a + b − c)) over a chosen K.
    fn restricted_and_excluded_loss_of_a_pure_fourier_logit_table() {
        let evaluator = evaluator(0.4);
        let keys = [(2usize, 6.0f64), (4, 5.0)];
        let stride = P + 1;
        let logits = crate::fourier::tests::fourier_logits(&keys);
        let all = AllInputs { logits, stride };
        let full = evaluator.loss_over(&all, &evaluator.train);
        let key_set: Vec<usize> = keys.iter().map(|k| k.0).collect();
        let measured = evaluator.restricted_excluded(&all, &key_set);
        assert!((measured.restricted - full.loss).abs() < 1e-5, "restricted {} vs full {}", measured.restricted, full.loss);
        assert!(measured.excluded >= (P as f64).ln() - 1e-5, "excluded {} should be ln p", measured.excluded);
        // With the wrong key set, restricting loses everything and excluding loses nothing.
        let wrong = evaluator.restricted_excluded(&all, &[1, 3]);
        assert!((wrong.restricted - (P as f64).ln()).abs() < 1e-5);
        assert!((wrong.excluded - full.loss).abs() < 1e-5);
    }

    #[test]
    fn key_frequencies_of_a_model_whose_neurons_are_set_by_hand() {
        // A model whose MLP pre-activations are cos(w_k a) + cos(w_k b) + 2 for
        // neuron groups of frequency 3 and 5 (so ReLU never clips them):
        // W_E carries cos(w_k t) in coordinate k's slot, attention is switched
        // off except for a uniform average over [a, b, =] (W_Q = W_K = 0), and
        // W_V = identity; the last position then holds (e_a + e_b + e_=)/3.
        let device = Default::default();
        let (d_model, d_mlp) = (4, 6);
        let mut model: Transformer<TestBackend> =
            TransformerConfig::new(P).with_d_model(d_model).with_n_heads(1).with_d_mlp(d_mlp).init(&device);
        let frequencies = [3usize, 5];
        let mut embed = vec![0f32; (P + 1) * d_model];
        for t in 0..P {
            for (slot, &k) in frequencies.iter().enumerate() {
                embed[t * d_model + slot] = (2.0 * PI * (k * t % P) as f64 / P as f64).cos() as f32;
            }
        }
        let zeros = |rows: usize, columns: usize| Param::from_tensor(Tensor::<TestBackend, 3>::zeros([1, rows, columns], &device));
        let identity = |n: usize| {
            let values: Vec<f32> = (0..n * n).map(|i| if i / n == i % n { 1.0 } else { 0.0 }).collect();
            Param::from_tensor(Tensor::<TestBackend, 3>::from_data(TensorData::new(values, [1, n, n]), &device))
        };
        model.embed = Param::from_tensor(Tensor::from_data(TensorData::new(embed, [1, P + 1, d_model]), &device));
        model.pos_embed = zeros(3, d_model);
        model.w_q = zeros(d_model, d_model);
        model.w_k = zeros(d_model, d_model);
        model.w_v = identity(d_model);
        model.w_o = identity(d_model);
        // The residual at the last position is e_= + (e_a + e_b + e_=)/3 with e_= = 0.
        // Neurons 0..3 read slot 0 (frequency 3), neurons 3..6 slot 1 (frequency 5), scaled.
        let mut w_in = vec![0f32; d_model * d_mlp];
        for neuron in 0..d_mlp {
            w_in[(neuron / 3) * d_mlp + neuron] = 1.0 + neuron as f32;
        }
        model.w_in = Param::from_tensor(Tensor::from_data(TensorData::new(w_in, [1, d_model, d_mlp]), &device));
        model.b_in = Param::from_tensor(Tensor::from_data(TensorData::new(vec![10f32; d_mlp], [1, d_mlp]), &device));
        let evaluation = evaluator(0.5).evaluate(&model);
        assert_eq!(evaluation.key_frequencies, vec![3, 5]);
        assert_eq!(evaluation.key_neuron_fraction, 1.0);
        assert_eq!(evaluation.key_neuron_counts[3], 3);
        assert_eq!(evaluation.key_neuron_counts[5], 3);
        // The embedding holds two pure frequencies: its Fourier norms sit on k = 3 and 5 only.
        let spectrum = &evaluation.spectrum_w_e;
        for (k, norm) in spectrum.iter().enumerate() {
            if frequencies.contains(&k) {
                assert!(*norm > 1.0, "k={k}: {norm}");
            } else {
                assert!(norm.abs() < 1e-5, "k={k}: {norm}");
            }
        }
        assert!(evaluation.gini_w_e > 0.7, "two of eleven components: gini {}", evaluation.gini_w_e);
    }
}
