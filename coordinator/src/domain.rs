//! Domain types of the coordinator: what the store and the service speak.
//! The gRPC adapter converts these to and from wire messages.

use sweep_core::{DiffusionSettings, StopRule, TrainingSettings, TrialId, TrialParams};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// Identifies one lease: a trial's attempt and the fencing token it was granted with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRef {
    /// The trial.
    pub trial_id: TrialId,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Monotonic token; only the current one is accepted.
    pub token: u64,
}

/// A trial handed to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseGrant {
    /// The lease to quote in every later call.
    pub lease: LeaseRef,
    /// Sweep of the trial.
    pub sweep: String,
    /// The grid point.
    pub params: TrialParams,
    /// Training settings of the sweep.
    pub training: TrainingSettings,
    /// Stop rule of the sweep.
    pub stop: StopRule,
    /// Diffusion settings of the sweep, for diffusion trials.
    pub diffusion: Option<DiffusionSettings>,
    /// The lease lapses at this time unless renewed.
    pub deadline_ms: Millis,
}

/// A lease the worker must drop, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The lease.
    pub lease: LeaseRef,
    /// Human-readable reason.
    pub reason: String,
}

/// One measure value at one step.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressRow {
    /// Training step (epoch).
    pub step: i64,
    /// Measure name.
    pub measure: String,
    /// Value.
    pub value: f64,
    /// When the worker computed it.
    pub wall_time_ms: Millis,
}

/// What a finished trial reports.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FinalMetrics {
    /// Epochs trained.
    pub epochs: i64,
    /// Final train loss.
    pub train_loss: f64,
    /// Final test loss.
    pub test_loss: f64,
    /// Final train accuracy.
    pub train_accuracy: f64,
    /// Final test accuracy.
    pub test_accuracy: f64,
    /// First evaluated epoch with test accuracy ≥ 0.95.
    pub grokked_at: Option<i64>,
    /// Seconds the attempt took.
    pub wall_seconds: f64,
    /// Key frequencies of the final model (transformer), ascending.
    pub key_frequencies: Vec<u32>,
    /// Held-out accuracy of the classifier that judged generated images (diffusion, N > 1).
    pub judge_accuracy: Option<f64>,
}

/// Lifecycle of a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialStatus {
    /// Waiting for a worker.
    Queued,
    /// Leased to a worker.
    Running,
    /// Finished successfully.
    Done,
    /// Failed `max_attempts` times.
    Failed,
    /// Its sweep was cancelled.
    Cancelled,
}

impl TrialStatus {
    /// Name stored in SQLite and Parquet.
    pub fn as_str(self) -> &'static str {
        match self {
            TrialStatus::Queued => "queued",
            TrialStatus::Running => "running",
            TrialStatus::Done => "done",
            TrialStatus::Failed => "failed",
            TrialStatus::Cancelled => "cancelled",
        }
    }

    /// Parse a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "queued" => TrialStatus::Queued,
            "running" => TrialStatus::Running,
            "done" => TrialStatus::Done,
            "failed" => TrialStatus::Failed,
            "cancelled" => TrialStatus::Cancelled,
            _ => return None,
        })
    }
}

/// A trial as the coordinator knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialView {
    /// Id.
    pub trial_id: TrialId,
    /// Sweep.
    pub sweep: String,
    /// Grid point.
    pub params: TrialParams,
    /// Status.
    pub status: TrialStatus,
    /// Current (or final) attempt, 0 before the first lease.
    pub attempt: u32,
    /// Attempts that failed or lapsed.
    pub failures: u32,
    /// Worker of the current attempt.
    pub worker: Option<String>,
    /// When the current attempt started.
    pub started_at_ms: Option<Millis>,
    /// When the trial finished.
    pub finished_at_ms: Option<Millis>,
    /// Latest evaluated epoch of the current attempt.
    pub last_epoch: Option<i64>,
    /// Latest train accuracy.
    pub last_train_accuracy: Option<f64>,
    /// Latest test accuracy.
    pub last_test_accuracy: Option<f64>,
    /// Final metrics, once done.
    pub metrics: Option<FinalMetrics>,
    /// Why it failed.
    pub error: Option<String>,
    /// Latest checkpoint of the current attempt, relative to the sweep's results directory.
    pub final_checkpoint: Option<String>,
    /// Epoch limit from the stop rule.
    pub max_epochs: u32,
}

/// Counts of one sweep's trials by status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SweepSummary {
    /// Sweep name.
    pub name: String,
    /// All trials.
    pub total: u32,
    /// Queued.
    pub queued: u32,
    /// Running.
    pub running: u32,
    /// Done.
    pub done: u32,
    /// Failed.
    pub failed: u32,
    /// Cancelled.
    pub cancelled: u32,
    /// When first submitted.
    pub created_at_ms: Millis,
}

impl SweepSummary {
    /// No trial is queued or running.
    pub fn finished(&self) -> bool {
        self.queued == 0 && self.running == 0
    }
}

/// What a submission did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitOutcome {
    /// Sweep name.
    pub sweep: String,
    /// Trials in the sweep after the submission.
    pub total: u32,
    /// Trials this submission added.
    pub added: u32,
    /// Trials already done.
    pub done: u32,
}
