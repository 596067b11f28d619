//! The phases of one trial, found from its series by documented rules.
//!
//! Every rule and its threshold is described in the README ("The `phases`
//! table"); the thresholds that are choices, not definitions, live in
//! [`PhaseSettings`] and are stored as JSON beside every result.
//!
//! - Grokking steps under the definitions in use: test accuracy first ≥ 0.95
//!   (the `trials` table's `grokked_at`) and ≥ 0.99; test loss first < 1 and
//!   first < 0.01; memorisation as train accuracy first ≥ 0.99 and train loss
//!   first < 0.01.
//! - Nanda et al.'s three phases (transformer family): memorisation ends at the
//!   peak of the test loss after the train accuracy reached 0.99; circuit
//!   formation ends and cleanup begins where log₁₀ test loss starts to fall
//!   fast, and cleanup ends where that fall flattens, both found by a segmented
//!   regression ([`crate::segmented`]) of log₁₀ test loss from the peak on: the
//!   cleanup is the run of segments around the steepest one that fall at least
//!   a fifth as fast.
//! - The class of Liu et al. 2022 ([`TrialClass`]).
//! - Diffusion family: the critical timestep's first appearance and whether the
//!   operand-switch result flips at it.

use serde::{Deserialize, Serialize};
use sweep_core::measures as names;

use crate::segmented;
use crate::series::{Curve, TrialSeries, first_step};

/// Thresholds of the phase rules that are choices rather than definitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhaseSettings {
    /// Liu et al.'s accuracy that train and test must reach (0.9).
    pub class_accuracy: f64,
    /// Liu et al.'s gap, in steps, between the two that separates comprehension from grokking (1,000).
    pub class_gap: i64,
    /// Steps within which the accuracy must be reached; `None`: the whole run.
    pub class_budget: Option<i64>,
    /// At most this many points enter the segmented regression (longer series are thinned evenly; 600).
    pub max_points: usize,
    /// Points each segment must hold (4).
    pub min_segment_points: usize,
    /// The steepest segment counts as cleanup only if log₁₀ test loss falls by at least this much over it (1 decade).
    pub cleanup_min_decades: f64,
    /// Segments in the segmented regression of log₁₀ test loss, at most (4: the creep of circuit
    /// formation, the start of the fall, its steepest part, the floor after it).
    pub max_segments: usize,
    /// A segment next to the steepest belongs to cleanup if it falls at least this fraction as fast (0.2).
    pub fast_fraction: f64,
}

impl Default for PhaseSettings {
    fn default() -> Self {
        PhaseSettings {
            class_accuracy: 0.9,
            class_gap: 1_000,
            class_budget: None,
            max_points: 600,
            min_segment_points: 4,
            cleanup_min_decades: 1.0,
            max_segments: 4,
            fast_fraction: 0.2,
        }
    }
}

/// The class of a trial as in Liu et al. 2022's phase diagrams, with the cases
/// their reference code folds silently into comprehension given their own names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrialClass {
    /// Train and test accuracy both reached, test within the gap of train.
    Comprehension,
    /// Both reached, test more than the gap after train.
    Grokking,
    /// Train reached, test not.
    Memorisation,
    /// Neither reached.
    Confusion,
    /// Both reached, test exactly the gap after train: on the boundary.
    AtGapThreshold,
    /// Test reached but train not.
    TestOnly,
}

impl TrialClass {
    /// Name in the `phases` table.
    pub fn as_str(self) -> &'static str {
        match self {
            TrialClass::Comprehension => "comprehension",
            TrialClass::Grokking => "grokking",
            TrialClass::Memorisation => "memorisation",
            TrialClass::Confusion => "confusion",
            TrialClass::AtGapThreshold => "at_gap_threshold",
            TrialClass::TestOnly => "test_only",
        }
    }

    /// Every class, in display order.
    pub const ALL: [TrialClass; 6] = [
        TrialClass::Comprehension,
        TrialClass::Grokking,
        TrialClass::Memorisation,
        TrialClass::Confusion,
        TrialClass::AtGapThreshold,
        TrialClass::TestOnly,
    ];
}

/// Liu et al.'s class from the steps at which train and test accuracy first
/// reached the class accuracy (`None`: not within the budget).
pub fn classify(train_at: Option<i64>, test_at: Option<i64>, gap: i64) -> TrialClass {
    match (train_at, test_at) {
        (None, None) => TrialClass::Confusion,
        (None, Some(_)) => TrialClass::TestOnly,
        (Some(_), None) => TrialClass::Memorisation,
        (Some(train), Some(test)) => match (test - train).cmp(&gap) {
            std::cmp::Ordering::Less => TrialClass::Comprehension,
            std::cmp::Ordering::Equal => TrialClass::AtGapThreshold,
            std::cmp::Ordering::Greater => TrialClass::Grokking,
        },
    }
}

/// Where a trial was at its last recorded step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseAtEnd {
    /// Memorising (test loss still rising, or train accuracy not yet 0.99).
    Memorisation,
    /// After the test-loss peak, before the steep fall (transformer).
    CircuitFormation,
    /// In the steep fall of the test loss (transformer).
    Cleanup,
    /// Train accuracy reached 0.99, test accuracy not 0.95 (diffusion, other families).
    Memorised,
    /// After cleanup (transformer), or test accuracy ≥ 0.95 (diffusion).
    Generalised,
}

impl PhaseAtEnd {
    /// Name in the `phases` table.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseAtEnd::Memorisation => "memorisation",
            PhaseAtEnd::CircuitFormation => "circuit_formation",
            PhaseAtEnd::Cleanup => "cleanup",
            PhaseAtEnd::Memorised => "memorised",
            PhaseAtEnd::Generalised => "generalised",
        }
    }
}

/// Everything found for one trial; `None` is "not reached", with the reason in `notes`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialPhases {
    /// Last step with a recorded measure.
    pub last_step: Option<i64>,
    /// Train accuracy first ≥ 0.99.
    pub train_accuracy_99_at: Option<i64>,
    /// Train loss first < 0.01.
    pub train_loss_below_0_01_at: Option<i64>,
    /// Test accuracy first ≥ 0.95 (`grokked_at`).
    pub test_accuracy_95_at: Option<i64>,
    /// Test accuracy first ≥ 0.99.
    pub test_accuracy_99_at: Option<i64>,
    /// Test loss first < 1.
    pub test_loss_below_1_at: Option<i64>,
    /// Test loss first < 0.01.
    pub test_loss_below_0_01_at: Option<i64>,
    /// End of memorisation: the test-loss peak after train accuracy reached 0.99 (transformer).
    pub memorisation_end: Option<i64>,
    /// End of circuit formation: start of the steepest fall of log test loss (transformer).
    pub circuit_formation_end: Option<i64>,
    /// End of cleanup: where that fall flattens (transformer).
    pub cleanup_end: Option<i64>,
    /// Where the trial was at its last step.
    pub phase_at_end: PhaseAtEnd,
    /// Train accuracy first ≥ the class accuracy, within the budget.
    pub class_train_at: Option<i64>,
    /// Test accuracy first ≥ the class accuracy, within the budget.
    pub class_test_at: Option<i64>,
    /// Liu et al.'s class.
    pub class: TrialClass,
    /// First step with a critical timestep on the test pairs (diffusion).
    pub critical_timestep_first_at: Option<i64>,
    /// The last critical timestep on the test pairs (diffusion).
    pub critical_timestep: Option<f64>,
    /// Whether switched samples follow the new sum before the critical timestep and the old sum after it (diffusion).
    pub switch_flips: Option<bool>,
    /// Columns not reached, each with why.
    pub notes: Vec<(&'static str, String)>,
}

impl TrialPhases {
    /// The names of the columns that were not reached, comma-separated.
    pub fn not_reached(&self) -> String {
        self.notes.iter().map(|note| note.0).collect::<Vec<_>>().join(",")
    }

    /// The reasons, one `column: why` per not-reached column.
    pub fn notes_text(&self) -> String {
        self.notes.iter().map(|(column, why)| format!("{column}: {why}")).collect::<Vec<_>>().join("; ")
    }
}

/// The family a trial belongs to, as far as the rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyKind {
    /// Nanda et al.'s transformer.
    Transformer,
    /// The diffusion transformer.
    Diffusion,
    /// A family without phase rules of its own: the grokking steps and the class only.
    Other,
}

/// Find the phases of one trial.
pub fn find_phases(series: &TrialSeries, family: FamilyKind, settings: &PhaseSettings) -> TrialPhases {
    let train_accuracy = series.scalar(names::TRAIN_ACCURACY);
    let test_accuracy = series.scalar(names::TEST_ACCURACY);
    let train_loss = series.scalar(names::TRAIN_LOSS);
    let test_loss = series.scalar(names::TEST_LOSS);
    let mut notes = Vec::new();
    let mut reached = |column: &'static str, step: Option<i64>| {
        if step.is_none() {
            notes.push((column, "not reached".to_string()));
        }
        step
    };
    let train_accuracy_99_at = reached("train_accuracy_99_at", first_step(train_accuracy, |value| value >= 0.99));
    let train_loss_below_0_01_at = reached("train_loss_below_0_01_at", first_step(train_loss, |value| value < 0.01));
    let test_accuracy_95_at = reached("test_accuracy_95_at", first_step(test_accuracy, |value| value >= names::GROKKED_ACCURACY));
    let test_accuracy_99_at = reached("test_accuracy_99_at", first_step(test_accuracy, |value| value >= 0.99));
    let test_loss_below_1_at = reached("test_loss_below_1_at", first_step(test_loss, |value| value < 1.0));
    let test_loss_below_0_01_at = reached("test_loss_below_0_01_at", first_step(test_loss, |value| value < 0.01));

    let within_budget = |series: &[(i64, f64)]| -> Vec<(i64, f64)> {
        series.iter().copied().filter(|point| settings.class_budget.is_none_or(|budget| point.0 <= budget)).collect()
    };
    let class_train_at = first_step(&within_budget(train_accuracy), |value| value >= settings.class_accuracy);
    let class_test_at = first_step(&within_budget(test_accuracy), |value| value >= settings.class_accuracy);
    let class = classify(class_train_at, class_test_at, settings.class_gap);

    let mut phases = TrialPhases {
        last_step: series.last_step(),
        train_accuracy_99_at,
        train_loss_below_0_01_at,
        test_accuracy_95_at,
        test_accuracy_99_at,
        test_loss_below_1_at,
        test_loss_below_0_01_at,
        memorisation_end: None,
        circuit_formation_end: None,
        cleanup_end: None,
        phase_at_end: PhaseAtEnd::Memorisation,
        class_train_at,
        class_test_at,
        class,
        critical_timestep_first_at: None,
        critical_timestep: None,
        switch_flips: None,
        notes,
    };
    match family {
        FamilyKind::Transformer => nanda_phases(test_loss, &mut phases, settings),
        FamilyKind::Diffusion => diffusion_phases(series, &mut phases),
        FamilyKind::Other => {
            phases.phase_at_end = by_accuracy(&phases);
            for column in ["memorisation_end", "circuit_formation_end", "cleanup_end", "critical_timestep_first_at", "switch_flips"] {
                phases.notes.push((column, "no rule for this family".to_string()));
            }
        }
    }
    phases
}

/// Nanda et al.'s three phases from the test loss.
fn nanda_phases(test_loss: &[(i64, f64)], phases: &mut TrialPhases, settings: &PhaseSettings) {
    let Some(memorised) = phases.train_accuracy_99_at else {
        let why = "train accuracy never reached 0.99";
        for column in ["memorisation_end", "circuit_formation_end", "cleanup_end"] {
            phases.notes.push((column, why.to_string()));
        }
        return;
    };
    let after: Vec<(i64, f64)> = test_loss.iter().copied().filter(|point| point.0 >= memorised && point.1.is_finite()).collect();
    let peak = after.iter().enumerate().max_by(|a, b| a.1.1.total_cmp(&b.1.1)).map(|(index, _)| index);
    let Some(peak) = peak.filter(|&index| index + 1 < after.len()) else {
        phases.notes.push(("memorisation_end", "test loss still rising at the last step".to_string()));
        phases.notes.push(("circuit_formation_end", "memorisation has not ended".to_string()));
        phases.notes.push(("cleanup_end", "memorisation has not ended".to_string()));
        return;
    };
    phases.memorisation_end = Some(after[peak].0);
    phases.phase_at_end = PhaseAtEnd::CircuitFormation;
    if phases.test_accuracy_95_at.is_none() {
        let why = "never generalised (test accuracy stayed below 0.95)";
        phases.notes.push(("circuit_formation_end", why.to_string()));
        phases.notes.push(("cleanup_end", why.to_string()));
        return;
    }
    let points: Vec<(i64, f64)> = thin(&after[peak..], settings.max_points)
        .into_iter()
        .filter(|point| point.1 > 0.0)
        .map(|(step, loss)| (step, loss.log10()))
        .collect();
    let xs: Vec<f64> = points.iter().map(|point| point.0 as f64).collect();
    let ys: Vec<f64> = points.iter().map(|point| point.1).collect();
    let Some(fit) = segmented::best_fit(&xs, &ys, settings.max_segments, settings.min_segment_points) else {
        let why = format!("too few evaluations after the test-loss peak ({})", points.len());
        phases.notes.push(("circuit_formation_end", why.clone()));
        phases.notes.push(("cleanup_end", why));
        return;
    };
    let (steepest, steep) =
        fit.segments.iter().enumerate().min_by(|a, b| a.1.slope.total_cmp(&b.1.slope)).expect("a fit has at least one segment");
    // Cleanup: the run of segments around the steepest that fall at least `fast_fraction` as fast.
    let fast = |index: usize| fit.segments[index].slope <= settings.fast_fraction * steep.slope;
    let first = (0..steepest).rev().take_while(|&index| fast(index)).last().unwrap_or(steepest);
    let last = (steepest + 1..fit.segments.len()).take_while(|&index| fast(index)).last().unwrap_or(steepest);
    let (begin, end) = (fit.segments[first].start, fit.segments[last].end - 1);
    let fall = ys[begin] - ys[end];
    if steep.slope >= 0.0 || fall < settings.cleanup_min_decades {
        let why = format!("log10 test loss never fell steeply (steepest fall: {fall:.2} decades)");
        phases.notes.push(("circuit_formation_end", why.clone()));
        phases.notes.push(("cleanup_end", why));
        return;
    }
    phases.circuit_formation_end = Some(points[begin].0);
    phases.phase_at_end = PhaseAtEnd::Cleanup;
    let Some(next) = fit.segments.get(last + 1) else {
        phases.notes.push(("cleanup_end", "run ended during cleanup (test loss still falling fast)".to_string()));
        return;
    };
    phases.cleanup_end = Some(points[next.start].0);
    phases.phase_at_end = PhaseAtEnd::Generalised;
}

/// At most `limit` points, evenly spaced by index, first and last kept.
fn thin(points: &[(i64, f64)], limit: usize) -> Vec<(i64, f64)> {
    if points.len() <= limit || limit < 2 {
        return points.to_vec();
    }
    let last = points.len() - 1;
    let mut kept: Vec<(i64, f64)> = (0..limit).map(|i| points[i * last / (limit - 1)]).collect();
    kept.dedup_by_key(|point| point.0);
    kept
}

/// Diffusion: where the trial is, the critical timestep and the switch result.
fn diffusion_phases(series: &TrialSeries, phases: &mut TrialPhases) {
    for column in ["memorisation_end", "circuit_formation_end", "cleanup_end"] {
        phases.notes.push((column, "transformer family only".to_string()));
    }
    phases.phase_at_end = by_accuracy(phases);
    let critical = series.scalar(names::CRITICAL_TIMESTEP_TEST);
    phases.critical_timestep_first_at = critical.first().map(|point| point.0);
    phases.critical_timestep = critical.last().map(|point| point.1);
    if critical.is_empty() {
        phases.notes.push(("critical_timestep_first_at", "no critical timestep on the test pairs".to_string()));
        phases.notes.push(("switch_flips", "no critical timestep on the test pairs".to_string()));
        return;
    }
    let new = series.curves.get(names::SWITCH_FOLLOWS_NEW);
    let old = series.curves.get(names::SWITCH_FOLLOWS_OLD);
    // The last step that has both switch curves and a critical timestep.
    let judged = critical.iter().rev().find_map(|&(step, t)| Some((t, new?.get(&step)?, old?.get(&step)?)));
    match judged.and_then(|(t, new, old)| switch_flips(t, new, old)) {
        Some(flips) => phases.switch_flips = Some(flips),
        None => phases.notes.push(("switch_flips", "no switch times on both sides of the critical timestep".to_string())),
    }
}

/// Where a trial is by its accuracies alone: memorising, memorised, generalised.
fn by_accuracy(phases: &TrialPhases) -> PhaseAtEnd {
    match (phases.train_accuracy_99_at, phases.test_accuracy_95_at) {
        (_, Some(_)) => PhaseAtEnd::Generalised,
        (Some(_), None) => PhaseAtEnd::Memorised,
        (None, None) => PhaseAtEnd::Memorisation,
    }
}

/// Switching the operands at t > t* (earlier in sampling than the decision)
/// should make the sample follow the new sum; at t < t* the old one. `None`
/// when the switch times do not straddle t*.
pub fn switch_flips(critical: f64, follows_new: &Curve, follows_old: &Curve) -> Option<bool> {
    let mean_where = |curve: &Curve, early: bool| -> Option<f64> {
        let values: Vec<f64> =
            curve.iter().filter(|point| (point.0 > critical) == early && point.0 != critical).map(|point| point.1).collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    let before = mean_where(follows_new, true)? > mean_where(follows_old, true)?;
    let after = mean_where(follows_old, false)? > mean_where(follows_new, false)?;
    Some(before && after)
}

#[cfg(test)]
#[path = "phases_tests.rs"]
mod tests;
