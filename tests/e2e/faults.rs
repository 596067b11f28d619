//! Faults with real processes: kill -9 a worker (alone, or training a pack
//! of three), kill -9 the coordinator,
//! SIGTERM to a worker and to the coordinator, coordinator and worker both
//! stopped (SIGSTOP) for longer than a lease, a worker without the token,
//! and a sweep cancelled under a running worker.

use std::time::Duration;

use crate::fixture::{Process, client, fixture_spec, submit, wait_for_sweep};
use crate::results::{
    check_final_checkpoints, check_progress, check_spectra, progress_rows, spectra_rows, trials_rows, wait_for_final_metrics,
};

fn running_with_progress(status: &sweep_proto::pb::SweepStatus) -> bool {
    status.trials.iter().any(|t| t.status == "running" && t.epoch.unwrap_or(0) >= 100)
}

/// A coordinator process on a fresh data directory, the fixture sweep `spec`
/// submitted, and one worker process (one slot) training its trial past epoch 100.
/// Bind `data`, `coordinator` and `worker` for the whole test: dropping them
/// deletes the directory or kills the process.
struct Training {
    data: tempfile::TempDir,
    coordinator: Process,
    address: String,
    client: sweep_proto::client::Client,
    worker: Process,
}

async fn training(spec: &str, sweep: &str) -> Training {
    let data = tempfile::tempdir().expect("tempdir");
    let (coordinator, address) = Process::coordinator(data.path(), "127.0.0.1:0", &[]);
    let mut client = client(&address, None);
    submit(&mut client, &fixture_spec(spec)).await;
    let worker = Process::worker(&address, &[]);
    wait_for_sweep(&mut client, sweep, Duration::from_secs(120), running_with_progress).await;
    Training { data, coordinator, address, client, worker }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_trial_is_leased_again_and_completes_once() {
    let Training { data, coordinator: _coordinator, address, mut client, worker: mut first } = training("long.yaml", "long").await;
    // Let at least one roll reach Parquet, then kill without warning.
    tokio::time::sleep(Duration::from_millis(800)).await;
    first.kill_hard();

    let _second = Process::worker(&address, &[]);
    let status = wait_for_sweep(&mut client, "long", Duration::from_secs(300), |s| s.finished).await;
    let trial = &status.trials[0];
    assert_eq!((trial.status.as_str(), trial.attempt, trial.failures), ("done", 2, 1), "{trial:#?}");

    // The coordinator rewrites the trials table on its next roll after completion.
    let sweep_dir = data.path().join("results/long");
    wait_for_final_metrics(&sweep_dir, 1, Duration::from_secs(60));
    let rows = progress_rows(&sweep_dir);
    check_progress(&rows);
    assert!(rows.iter().all(|row| row.attempt == 2), "rows of the killed attempt leaked into the results");
    let spectra = spectra_rows(&sweep_dir);
    assert!(spectra.iter().all(|row| row.1 == 2), "spectra of the killed attempt leaked into the results");
    check_final_checkpoints(&sweep_dir);
    assert_eq!(trials_rows(&sweep_dir), vec![(trial.trial_id.clone(), "done".to_string(), 2)]);
    let superseded = crate::results::parquet_files(&data.path().join("superseded"));
    assert!(!superseded.is_empty(), "the killed attempt's rolled progress should be kept aside");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_pack_worker_s_trials_are_each_leased_again_and_complete_once() {
    let data = tempfile::tempdir().expect("tempdir");
    let (_coordinator, address) = Process::coordinator(data.path(), "127.0.0.1:0", &[]);
    let mut client = client(&address, None);
    submit(&mut client, &fixture_spec("long-pack.yaml")).await;
    let mut first = Process::worker(&address, &["--pack", "3"]);
    let all_running = |status: &sweep_proto::pb::SweepStatus| {
        status.trials.len() == 3 && status.trials.iter().all(|t| t.status == "running" && t.epoch.unwrap_or(0) >= 100)
    };
    let status = wait_for_sweep(&mut client, "long-pack", Duration::from_secs(120), all_running).await;
    assert!(status.trials.iter().all(|t| t.worker == status.trials[0].worker), "one worker trains the whole pack");
    tokio::time::sleep(Duration::from_millis(800)).await;
    first.kill_hard();

    let _second = Process::worker(&address, &["--pack", "3"]);
    let status = wait_for_sweep(&mut client, "long-pack", Duration::from_secs(300), |s| s.finished).await;
    for trial in &status.trials {
        assert_eq!((trial.status.as_str(), trial.attempt, trial.failures), ("done", 2, 1), "{trial:#?}");
    }
    let sweep_dir = data.path().join("results/long-pack");
    wait_for_final_metrics(&sweep_dir, 3, Duration::from_secs(60));
    let rows = progress_rows(&sweep_dir);
    check_progress(&rows);
    assert!(rows.iter().all(|row| row.attempt == 2), "rows of the killed attempts leaked into the results");
    for trial in &status.trials {
        // Exactly one final series: every eval step once, 0..=6000 every 20.
        let mut steps: Vec<i64> =
            rows.iter().filter(|r| r.trial_id == trial.trial_id && r.measure == "test_loss").map(|r| r.step).collect();
        steps.sort();
        assert_eq!(steps, (0..=6000).step_by(20).collect::<Vec<i64>>(), "trial {}", trial.trial_id);
    }
    check_final_checkpoints(&sweep_dir);
    let mut trials = trials_rows(&sweep_dir);
    trials.sort();
    assert_eq!(trials.len(), 3);
    assert!(trials.iter().all(|(_, status, attempt)| status == "done" && *attempt == 2), "{trials:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_coordinator_restarts_on_the_same_data_dir_and_the_sweep_completes() {
    let data = tempfile::tempdir().expect("tempdir");
    let (mut coordinator, address) = Process::coordinator(data.path(), "127.0.0.1:0", &[]);
    let listen = address.strip_prefix("http://").expect("http address").to_string();
    let mut client = client(&address, None);
    submit(&mut client, &fixture_spec("long.yaml")).await;
    submit(&mut client, &fixture_spec("tiny.yaml")).await;
    let _worker = Process::worker(&address, &[]);
    wait_for_sweep(&mut client, "long", Duration::from_secs(120), running_with_progress).await;
    coordinator.kill_hard();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (_restarted, again) = Process::coordinator(data.path(), &listen, &[]);
    assert_eq!(again, address);
    let mut client = crate::fixture::client(&address, None);
    for sweep in ["long", "tiny"] {
        let status = wait_for_sweep(&mut client, sweep, Duration::from_secs(300), |s| s.finished).await;
        assert!(status.trials.iter().all(|t| t.status == "done"), "{status:#?}");
    }
    for (sweep, count) in [("long", 1), ("tiny", 4)] {
        wait_for_final_metrics(&data.path().join("results").join(sweep), count, Duration::from_secs(60));
    }
    for sweep in ["long", "tiny"] {
        let sweep_dir = data.path().join("results").join(sweep);
        let rows = progress_rows(&sweep_dir);
        check_progress(&rows);
        check_spectra(&spectra_rows(&sweep_dir), &rows, 11);
        check_final_checkpoints(&sweep_dir);
        assert!(trials_rows(&sweep_dir).iter().all(|(_, status, _)| status == "done"));
    }
    assert_eq!(trials_rows(&data.path().join("results/tiny")).len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_and_client_without_the_token_are_refused() {
    let data = tempfile::tempdir().expect("tempdir");
    let (_coordinator, address) = Process::coordinator(data.path(), "127.0.0.1:0", &["--token", "s3cret"]);
    let mut refused = Process::worker(&address, &[]);
    let (status, stderr) = refused.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    assert!(stderr.contains("requires a token"), "stderr: {stderr}");

    let mut anonymous = client(&address, None);
    let error = anonymous.list_sweeps(sweep_proto::pb::ListSweepsRequest {}).await.expect_err("refused");
    assert_eq!(error.code(), tonic::Code::Unauthenticated);
    let mut wrong = client(&address, Some("guess"));
    assert_eq!(wrong.list_sweeps(sweep_proto::pb::ListSweepsRequest {}).await.expect_err("refused").code(), tonic::Code::Unauthenticated);
    let mut trusted = client(&address, Some("s3cret"));
    trusted.list_sweeps(sweep_proto::pb::ListSweepsRequest {}).await.expect("accepted with the token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_sweep_stops_the_running_trial_and_frees_the_worker() {
    // The worker has one slot: it can take the next sweep only once the
    // endless trial's training thread has really stopped.
    let Training { data: _data, coordinator: _coordinator, mut client, worker: _worker, .. } = training("endless.yaml", "endless").await;

    let request = sweep_proto::pb::CancelSweepRequest { sweep: "endless".to_string() };
    assert_eq!(client.cancel_sweep(request).await.expect("cancel").into_inner().cancelled, 1);
    let status = wait_for_sweep(&mut client, "endless", Duration::from_secs(10), |s| s.finished).await;
    assert_eq!(status.trials[0].status, "cancelled", "{status:#?}");

    // Without the cancel the endless trial would hold the only slot for hours.
    submit(&mut client, &fixture_spec("tiny.yaml")).await;
    let tiny = wait_for_sweep(&mut client, "tiny", Duration::from_secs(180), |s| s.finished).await;
    assert!(tiny.trials.iter().all(|t| t.status == "done"), "{tiny:#?}");
    let endless = wait_for_sweep(&mut client, "endless", Duration::from_secs(1), |_| true).await;
    assert_eq!(endless.trials[0].status, "cancelled", "a cancelled trial came back: {endless:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_gives_the_trial_back_then_the_coordinator_flushes_and_exits_zero() {
    let Training { data, mut coordinator, mut client, mut worker, .. } = training("endless.yaml", "endless").await;
    // Wait until a roll of the attempt's progress has reached Parquet (rows
    // still only buffered when an attempt is superseded are dropped with it).
    let progress_dir = data.path().join("results/endless/progress");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while crate::results::parquet_files(&progress_dir).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no progress file was rolled within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    worker.terminate();
    let (exit, stderr) = worker.wait_exit(Duration::from_secs(30));
    assert!(exit.success(), "worker after SIGTERM: {exit:?}\n{stderr}");
    let status = wait_for_sweep(&mut client, "endless", Duration::from_secs(10), |s| s.trials[0].status == "queued").await;
    let trial = &status.trials[0];
    assert_eq!((trial.attempt, trial.failures), (1, 0), "a trial given back on SIGTERM is not a failure: {trial:#?}");

    coordinator.terminate();
    let (exit, stderr) = coordinator.wait_exit(Duration::from_secs(30));
    assert!(exit.success(), "coordinator after SIGTERM: {exit:?}\n{stderr}");
    // Flushed before exit: the trials table, and the given-back attempt's
    // rolled rows, kept aside rather than in the results.
    let sweep_dir = data.path().join("results/endless");
    assert_eq!(trials_rows(&sweep_dir), vec![(trial.trial_id.clone(), "queued".to_string(), 1)]);
    assert!(progress_rows(&sweep_dir).is_empty(), "rows of the given-back attempt leaked into the results");
    let kept_aside = crate::results::parquet_files(&data.path().join("superseded/endless").join(&trial.trial_id).join("progress"));
    assert!(!kept_aside.is_empty(), "the given-back attempt's progress was not written");
}

/// The whole machine stalls (here: SIGSTOP to the coordinator and the
/// worker, as a suspended VM or a swap storm stops both) for twice the lease
/// TTL: when both run again the trial goes on in its first attempt, instead
/// of lapsing because the coordinator checked its leases before it read the
/// heartbeats that had waited meanwhile (which lost a reproduction run two
/// attempts of two trials, bench/reproduction/README.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_of_coordinator_and_worker_longer_than_a_lease_does_not_lapse_it() {
    let Training { data: _data, coordinator, mut client, worker, .. } = training("endless.yaml", "endless").await;
    coordinator.signal(libc::SIGSTOP, "SIGSTOP");
    worker.signal(libc::SIGSTOP, "SIGSTOP");
    tokio::time::sleep(Duration::from_secs(4)).await;
    coordinator.signal(libc::SIGCONT, "SIGCONT");
    worker.signal(libc::SIGCONT, "SIGCONT");
    // Two more TTLs of normal running: a lapse would show as attempt 2 or a failure.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = wait_for_sweep(&mut client, "endless", Duration::from_secs(10), |_| true).await;
    let trial = &status.trials[0];
    assert_eq!((trial.status.as_str(), trial.attempt, trial.failures), ("running", 1, 0), "{trial:#?}");
}

/// SIGTERM while a sweep of 300,000 trials is being made and stored: the
/// coordinator makes and stores no further chunk, tells the submitting
/// client it is shutting down and exits 0; what it stored before stays in
/// whole chunks (of 20,000, one transaction each), and a restart on the same
/// data directory serves the sweep. The bound on the exit here is loose (a
/// debug build on a loaded machine); issue 14's 2 s is measured by
/// `submit-under-load` on a release build (bench/RESULTS.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_the_middle_of_a_large_submission_stops_it_within_a_chunk_and_exits_zero() {
    let data = tempfile::tempdir().expect("tempdir");
    let (mut coordinator, address) = Process::coordinator(data.path(), "127.0.0.1:0", &[]);
    let list = |values: Vec<String>| format!("[{}]", values.join(", "));
    let yaml = format!(
        "version: 1\nname: large\nfamilies: transformer\naxes:\n  modulus: {}\n  data_fraction: 0.3\n  weight_decay: [0.1, 0.3, 1]\n  seed: {}\n",
        list((0..100).map(|k| (3 + 2 * k).to_string()).collect()),
        list((0..1000).map(|seed| seed.to_string()).collect()),
    );
    let mut submitting = client(&address, None);
    let submission = tokio::spawn(async move {
        submitting.submit_sweep(sweep_proto::pb::SubmitSweepRequest { spec_yaml: yaml, source_name: "large.yaml".into() }).await
    });
    // SIGTERM once the first chunk is stored, so that it lands among the chunks.
    let mut watching = client(&address, None);
    let stored = |sweeps: &sweep_proto::pb::ListSweepsResponse| sweeps.sweeps.iter().find(|s| s.name == "large").map_or(0, |s| s.total);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let sweeps = watching.list_sweeps(sweep_proto::pb::ListSweepsRequest {}).await.expect("list").into_inner();
        if stored(&sweeps) > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no chunk stored within 120 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = std::time::Instant::now();
    coordinator.terminate();
    let (exit, stderr) = coordinator.wait_exit(Duration::from_secs(60));
    let took = sent.elapsed();
    eprintln!("the coordinator exited {took:?} after SIGTERM");
    assert!(exit.success(), "coordinator after SIGTERM: {exit:?}\n{stderr}");
    assert!(took < Duration::from_secs(15), "the coordinator took {took:?} to stop\n{stderr}");
    let refused = submission.await.expect("submission task").expect_err("the submission was stopped");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");

    let (_restarted, address) = Process::coordinator(data.path(), "127.0.0.1:0", &[]);
    let sweeps = client(&address, None).list_sweeps(sweep_proto::pb::ListSweepsRequest {}).await.expect("list").into_inner();
    let total = stored(&sweeps);
    assert!(total > 0 && total < 300_000 && total % 20_000 == 0, "{total} trials stored: whole chunks, not all");
}
