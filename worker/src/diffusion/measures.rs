//! Every progress measure of a diffusion trial at one step.
//!
//! - flow-matching loss (MSE of x̂0) on the training and test pairs, with
//!   images, times and noise drawn from a fixed evaluation seed;
//! - generation accuracy: every pair sampled with fixed noise (Euler, t = 1 → 0)
//!   and the final image judged;
//! - the decision curve: along those same trajectories, the accuracy of the
//!   class of x̂0 at `decision_points` evenly spaced sampler steps, and the
//!   critical timestep derived from it;
//! - the operand-switch intervention: sampling starts with (a, b) and
//!   continues from time t_s with another training pair (a′, b′) of a
//!   different sum; does the sample end on the new sum or the old one?
//! - Fourier structure: the 2D DFT over (a, b) of the block's FFN
//!   pre-activations (averaged over patch tokens) at `fourier_t` with one fixed
//!   noise image and the prototypes as operands and target: per-neuron best
//!   frequency and FVE (the transformer family's definition), key
//!   frequencies, spectral entropy; and the Fourier norms over the P classes of
//!   the operand representations, with their Gini coefficient.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rayon::prelude::*;
use sweep_core::measures::{
    self as names, CRITICAL_TIMESTEP_TEST, CRITICAL_TIMESTEP_TRAIN, GINI_OPERAND, KEY_FREQUENCY_COUNT, KEY_FVE_THRESHOLD,
    KEY_NEURON_FRACTION, MODE_SHIFT_FRACTION, PairSet, SPECTRAL_ENTROPY, SUM_SQUARED_WEIGHTS, SpectrumMatrix, TEST_ACCURACY, TEST_LOSS,
    TRAIN_ACCURACY, TRAIN_LOSS,
};
use sweep_core::split::SplitMix64;
use sweep_core::{CurvePoint, DiffusionSettings, Measure, OperandInput, Split};

use super::data::{Batch, ImageBank};
use super::flow::euler_sample;
use super::judge::Judge;
use super::model::{Dit, OperandOne, Operands, time_features};
use crate::fourier::{FourierBasis, activation_power, basis_tensor, gini, key_frequencies, neuron_frequencies};
use crate::host;

/// Rows per forward pass during evaluation (bounds memory for large P).
const CHUNK: usize = 1024;
/// Training pairs used by the operand-switch intervention.
const SWITCH_PAIRS: usize = 64;
/// Final accuracy below which no critical timestep is reported.
const CRITICAL_MIN_ACCURACY: f64 = 0.5;

/// The measures of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Flow-matching loss on the training pairs.
    pub train_loss: f64,
    /// Flow-matching loss on the test pairs.
    pub test_loss: f64,
    /// Generation accuracy on the training pairs.
    pub train_accuracy: f64,
    /// Generation accuracy on the test pairs.
    pub test_accuracy: f64,
    /// Σθ².
    pub sum_squared_weights: f64,
    /// (t, accuracy of x̂0's class) on the training pairs, t descending, ending with t = 0 (the sample).
    pub decision_train: Vec<(f64, f64)>,
    /// The same on the test pairs.
    pub decision_test: Vec<(f64, f64)>,
    /// Critical timestep on the training pairs.
    pub critical_train: Option<f64>,
    /// Critical timestep on the test pairs.
    pub critical_test: Option<f64>,
    /// Test samples whose first x̂0 is judged wrong and whose sample is right.
    pub mode_shift_fraction: f64,
    /// (switch time, follows new sum, follows old sum).
    pub switches: Vec<(f64, f64, f64)>,
    /// Frequencies owned by at least one FFN neuron with FVE above the threshold.
    pub key_frequencies: Vec<usize>,
    /// Fraction of FFN neurons above the threshold.
    pub key_neuron_fraction: f64,
    /// Key neurons per frequency 0..=(P−1)/2.
    pub key_neuron_counts: Vec<usize>,
    /// Gini of the operand representations' Fourier-component norms.
    pub gini_operand: f64,
    /// Operand representations' norm per frequency 0..=(P−1)/2.
    pub operand_spectrum: Vec<f64>,
    /// Entropy (nats) of the pre-activations' 2D power spectrum.
    pub spectral_entropy: f64,
}

impl Evaluation {
    /// The measures, typed: scalars, the decision curves and the
    /// operand-switch results as curves over t, and the spectra.
    pub fn measures(&self) -> Vec<Measure> {
        let mut measures: Vec<Measure> = [
            (TRAIN_LOSS, self.train_loss),
            (TEST_LOSS, self.test_loss),
            (TRAIN_ACCURACY, self.train_accuracy),
            (TEST_ACCURACY, self.test_accuracy),
            (SUM_SQUARED_WEIGHTS, self.sum_squared_weights),
            (MODE_SHIFT_FRACTION, self.mode_shift_fraction),
            (KEY_FREQUENCY_COUNT, self.key_frequencies.len() as f64),
            (KEY_NEURON_FRACTION, self.key_neuron_fraction),
            (GINI_OPERAND, self.gini_operand),
            (SPECTRAL_ENTROPY, self.spectral_entropy),
        ]
        .into_iter()
        .map(|(name, value)| Measure::scalar(name, value))
        .collect();
        measures.extend(self.critical_train.map(|t| Measure::scalar(CRITICAL_TIMESTEP_TRAIN, t)));
        measures.extend(self.critical_test.map(|t| Measure::scalar(CRITICAL_TIMESTEP_TEST, t)));
        let points = |curve: &[(f64, f64)]| curve.iter().map(|&(t, value)| CurvePoint { t, value }).collect::<Vec<_>>();
        for (set, curve) in [(PairSet::Train, &self.decision_train), (PairSet::Test, &self.decision_test)] {
            if !curve.is_empty() {
                measures.push(Measure::curve(names::decision_curve(set), points(curve)));
            }
        }
        if !self.switches.is_empty() {
            let follows_new: Vec<(f64, f64)> = self.switches.iter().map(|&(t, new, _)| (t, new)).collect();
            let follows_old: Vec<(f64, f64)> = self.switches.iter().map(|&(t, _, old)| (t, old)).collect();
            measures.push(Measure::curve(names::SWITCH_FOLLOWS_NEW, points(&follows_new)));
            measures.push(Measure::curve(names::SWITCH_FOLLOWS_OLD, points(&follows_old)));
        }
        let counts: Vec<f64> = self.key_neuron_counts.iter().map(|&count| count as f64).collect();
        if !counts.is_empty() {
            measures.push(Measure::spectrum(SpectrumMatrix::KeyNeurons.as_str(), counts));
        }
        if !self.operand_spectrum.is_empty() {
            measures.push(Measure::spectrum(SpectrumMatrix::Operand.as_str(), self.operand_spectrum.clone()));
        }
        measures
    }
}

/// The critical timestep of a decision curve (t descending, last point t = 0
/// holding the final accuracy): the largest t from which every later point is
/// within `tolerance` of the final accuracy. `None` when the final accuracy
/// is below 0.5 (nothing has been decided) or the curve is empty.
pub fn critical_timestep(curve: &[(f64, f64)], tolerance: f64) -> Option<f64> {
    let &(_, last) = curve.last()?;
    if last < CRITICAL_MIN_ACCURACY {
        return None;
    }
    let mut critical = curve.last()?.0;
    for &(t, accuracy) in curve.iter().rev() {
        if (accuracy - last).abs() > tolerance {
            break;
        }
        critical = t;
    }
    Some(critical)
}

/// Shannon entropy (nats) of the power over all (ka, kb) but (0, 0), summed over neurons.
pub fn spectral_entropy(power: &[f32], modulus: usize, neurons: usize) -> f64 {
    let per_component: Vec<f64> = power.chunks_exact(neurons).skip(1).map(|row| row.iter().map(|&v| v as f64).sum()).collect();
    debug_assert_eq!(per_component.len(), modulus * modulus - 1);
    let total: f64 = per_component.iter().sum();
    if total <= f64::MIN_POSITIVE {
        return 0.0;
    }
    per_component.iter().filter(|&&v| v > 0.0).map(|&v| -(v / total) * (v / total).ln()).sum()
}

/// Relative variance below which a neuron counts as not varying with (a, b).
const CONSTANT_RELATIVE_VARIANCE: f64 = 1e-9;

/// Neurons whose activation over the rows (`[rows, neurons]`, row-major) does
/// not vary: variance below 1e-9 of the mean square. Their centred values are
/// rounding noise (at initialisation adaLN-Zero closes the gates, so the
/// patch tokens do not see the operands at all), so they own no frequency.
pub fn constant_neurons(activations: &[f32], neurons: usize) -> Vec<bool> {
    let rows = (activations.len() / neurons) as f64;
    (0..neurons)
        .map(|neuron| {
            let values = activations.iter().skip(neuron).step_by(neurons).map(|&v| v as f64);
            let (sum, sum_sq) = values.fold((0.0, 0.0), |(s, q), v| (s + v, q + v * v));
            let mean = sum / rows;
            let variance = (sum_sq / rows - mean * mean).max(0.0);
            variance <= CONSTANT_RELATIVE_VARIANCE * (sum_sq / rows) || sum_sq == 0.0
        })
        .collect()
}

/// Generated classes of one sampling run.
struct Generation {
    /// Judged class of each final sample.
    finals: Vec<Option<usize>>,
    /// (t, judged class of x̂0 per sample) at the decision points.
    decisions: Vec<(f64, Vec<Option<usize>>)>,
}

/// Measures a trial's model at its eval steps.
#[derive(Debug)]
pub struct Evaluator<B: Backend> {
    settings: DiffusionSettings,
    bank: ImageBank,
    train: Vec<(usize, usize)>,
    test: Vec<(usize, usize)>,
    /// (pair, pair with a different sum to switch to).
    switches: Vec<((usize, usize), (usize, usize))>,
    judge: Judge<B>,
    basis: Option<FourierBasis>,
    basis_tensor: Option<Tensor<B, 2>>,
    seed: u64,
    device: B::Device,
}

fn accuracy(classes: &[Option<usize>], targets: &[usize]) -> f64 {
    if targets.is_empty() {
        return 0.0;
    }
    classes.iter().zip(targets).filter(|(class, target)| **class == Some(**target)).count() as f64 / targets.len() as f64
}

impl<B: Backend> Evaluator<B> {
    /// Prepare the measures of a trial. `seed` fixes the evaluation noise and image draws.
    pub fn new(settings: &DiffusionSettings, bank: ImageBank, split: &Split, judge: Judge<B>, seed: u64, device: &B::Device) -> Self {
        let index = |pairs: &[(u32, u32)]| pairs.iter().map(|&(a, b)| (a as usize, b as usize)).collect::<Vec<_>>();
        let (train, test) = (index(&split.train), index(&split.test));
        let p = bank.classes();
        let mut switches = Vec::new();
        for (position, &pair) in train.iter().take(SWITCH_PAIRS).enumerate() {
            let sum = (pair.0 + pair.1) % p;
            let other =
                (1..train.len()).map(|offset| train[(position + offset) % train.len()]).find(|other| (other.0 + other.1) % p != sum);
            switches.extend(other.map(|other| (pair, other)));
        }
        // The Fourier basis pairs frequencies of odd moduli (the spec allows only those).
        let basis = (p % 2 == 1 && p >= 3).then(|| FourierBasis::new(p));
        let basis_tensor = basis.as_ref().map(|basis| basis_tensor(basis, device));
        Evaluator { settings: settings.clone(), bank, train, test, switches, judge, basis, basis_tensor, seed, device: device.clone() }
    }

    fn targets(&self, pairs: &[(usize, usize)]) -> Vec<usize> {
        pairs.iter().map(|&(a, b)| (a + b) % self.bank.classes()).collect()
    }

    /// Mean flow-matching loss over `pairs` with a fixed draw.
    fn flow_loss(&self, model: &Dit<B>, pairs: &[(usize, usize)], salt: u64) -> f64 {
        if pairs.is_empty() {
            return 0.0;
        }
        let mut rng = SplitMix64::new(self.seed ^ salt);
        let mut total = 0.0;
        for chunk in pairs.chunks(CHUNK) {
            let batch = Batch::<B>::draw(&self.bank, chunk, self.settings.operand_input, None, &mut rng, &self.device);
            let (x_t, time) = batch.noisy_input(&self.device);
            let x0_hat = model.forward(x_t, time, batch.operands).x0;
            let squared: f64 = host((x0_hat - batch.x0).powi_scalar(2).sum()).iter().map(|&v| v as f64).sum();
            total += squared;
        }
        total / (pairs.len() * self.bank.pixels()) as f64
    }

    /// Sample every pair (`samples_per_pair` times) with fixed noise; with a
    /// switch, the operands become `switch.1[i]` from sampler step `switch.0` on.
    fn generate(&self, model: &Dit<B>, pairs: &[(usize, usize)], switch: Option<(usize, &[(usize, usize)])>, salt: u64) -> Generation {
        let settings = &self.settings;
        let (steps, repeats) = (settings.sample_steps as usize, settings.samples_per_pair as usize);
        let every = (steps / settings.decision_points.max(1) as usize).max(1);
        let expanded: Vec<(usize, usize)> = pairs.iter().flat_map(|&pair| std::iter::repeat_n(pair, repeats)).collect();
        let switched: Option<Vec<(usize, usize)>> =
            switch.map(|(_, new)| new.iter().flat_map(|&pair| std::iter::repeat_n(pair, repeats)).collect());
        let mut rng = SplitMix64::new(self.seed ^ salt);
        let mut switch_rng = SplitMix64::new(self.seed ^ salt ^ 0x5357_4954_4348);
        let mut generation = Generation { finals: Vec::with_capacity(expanded.len()), decisions: Vec::new() };
        for (chunk_index, chunk) in expanded.chunks(CHUNK).enumerate() {
            let batch = Batch::<B>::draw(&self.bank, chunk, settings.operand_input, Some(1.0), &mut rng, &self.device);
            let new_operands = switched.as_ref().map(|new| {
                let new_chunk = &new[chunk_index * CHUNK..chunk_index * CHUNK + chunk.len()];
                Batch::<B>::draw(&self.bank, new_chunk, settings.operand_input, Some(1.0), &mut switch_rng, &self.device).operands
            });
            let mut decisions: Vec<(f64, Vec<Option<usize>>)> = Vec::new();
            let sample = euler_sample(batch.noise.clone(), steps, settings.t_min, |x_t, t, step| {
                let operands = match (&new_operands, switch) {
                    (Some(new), Some((from, _))) if step >= from => new.clone(),
                    _ => batch.operands.clone(),
                };
                let x0_hat = model.forward(x_t, time_features(&vec![t; chunk.len()], &self.device), operands).x0;
                if switch.is_none() && step % every == 0 {
                    decisions.push((t, self.judge.classify(x0_hat.clone())));
                }
                x0_hat
            });
            generation.finals.extend(self.judge.classify(sample.clamp(-1.0, 1.0)));
            if generation.decisions.is_empty() {
                generation.decisions = decisions;
            } else {
                for ((_, all), (_, more)) in generation.decisions.iter_mut().zip(decisions) {
                    all.extend(more);
                }
            }
        }
        generation
    }

    fn decision_curve(&self, generation: &Generation, targets: &[usize]) -> Vec<(f64, f64)> {
        let mut curve: Vec<(f64, f64)> = generation.decisions.iter().map(|(t, classes)| (*t, accuracy(classes, targets))).collect();
        curve.push((0.0, accuracy(&generation.finals, targets)));
        curve
    }

    /// FFN pre-activations over all P² pairs (rows in (a, b) order) at
    /// `fourier_t` with one noise image, prototypes as operands and targets.
    fn preactivations(&self, model: &Dit<B>) -> Tensor<B, 2> {
        let p = self.bank.classes();
        let pixels = self.bank.pixels();
        let t = self.settings.fourier_t;
        let noise = crate::random::normal_samples(&mut SplitMix64::new(self.seed ^ 0x464f_5552), pixels, 1.0);
        let pairs: Vec<(usize, usize)> = (0..p).flat_map(|a| (0..p).map(move |b| (a, b))).collect();
        let mut parts = Vec::new();
        for chunk in pairs.chunks(CHUNK) {
            let n = chunk.len();
            let rows = |values: Vec<f32>| Tensor::<B, 2>::from_data(TensorData::new(values, [n, pixels]), &self.device);
            let x_t: Vec<f32> = chunk
                .iter()
                .flat_map(|&(a, b)| {
                    self.bank
                        .image((a + b) % p, 0)
                        .iter()
                        .zip(&noise)
                        .map(|(x0, e)| ((1.0 - t) * *x0 as f64 + t * *e as f64) as f32)
                        .collect::<Vec<_>>()
                })
                .collect();
            let operands = match self.settings.operand_input {
                OperandInput::Image => Operands::Images(
                    rows(chunk.iter().flat_map(|&(a, _)| self.bank.image(a, 0).to_vec()).collect()),
                    rows(chunk.iter().flat_map(|&(_, b)| self.bank.image(b, 0).to_vec()).collect()),
                ),
                OperandInput::Token => {
                    let column = |values: Vec<i64>| Tensor::<B, 1, Int>::from_data(TensorData::new(values, [n]), &self.device);
                    Operands::Tokens(
                        column(chunk.iter().map(|pair| pair.0 as i64).collect()),
                        column(chunk.iter().map(|pair| pair.1 as i64).collect()),
                    )
                }
            };
            parts.push(model.forward(rows(x_t), time_features(&vec![t; n], &self.device), operands).ffn_pre);
        }
        Tensor::cat(parts, 0)
    }

    /// The operand representation of every class, [P, d_model], on the host.
    fn operand_representations(&self, model: &Dit<B>) -> (Vec<f64>, usize) {
        let p = self.bank.classes();
        let operand = match self.settings.operand_input {
            OperandInput::Image => {
                OperandOne::Image(Tensor::from_data(TensorData::new(self.bank.prototypes(), [p, self.bank.pixels()]), &self.device))
            }
            OperandInput::Token => {
                OperandOne::Token(Tensor::from_data(TensorData::new((0..p as i64).collect::<Vec<_>>(), [p]), &self.device))
            }
        };
        let representation = model.operand_representation(operand);
        let width = representation.dims()[1];
        (host(representation).into_iter().map(f64::from).collect(), width)
    }

    /// Every measure of `model` at this step.
    pub fn evaluate(&self, model: &Dit<B>) -> Evaluation {
        let (train_targets, test_targets) = (self.targets(&self.train), self.targets(&self.test));
        let old_pairs: Vec<(usize, usize)> = self.switches.iter().map(|switch| switch.0).collect();
        let new_pairs: Vec<(usize, usize)> = self.switches.iter().map(|switch| switch.1).collect();
        // The sampler runs (train, test, one per switch time) are independent,
        // each with its own fixed noise: side by side on rayon's threads.
        let steps = self.settings.sample_steps as usize;
        let ((train_generation, test_generation), switch_generations) = rayon::join(
            || {
                rayon::join(
                    || self.generate(model, &self.train, None, 0x0074_7261_696e),
                    || self.generate(model, &self.test, None, 0x7465_7374),
                )
            },
            || {
                self.settings
                    .switch_times
                    .par_iter()
                    .map(|&time| {
                        let from = (((1.0 - time) * steps as f64).round() as usize).clamp(1, steps.saturating_sub(1).max(1));
                        (time, self.generate(model, &old_pairs, Some((from, &new_pairs)), 0x7377_6974_6368))
                    })
                    .collect::<Vec<_>>()
            },
        );
        let repeat = |targets: &[usize]| {
            targets.iter().flat_map(|&c| std::iter::repeat_n(c, self.settings.samples_per_pair as usize)).collect::<Vec<_>>()
        };
        let (train_targets, test_targets) = (repeat(&train_targets), repeat(&test_targets));
        let decision_train = self.decision_curve(&train_generation, &train_targets);
        let decision_test = self.decision_curve(&test_generation, &test_targets);
        let first_wrong_then_right = test_generation
            .decisions
            .first()
            .map(|(_, first)| {
                first
                    .iter()
                    .zip(&test_generation.finals)
                    .zip(&test_targets)
                    .filter(|((first, last), target)| **first != Some(**target) && **last == Some(**target))
                    .count()
            })
            .unwrap_or(0);

        let (old_targets, new_targets) = (repeat(&self.targets(&old_pairs)), repeat(&self.targets(&new_pairs)));
        let switches: Vec<(f64, f64, f64)> = switch_generations
            .iter()
            .map(|(time, generation)| (*time, accuracy(&generation.finals, &new_targets), accuracy(&generation.finals, &old_targets)))
            .collect();

        let (key_frequencies, key_neuron_fraction, key_neuron_counts, spectral_entropy, gini_operand, operand_spectrum) =
            match (&self.basis, &self.basis_tensor) {
                (Some(basis), Some(basis_tensor)) => {
                    let p = basis.modulus();
                    let preactivations = self.preactivations(model);
                    let neurons = preactivations.dims()[1];
                    let constant = constant_neurons(&host(preactivations.clone()), neurons);
                    let power = activation_power(basis_tensor, preactivations);
                    let mut owners = neuron_frequencies(&power, p, neurons);
                    for (owner, _) in owners.iter_mut().zip(&constant).filter(|(_, constant)| **constant) {
                        owner.fve = 0.0;
                    }
                    let (keys, fraction) = key_frequencies(&owners, KEY_FVE_THRESHOLD);
                    let mut counts = vec![0usize; basis.frequency_count() + 1];
                    for owner in owners.iter().filter(|owner| owner.fve > KEY_FVE_THRESHOLD) {
                        counts[owner.frequency] += 1;
                    }
                    let (representations, width) = self.operand_representations(model);
                    let norms = basis.component_norms(&representations, width);
                    (keys, fraction, counts, spectral_entropy(&power, p, neurons), gini(&norms), FourierBasis::frequency_norms(&norms))
                }
                _ => (Vec::new(), 0.0, Vec::new(), 0.0, 0.0, Vec::new()),
            };

        Evaluation {
            train_loss: self.flow_loss(model, &self.train, 0x6c6f_7373_7472),
            test_loss: self.flow_loss(model, &self.test, 0x6c6f_7373_7465),
            train_accuracy: accuracy(&train_generation.finals, &train_targets),
            test_accuracy: accuracy(&test_generation.finals, &test_targets),
            sum_squared_weights: model.sum_squared_weights(0),
            critical_train: critical_timestep(&decision_train, self.settings.critical_tolerance),
            critical_test: critical_timestep(&decision_test, self.settings.critical_tolerance),
            decision_train,
            decision_test,
            mode_shift_fraction: if test_targets.is_empty() { 0.0 } else { first_wrong_then_right as f64 / test_targets.len() as f64 },
            switches,
            key_frequencies,
            key_neuron_fraction,
            key_neuron_counts,
            gini_operand,
            operand_spectrum,
            spectral_entropy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critical_timestep_is_where_the_curve_settles() {
        // Decided at t = 0.6: from there on within 0.05 of the final 0.9.
        let curve = [(1.0, 0.1), (0.8, 0.5), (0.6, 0.88), (0.4, 0.9), (0.2, 0.91), (0.0, 0.9)];
        assert_eq!(critical_timestep(&curve, 0.05), Some(0.6));
        // A dip after settling moves it later.
        let curve = [(1.0, 0.9), (0.8, 0.9), (0.6, 0.7), (0.4, 0.9), (0.0, 0.9)];
        assert_eq!(critical_timestep(&curve, 0.05), Some(0.4));
        // Decided from the start.
        assert_eq!(critical_timestep(&[(1.0, 1.0), (0.5, 1.0), (0.0, 1.0)], 0.0), Some(1.0));
        // Nothing decided.
        assert_eq!(critical_timestep(&[(1.0, 0.1), (0.0, 0.3)], 0.05), None);
        assert_eq!(critical_timestep(&[], 0.05), None);
    }

    #[test]
    fn composed_operand_waves_are_found_at_their_frequency() {
        use crate::backend::TestBackend;
        use std::f64::consts::TAU;
        let (p, device) = (11usize, Default::default());
        let w = |k: usize, x: usize| TAU * (k * x % p) as f64 / p as f64;
        // Neuron 0: cos(w3 a)cos(w3 b) − sin(w3 a)sin(w3 b) = cos(w3 (a + b)), the
        // composition the paper reports; neuron 1: cos(w2 a), operand a alone.
        let mut values = Vec::new();
        for a in 0..p {
            for b in 0..p {
                values.push((w(3, a).cos() * w(3, b).cos() - w(3, a).sin() * w(3, b).sin()) as f32);
                values.push(w(2, a).cos() as f32);
            }
        }
        let activations = Tensor::<TestBackend, 2>::from_data(TensorData::new(values, [p * p, 2]), &device);
        let power = activation_power(&basis_tensor(&FourierBasis::new(p), &device), activations);
        let owners = neuron_frequencies(&power, p, 2);
        assert_eq!((owners[0].frequency, owners[1].frequency), (3, 2));
        assert!(owners.iter().all(|owner| (owner.fve - 1.0).abs() < 1e-5), "{owners:?}");
        // Neuron 0's power splits evenly over two 2D components, neuron 1's sits
        // on one, with equal totals: shares (¼, ¼, ½), entropy 1.5·ln 2.
        assert!((spectral_entropy(&power, p, 2) - 1.5 * 2f64.ln()).abs() < 1e-5);
    }

    #[test]
    fn neurons_that_do_not_vary_with_the_operands_are_constant() {
        // Neuron 0 varies; neuron 1 is 3.0 plus rounding-size noise; neuron 2 is 0.
        let rows: Vec<f32> = (0..25).flat_map(|i| [(i as f32).sin(), 3.0 + if i % 2 == 0 { 1e-7 } else { 0.0 }, 0.0]).collect();
        assert_eq!(constant_neurons(&rows, 3), vec![false, true, true]);
    }

    #[test]
    fn spectral_entropy_of_known_spectra() {
        let (p, neurons) = (5, 2);
        // All power in one non-constant component: entropy 0.
        let mut power = vec![0f32; p * p * neurons];
        power[7 * neurons] = 3.0;
        power[7 * neurons + 1] = 1.0;
        power[0] = 100.0; // the constant term does not count
        assert!(spectral_entropy(&power, p, neurons).abs() < 1e-12);
        // Spread evenly over the p² − 1 non-constant components: ln(p² − 1).
        let flat = vec![1f32; p * p * neurons];
        assert!((spectral_entropy(&flat, p, neurons) - ((p * p - 1) as f64).ln()).abs() < 1e-9);
        // Two equal components: ln 2.
        let mut two = vec![0f32; p * p * neurons];
        two[3 * neurons] = 2.0;
        two[11 * neurons + 1] = 2.0;
        assert!((spectral_entropy(&two, p, neurons) - 2f64.ln()).abs() < 1e-9);
    }
}
