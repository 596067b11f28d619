//! Runs one leased trial on a dedicated OS thread, sending its measure rows
//! and its outcome to the worker loop over a bounded channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sweep_core::{DiffusionSettings, Family, StopRule, TrainingSettings, TrialParams};
use sweep_proto::pb;
use tokio::sync::mpsc;
use tracing::{info, info_span};

use crate::backend::TrainingBackend;
use crate::diffusion::train::DiffusionError;
use crate::diffusion::{self, DiffusionSpec};
use crate::sink::{MeasureSink, SinkError};
use crate::transformer::train::TrainError;
use crate::transformer::{TrainSpec, train};

/// What a trial thread tells the worker loop.
#[derive(Debug)]
pub(crate) enum TrialEvent {
    /// Rows of one evaluated step.
    Rows { trial_id: String, rows: Vec<pb::ProgressRow> },
    /// A checkpoint to store.
    Checkpoint { trial_id: String, step: i64, safetensors: Vec<u8> },
    /// The thread ended.
    Finished { trial_id: String, outcome: TrialOutcome },
}

/// How a trial thread ended.
#[derive(Debug)]
pub(crate) enum TrialOutcome {
    /// Training finished.
    Done(pb::FinalMetrics),
    /// Stopped by a revocation or shutdown.
    Cancelled,
    /// Training failed (error or panic).
    Failed(String),
}

/// A leased trial as the thread needs it.
#[derive(Debug, Clone)]
pub(crate) struct TrialJob {
    pub(crate) trial_id: String,
    pub(crate) sweep: String,
    pub(crate) attempt: u32,
    pub(crate) params: TrialParams,
    pub(crate) training: TrainingSettings,
    pub(crate) stop: StopRule,
    /// The family's settings (diffusion trials).
    pub(crate) diffusion: Option<DiffusionSettings>,
    /// Where judge classifiers are cached.
    pub(crate) cache_dir: std::path::PathBuf,
}

struct ChannelSink {
    trial_id: String,
    events: mpsc::Sender<TrialEvent>,
    cancel: Arc<AtomicBool>,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

impl MeasureSink for ChannelSink {
    fn record(&mut self, step: i64, measures: &[(String, f64)]) -> Result<(), SinkError> {
        let wall_time_ms = now_ms();
        let rows = measures
            .iter()
            .map(|(measure, value)| pb::ProgressRow { step, measure: measure.clone(), value: *value, wall_time_ms })
            .collect();
        self.events.blocking_send(TrialEvent::Rows { trial_id: self.trial_id.clone(), rows }).map_err(|_| SinkError::Closed)
    }

    fn checkpoint(&mut self, step: i64, safetensors: Vec<u8>) -> Result<(), SinkError> {
        self.events
            .blocking_send(TrialEvent::Checkpoint { trial_id: self.trial_id.clone(), step, safetensors })
            .map_err(|_| SinkError::Closed)
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

fn run(job: &TrialJob, sink: &mut ChannelSink) -> TrialOutcome {
    match job.params.family {
        Family::Transformer => run_transformer(job, sink),
        Family::Diffusion => run_diffusion(job, sink),
    }
}

fn run_diffusion(job: &TrialJob, sink: &mut ChannelSink) -> TrialOutcome {
    let Some(diffusion) = job.diffusion.clone() else {
        return TrialOutcome::Failed("the lease of a diffusion trial carries no diffusion settings".to_string());
    };
    let started = Instant::now();
    let spec = DiffusionSpec {
        params: job.params.clone(),
        training: job.training.clone(),
        stop: job.stop.clone(),
        diffusion,
        cache_dir: job.cache_dir.clone(),
    };
    match diffusion::train::<TrainingBackend>(&spec, &Default::default(), sink) {
        Ok(outcome) => TrialOutcome::Done(pb::FinalMetrics {
            epochs: outcome.epochs,
            train_loss: outcome.train_loss,
            test_loss: outcome.test_loss,
            train_accuracy: outcome.train_accuracy,
            test_accuracy: outcome.test_accuracy,
            grokked_at: outcome.grokked_at,
            wall_seconds: started.elapsed().as_secs_f64(),
            key_frequencies: Vec::new(),
            judge_accuracy: outcome.judge_accuracy,
        }),
        Err(DiffusionError::Sink(SinkError::Cancelled)) => TrialOutcome::Cancelled,
        Err(error) => TrialOutcome::Failed(error.to_string()),
    }
}

fn run_transformer(job: &TrialJob, sink: &mut ChannelSink) -> TrialOutcome {
    let started = Instant::now();
    let spec = TrainSpec { params: job.params.clone(), training: job.training.clone(), stop: job.stop.clone() };
    let device = Default::default();
    match train::<TrainingBackend>(&spec, &device, sink) {
        Ok(outcome) => TrialOutcome::Done(pb::FinalMetrics {
            epochs: outcome.epochs,
            train_loss: outcome.train.loss,
            test_loss: outcome.test.loss,
            train_accuracy: outcome.train.accuracy,
            test_accuracy: outcome.test.accuracy,
            grokked_at: outcome.grokked_at,
            wall_seconds: started.elapsed().as_secs_f64(),
            key_frequencies: outcome.key_frequencies.iter().map(|&k| k as u32).collect(),
            judge_accuracy: None,
        }),
        Err(TrainError::Sink(SinkError::Cancelled)) => TrialOutcome::Cancelled,
        Err(error) => TrialOutcome::Failed(error.to_string()),
    }
}

/// Start the trial's thread.
pub(crate) fn spawn(job: TrialJob, events: mpsc::Sender<TrialEvent>, cancel: Arc<AtomicBool>) -> std::io::Result<()> {
    let thread_name = format!("trial-{}", job.trial_id);
    std::thread::Builder::new().name(thread_name).spawn(move || {
        let span = info_span!("trial", sweep = %job.sweep, trial = %job.trial_id, attempt = job.attempt);
        let _entered = span.enter();
        let mut sink = ChannelSink { trial_id: job.trial_id.clone(), events: events.clone(), cancel };
        let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&job, &mut sink))) {
            Ok(outcome) => outcome,
            Err(panic) => {
                let message = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
                TrialOutcome::Failed(format!("training panicked: {}", message.unwrap_or_else(|| "unknown panic".to_string())))
            }
        };
        info!(outcome = ?std::mem::discriminant(&outcome), "trial thread finished");
        let _ = events.blocking_send(TrialEvent::Finished { trial_id: job.trial_id.clone(), outcome });
    })?;
    Ok(())
}
