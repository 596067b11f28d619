//! The groksweep worker: leases trials from a coordinator and trains them.
//!
//! - [`backend`]: the burn backend, chosen by cargo features (`flex` CPU by default, `cuda`, `wgpu`; `ndarray` for the bench comparison).
//! - `layout`: tensor layouts that keep burn-flex's element-wise ops vectorised, used by both model families.
//! - [`transformer`]: the Nanda et al. 2023 family — `model`, `data`, `train`, `eval`.
//! - [`fourier`]: the Fourier basis on Z_p and the measures built on it, shared by both families.
//! - [`llc`]: the local learning coefficient by SGLD around a checkpoint (devinterp's estimator).
//! - [`spectral`]: singular values (one-sided Jacobi) and the effective rank.
//! - [`diffusion`]: the flow-matching diffusion family — glyph data, DiT model, sampler, judge, measures.
//! - [`family`]: [`PackFamily`], the seam every family implements; [`registry`]: which family trains a lease.
//! - [`runner`]: [`run_pack`], the one training loop (cadence, stop rules, cancellation, sinks) for packs of any size.
//! - [`optim`]: per-trial AdamW over stacked parameters, behind a [`grad_filter`] (Grokfast, ⊥Grad); `stack`: stacking, slicing and dropping trials of a pack; `scale`: the `init_scale` axis.
//! - [`sink`]: [`MeasureSink`], where the runner sends one trial's measures, checkpoints and outcome.
//! - `stopping`: grokked-at and the early-stop rule.
//! - `pack_thread`: one pack on a dedicated OS thread, results over a bounded channel; `parts`: a pack's step cut into parts, one CPU thread each.
//! - `runtime`: the async worker loop ([`run`]); [`telemetry`]: its Prometheus metrics and [`Liveness`].

pub mod backend;
pub mod diffusion;
pub mod family;
pub mod fourier;
pub mod grad_filter;
mod layout;
pub mod llc;
pub mod optim;
mod pack_thread;
mod parts;
mod random;
pub mod registry;
pub mod runner;
mod runtime;
mod scale;
pub mod sink;
pub mod spectral;
mod stack;
mod stopping;
pub mod telemetry;
pub mod transformer;

pub use family::{Evaluation, FamilyContext, FamilyError, PackFamily};
pub use runner::run_pack;
pub use runtime::run;
pub use sink::{CollectingSink, MeasureSink, SinkError, TrialError, TrialOutcome};
pub use telemetry::Liveness;

/// A tensor's values on the host, row-major.
pub(crate) fn host<B: burn::tensor::backend::Backend, const D: usize>(tensor: burn::tensor::Tensor<B, D>) -> Vec<f32> {
    tensor.into_data().iter::<f32>().collect()
}

use std::time::Duration;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Coordinator address, e.g. `http://head:50051`.
    pub coordinator: String,
    /// Packs trained at once, each on its own thread.
    pub slots: u32,
    /// CPU threads each pack's training step uses (its batch cut into as
    /// many parts; see [`FamilyContext::step_threads`]); at least 1.
    /// [`family::default_step_threads`] shares the machine's cores between
    /// the packs that train at once.
    pub step_threads: u32,
    /// Most trials in one pack (trained as one stacked program).
    pub pack_size: u32,
    /// Shared token, if the coordinator requires one.
    pub token: Option<String>,
    /// PEM of the CA that signed the coordinator's certificate, for an
    /// `https://` address (the system's roots when absent).
    pub tls_ca_pem: Option<Vec<u8>>,
    /// Name shown in the coordinator's records (host name by default).
    pub name: String,
    /// Where trained judge classifiers of the diffusion family are cached.
    pub cache_dir: std::path::PathBuf,
    /// Where each running trial's checkpoints are kept on local disk until
    /// it ends (for measures computed over them after training).
    pub scratch_dir: std::path::PathBuf,
    /// Marked each time the control loop goes round, for health probes.
    pub liveness: Liveness,
    /// End the worker once it has trained nothing and found nothing to lease
    /// for this long (a pilot job that frees its node when the queue is empty);
    /// `None`: run until shut down. Time without the coordinator does not count.
    pub exit_when_idle: Option<Duration>,
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
    /// The coordinator's certificate cannot be verified.
    #[error("cannot verify the coordinator's certificate: {0}")]
    Certificate(String),
}
