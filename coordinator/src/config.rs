//! Coordinator settings.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::domain::TrialView;

/// Told each time a flush has written a sweep's `trials` table (and, before
/// it, every finished trial's last progress), outside the state lock; the
/// embedded and cluster commands use it to write the `phases` table.
pub trait TrialsWritten: Send + Sync + std::fmt::Debug {
    /// `trials` are the rows just written: those of the parts of the sweep's
    /// table that changed ([`crate::results::TRIALS_PER_PART`] trials each),
    /// which hold every trial that changed since the last call. They are
    /// lent (the coordinator keeps the parts it wrote last, to refresh them
    /// at the next flush instead of reading them anew).
    fn trials_written<'a>(&'a self, sweep: &'a str, trials: &'a [&'a TrialView]) -> BoxFuture<'a, ()>;
}

/// How a coordinator runs. Addresses are not here: the caller binds the listener.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// Root of the SQLite state and the results directory.
    pub data_dir: PathBuf,
    /// A lease lapses this long after its last renewal.
    pub lease_ttl: Duration,
    /// How often workers are told to heartbeat.
    pub heartbeat_interval: Duration,
    /// Buffered progress is written to Parquet at least this often.
    pub roll_interval: Duration,
    /// Interval between snapshots of a watched sweep.
    pub watch_interval: Duration,
    /// Shared token that clients and workers must present, if set.
    pub token: Option<String>,
    /// Called after each written `trials` table.
    pub on_trials_written: Option<Arc<dyn TrialsWritten>>,
    /// A submitted sweep with more trials than this is refused before its grid is built.
    pub max_trials_per_sweep: u64,
    /// Serve TLS with this certificate and key instead of plaintext.
    pub tls: Option<ServerTls>,
    /// Refresh the state gauges of the metrics (trials by sweep and status,
    /// connected workers) every few seconds: a count over every trial, so
    /// only when the metrics are served.
    pub state_gauges: bool,
    /// How long a stopping coordinator goes on writing buffered results to
    /// Parquet (and compacting done trials) once shutdown has begun; what is
    /// left stays durably buffered in its state and is written at its next
    /// start. `None` writes everything before it returns, however long that
    /// takes (`groksweep run`, whose results must be complete when it ends).
    pub shutdown_flush_budget: Option<Duration>,
}

/// The coordinator's TLS identity, as PEM.
#[derive(Clone)]
pub struct ServerTls {
    /// The certificate chain, leaf first.
    pub cert_pem: Vec<u8>,
    /// The leaf's private key.
    pub key_pem: Vec<u8>,
}

impl ServerTls {
    /// The identity as tonic's server TLS settings, refused here (with
    /// rustls' reason) when the PEM holds no usable certificate or key.
    pub fn server_config(&self) -> Result<tonic::transport::ServerTlsConfig, String> {
        let config = tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem));
        // Building a server with it parses the certificate and the key.
        tonic::transport::Server::builder().tls_config(config.clone()).map_err(|error| sweep_proto::client::error_chain(&error))?;
        Ok(config)
    }
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        formatter.debug_struct("ServerTls").field("cert_pem_bytes", &self.cert_pem.len()).finish_non_exhaustive()
    }
}

/// The default of [`CoordinatorConfig::max_trials_per_sweep`].
pub const DEFAULT_MAX_TRIALS_PER_SWEEP: u64 = 1_000_000;

impl CoordinatorConfig {
    /// Defaults for a data directory: 30 s leases, 5 s heartbeats, 5 s rolls.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        CoordinatorConfig {
            data_dir: data_dir.into(),
            lease_ttl: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            roll_interval: Duration::from_secs(5),
            watch_interval: Duration::from_millis(500),
            token: None,
            on_trials_written: None,
            max_trials_per_sweep: DEFAULT_MAX_TRIALS_PER_SWEEP,
            tls: None,
            state_gauges: false,
            shutdown_flush_budget: None,
        }
    }
}
