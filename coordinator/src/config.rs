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
    /// `trials` is the sweep's table as just written.
    fn trials_written<'a>(&'a self, sweep: &'a str, trials: &'a [TrialView]) -> BoxFuture<'a, ()>;
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
        }
    }
}
