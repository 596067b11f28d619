//! A tiny sweep through an in-process coordinator and an in-process worker
//! talking gRPC on loopback, its 4 trials trained as one pack; the Parquet is
//! read back and checked.

use std::time::Duration;

use crate::fixture::{InProcessCoordinator, InProcessWorker, client, fast_config, fixture_spec, submit, wait_for_sweep};
use crate::results::{EVAL_MEASURES, check_final_checkpoints, check_progress, check_spectra, progress_rows, spectra_rows, trials_rows};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_sweep_runs_end_to_end_and_lands_in_parquet() {
    let data = tempfile::tempdir().expect("tempdir");
    let coordinator = InProcessCoordinator::start(fast_config(data.path())).await;
    let mut client = client(&coordinator.address, None);
    let submitted = submit(&mut client, &fixture_spec("tiny.yaml")).await;
    assert_eq!((submitted.trials_total, submitted.trials_added), (4, 4));

    let worker = InProcessWorker::start(&coordinator.address, data.path(), "e2e", 4);
    let status = wait_for_sweep(&mut client, "tiny", Duration::from_secs(300), |s| s.finished).await;
    assert!(status.trials.iter().all(|t| t.status == "done"), "{status:#?}");
    assert!(status.trials.iter().all(|t| t.epoch == Some(60)));
    assert!(
        std::fs::read_dir(data.path().join("scratch")).expect("scratch").next().is_none(),
        "every trial's local checkpoints are gone once it ends"
    );

    // Resubmitting is idempotent: nothing new, everything already done.
    let again = submit(&mut client, &fixture_spec("tiny.yaml")).await;
    assert_eq!((again.trials_added, again.trials_done), (0, 4));

    worker.stop().await;
    coordinator.stop().await;

    let sweep_dir = data.path().join("results/tiny");
    let trials = trials_rows(&sweep_dir);
    assert_eq!(trials.len(), 4, "one row per trial");
    assert!(trials.iter().all(|(_, status, attempt)| status == "done" && *attempt == 1));
    // Each done trial's rolls were compacted into one file per table.
    for table in ["progress", "spectra"] {
        for trial in std::fs::read_dir(sweep_dir.join(table)).expect("table directory") {
            let files = std::fs::read_dir(trial.expect("trial").path()).expect("trial directory").count();
            assert_eq!(files, 1, "{table}: one compacted file per trial");
        }
    }
    let rows = progress_rows(&sweep_dir);
    check_progress(&rows);
    // 7 evals (0, 10, ..., 60) × 24 measures, and the 2 final-K losses at the
    // 3 checkpoints (0, 30, 60), for each of 4 trials.
    assert_eq!(rows.len(), (7 * EVAL_MEASURES.len() + 3 * 2) * 4);
    let mut final_k_steps: Vec<i64> = rows.iter().filter(|r| r.measure == "excluded_loss_final_k").map(|r| r.step).collect();
    final_k_steps.sort();
    final_k_steps.dedup();
    assert_eq!(final_k_steps, vec![0, 30, 60]);
    // At the last step the final K is the step's own K: both definitions agree.
    for row in rows.iter().filter(|r| r.measure == "restricted_loss_final_k" && r.step == 60) {
        let online = rows.iter().find(|r| r.trial_id == row.trial_id && r.step == 60 && r.measure == "restricted_loss").expect("online");
        assert_eq!(online.value, row.value);
    }
    let spectra = spectra_rows(&sweep_dir);
    check_spectra(&spectra, &rows, 11);
    assert_eq!(spectra.len(), 7 * 3 * 6 * 4, "7 evals × 3 spectra × 6 frequencies × 4 trials");
    check_final_checkpoints(&sweep_dir);
    let checkpoint_files = std::fs::read_dir(sweep_dir.join("checkpoints")).expect("checkpoints").count();
    assert_eq!(checkpoint_files, 4, "one checkpoint directory per trial");

    // The coordinator wrote every trial's phases as it finished, from the same
    // series: its grokking step agrees with the worker's own `grokked_at`.
    let context = sweep_analysis::open_results(data.path(), Some("tiny")).await.expect("opens");
    let batches = context
        .sql(
            "SELECT COUNT(*) AS n, COUNT(DISTINCT p.trial_id) AS trials,
                    SUM(CASE WHEN p.test_accuracy_95_at IS NOT DISTINCT FROM t.grokked_at THEN 1 ELSE 0 END) AS agree,
                    SUM(CASE WHEN p.last_step = 60 AND p.status = 'done' AND p.attempt = 1 THEN 1 ELSE 0 END) AS complete
             FROM phases p JOIN trials t ON p.trial_id = t.trial_id",
        )
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    let text = datafusion_text(&batches);
    assert!(text.contains("| 4 | 4      | 4     | 4        |"), "{text}");
}

fn datafusion_text(batches: &[sweep_analysis::RecordBatch]) -> String {
    sweep_analysis::pretty(batches)
}
