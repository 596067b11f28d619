//! The coordinator's one error enum and its mapping onto gRPC status codes.

use sweep_core::SpecError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Everything that can go wrong in the coordinator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    /// The submitted sweep spec is invalid.
    #[error("invalid sweep spec:\n{0}")]
    InvalidSpec(SpecError),
    /// A request field is invalid.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The sweep's grid is larger than the coordinator's limit.
    #[error(
        "sweep `{sweep}` has {trials} trials, more than this coordinator's limit of {limit} per sweep (--max-trials-per-sweep); split it into smaller sweeps"
    )]
    TooManyTrials {
        /// Sweep name.
        sweep: String,
        /// Its size (the product of its axes).
        trials: u128,
        /// The limit.
        limit: u64,
    },
    /// No sweep of that name.
    #[error("no sweep named `{0}`")]
    SweepNotFound(String),
    /// A sweep of that name exists with other settings.
    #[error("sweep `{name}` already exists with different settings ({reason}); rename the sweep to run new settings")]
    SweepConflict {
        /// Sweep name.
        name: String,
        /// What differs.
        reason: String,
    },
    /// The worker id is unknown (e.g. the coordinator's data dir was reset).
    #[error("unknown worker `{0}`; register again")]
    UnknownWorker(String),
    /// The call carries a lease that is no longer current.
    #[error("stale lease for trial {trial_id} attempt {attempt}: {reason}")]
    StaleLease {
        /// Trial.
        trial_id: String,
        /// Attempt quoted by the caller.
        attempt: u32,
        /// Why it is stale.
        reason: String,
    },
    /// The coordinator is shutting down.
    #[error("the coordinator is shutting down")]
    ShuttingDown,
    /// SQLite failed.
    #[error("storage error: {0}")]
    Storage(#[from] rusqlite::Error),
    /// Reading or writing result files failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Writing Parquet failed.
    #[error("parquet error: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Building Arrow batches failed.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A blocking task panicked.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias of the coordinator.
pub type Result<T, E = CoordinatorError> = std::result::Result<T, E>;

impl CoordinatorError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        CoordinatorError::Io { path: path.display().to_string(), source }
    }
}

impl From<CoordinatorError> for Status {
    fn from(error: CoordinatorError) -> Status {
        let message = error.to_string();
        match error {
            CoordinatorError::InvalidSpec(spec_error) => {
                let mut details = ErrorDetails::new();
                for problem in spec_error.problems() {
                    let field = if problem.path.is_empty() { "spec".to_string() } else { problem.path.clone() };
                    details.add_bad_request_violation(field, problem.to_string());
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            CoordinatorError::InvalidRequest(_) | CoordinatorError::TooManyTrials { .. } => Status::invalid_argument(message),
            CoordinatorError::SweepNotFound(_) | CoordinatorError::UnknownWorker(_) => Status::not_found(message),
            CoordinatorError::SweepConflict { .. } => Status::already_exists(message),
            CoordinatorError::StaleLease { .. } => Status::failed_precondition(message),
            CoordinatorError::ShuttingDown => Status::unavailable(message),
            CoordinatorError::Storage(_)
            | CoordinatorError::Io { .. }
            | CoordinatorError::Parquet(_)
            | CoordinatorError::Arrow(_)
            | CoordinatorError::Internal(_) => {
                tracing::error!(error = %message, "internal coordinator error");
                Status::internal(message)
            }
        }
    }
}
