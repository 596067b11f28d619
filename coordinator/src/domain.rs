//! Domain types of the coordinator: what the store and the service speak.
//! The gRPC adapter converts these to and from wire messages.

use sweep_core::{MeasureKind, MeasureValue, StepMeasures, TrialId, TrialParams};

pub use sweep_core::{FinalMetrics, LeaseRef, Millis, Revocation, TrialLease};

/// What a worker asks for when it leases: up to `free_slots` packs of up to
/// `pack_size` trials each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseAsk {
    /// The registered worker.
    pub worker_id: String,
    /// Packs it can start now (none are leased for 0).
    pub free_slots: u32,
    /// Most trials per pack (at least 1).
    pub pack_size: u32,
}

/// One buffered value of a typed measure: a scalar, one frequency of a
/// spectrum (`key` = k) or one point of a curve (`key` = t).
#[derive(Debug, Clone, PartialEq)]
pub struct BufferedRow {
    /// Training step (epoch).
    pub step: i64,
    /// Measure name.
    pub measure: String,
    /// The measure's shape, which decides its table.
    pub kind: MeasureKind,
    /// 0 for a scalar, the frequency of a spectrum entry, the t of a curve point.
    pub key: f64,
    /// Value.
    pub value: f64,
    /// When the worker computed it.
    pub wall_time_ms: Millis,
}

impl BufferedRow {
    /// The rows of one step's typed measures, appended to `rows`.
    pub fn explode_into(step: &StepMeasures, rows: &mut Vec<BufferedRow>) {
        for measure in &step.measures {
            let mut push = |kind, key, value| {
                rows.push(BufferedRow { step: step.step, measure: measure.name.clone(), kind, key, value, wall_time_ms: step.wall_time_ms })
            };
            match &measure.value {
                MeasureValue::Scalar(value) => push(MeasureKind::Scalar, 0.0, *value),
                MeasureValue::Spectrum(values) => {
                    for (frequency, value) in values.iter().enumerate() {
                        push(MeasureKind::Spectrum, frequency as f64, *value);
                    }
                }
                MeasureValue::Curve(points) => {
                    for point in points {
                        push(MeasureKind::Curve, point.t, point.value);
                    }
                }
            }
        }
    }
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
    /// The trial's learning rate: its `lr` axis value, else the sweep's `training.lr`.
    pub learning_rate: f64,
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
