//! The groksweep coordinator: the only writer of sweep state and results.
//!
//! - [`config`]: the [`CoordinatorConfig`].
//! - [`domain`]: leases, progress rows, trial views — the types the service speaks.
//! - [`clock`]: injectable time ([`SystemClock`], [`ManualClock`]).
//! - [`store`]: SQLite state (sweeps, trials, attempts/leases, workers, progress buffer);
//!   `progress_batch`: how buffered progress is held there, one encoded batch per report and shape.
//! - `store_thread`: the thread that owns the store and commits the calls that arrive together in one transaction;
//!   `checkpointer`: the thread that copies the store's write-ahead log back into its database.
//! - [`results`]: the Parquet results directory; [`compaction`]: one file per table for each done trial;
//!   `flush_reader`: what a flush writes, read off the store's thread on a read-only connection;
//!   `part_rows`: trials read into views, and the `trials` parts a flush read kept for the next.
//! - [`service`]: [`Coordinator`], plain async domain methods and background loops.
//! - `grpc`: the thin tonic adapter; `auth`: the shared-token interceptor.
//! - [`scaler`]: KEDA's external-scaler interface over the queue, for autoscaling workers.
//! - `migrate`: bringing a data directory of an older build up to date when the store opens.
//! - [`telemetry`]: the Prometheus metrics (through the `metrics` facade).
//! - [`run`]: serve on a bound listener until a shutdown future resolves.

pub mod auth;
mod checkpointer;
pub mod clock;
pub mod compaction;
pub mod config;
pub mod domain;
pub mod error;
mod flush_reader;
mod grpc;
mod migrate;
mod part_rows;
mod progress_batch;
pub mod results;
pub mod scaler;
pub mod service;
pub mod store;
mod store_thread;
pub mod telemetry;

use std::future::Future;
use std::time::Duration;

use sweep_proto::pb::coordinator_server::CoordinatorServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::info;

pub use auth::TokenCheck;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{CoordinatorConfig, DEFAULT_MAX_TRIALS_PER_SWEEP, ServerTls, TrialsWritten};
pub use error::{CoordinatorError, Result};
pub use service::Coordinator;

/// Errors of [`run`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The gRPC server failed.
    #[error("grpc server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The TLS certificate or key is unusable.
    #[error("invalid TLS certificate or key: {0}")]
    Tls(String),
    /// The reflection service could not be built.
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The final results flush failed.
    #[error("final flush failed: {0}")]
    Flush(#[from] CoordinatorError),
}

/// Connections the kernel queues for the coordinator before it accepts them.
/// tokio's `TcpListener::bind` asks for 1,024; a thousand workers started at
/// once (a Slurm array, a Kubernetes Job) overflowed that queue on loopback
/// and some of them saw their connection dropped. Linux caps this at
/// `net.core.somaxconn` (4,096 by default since 5.4).
pub const LISTEN_BACKLOG: u32 = 8192;

/// Listen on `address` for [`run`], with a queue of [`LISTEN_BACKLOG`] connections.
pub fn bind(address: impl Into<std::net::SocketAddr>) -> std::io::Result<TcpListener> {
    let address = address.into();
    let socket = if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As std and tokio do on Unix: a restarted coordinator can bind its port
    // while connections of the previous one are still in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serve `coordinator` on `listener` (health and reflection included) until
/// `shutdown` resolves; then stop leasing, drain calls in flight, write the
/// buffered results to Parquet (all of them, or what the configured shutdown
/// flush budget allows) and return.
pub async fn run(listener: TcpListener, shutdown: impl Future<Output = ()> + Send, coordinator: Coordinator) -> Result<(), ServeError> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<CoordinatorServer<grpc::GrpcAdapter>>().await;
    let reflection =
        tonic_reflection::server::Builder::configure().register_encoded_file_descriptor_set(sweep_proto::FILE_DESCRIPTOR_SET).build_v1()?;
    let token_check = TokenCheck::new(coordinator.config().token.clone());
    let service = tonic::service::interceptor::InterceptedService::new(
        CoordinatorServer::new(grpc::GrpcAdapter::new(coordinator.clone()))
            .max_decoding_message_size(sweep_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(sweep_proto::MAX_MESSAGE_BYTES),
        token_check,
    );
    let background = tokio::spawn(coordinator.clone().run_background());
    let address = listener.local_addr().ok();
    info!(address = ?address, data_dir = %coordinator.config().data_dir.display(), "coordinator serving");
    let stopping = coordinator.clone();
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = &coordinator.config().tls {
        server = server.tls_config(tls.server_config().map_err(ServeError::Tls)?)?;
    }
    server
        .timeout(Duration::from_secs(60))
        .concurrency_limit_per_connection(256)
        .trace_fn(|request| tracing::debug_span!("grpc", path = %request.uri().path()))
        .add_service(health_service)
        .add_service(reflection)
        // KEDA sends no bearer token; the scaler answers only trial counts.
        .add_service(sweep_proto::keda::external_scaler_server::ExternalScalerServer::new(scaler::KedaScaler::new(coordinator.clone())))
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            shutdown.await;
            stopping.begin_shutdown();
            health_reporter.set_not_serving::<CoordinatorServer<grpc::GrpcAdapter>>().await;
        })
        .await?;
    coordinator.begin_shutdown();
    let _ = background.await;
    coordinator.flush().await?;
    info!("coordinator stopped");
    Ok(())
}
