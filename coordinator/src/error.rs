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

/// Most spec problems one refusal lists (the rest are counted).
const MAX_SPEC_PROBLEMS_SENT: usize = 20;

impl From<CoordinatorError> for Status {
    fn from(error: CoordinatorError) -> Status {
        let message = error.to_string();
        match error {
            CoordinatorError::InvalidSpec(spec_error) => {
                // A status travels in HTTP/2 headers: a spec with a thousand
                // bad values must not make one too large to send.
                let problems = spec_error.problems();
                let mut details = ErrorDetails::new();
                let mut lines = Vec::new();
                for problem in problems.iter().take(MAX_SPEC_PROBLEMS_SENT) {
                    let field = if problem.path.is_empty() { "spec".to_string() } else { problem.path.clone() };
                    details.add_bad_request_violation(field, problem.to_string());
                    lines.push(problem.to_string());
                }
                let message = if problems.len() <= MAX_SPEC_PROBLEMS_SENT {
                    message
                } else {
                    let source = match &spec_error {
                        sweep_core::SpecError::Invalid { source_name, .. } => source_name.as_str(),
                        _ => "spec",
                    };
                    let mut shown: Vec<String> = lines.iter().map(|line| format!("{source}:{line}")).collect();
                    shown.push(format!("… and {} more problems", problems.len() - MAX_SPEC_PROBLEMS_SENT));
                    sweep_proto::fit_reason(&shown.join("\n"))
                };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_with_a_thousand_problems_is_refused_with_a_status_small_enough_to_send() {
        let moduli: Vec<String> = (0..1000).map(|k| (3 + 2 * k).to_string()).collect();
        let yaml = format!(
            "version: 1\nname: big\nfamilies: transformer\naxes:\n  modulus: [{}]\n  data_fraction: 0.3\n  weight_decay: 1\n  seed: 0\n",
            moduli.join(", ")
        );
        let error = sweep_core::parse_spec("big.yaml", &yaml).expect_err("moduli above 1024");
        assert_eq!(error.problems().len(), 489);
        let status = Status::from(CoordinatorError::InvalidSpec(error));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().len() <= sweep_proto::MAX_REASON_BYTES, "{} bytes", status.message().len());
        assert!(status.message().starts_with("big.yaml:5:"), "{}", status.message());
        assert!(status.message().ends_with("… and 469 more problems"), "{}", status.message());
        assert!(status.details().len() < 16 * 1024, "details of {} bytes", status.details().len());
    }
}
