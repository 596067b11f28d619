//! What both training loops track across evaluations: the first step at
//! which a trial counts as grokked, and the early-stop rule.

use sweep_core::StopRule;
use sweep_core::measures::GROKKED_ACCURACY;

/// Follows the test accuracy of successive evaluations.
#[derive(Debug, Clone, Default)]
pub(crate) struct StopTracker {
    grokked_at: Option<i64>,
    streak: u32,
}

impl StopTracker {
    /// Record the test accuracy evaluated at `step`; true when the early-stop
    /// rule is met (the target held for `patience` consecutive evaluations).
    pub(crate) fn observe(&mut self, step: i64, test_accuracy: f64, stop: &StopRule) -> bool {
        if self.grokked_at.is_none() && test_accuracy >= GROKKED_ACCURACY {
            self.grokked_at = Some(step);
        }
        let reached_target = stop.target_test_accuracy.is_some_and(|target| test_accuracy >= target);
        self.streak = if reached_target { self.streak + 1 } else { 0 };
        self.streak >= stop.patience
    }

    /// First evaluated step with test accuracy ≥ [`GROKKED_ACCURACY`].
    pub(crate) fn grokked_at(&self) -> Option<i64> {
        self.grokked_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grokked_at_is_the_first_crossing_and_the_streak_resets() {
        let stop = StopRule { max_epochs: 100, target_test_accuracy: Some(0.99), patience: 2 };
        let mut tracker = StopTracker::default();
        assert!(!tracker.observe(0, 0.1, &stop));
        assert!(!tracker.observe(10, 0.96, &stop));
        assert!(!tracker.observe(20, 0.995, &stop));
        assert!(!tracker.observe(30, 0.5, &stop), "a dip resets the streak");
        assert!(!tracker.observe(40, 0.99, &stop));
        assert!(tracker.observe(50, 1.0, &stop));
        assert_eq!(tracker.grokked_at(), Some(10));
        let no_target = StopRule { target_test_accuracy: None, ..stop };
        assert!(!StopTracker::default().observe(0, 1.0, &no_target));
    }
}
