use super::*;

/// A deterministic noise in [-amplitude, amplitude].
fn noise(i: i64, amplitude: f64) -> f64 {
    let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    (h as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * amplitude
}

/// A transformer run built with known boundaries, evaluated every 100 steps to
/// `last`: train accuracy reaches 1 at 300; log₁₀ test loss rises to a peak at
/// 1,500, creeps down to 9,000, falls 5.5 decades to 12,000 and stays flat;
/// test accuracy climbs from 0.05 at 9,000 to 1 at 11,000.
fn built_run(last: i64) -> TrialSeries {
    let mut series = TrialSeries::default();
    for step in (0..=last).step_by(100) {
        let x = step as f64;
        let train_accuracy = (x / 300.0).min(1.0);
        let log_test = if step <= 1_500 {
            0.68 + 0.72 * x / 1_500.0
        } else if step <= 9_000 {
            1.4 - 0.00005 * (x - 1_500.0)
        } else if step <= 12_000 {
            1.025 - 5.5 * (x - 9_000.0) / 3_000.0
        } else {
            -4.475
        };
        let test_accuracy = if step <= 9_000 { 0.05 } else { (0.05 + 0.95 * (x - 9_000.0) / 2_000.0).min(1.0) };
        series.push_scalar(names::TRAIN_ACCURACY, step, train_accuracy);
        series.push_scalar(names::TRAIN_LOSS, step, 4.7 * (1.0 - train_accuracy) + 1e-7);
        series.push_scalar(names::TEST_LOSS, step, 10f64.powf(log_test + noise(step, 0.02)));
        series.push_scalar(names::TEST_ACCURACY, step, test_accuracy);
    }
    series
}

fn near(found: Option<i64>, want: i64, tolerance: i64) -> bool {
    found.is_some_and(|found| (found - want).abs() <= tolerance)
}

#[test]
fn liu_classes_include_the_cases_their_code_folds_into_comprehension() {
    assert_eq!(classify(Some(100), Some(600), 1_000), TrialClass::Comprehension);
    assert_eq!(classify(Some(500), Some(100), 1_000), TrialClass::Comprehension, "test before train is still comprehension");
    assert_eq!(classify(Some(100), Some(5_000), 1_000), TrialClass::Grokking);
    assert_eq!(classify(Some(100), Some(1_100), 1_000), TrialClass::AtGapThreshold);
    assert_eq!(classify(Some(100), None, 1_000), TrialClass::Memorisation);
    assert_eq!(classify(None, None, 1_000), TrialClass::Confusion);
    assert_eq!(classify(None, Some(100), 1_000), TrialClass::TestOnly);
}

#[test]
fn the_three_phases_of_a_built_run_are_found_where_they_were_built() {
    let phases = find_phases(&built_run(14_000), FamilyKind::Transformer, &PhaseSettings::default());
    assert_eq!(phases.train_accuracy_99_at, Some(300));
    assert!(near(phases.memorisation_end, 1_500, 100), "{phases:?}");
    assert!(near(phases.circuit_formation_end, 9_000, 200), "{phases:?}");
    assert!(near(phases.cleanup_end, 12_000, 200), "{phases:?}");
    assert_eq!(phases.phase_at_end, PhaseAtEnd::Generalised);
    assert_eq!(phases.class, TrialClass::Grokking);
    assert_eq!(phases.class_train_at, Some(300));
    // 0.05 + 0.95 (x − 9000) / 2000 ≥ 0.9 from x ≈ 10,789: the first eval is 10,800.
    assert_eq!(phases.class_test_at, Some(10_800));
    assert_eq!(phases.test_accuracy_95_at, Some(10_900));
    assert_eq!(phases.test_accuracy_99_at, Some(11_000));
    assert!(phases.notes.is_empty(), "{:?}", phases.notes);
}

#[test]
fn a_run_stopped_in_cleanup_has_no_cleanup_end_and_says_why() {
    let phases = find_phases(&built_run(11_000), FamilyKind::Transformer, &PhaseSettings::default());
    assert!(near(phases.circuit_formation_end, 9_000, 200), "{phases:?}");
    assert_eq!(phases.cleanup_end, None);
    assert_eq!(phases.phase_at_end, PhaseAtEnd::Cleanup);
    assert_eq!(phases.not_reached(), "cleanup_end");
    assert!(phases.notes_text().starts_with("cleanup_end: run ended during cleanup"), "{}", phases.notes_text());
}

#[test]
fn a_run_that_never_generalises_gets_no_circuit_formation_end_or_cleanup() {
    let mut series = built_run(8_000);
    let flat: Vec<(i64, f64)> = series.scalar(names::TEST_ACCURACY).iter().map(|&(step, _)| (step, 0.05)).collect();
    series.scalars.insert(names::TEST_ACCURACY.to_string(), flat);
    let phases = find_phases(&series, FamilyKind::Transformer, &PhaseSettings::default());
    assert!(near(phases.memorisation_end, 1_500, 100));
    assert_eq!((phases.circuit_formation_end, phases.cleanup_end), (None, None));
    assert_eq!(phases.phase_at_end, PhaseAtEnd::CircuitFormation);
    assert_eq!(phases.class, TrialClass::Memorisation);
    assert!(phases.notes_text().contains("cleanup_end: never generalised"), "{}", phases.notes_text());
    assert!(phases.not_reached().contains("test_accuracy_95_at"));
}

#[test]
fn a_run_still_memorising_has_no_memorisation_end() {
    let series = built_run(1_200);
    let phases = find_phases(&series, FamilyKind::Transformer, &PhaseSettings::default());
    assert_eq!(phases.memorisation_end, None);
    assert_eq!(phases.phase_at_end, PhaseAtEnd::Memorisation);
    assert!(phases.notes_text().contains("memorisation_end: test loss still rising"), "{}", phases.notes_text());
}

#[test]
fn the_class_budget_cuts_what_counts_as_reached() {
    let settings = PhaseSettings { class_budget: Some(5_000), ..PhaseSettings::default() };
    let phases = find_phases(&built_run(14_000), FamilyKind::Transformer, &settings);
    assert_eq!(phases.class, TrialClass::Memorisation);
    assert_eq!(phases.class_test_at, None);
    assert_eq!(phases.test_accuracy_95_at, Some(10_900), "the grokking columns do not depend on the budget");
}

#[test]
fn thinning_keeps_the_ends_and_at_most_the_limit() {
    let points: Vec<(i64, f64)> = (0..1_000).map(|i| (i, i as f64)).collect();
    let kept = thin(&points, 100);
    assert_eq!(kept.len(), 100);
    assert_eq!((kept[0].0, kept[99].0), (0, 999));
    assert_eq!(thin(&points[..10], 100).len(), 10);
}

/// The committed p = 113 reproduction run (bench/reproduction/), whose
/// write-up reads the test-loss peak at 1,400, circuit formation to ~9.4k and
/// cleanup from 9.4k to ~12k; the paper's lines are 1.4k / 9.4k / 14k.
#[test]
fn the_reproduction_runs_phases_match_its_write_up() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/reproduction/nanda-seed0-curves.csv");
    let text = std::fs::read_to_string(path).expect("the reproduction curves are committed");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let mut series = TrialSeries::default();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let step: i64 = fields[0].parse().expect("step");
        for (name, field) in header.iter().zip(&fields).skip(1) {
            if let Ok(value) = field.parse::<f64>() {
                series.push_scalar(name, step, value);
            }
        }
    }
    let phases = find_phases(&series, FamilyKind::Transformer, &PhaseSettings::default());
    println!(
        "reproduction p = 113 seed 0: memorisation end {:?}, circuit formation end {:?}, cleanup end {:?} \
         (paper 1,400 / 9,400 / 14,000; write-up 1,400 / ~9,400 / ~12,000); grokked (0.95) {:?}; class {}",
        phases.memorisation_end,
        phases.circuit_formation_end,
        phases.cleanup_end,
        phases.test_accuracy_95_at,
        phases.class.as_str()
    );
    assert_eq!(phases.memorisation_end, Some(1_400));
    assert!(phases.circuit_formation_end.is_some_and(|step| (10_000..=10_800).contains(&step)), "{phases:?}");
    assert!(phases.cleanup_end.is_some_and(|step| (12_400..=13_400).contains(&step)), "{phases:?}");
    assert_eq!(phases.test_accuracy_95_at, Some(11_200), "the write-up's grokking step");
    assert_eq!(phases.class, TrialClass::Grokking);
    assert_eq!(phases.phase_at_end, PhaseAtEnd::Generalised);
}

#[test]
fn a_switch_flips_when_early_switches_follow_the_new_sum_and_late_ones_the_old() {
    let new = vec![(0.9, 0.95), (0.7, 0.9), (0.3, 0.1), (0.1, 0.0)];
    let old = vec![(0.9, 0.0), (0.7, 0.05), (0.3, 0.85), (0.1, 1.0)];
    assert_eq!(switch_flips(0.5, &new, &old), Some(true));
    assert_eq!(switch_flips(0.5, &old, &new), Some(false), "following the old sum early is no flip");
    assert_eq!(switch_flips(0.95, &new, &old), None, "no switch time before t*");
}

#[test]
fn diffusion_trials_report_the_critical_timestep_and_the_switch_at_it() {
    let mut series = TrialSeries::default();
    for (step, accuracy) in [(0, 0.1), (100, 1.0), (200, 1.0)] {
        series.push_scalar(names::TRAIN_ACCURACY, step, accuracy);
        series.push_scalar(names::TEST_ACCURACY, step, if step == 200 { 0.97 } else { 0.2 });
    }
    series.push_scalar(names::CRITICAL_TIMESTEP_TEST, 100, 0.4);
    series.push_scalar(names::CRITICAL_TIMESTEP_TEST, 200, 0.6);
    for (t, new, old) in [(0.8, 1.0, 0.0), (0.2, 0.0, 1.0)] {
        series.push_curve_point(names::SWITCH_FOLLOWS_NEW, 200, t, new);
        series.push_curve_point(names::SWITCH_FOLLOWS_OLD, 200, t, old);
    }
    let phases = find_phases(&series, FamilyKind::Diffusion, &PhaseSettings::default());
    assert_eq!(phases.critical_timestep_first_at, Some(100));
    assert_eq!(phases.critical_timestep, Some(0.6));
    assert_eq!(phases.switch_flips, Some(true));
    assert_eq!(phases.phase_at_end, PhaseAtEnd::Generalised);
    assert_eq!(phases.test_accuracy_95_at, Some(200));
    assert!(phases.notes_text().contains("cleanup_end: transformer family only"));

    let memorised =
        find_phases(&TrialSeries { curves: Default::default(), ..series.clone() }, FamilyKind::Diffusion, &PhaseSettings::default());
    assert_eq!(memorised.switch_flips, None, "without switch curves there is nothing to judge");
    assert!(memorised.not_reached().contains("switch_flips"));
}

#[test]
fn a_family_without_rules_gets_the_grokking_steps_and_its_class() {
    let phases = find_phases(&built_run(14_000), FamilyKind::Other, &PhaseSettings::default());
    assert_eq!((phases.test_accuracy_95_at, phases.class), (Some(10_900), TrialClass::Grokking));
    assert_eq!((phases.memorisation_end, phases.phase_at_end), (None, PhaseAtEnd::Generalised));
    assert!(phases.notes_text().contains("cleanup_end: no rule for this family"));
}
