//! What a worker may report about one trial: every measure a family writes,
//! with its kind and range, and the checks the coordinator applies to a
//! batch of progress or to final metrics before anything is stored. The
//! context-free checks (names present, no duplicates, curve times in
//! [0, 1]) are [`StepMeasures::problem`]; these need the trial.
//!
//! Rules (the README's "What the coordinator accepts"):
//! - a measure must be one its family writes, of its kind;
//! - values are numbers, never NaN (a trial without test pairs, at data
//!   fraction 1, leaves its test-side measures out); +∞ only for losses (a
//!   diverged run);
//!   accuracies, fractions and curve values in [0, 1]; counts, norms, ranks,
//!   entropies and losses ≥ 0; critical timesteps in [0, 1];
//! - a spectrum has one value per frequency 0..=(p − 1)/2;
//! - steps are in 0..=max_epochs; wall times between 2020 and a day after
//!   the coordinator's clock.

use crate::lease::{FinalMetrics, Millis};
use crate::measures as names;
use crate::progress::{MeasureKind, MeasureValue, StepMeasures};
use crate::trial::Family;

/// What a measure's values may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// In [0, 1] (accuracies, fractions, timesteps).
    Unit,
    /// ≥ 0, or +∞ (losses).
    Loss,
    /// Finite and ≥ 0 (counts, norms, ranks, entropies, Gini coefficients).
    NonNegative,
}

/// One measure a family writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeasureRule {
    /// Its name.
    pub name: &'static str,
    /// Scalar, spectrum or curve.
    pub kind: MeasureKind,
    /// Its values' range.
    pub range: Range,
    /// Measured on the test pairs: left out of progress, and NaN in the
    /// final metrics, when the trial has none.
    pub test_side: bool,
}

const fn rule(name: &'static str, kind: MeasureKind, range: Range, test_side: bool) -> MeasureRule {
    MeasureRule { name, kind, range, test_side }
}

use MeasureKind::{Curve, Scalar, Spectrum};
use Range::{Loss, NonNegative, Unit};

const TRANSFORMER: &[MeasureRule] = &[
    rule(names::TRAIN_LOSS, Scalar, Loss, false),
    rule(names::TEST_LOSS, Scalar, Loss, true),
    rule(names::TRAIN_ACCURACY, Scalar, Unit, false),
    rule(names::TEST_ACCURACY, Scalar, Unit, true),
    rule(names::SUM_SQUARED_WEIGHTS, Scalar, NonNegative, false),
    rule(names::RESTRICTED_LOSS, Scalar, Loss, false),
    rule(names::EXCLUDED_LOSS, Scalar, Loss, false),
    rule(names::RESTRICTED_LOSS_FINAL_K, Scalar, Loss, false),
    rule(names::EXCLUDED_LOSS_FINAL_K, Scalar, Loss, false),
    rule(names::GINI_W_E, Scalar, NonNegative, false),
    rule(names::GINI_W_L, Scalar, NonNegative, false),
    rule(names::KEY_FREQUENCY_COUNT, Scalar, NonNegative, false),
    rule(names::KEY_NEURON_FRACTION, Scalar, Unit, false),
    rule(names::EFFECTIVE_RANK_W_E, Scalar, NonNegative, false),
    rule(names::EFFECTIVE_RANK_W_L, Scalar, NonNegative, false),
    rule(names::SOFTMAX_COLLAPSE, Scalar, Unit, false),
    rule(names::ZERO_LOSS_FRACTION, Scalar, Unit, false),
    rule(names::WEIGHT_NORMS[0], Scalar, NonNegative, false),
    rule(names::WEIGHT_NORMS[1], Scalar, NonNegative, false),
    rule(names::WEIGHT_NORMS[2], Scalar, NonNegative, false),
    rule(names::WEIGHT_NORMS[3], Scalar, NonNegative, false),
    rule(names::WEIGHT_NORMS[4], Scalar, NonNegative, false),
    rule(names::WEIGHT_NORMS[5], Scalar, NonNegative, false),
    rule(names::WEIGHT_NORMS[6], Scalar, NonNegative, false),
    rule(names::WEIGHT_NORMS[7], Scalar, NonNegative, false),
    rule(names::WEIGHT_NORMS[8], Scalar, NonNegative, false),
    rule("W_E", Spectrum, NonNegative, false),
    rule("W_L", Spectrum, NonNegative, false),
    rule("key_neurons", Spectrum, NonNegative, false),
];

const DIFFUSION: &[MeasureRule] = &[
    rule(names::TRAIN_LOSS, Scalar, Loss, false),
    rule(names::TEST_LOSS, Scalar, Loss, true),
    rule(names::TRAIN_ACCURACY, Scalar, Unit, false),
    rule(names::TEST_ACCURACY, Scalar, Unit, true),
    rule(names::SUM_SQUARED_WEIGHTS, Scalar, NonNegative, false),
    rule(names::MODE_SHIFT_FRACTION, Scalar, Unit, true),
    rule(names::KEY_FREQUENCY_COUNT, Scalar, NonNegative, false),
    rule(names::KEY_NEURON_FRACTION, Scalar, Unit, false),
    rule(names::GINI_OPERAND, Scalar, NonNegative, false),
    rule(names::SPECTRAL_ENTROPY, Scalar, NonNegative, false),
    rule(names::CRITICAL_TIMESTEP_TRAIN, Scalar, Unit, false),
    rule(names::CRITICAL_TIMESTEP_TEST, Scalar, Unit, true),
    rule(names::DECISION_ACCURACY_TRAIN, Curve, Unit, false),
    rule(names::DECISION_ACCURACY_TEST, Curve, Unit, true),
    rule(names::SWITCH_FOLLOWS_NEW, Curve, Unit, true),
    rule(names::SWITCH_FOLLOWS_OLD, Curve, Unit, true),
    rule("key_neurons", Spectrum, NonNegative, false),
    rule("operand", Spectrum, NonNegative, false),
];

/// Every measure `family` writes.
pub fn measure_rules(family: Family) -> &'static [MeasureRule] {
    match family {
        Family::Transformer => TRANSFORMER,
        Family::Diffusion => DIFFUSION,
    }
}

/// Whether `name` is a measure of `family` taken on the test pairs (left
/// out by a trial that has none).
pub fn is_test_side(family: Family, name: &str) -> bool {
    measure_rules(family).iter().any(|rule| rule.test_side && rule.name == name)
}

/// The earliest wall time accepted: 2020-01-01T00:00:00Z.
pub const EARLIEST_WALL_TIME_MS: Millis = 1_577_836_800_000;
/// How far ahead of the coordinator's clock a wall time may be (clock skew).
pub const WALL_TIME_AHEAD_MS: Millis = 24 * 3600 * 1000;

/// What the checks need to know about the trial a report is for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrialContext {
    /// Its family.
    pub family: Family,
    /// Its modulus p.
    pub modulus: u32,
    /// Its epoch limit.
    pub max_epochs: u32,
    /// Whether its split leaves any test pair.
    pub has_test_pairs: bool,
    /// The coordinator's clock now.
    pub now_ms: Millis,
}

/// A problem as (field, message).
pub type Problem = (&'static str, String);

impl TrialContext {
    fn value_problem(&self, rule: &MeasureRule, value: f64, what: &str) -> Option<Problem> {
        if value.is_nan() {
            let why = if rule.test_side && !self.has_test_pairs { " (the trial has no test pairs: leave it out)" } else { "" };
            return Some(("measure.value", format!("{what} is NaN{why}")));
        }
        let ok = match rule.range {
            Range::Unit => (0.0..=1.0).contains(&value),
            Range::Loss => value >= 0.0,
            Range::NonNegative => value.is_finite() && value >= 0.0,
        };
        let expected = match rule.range {
            Range::Unit => "in [0, 1]",
            Range::Loss => "≥ 0 (or +inf)",
            Range::NonNegative => "finite and ≥ 0",
        };
        (!ok).then(|| ("measure.value", format!("{what} is {value}, expected {expected}")))
    }

    fn step_problem(&self, step: i64, field: &'static str) -> Option<Problem> {
        (!(0..=i64::from(self.max_epochs)).contains(&step))
            .then(|| (field, format!("{step} is not in 0..={} (the trial's max_epochs)", self.max_epochs)))
    }

    /// The first problem with one step's measures of this trial.
    pub fn progress_problem(&self, step: &StepMeasures) -> Option<Problem> {
        if let Some(problem) = step.problem() {
            return Some(problem);
        }
        if let Some(problem) = self.step_problem(step.step, "step") {
            return Some(problem);
        }
        if !(EARLIEST_WALL_TIME_MS..=self.now_ms + WALL_TIME_AHEAD_MS).contains(&step.wall_time_ms) {
            return Some((
                "wall_time_ms",
                format!("{} is not between 2020-01-01 and a day after the coordinator's clock ({})", step.wall_time_ms, self.now_ms),
            ));
        }
        let rules = measure_rules(self.family);
        for measure in &step.measures {
            let Some(rule) = rules.iter().find(|rule| rule.name == measure.name) else {
                let mut known: Vec<&str> = rules.iter().map(|rule| rule.name).collect();
                known.sort_unstable();
                return Some((
                    "measure.name",
                    format!("`{}` is not a measure of the {} family (known: {})", shorten(&measure.name), self.family, known.join(", ")),
                ));
            };
            if measure.value.kind() != rule.kind {
                return Some((
                    "measure.value",
                    format!("`{}` is a {}, not a {}", rule.name, rule.kind.as_str(), measure.value.kind().as_str()),
                ));
            }
            let at = |detail: String| format!("`{}` at step {}{detail}", rule.name, step.step);
            let problem = match &measure.value {
                MeasureValue::Scalar(value) => self.value_problem(rule, *value, &at(String::new())),
                MeasureValue::Spectrum(values) => {
                    let frequencies = self.modulus as usize / 2 + 1;
                    if values.len() != frequencies {
                        return Some((
                            "measure.spectrum",
                            format!(
                                "{} has {} values, expected {frequencies} (frequencies 0..={})",
                                at(String::new()),
                                values.len(),
                                frequencies - 1
                            ),
                        ));
                    }
                    values.iter().enumerate().find_map(|(k, &value)| self.value_problem(rule, value, &at(format!(", frequency {k},"))))
                }
                MeasureValue::Curve(points) => {
                    points.iter().find_map(|point| self.value_problem(rule, point.value, &at(format!(", t = {},", point.t))))
                }
            };
            if problem.is_some() {
                return problem;
            }
        }
        None
    }

    /// The first problem with a finished trial's final metrics.
    pub fn metrics_problem(&self, metrics: &FinalMetrics) -> Option<Problem> {
        if let Some(problem) = self.step_problem(metrics.epochs, "metrics.epochs") {
            return Some(problem);
        }
        let nan_ok = |test_side: bool| test_side && !self.has_test_pairs;
        for (field, value, test_side) in
            [("metrics.train_accuracy", metrics.train_accuracy, false), ("metrics.test_accuracy", metrics.test_accuracy, true)]
        {
            if !((0.0..=1.0).contains(&value) || (value.is_nan() && nan_ok(test_side))) {
                return Some((field, format!("{value} is not in [0, 1]")));
            }
        }
        for (field, value, test_side) in [("metrics.train_loss", metrics.train_loss, false), ("metrics.test_loss", metrics.test_loss, true)]
        {
            if !(value >= 0.0 || (value.is_nan() && nan_ok(test_side))) {
                return Some((field, format!("{value} is not ≥ 0 (or +inf)")));
            }
        }
        if let Some(step) = metrics.grokked_at
            && !(0..=metrics.epochs).contains(&step)
        {
            return Some(("metrics.grokked_at", format!("{step} is not in 0..={} (the epochs trained)", metrics.epochs)));
        }
        if !(metrics.wall_seconds.is_finite() && metrics.wall_seconds >= 0.0) {
            return Some(("metrics.wall_seconds", format!("{} is not a finite number ≥ 0", metrics.wall_seconds)));
        }
        let highest = self.modulus / 2;
        let frequencies = &metrics.key_frequencies;
        if frequencies.iter().any(|&k| k == 0 || k > highest) || frequencies.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Some(("metrics.key_frequencies", format!("{frequencies:?} are not distinct ascending frequencies in 1..={highest}")));
        }
        if let Some(judge) = metrics.judge_accuracy.filter(|judge| !(0.0..=1.0).contains(judge)) {
            return Some(("metrics.judge_accuracy", format!("{judge} is not in [0, 1]")));
        }
        None
    }
}

/// A name as an error message may quote it: at most 64 characters.
fn shorten(name: &str) -> String {
    match name.char_indices().nth(64) {
        Some((end, _)) => format!("{}… ({} bytes)", &name[..end], name.len()),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measures::SpectrumMatrix;
    use crate::progress::{CurvePoint, Measure};

    fn context() -> TrialContext {
        TrialContext { family: Family::Transformer, modulus: 11, max_epochs: 100, has_test_pairs: true, now_ms: EARLIEST_WALL_TIME_MS * 2 }
    }

    fn step(measures: Vec<Measure>) -> StepMeasures {
        StepMeasures { step: 10, wall_time_ms: EARLIEST_WALL_TIME_MS * 2, measures }
    }

    fn field(problem: Option<Problem>) -> Option<&'static str> {
        problem.map(|(field, _)| field)
    }

    #[test]
    fn the_spectra_are_named_as_the_results_tables_name_them() {
        for (family, matrices) in [
            (Family::Transformer, vec![SpectrumMatrix::WE, SpectrumMatrix::WL, SpectrumMatrix::KeyNeurons]),
            (Family::Diffusion, vec![SpectrumMatrix::KeyNeurons, SpectrumMatrix::Operand]),
        ] {
            let spectra: Vec<&str> = measure_rules(family).iter().filter(|rule| rule.kind == Spectrum).map(|rule| rule.name).collect();
            assert_eq!(spectra, matrices.iter().map(|matrix| matrix.as_str()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_families_own_measures_pass_and_others_are_named() {
        let ok = step(vec![
            Measure::scalar(names::TRAIN_LOSS, f64::INFINITY),
            Measure::scalar(names::TEST_ACCURACY, 0.5),
            Measure::spectrum(SpectrumMatrix::WE.as_str(), vec![1.0; 6]),
        ]);
        assert_eq!(context().progress_problem(&ok), None);
        let foreign = step(vec![Measure::scalar(names::GINI_OPERAND, 0.5)]);
        let (name, message) = context().progress_problem(&foreign).expect("a diffusion measure");
        assert_eq!(name, "measure.name");
        assert!(message.contains("not a measure of the transformer family"), "{message}");
        let diffusion = TrialContext { family: Family::Diffusion, ..context() };
        assert_eq!(diffusion.progress_problem(&foreign), None);
        assert!(is_test_side(Family::Diffusion, names::MODE_SHIFT_FRACTION) && !is_test_side(Family::Transformer, names::TRAIN_LOSS));
        let at = |fraction| crate::TrialParams::new(Family::Transformer, 11, fraction, 1.0, 0, 0, None).has_test_pairs();
        assert!(at(0.99) && !at(1.0), "floor(0.99 · 121) = 119 leaves 2 test pairs; 1.0 leaves none");
        let long = step(vec![Measure::scalar("x".repeat(100), 1.0)]);
        assert!(context().progress_problem(&long).expect("unknown").1.contains("… (100 bytes)"));
    }

    #[test]
    fn values_steps_and_wall_times_are_checked() {
        let cases: Vec<(StepMeasures, &str)> = vec![
            (step(vec![Measure::scalar(names::TRAIN_ACCURACY, 7.0)]), "measure.value"),
            (step(vec![Measure::scalar(names::TRAIN_LOSS, -1.0)]), "measure.value"),
            (step(vec![Measure::scalar(names::TRAIN_LOSS, f64::NAN)]), "measure.value"),
            (step(vec![Measure::scalar(names::TEST_LOSS, f64::NAN)]), "measure.value"),
            (step(vec![Measure::scalar(names::SUM_SQUARED_WEIGHTS, f64::INFINITY)]), "measure.value"),
            (step(vec![Measure::spectrum("W_E", vec![1.0; 5])]), "measure.spectrum"),
            (step(vec![Measure::spectrum("W_E", vec![1.0, 1.0, -1.0, 1.0, 1.0, 1.0])]), "measure.value"),
            (step(vec![Measure::scalar("W_E", 1.0)]), "measure.value"),
            (StepMeasures { step: 101, ..step(vec![]) }, "step"),
            (StepMeasures { wall_time_ms: 0, ..step(vec![]) }, "wall_time_ms"),
            (StepMeasures { wall_time_ms: EARLIEST_WALL_TIME_MS * 3, ..step(vec![]) }, "wall_time_ms"),
        ];
        for (bad, expected) in cases {
            assert_eq!(field(context().progress_problem(&bad)), Some(expected), "{bad:?}");
        }
        // Without test pairs the test side is left out, never NaN (SQLite would store NaN as NULL).
        let whole = TrialContext { has_test_pairs: false, ..context() };
        let message = whole.progress_problem(&step(vec![Measure::scalar(names::TEST_LOSS, f64::NAN)])).expect("NaN").1;
        assert!(message.contains("leave it out"), "{message}");
        let diffusion = TrialContext { family: Family::Diffusion, ..context() };
        let curve = |value| step(vec![Measure::curve(names::DECISION_ACCURACY_TEST, vec![CurvePoint { t: 0.5, value }])]);
        assert_eq!(diffusion.progress_problem(&curve(0.25)), None);
        assert_eq!(field(diffusion.progress_problem(&curve(1.5))), Some("measure.value"));
    }

    #[test]
    fn final_metrics_are_checked_against_the_trial() {
        let ok = FinalMetrics {
            epochs: 100,
            train_loss: 0.01,
            test_loss: 0.5,
            train_accuracy: 1.0,
            test_accuracy: 0.9,
            grokked_at: Some(80),
            wall_seconds: 3.0,
            key_frequencies: vec![1, 5],
            judge_accuracy: None,
        };
        assert_eq!(context().metrics_problem(&ok), None);
        let cases = [
            (FinalMetrics { epochs: -1, ..ok.clone() }, "metrics.epochs"),
            (FinalMetrics { epochs: 101, ..ok.clone() }, "metrics.epochs"),
            (FinalMetrics { train_accuracy: 7.0, ..ok.clone() }, "metrics.train_accuracy"),
            (FinalMetrics { test_accuracy: f64::NAN, ..ok.clone() }, "metrics.test_accuracy"),
            (FinalMetrics { train_loss: -0.5, ..ok.clone() }, "metrics.train_loss"),
            (FinalMetrics { grokked_at: Some(120), ..ok.clone() }, "metrics.grokked_at"),
            (FinalMetrics { wall_seconds: f64::NAN, ..ok.clone() }, "metrics.wall_seconds"),
            (FinalMetrics { key_frequencies: vec![6], ..ok.clone() }, "metrics.key_frequencies"),
            (FinalMetrics { key_frequencies: vec![3, 3], ..ok.clone() }, "metrics.key_frequencies"),
            (FinalMetrics { judge_accuracy: Some(-0.1), ..ok.clone() }, "metrics.judge_accuracy"),
        ];
        for (bad, expected) in cases {
            assert_eq!(field(context().metrics_problem(&bad)), Some(expected), "{bad:?}");
        }
        let whole = TrialContext { has_test_pairs: false, ..context() };
        assert_eq!(whole.metrics_problem(&FinalMetrics { test_accuracy: f64::NAN, test_loss: f64::NAN, ..ok }), None);
    }
}
