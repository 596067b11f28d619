//! Evaluation: loss and accuracy over the p classes, computed in f64 on the host.
//!
//! The logits come from the model in f32; the log-softmax over them is taken in
//! f64 with `ln_1p` around the arg-max, so losses far below 1e-7 (where f32
//! log-softmax stops) are resolved to f64's relative precision.
//! The `=` logit is dropped: loss and accuracy are over the p number classes.

/// Loss and accuracy of one side of the split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossAccuracy {
    /// Mean cross-entropy over the p classes.
    pub loss: f64,
    /// Fraction of pairs whose arg-max over the p classes is the label.
    pub accuracy: f64,
}

/// Running cross-entropy and accuracy over rows of f64 logits.
#[derive(Debug, Clone, Copy, Default)]
pub struct LossAccumulator {
    total_loss: f64,
    correct: usize,
    count: usize,
}

impl LossAccumulator {
    /// Add one row of class logits (the `=` logit already dropped) with its label.
    pub fn add(&mut self, values: &[f64], label: usize) {
        let (mut best, mut best_index) = (f64::NEG_INFINITY, 0);
        for (index, &value) in values.iter().enumerate() {
            if value > best {
                best = value;
                best_index = index;
            }
        }
        // log Σ exp(v - best) = ln(1 + Σ_{i≠best} exp(v_i - best)), taken with
        // ln_1p so that a loss of 1e-17 does not round to 0.
        let rest: f64 = values.iter().enumerate().filter(|(index, _)| *index != best_index).map(|(_, value)| (value - best).exp()).sum();
        self.total_loss -= values[label] - best - rest.ln_1p();
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

/// Cross-entropy and accuracy of row-major `logits` ([n, stride], first `classes`
/// columns used) against `labels`, in f64.
pub fn loss_and_accuracy(logits: &[f32], stride: usize, classes: usize, labels: &[usize]) -> LossAccuracy {
    let mut accumulator = LossAccumulator::default();
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
    fn uniform_logits_give_ln_p_and_chance_accuracy() {
        let classes = 5;
        let logits = vec![0.0f32; 3 * (classes + 1)];
        let result = loss_and_accuracy(&logits, classes + 1, classes, &[0, 1, 2]);
        assert!((result.loss - (classes as f64).ln()).abs() < 1e-12);
        assert!((result.accuracy - 1.0 / 3.0).abs() < 1e-12); // ties resolve to class 0
    }

    #[test]
    fn confident_logits_resolve_tiny_losses_in_f64() {
        // Margin 40 between the label and 4 others: loss = ln(1 + 4e-40·...) ≈ 4·e^-40 ≈ 1.7e-17.
        let mut logits = vec![0.0f32; 6];
        logits[2] = 40.0;
        logits[5] = 1000.0; // the `=` logit is ignored
        let result = loss_and_accuracy(&logits, 6, 5, &[2]);
        let expected = (4.0 * (-40.0f64).exp()).ln_1p(); // ≈ 1.7e-17
        assert!((result.loss / expected - 1.0).abs() < 1e-12, "{} vs {expected}", result.loss);
        assert!(result.loss > 0.0);
        assert_eq!(result.accuracy, 1.0);
    }
}
