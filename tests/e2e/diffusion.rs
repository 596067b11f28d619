//! A tiny diffusion sweep through an in-process coordinator and worker, its
//! two trials (N = 1 and 2) trained as one pack: its measures land in
//! `progress`, `spectra` and `curves`, the judge's accuracy in `trials`, and
//! the judge classifier is trained once into the cache.

use std::time::Duration;

use crate::fixture::{InProcessCoordinator, InProcessWorker, client, fast_config, fixture_spec, submit, wait_for_sweep};
use crate::results::{curve_rows, progress_rows, spectra_rows, trial_details};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_diffusion_sweep_lands_in_parquet() {
    let data = tempfile::tempdir().expect("tempdir");
    let coordinator = InProcessCoordinator::start(fast_config(data.path())).await;
    let mut client = client(&coordinator.address, None);
    let submitted = submit(&mut client, &fixture_spec("tiny-diffusion.yaml")).await;
    assert_eq!(submitted.trials_total, 2, "image_diversity [1, 2] multiplies diffusion trials");

    let worker = InProcessWorker::start(&coordinator.address, data.path(), "e2e", 2);
    let status = wait_for_sweep(&mut client, "tiny-diffusion", Duration::from_secs(300), |s| s.finished).await;
    assert!(status.trials.iter().all(|t| t.status == "done"), "{status:#?}");
    worker.stop().await;
    coordinator.stop().await;

    let sweep_dir = data.path().join("results/tiny-diffusion");
    let trials = trial_details(&sweep_dir);
    assert_eq!(trials.len(), 2);
    for trial in &trials {
        match trial.image_diversity {
            Some(1) => assert_eq!(trial.judge_accuracy, None, "N = 1 is judged by the exemplars"),
            Some(2) => assert!(trial.judge_accuracy.is_some_and(|a| (0.8..=1.0).contains(&a)), "{trial:?}"),
            other => panic!("unexpected image diversity {other:?}"),
        }
    }
    // The classifier was trained once and cached.
    let cached: Vec<_> = std::fs::read_dir(data.path().join("cache"))
        .expect("cache")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cached.iter().filter(|name| name.ends_with(".accuracy")).count(), 1, "{cached:?}");

    let rows = progress_rows(&sweep_dir);
    let curves = curve_rows(&sweep_dir);
    for trial in &trials {
        let mine: Vec<_> = rows.iter().filter(|r| r.trial_id == trial.trial_id).collect();
        let value = |step: i64, measure: &str| mine.iter().find(|r| r.step == step && r.measure == measure).map(|r| r.value);
        let point = |step: i64, curve: &str, t: f64| {
            curves.iter().find(|c| c.0 == trial.trial_id && c.1 == step && c.2 == curve && (c.3 - t).abs() < 1e-9).map(|c| c.4)
        };
        for step in [0, 10, 20] {
            for measure in [
                "train_loss",
                "test_loss",
                "sum_squared_weights",
                "gini_operand",
                "spectral_entropy",
                "key_neuron_fraction",
                "mode_shift_fraction",
            ] {
                let v = value(step, measure).unwrap_or_else(|| panic!("{measure} at {step} missing for {}", trial.trial_id));
                assert!(v.is_finite() && v >= 0.0, "{measure} = {v}");
            }
            for measure in ["train_accuracy", "test_accuracy"] {
                let v = value(step, measure).unwrap_or_else(|| panic!("{measure} at {step} missing"));
                assert!((0.0..=1.0).contains(&v), "{measure} = {v}");
            }
            for curve in ["switch_follows_new", "switch_follows_old"] {
                let v = point(step, curve, 0.6).unwrap_or_else(|| panic!("{curve} at t = 0.6, step {step} missing"));
                assert!((0.0..=1.0).contains(&v), "{curve} = {v}");
            }
            // Decision curve: 5 sampler steps, 5 points (t = 1.0 .. 0.2) and the sample at t = 0.
            let mut decision: Vec<f64> =
                curves.iter().filter(|c| c.0 == trial.trial_id && c.1 == step && c.2 == "decision_accuracy_test").map(|c| c.3).collect();
            decision.sort_by(f64::total_cmp);
            assert_eq!(decision.len(), 6, "decision points at {step}: {decision:?}");
            for (got, want) in decision.iter().zip([0.0, 0.2, 0.4, 0.6, 0.8, 1.0]) {
                assert!((got - want).abs() < 1e-9, "decision point {got} at {step}");
            }
            // The last point of the curve is the generation accuracy itself.
            assert_eq!(point(step, "decision_accuracy_test", 0.0), value(step, "test_accuracy"));
        }
        // Training lowers the flow-matching loss.
        assert!(value(20, "train_loss") < value(0, "train_loss"), "{:?} → {:?}", value(0, "train_loss"), value(20, "train_loss"));
    }
    let spectra = spectra_rows(&sweep_dir);
    for trial in &trials {
        for matrix in ["operand", "key_neurons"] {
            // Frequencies 0..=2 at P = 5, at each of the 3 evals.
            assert_eq!(spectra.iter().filter(|s| s.0 == trial.trial_id && s.3 == matrix).count(), 3 * 3, "{matrix}");
        }
    }

    // The report draws the diffusion figures: the critical timestep over training and the last decision curves.
    let options = sweep_analysis::report::ReportOptions { limit: 10, ..Default::default() };
    let report = sweep_analysis::report::build_report(data.path(), "tiny-diffusion", &options, &Default::default()).await.expect("report");
    assert_eq!(report.trials_drawn, 2);
    for trial in &trials {
        for figure in ["loss", "accuracy", "decision"] {
            assert!(report.html.contains(&format!("id=\"{}-{figure}\"", trial.trial_id)), "{figure} of {}", trial.trial_id);
        }
        assert!(!report.html.contains(&format!("id=\"{}-gini\"", trial.trial_id)), "no transformer figures for a diffusion trial");
    }
    assert!(report.html.contains(&format!("<meta name=\"groksweep-figures\" content=\"{}\">", report.figures)));
}
