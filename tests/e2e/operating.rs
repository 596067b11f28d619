//! Operating a coordinator and workers: the Prometheus endpoints scraped over
//! HTTP, the worker's `grpc.health.v1`, and KEDA's external-scaler interface
//! answering as trials are queued, leased, given back and finished.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use sweep_proto::keda;
use sweep_proto::keda::external_scaler_client::ExternalScalerClient;
use sweep_proto::pb;

use crate::fixture::{InProcessCoordinator, InProcessWorker, Process, client, fast_config, fixture_spec, submit, wait_for_sweep};

/// A loopback port nobody listens on now (the exporter cannot report the
/// port it bound, so tests pick one).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0").local_addr().expect("bound").port()
}

/// GET `/metrics` and return the body.
fn scrape(port: u16) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint accepts");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

/// The value of the sample whose name-and-labels part is exactly `series`.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Scrape until `series` has a value that satisfies `predicate` (bounded).
fn scrape_until(port: u16, series: &str, predicate: impl Fn(f64) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = scrape(port);
        if sample(&body, series).is_some_and(&predicate) {
            return body;
        }
        assert!(Instant::now() < deadline, "{series} never reached the expected value; last scrape:\n{body}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_and_worker_metrics_are_scraped_and_the_worker_reports_healthy() {
    let data = tempfile::tempdir().expect("tempdir");
    let (coordinator_port, worker_port, health_port) = (free_port(), free_port(), free_port());
    let coordinator_metrics = format!("127.0.0.1:{coordinator_port}");
    let (_coordinator, address) = Process::coordinator(data.path(), "127.0.0.1:0", &["--metrics-listen", &coordinator_metrics]);
    let (worker_metrics, health) = (format!("127.0.0.1:{worker_port}"), format!("127.0.0.1:{health_port}"));
    let _worker = Process::worker(&address, &["--metrics-listen", &worker_metrics, "--health-listen", &health]);
    let mut client = client(&address, None);
    submit(&mut client, &fixture_spec("tiny.yaml")).await;
    let done = wait_for_sweep(&mut client, "tiny", Duration::from_secs(180), |status| status.finished).await;
    assert!(done.trials.iter().all(|trial| trial.status == "done"), "{done:#?}");

    // The state gauges are refreshed every few seconds.
    let body = scrape_until(coordinator_port, r#"groksweep_trials{sweep="tiny",status="done"}"#, |done| done == 4.0);
    assert_eq!(sample(&body, r#"groksweep_trials{sweep="tiny",status="queued"}"#), Some(0.0), "{body}");
    assert_eq!(sample(&body, "groksweep_leases_granted_total"), Some(4.0), "{body}");
    assert_eq!(sample(&body, "groksweep_workers_connected"), Some(1.0), "{body}");
    assert!(sample(&body, "groksweep_progress_rows_ingested_total").is_some_and(|rows| rows > 100.0), "{body}");
    assert!(sample(&body, "groksweep_parquet_flush_seconds_count").is_some_and(|flushes| flushes >= 1.0), "{body}");
    assert!(body.contains("# HELP groksweep_leases_lapsed_total"), "{body}");

    // Four trials of 60 epochs, each trained one step per epoch.
    let body = scrape_until(worker_port, "groksweep_worker_trials_running", |running| running == 0.0);
    assert_eq!(sample(&body, "groksweep_worker_trial_steps_total"), Some(240.0), "{body}");
    assert!(sample(&body, "groksweep_worker_steps_per_second").is_some_and(|rate| rate >= 0.0), "{body}");

    // Kubernetes' gRPC probe asks the standard health service.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{health}")).expect("uri").connect().await.expect("health port");
    let answer = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .expect("health check")
        .into_inner();
    assert_eq!(answer.status(), tonic_health::pb::health_check_response::ServingStatus::Serving);
}

fn reference(metadata: &[(&str, &str)]) -> keda::ScaledObjectRef {
    keda::ScaledObjectRef {
        name: "groksweep-workers".into(),
        namespace: "default".into(),
        scaler_metadata: metadata.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect::<HashMap<_, _>>(),
    }
}

type Scaler = ExternalScalerClient<tonic::transport::Channel>;

async fn open_trials(scaler: &mut Scaler, metadata: &[(&str, &str)]) -> (bool, i64) {
    let active = scaler.is_active(reference(metadata)).await.expect("IsActive").into_inner().result;
    let request = keda::GetMetricsRequest { scaled_object_ref: Some(reference(metadata)), metric_name: "s0-groksweep-open-trials".into() };
    let metrics = scaler.get_metrics(request).await.expect("GetMetrics").into_inner();
    assert_eq!(metrics.metric_values.len(), 1);
    let value = &metrics.metric_values[0];
    assert_eq!(value.metric_name, sweep_coordinator::scaler::METRIC_NAME);
    assert_eq!(value.metric_value as f64, value.metric_value_float);
    (active, value.metric_value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keda_scaler_follows_the_queue() {
    let data = tempfile::tempdir().expect("tempdir");
    let coordinator = InProcessCoordinator::start(fast_config(data.path())).await;
    // KEDA sends no token; the scaler is reached on the coordinator's port.
    let mut scaler = ExternalScalerClient::connect(coordinator.address.clone()).await.expect("scaler");
    let mut client = client(&coordinator.address, None);

    // Nothing submitted: inactive, so KEDA scales the workers to zero.
    assert_eq!(open_trials(&mut scaler, &[]).await, (false, 0));
    let spec = scaler.get_metric_spec(reference(&[("trialsPerReplica", "2.5")])).await.expect("GetMetricSpec").into_inner();
    assert_eq!(spec.metric_specs.len(), 1);
    assert_eq!(spec.metric_specs[0].metric_name, "groksweep-open-trials");
    assert_eq!((spec.metric_specs[0].target_size, spec.metric_specs[0].target_size_float), (3, 2.5));
    let error = scaler.get_metric_spec(reference(&[("trialsPerReplica", "zero")])).await.expect_err("bad metadata");
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(error.message().contains("trialsPerReplica"), "{}", error.message());

    // Four trials queued.
    submit(&mut client, &fixture_spec("tiny.yaml")).await;
    assert_eq!(open_trials(&mut scaler, &[]).await, (true, 4));
    assert_eq!(open_trials(&mut scaler, &[("sweep", "tiny")]).await, (true, 4));
    assert_eq!(open_trials(&mut scaler, &[("sweep", "another")]).await, (false, 0));
    let mut stream = scaler.stream_is_active(reference(&[])).await.expect("StreamIsActive").into_inner();
    assert!(stream.message().await.expect("stream").expect("a first answer").result);

    // One leased by a worker: still four open (three queued, one running).
    let worker_id = client
        .register_worker(pb::RegisterWorkerRequest {
            name: "hand".into(),
            backend: "flex".into(),
            slots: 1,
            previous_worker_id: String::new(),
            pack_size: 1,
        })
        .await
        .expect("registers")
        .into_inner()
        .worker_id;
    let leased = client
        .lease_trials(pb::LeaseTrialsRequest { worker_id, free_slots: 1, backend: "flex".into(), pack_size: 1 })
        .await
        .expect("leases")
        .into_inner();
    let lease = leased.packs[0].leases[0].lease.clone().expect("a lease");
    let status = client.get_sweep(pb::GetSweepRequest { sweep: "tiny".into() }).await.expect("status").into_inner();
    assert_eq!(status.trials.iter().filter(|trial| trial.status == "running").count(), 1);
    assert_eq!(open_trials(&mut scaler, &[]).await, (true, 4));
    // Given back: queued again, still open.
    client.fail_trial(pb::FailTrialRequest { lease: Some(lease), reason: "given back".into(), release: true }).await.expect("give back");
    assert_eq!(open_trials(&mut scaler, &[]).await, (true, 4));

    // A real worker finishes them: inactive again, and the stream says so.
    let worker = InProcessWorker::start(&coordinator.address, data.path(), "w", 1);
    wait_for_sweep(&mut client, "tiny", Duration::from_secs(180), |status| status.finished).await;
    assert_eq!(open_trials(&mut scaler, &[]).await, (false, 0));
    let ended = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.expect("the stream answers").expect("stream");
    assert!(!ended.expect("an answer").result);
    worker.stop().await;
    coordinator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_exit_when_idle_trains_the_queue_then_exits_by_itself() {
    let data = tempfile::tempdir().expect("tempdir");
    let (_coordinator, address) = Process::coordinator(data.path(), "127.0.0.1:0", &[]);
    let mut client = client(&address, None);
    submit(&mut client, &fixture_spec("tiny.yaml")).await;
    let mut worker = Process::worker(&address, &["--exit-when-idle", "1"]);
    let (exit, stderr) = worker.wait_exit(Duration::from_secs(180));
    assert!(exit.success(), "{stderr}");
    let status = client.get_sweep(pb::GetSweepRequest { sweep: "tiny".into() }).await.expect("status").into_inner();
    assert!(status.trials.iter().all(|trial| trial.status == "done"), "{status:#?}");
}
