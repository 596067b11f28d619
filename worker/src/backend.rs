//! The burn backend a worker trains on, chosen by cargo features: `flex` (CPU,
//! default) or `cuda`.

use burn::backend::Autodiff;

/// The inference backend.
#[cfg(not(feature = "cuda"))]
pub type WorkerBackend = burn::backend::Flex;
/// The inference backend.
#[cfg(feature = "cuda")]
pub type WorkerBackend = burn::backend::Cuda;

/// The training backend.
pub type TrainingBackend = Autodiff<WorkerBackend>;

/// Name reported to the coordinator and stored with results.
pub const BACKEND_NAME: &str = if cfg!(feature = "cuda") { "cuda" } else { "flex" };

/// CPU backend of the unit tests.
#[cfg(test)]
pub(crate) type TestBackend = burn::backend::Flex;
/// CPU autodiff backend of the unit tests.
#[cfg(test)]
pub(crate) type TestAutodiffBackend = Autodiff<TestBackend>;
