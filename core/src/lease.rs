//! What a worker and the coordinator say about one trial: the lease that
//! identifies an attempt, the trial handed out with it, and what a finished
//! attempt reports. The wire types convert to and from these at the
//! boundary (`sweep_proto::convert`), where they are checked once.

use serde::{Deserialize, Serialize};

use crate::family::{FamilySettings, PackKey};
use crate::spec::{StopRule, TrainingSettings};
use crate::trial::{TrialId, TrialParams};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// Identifies one lease: a trial's attempt and the fencing token it was granted with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseRef {
    /// The trial.
    pub trial_id: TrialId,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Monotonic token; only the current one is accepted.
    pub token: u64,
}

/// A trial handed to a worker: everything it needs to train it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialLease {
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
    /// The family's settings (the family of `params`).
    pub family: FamilySettings,
    /// The lease lapses at this time unless renewed.
    pub deadline_ms: Millis,
}

impl TrialLease {
    /// The pack this trial can join.
    pub fn pack_key(&self) -> PackKey {
        self.family.pack_key(&self.params, &self.training)
    }

    /// The trial's learning rate before warm-up: its `lr` axis value, else the sweep's.
    pub fn learning_rate(&self) -> f64 {
        self.params.learning_rate(self.training.lr)
    }
}

/// A lease the worker must drop, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The lease.
    pub lease: LeaseRef,
    /// Human-readable reason.
    pub reason: String,
}

/// What a finished trial reports: the last evaluation and what the run reached.
/// Serialized (the coordinator's `trials.metrics_json`), a value that is not
/// finite is written as null.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
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
    /// Key frequencies of the final model, ascending (empty when the family has none).
    pub key_frequencies: Vec<u32>,
    /// Held-out accuracy of the classifier that judged generated images (diffusion, N > 1).
    pub judge_accuracy: Option<f64>,
}
