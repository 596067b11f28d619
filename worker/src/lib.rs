//! The groksweep worker: leases trials from a coordinator and trains them.
//!
//! - [`backend`]: the burn backend, chosen by cargo features (`flex` CPU by default, `cuda`).
//! - [`transformer`]: the Nanda et al. 2023 family — `model`, `data`, `train`, `eval`.
//! - [`sink`]: [`MeasureSink`], where a training loop sends measures.
//! - `trial_thread`: one trial on a dedicated OS thread, rows over a bounded channel.
//! - `runtime`: the async worker loop ([`run`]).

pub mod backend;
mod runtime;
pub mod sink;
mod trial_thread;
pub mod transformer;

pub use runtime::run;
pub use sink::{CollectingSink, MeasureSink, SinkError};

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Coordinator address, e.g. `http://head:50051`.
    pub coordinator: String,
    /// Trials trained at once.
    pub slots: u32,
    /// Shared token, if the coordinator requires one.
    pub token: Option<String>,
    /// Name shown in the coordinator's records (host name by default).
    pub name: String,
}

/// Errors that end a worker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The coordinator address or token is unusable.
    #[error(transparent)]
    Connect(#[from] sweep_proto::client::ConnectError),
    /// The coordinator refused this worker (wrong or missing token).
    #[error("the coordinator refused this worker: {0}")]
    Refused(String),
}
