//! Evaluation: loss and accuracy over the p classes, computed in f64 on the host.
//!
//! The logits come from the model in f32; the log-softmax over them is taken in
//! f64 with `ln_1p` around the arg-max, so losses far below 1e-7 (where f32
//! log-softmax stops) are resolved to f64's relative precision. A trial
//! trained with StableMax is measured with StableMax cross-entropy, taken the
//! same way: ln(1 + Σ_{i≠c} s(x_i) / s(x_c)).
//! The `=` logit is dropped: loss and accuracy are over the p number classes.

use sweep_core::LossKind;

/// Loss and accuracy of one side of the split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossAccuracy {
    /// Mean cross-entropy over the p classes (softmax or StableMax, the trial's loss).
    pub loss: f64,
    /// Fraction of pairs whose arg-max over the p classes is the label.
    pub accuracy: f64,
}

/// StableMax's s(x): x + 1 for x ≥ 0, 1 / (1 − x) for x < 0 (Prieto et al. 2025).
pub fn stablemax_s(x: f64) -> f64 {
    if x >= 0.0 { x + 1.0 } else { 1.0 / (1.0 - x) }
}

/// Running cross-entropy and accuracy over rows of f64 logits.
#[derive(Debug, Clone, Copy, Default)]
pub struct LossAccumulator {
    kind: LossKind,
    total_loss: f64,
    correct: usize,
    count: usize,
}

impl LossAccumulator {
    /// An empty accumulator of `kind` cross-entropy.
    pub fn new(kind: LossKind) -> Self {
        LossAccumulator { kind, ..LossAccumulator::default() }
    }

    /// Add one row of class logits (the `=` logit already dropped) with its label.
    pub fn add(&mut self, values: &[f64], label: usize) {
        let (mut best, mut best_index) = (f64::NEG_INFINITY, 0);
        for (index, &value) in values.iter().enumerate() {
            if value > best {
                best = value;
                best_index = index;
            }
        }
        self.total_loss += match self.kind {
            LossKind::Softmax => {
                // log Σ exp(v - best) = ln(1 + Σ_{i≠best} exp(v_i - best)), taken with
                // ln_1p so that a loss of 1e-17 does not round to 0.
                let rest: f64 =
                    values.iter().enumerate().filter(|(index, _)| *index != best_index).map(|(_, value)| (value - best).exp()).sum();
                -(values[label] - best - rest.ln_1p())
            }
            LossKind::Stablemax => {
                // −ln(s_c / Σ s) = ln(1 + Σ_{i≠c} s_i / s_c).
                let label_s = stablemax_s(values[label]);
                let rest: f64 = values.iter().enumerate().filter(|(index, _)| *index != label).map(|(_, &value)| stablemax_s(value)).sum();
                (rest / label_s).ln_1p()
            }
        };
        self.correct += usize::from(best_index == label);
        self.count += 1;
    }

    /// Mean loss and accuracy; NaN for no rows (a training fraction of 1 leaves no test pairs).
    pub fn finish(&self) -> LossAccuracy {
        if self.count == 0 {
            return LossAccuracy { loss: f64::NAN, accuracy: f64::NAN };
        }
        LossAccuracy { loss: self.total_loss / self.count as f64, accuracy: self.correct as f64 / self.count as f64 }
    }
}

/// Counts of float32 softmax collapse over rows of f32 logits (Prieto et al.
/// 2025): computed as a float32 softmax and log-softmax would be, with the
/// maximum subtracted first, so that the fractions are what f32 training sees.
#[derive(Debug, Clone, Copy, Default)]
pub struct CollapseCounter {
    probability_one: usize,
    zero_loss: usize,
    count: usize,
}

impl CollapseCounter {
    /// Add one row of class logits with its label.
    pub fn add(&mut self, values: &[f32], label: usize) {
        let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let shifted = values[label] - max;
        let total: f32 = values.iter().map(|value| (value - max).exp()).sum();
        let probability = shifted.exp() / total;
        let loss = total.ln() - shifted;
        self.probability_one += usize::from(probability == 1.0);
        self.zero_loss += usize::from(loss == 0.0);
        self.count += 1;
    }

    /// Fraction of rows whose label probability is exactly 1, and whose loss is exactly 0; NaN for no rows.
    pub fn fractions(&self) -> (f64, f64) {
        if self.count == 0 {
            return (f64::NAN, f64::NAN);
        }
        let count = self.count as f64;
        (self.probability_one as f64 / count, self.zero_loss as f64 / count)
    }
}

/// Cross-entropy and accuracy of row-major `logits` ([n, stride], first `classes`
/// columns used) against `labels`, in f64.
pub fn loss_and_accuracy(logits: &[f32], stride: usize, classes: usize, labels: &[usize], kind: LossKind) -> LossAccuracy {
    let mut accumulator = LossAccumulator::new(kind);
    let mut row = vec![0.0; classes];
    for (index, &label) in labels.iter().enumerate() {
        for (target, &value) in row.iter_mut().zip(&logits[index * stride..index * stride + classes]) {
            *target = value as f64;
        }
        accumulator.add(&row, label);
    }
    accumulator.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_collapses_in_f32_once_the_other_classes_fall_below_half_an_ulp_of_one() {
        // Four other classes at a gap g: Σ exp = 1 + 4e^{-g}, which rounds to 1 in f32
        // once 4e^{-g} < 2^-24 (g > ln 4 + 24 ln 2 ≈ 18.0): probability 1 and loss 0.
        let row = |gap: f32| [gap, 0.0, 0.0, 0.0, 0.0];
        let fractions = |rows: &[[f32; 5]]| {
            let mut counter = CollapseCounter::default();
            for row in rows {
                counter.add(row, 0);
            }
            counter.fractions()
        };
        assert_eq!(fractions(&[row(20.0)]), (1.0, 1.0));
        assert_eq!(fractions(&[row(16.0)]), (0.0, 0.0));
        assert_eq!(fractions(&[row(20.0), row(16.0), row(30.0), row(1.0)]), (0.5, 0.5));
        // A wrong prediction never collapses onto the label.
        let mut counter = CollapseCounter::default();
        counter.add(&[0.0, 40.0, 0.0], 0);
        assert_eq!(counter.fractions(), (0.0, 0.0));
        assert!(CollapseCounter::default().fractions().0.is_nan());
    }

    #[test]
    fn uniform_logits_give_ln_p_and_chance_accuracy() {
        let classes = 5;
        let logits = vec![0.0f32; 3 * (classes + 1)];
        let result = loss_and_accuracy(&logits, classes + 1, classes, &[0, 1, 2], LossKind::Softmax);
        assert!((result.loss - (classes as f64).ln()).abs() < 1e-12);
        assert!((result.accuracy - 1.0 / 3.0).abs() < 1e-12); // ties resolve to class 0
    }

    #[test]
    fn confident_logits_resolve_tiny_losses_in_f64() {
        // Margin 40 between the label and 4 others: loss = ln(1 + 4e-40·...) ≈ 4·e^-40 ≈ 1.7e-17.
        let mut logits = vec![0.0f32; 6];
        logits[2] = 40.0;
        logits[5] = 1000.0; // the `=` logit is ignored
        let result = loss_and_accuracy(&logits, 6, 5, &[2], LossKind::Softmax);
        let expected = (4.0 * (-40.0f64).exp()).ln_1p(); // ≈ 1.7e-17
        assert!((result.loss / expected - 1.0).abs() < 1e-12, "{} vs {expected}", result.loss);
        assert!(result.loss > 0.0);
        assert_eq!(result.accuracy, 1.0);
    }

    #[test]
    fn stablemax_cross_entropy_follows_its_formula() {
        // Logits [1, 0, -1], label 0: s = [2, 1, 1/2], loss = −ln(2 / 3.5).
        let result = loss_and_accuracy(&[1.0, 0.0, -1.0], 3, 3, &[0], LossKind::Stablemax);
        assert!((result.loss - (3.5f64 / 2.0).ln()).abs() < 1e-15, "{}", result.loss);
        // Label 2 (a wrong prediction): −ln(0.5 / 3.5).
        let wrong = loss_and_accuracy(&[1.0, 0.0, -1.0], 3, 3, &[2], LossKind::Stablemax);
        assert!((wrong.loss - 7f64.ln()).abs() < 1e-15 && wrong.accuracy == 0.0);
        // Uniform logits: both losses are ln p; elsewhere they differ.
        let uniform = [0.25f32; 5];
        for kind in [LossKind::Softmax, LossKind::Stablemax] {
            assert!((loss_and_accuracy(&uniform, 5, 5, &[3], kind).loss - 5f64.ln()).abs() < 1e-12);
        }
        let softmax = loss_and_accuracy(&[1.0, 0.0], 2, 2, &[0], LossKind::Softmax).loss;
        let stablemax = loss_and_accuracy(&[1.0, 0.0], 2, 2, &[0], LossKind::Stablemax).loss;
        assert!((softmax - (-1f64).exp().ln_1p()).abs() < 1e-15 && (stablemax - 1.5f64.ln()).abs() < 1e-15);
        assert!((softmax - stablemax).abs() > 0.05, "{softmax} vs {stablemax}");
        // A confident margin still resolves a tiny loss: s = 1e8 + 1 against 4 × 1: ln(1 + 4 / (1e8 + 1)).
        let tiny = loss_and_accuracy(&[1e8, 0.0, 0.0, 0.0, 0.0], 5, 5, &[0], LossKind::Stablemax).loss;
        assert!((tiny / (4.0f64 / (1e8 + 1.0)).ln_1p() - 1.0).abs() < 1e-12 && tiny > 0.0);
    }
}
