//! Operating a server: the Prometheus endpoint (`--metrics-listen`) and the
//! worker's `grpc.health.v1` service (`--health-listen`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use sweep_worker::Liveness;
use tonic_health::ServingStatus;

/// Serve Prometheus metrics on `http://ADDRESS/metrics` (any path answers),
/// from this process's `metrics` facade: one exporter per process.
pub(crate) fn serve_metrics(address: SocketAddr) -> anyhow::Result<()> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(address)
        .install()
        .with_context(|| format!("failed to serve metrics on {address}"))?;
    sweep_coordinator::telemetry::describe();
    sweep_worker::telemetry::describe();
    tracing::info!(%address, "metrics on http://{address}/metrics");
    Ok(())
}

/// A worker whose control loop has not gone round for this long is reported
/// NOT_SERVING (the loop turns at least every few seconds, even while the
/// coordinator is unreachable).
pub(crate) const STUCK_AFTER: Duration = Duration::from_secs(60);

/// Serve `grpc.health.v1` for a worker on `address` until the process ends:
/// SERVING while its control loop turns, NOT_SERVING once it has been stuck
/// for [`STUCK_AFTER`] or is stopping.
pub(crate) async fn serve_worker_health(
    address: SocketAddr,
    liveness: Liveness,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await.with_context(|| format!("failed to serve health checks on {address}"))?;
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter.set_service_status("", ServingStatus::Serving).await;
    tokio::spawn(async move {
        let mut stopping = stopping;
        let mut current = ServingStatus::Serving;
        loop {
            let stuck = liveness.since_last_turn() > STUCK_AFTER;
            let next = if stuck || *stopping.borrow() { ServingStatus::NotServing } else { ServingStatus::Serving };
            if next != current {
                if stuck {
                    tracing::warn!(
                        seconds = liveness.since_last_turn().as_secs(),
                        "the worker's control loop is stuck; health is NOT_SERVING"
                    );
                }
                reporter.set_service_status("", next).await;
                current = next;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stopping.changed() => {}
            }
        }
    });
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        if let Err(error) = tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await {
            tracing::warn!(%error, "the health service stopped");
        }
    });
    Ok(())
}
