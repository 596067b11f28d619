//! A careless (or hostile) worker against a real coordinator over gRPC:
//! every kind of bad call is refused with INVALID_ARGUMENT naming the field,
//! nothing of it reaches the state or the Parquet tables, and a normal sweep
//! still completes afterwards.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sweep_proto::client::Client;
use sweep_proto::pb;
use tonic::Code;

use crate::fixture::{InProcessCoordinator, InProcessWorker, client, fast_config, fixture_spec, submit, wait_for_sweep};
use crate::results::progress_rows;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64
}

fn scalar(name: &str, value: f64) -> pb::Measure {
    pb::Measure { name: name.to_string(), value: Some(pb::measure::Value::Scalar(value)) }
}

fn step(step: i64, measures: Vec<pb::Measure>) -> pb::StepMeasures {
    pb::StepMeasures { step, wall_time_ms: now_ms(), measures }
}

async fn report(client: &mut Client, lease: &pb::LeaseRef, steps: Vec<pb::StepMeasures>) -> Result<u64, tonic::Status> {
    let batch = pb::ProgressBatch { lease: Some(lease.clone()), steps };
    client.report_progress(tokio_stream::iter(vec![batch])).await.map(|response| response.into_inner().rows_accepted)
}

fn metrics() -> pb::FinalMetrics {
    pb::FinalMetrics {
        epochs: 60,
        train_loss: 0.01,
        test_loss: 0.5,
        train_accuracy: 1.0,
        test_accuracy: 0.8,
        grokked_at: None,
        wall_seconds: 1.0,
        key_frequencies: vec![1, 4],
        judge_accuracy: None,
    }
}

/// The refusal must be INVALID_ARGUMENT and name `field`.
fn refused<T: std::fmt::Debug>(what: &str, result: Result<T, tonic::Status>, field: &str) {
    match result {
        Ok(value) => panic!("{what}: accepted ({value:?})"),
        Err(status) => {
            assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
            assert!(status.message().contains(&format!("`{field}`")), "{what}: the message names `{field}`: {}", status.message());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_calls_are_refused_naming_the_field_and_change_nothing() {
    let data = tempfile::tempdir().expect("tempdir");
    let coordinator = InProcessCoordinator::start(fast_config(data.path())).await;
    let mut client = client(&coordinator.address, None);
    submit(&mut client, &fixture_spec("tiny.yaml")).await;
    let register = |name: String, slots: u32| pb::RegisterWorkerRequest {
        name,
        backend: "flex".into(),
        slots,
        previous_worker_id: String::new(),
        pack_size: 1,
    };
    let worker_id = client.register_worker(register("careless".into(), 1)).await.expect("registers").into_inner().worker_id;
    let leased = client
        .lease_trials(pb::LeaseTrialsRequest { worker_id: worker_id.clone(), free_slots: 1, backend: "flex".into(), pack_size: 1 })
        .await
        .expect("leases")
        .into_inner();
    let lease = leased.packs[0].leases[0].lease.clone().expect("a lease");
    // Two good reports first: steps 0 and 20.
    let good = |at: i64| step(at, vec![scalar("train_loss", 2.0), scalar("test_accuracy", 0.1)]);
    assert_eq!(report(&mut client, &lease, vec![good(0), good(20)]).await.expect("good progress"), 4);
    let before = client.get_sweep(pb::GetSweepRequest { sweep: "tiny".into() }).await.expect("status").into_inner();

    let huge_name = "x".repeat(1 << 20);
    let progress_cases: Vec<(&str, Vec<pb::StepMeasures>, &str)> = vec![
        ("a negative step", vec![step(-1, vec![scalar("train_loss", 1.0)])], "step"),
        ("a step past max_epochs", vec![step(61, vec![scalar("train_loss", 1.0)])], "step"),
        // Within one batch, so that the answer does not hang on whether a roll
        // has written steps 0 and 20 yet (after a roll, a row at or before its
        // measure's last written step is taken for a re-sent one and dropped).
        (
            "a step before the measure's latest",
            vec![step(30, vec![scalar("train_loss", 1.0)]), step(25, vec![scalar("train_loss", 1.0)])],
            "step",
        ),
        ("+inf accuracy", vec![step(30, vec![scalar("train_accuracy", f64::INFINITY)])], "measure.value"),
        ("an accuracy of 7", vec![step(30, vec![scalar("train_accuracy", 7.0)])], "measure.value"),
        ("a NaN loss", vec![step(30, vec![scalar("train_loss", f64::NAN)])], "measure.value"),
        ("a negative loss", vec![step(30, vec![scalar("test_loss", -1.0)])], "measure.value"),
        ("infinite squared weights", vec![step(30, vec![scalar("sum_squared_weights", f64::INFINITY)])], "measure.value"),
        ("a megabyte name", vec![step(30, vec![scalar(&huge_name, 1.0)])], "measure.name"),
        ("an unknown measure", vec![step(30, vec![scalar("colour", 1.0)])], "measure.name"),
        ("another family's measure", vec![step(30, vec![scalar("gini_operand", 0.5)])], "measure.name"),
        ("a measure twice", vec![step(30, vec![scalar("train_loss", 1.0), scalar("train_loss", 0.9)])], "measure.name"),
        (
            "a spectrum of the wrong length",
            vec![step(
                30,
                vec![pb::Measure { name: "W_E".into(), value: Some(pb::measure::Value::Spectrum(pb::Spectrum { values: vec![1.0; 3] })) }],
            )],
            "measure.spectrum",
        ),
        ("a spectrum sent as a scalar", vec![step(30, vec![scalar("W_E", 1.0)])], "measure.value"),
        ("a wall time of 1970", vec![pb::StepMeasures { wall_time_ms: 0, ..step(30, vec![scalar("train_loss", 1.0)]) }], "wall_time_ms"),
        (
            "a wall time next year",
            vec![pb::StepMeasures { wall_time_ms: now_ms() + 366 * 86_400_000, ..step(30, vec![scalar("train_loss", 1.0)]) }],
            "wall_time_ms",
        ),
        // One good step and one bad: nothing of the batch is written.
        ("a good step with a bad one", vec![good(30), step(40, vec![scalar("train_loss", -5.0)])], "measure.value"),
    ];
    let mut count = 0;
    for (what, steps, field) in progress_cases {
        refused(what, report(&mut client, &lease, steps).await, field);
        count += 1;
    }
    let complete = |metrics: pb::FinalMetrics| pb::CompleteTrialRequest {
        lease: Some(lease.clone()),
        metrics: Some(metrics),
        lease_next: None,
        final_steps: Vec::new(),
    };
    let metrics_cases: Vec<(&str, pb::FinalMetrics, &str)> = vec![
        ("epochs −1", pb::FinalMetrics { epochs: -1, ..metrics() }, "metrics.epochs"),
        ("epochs past max_epochs", pb::FinalMetrics { epochs: 61, ..metrics() }, "metrics.epochs"),
        ("a NaN test accuracy", pb::FinalMetrics { test_accuracy: f64::NAN, ..metrics() }, "metrics.test_accuracy"),
        ("a train accuracy of 7", pb::FinalMetrics { train_accuracy: 7.0, ..metrics() }, "metrics.train_accuracy"),
        ("a negative loss", pb::FinalMetrics { train_loss: -1.0, ..metrics() }, "metrics.train_loss"),
        ("grokked after the end", pb::FinalMetrics { grokked_at: Some(70), ..metrics() }, "metrics.grokked_at"),
        ("a frequency above (p − 1)/2", pb::FinalMetrics { key_frequencies: vec![1, 9], ..metrics() }, "metrics.key_frequencies"),
        ("a NaN wall time", pb::FinalMetrics { wall_seconds: f64::NAN, ..metrics() }, "metrics.wall_seconds"),
    ];
    for (what, bad, field) in metrics_cases {
        refused(what, client.complete_trial(complete(bad)).await, field);
        count += 1;
    }
    // Good metrics with a bad request for the next lease: the completion is refused too.
    let greedy = pb::LeaseTrialsRequest { worker_id: worker_id.clone(), free_slots: 1, backend: "flex".into(), pack_size: 1_000_000 };
    refused(
        "a completion asking for a pack of a million next",
        client.complete_trial(pb::CompleteTrialRequest { lease_next: Some(greedy), ..complete(metrics()) }).await,
        "pack_size",
    );
    count += 1;
    // Good metrics with a bad last row: neither is taken.
    refused(
        "a completion whose last rows hold a negative loss",
        client
            .complete_trial(pb::CompleteTrialRequest {
                final_steps: vec![good(40), step(50, vec![scalar("train_loss", -5.0)])],
                ..complete(metrics())
            })
            .await,
        "measure.value",
    );
    count += 1;
    refused("a kilobyte worker name", client.register_worker(register("w".repeat(1024), 1)).await, "name");
    refused("no slots", client.register_worker(register("ok".into(), 0)).await, "slots");
    refused(
        "a pack of a million",
        client
            .lease_trials(pb::LeaseTrialsRequest {
                worker_id: worker_id.clone(),
                free_slots: 1,
                backend: "flex".into(),
                pack_size: 1_000_000,
            })
            .await,
        "pack_size",
    );
    refused(
        "a 100 KB failure reason",
        client.fail_trial(pb::FailTrialRequest { lease: Some(lease.clone()), reason: "r".repeat(100_000), release: false }).await,
        "reason",
    );
    refused(
        "a 2 MB spec",
        client.submit_sweep(pb::SubmitSweepRequest { spec_yaml: "#".repeat(2 << 20), source_name: "big.yaml".into() }).await,
        "spec_yaml",
    );
    refused(
        "a trial id of a kilobyte",
        report(&mut client, &pb::LeaseRef { trial_id: "t".repeat(1024), ..lease.clone() }, vec![good(30)]).await,
        "lease.trial_id",
    );
    // Two million trials in a few lines: refused from the axes' lengths, before any is built.
    let list = |values: Vec<String>| format!("[{}]", values.join(", "));
    let huge = format!(
        "version: 1\nname: huge\nfamilies: transformer\naxes:\n  modulus: {}\n  data_fraction: {}\n  weight_decay: {}\n  seed: {}\n",
        list((0..50).map(|k| (2 * k + 101).to_string()).collect()),
        list((0..20).map(|k| format!("0.{}", 30 + k)).collect()),
        list((0..20).map(|k| k.to_string()).collect()),
        list((0..100).map(|k| k.to_string()).collect()),
    );
    let status =
        client.submit_sweep(pb::SubmitSweepRequest { spec_yaml: huge, source_name: "huge.yaml".into() }).await.expect_err("too big");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("2000000 trials") && status.message().contains("limit of 1000000"), "{}", status.message());
    count += 7;
    assert!(count >= 20, "{count} kinds of bad call");

    // The state is as before: the trial still runs at step 20, nothing was completed or failed.
    let after = client.get_sweep(pb::GetSweepRequest { sweep: "tiny".into() }).await.expect("status").into_inner();
    assert_eq!(after.summary, before.summary);
    let trial = |status: &pb::SweepStatus| status.trials.iter().find(|t| t.trial_id == lease.trial_id).cloned().expect("the trial");
    assert_eq!((trial(&after).status, trial(&after).epoch, trial(&after).failures), ("running".to_string(), Some(20), 0));
    assert_eq!(after.trials.len(), before.trials.len());
    // The careless worker ends its trial properly at last, its last rows
    // (step 40) with the completion; a real one runs the rest of the sweep.
    client
        .complete_trial(pb::CompleteTrialRequest { final_steps: vec![good(40)], ..complete(metrics()) })
        .await
        .expect("valid final metrics and rows are taken");
    let worker = InProcessWorker::start(&coordinator.address, data.path(), "careful", 4);
    let status = wait_for_sweep(&mut client, "tiny", Duration::from_secs(300), |s| s.finished).await;
    assert!(status.trials.iter().all(|t| t.status == "done" && t.failures == 0), "{status:#?}");
    worker.stop().await;
    coordinator.stop().await;
    // The Parquet, flushed at shutdown, holds the careless trial's good rows only, the last ones included.
    let rows: Vec<_> = progress_rows(&data.path().join("results/tiny")).into_iter().filter(|row| row.trial_id == lease.trial_id).collect();
    let mut steps: Vec<i64> = rows.iter().map(|row| row.step).collect();
    steps.sort_unstable();
    assert_eq!(steps, vec![0, 0, 20, 20, 40, 40], "{rows:?}");
    assert!(rows.iter().all(|row| row.value.is_finite() && (row.measure == "train_loss" || row.measure == "test_accuracy")));
}
