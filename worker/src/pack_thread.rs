//! Runs one leased pack on a dedicated OS thread; each trial's measures,
//! checkpoints and outcome go to the worker loop over a bounded channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sweep_core::{Measure, StepMeasures, TrialId, TrialLease};
use tokio::sync::mpsc;
use tracing::{info, info_span};

use crate::family::FamilyContext;
use crate::registry::train_pack;
use crate::sink::{MeasureSink, SinkError, TrialOutcome};

/// What a pack thread tells the worker loop.
#[derive(Debug)]
pub(crate) enum PackEvent {
    /// Measures of one evaluated step of a trial.
    Measures { trial_id: TrialId, step: StepMeasures },
    /// A checkpoint to store.
    Checkpoint { trial_id: TrialId, step: i64, safetensors: Vec<u8> },
    /// A trial left the pack.
    Finished { trial_id: TrialId, outcome: TrialOutcome },
    /// The thread ended; `panic` says why if training panicked (its trials
    /// that had not finished fail with it).
    Ended { pack: u64, panic: Option<String> },
}

struct ChannelSink {
    trial_id: TrialId,
    events: mpsc::Sender<PackEvent>,
    cancel: Arc<AtomicBool>,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

impl MeasureSink for ChannelSink {
    fn record(&mut self, step: i64, measures: Vec<Measure>) -> Result<(), SinkError> {
        let step = StepMeasures { step, wall_time_ms: now_ms(), measures };
        self.events.blocking_send(PackEvent::Measures { trial_id: self.trial_id.clone(), step }).map_err(|_| SinkError::Closed)
    }

    fn checkpoint(&mut self, step: i64, safetensors: Vec<u8>) -> Result<(), SinkError> {
        self.events
            .blocking_send(PackEvent::Checkpoint { trial_id: self.trial_id.clone(), step, safetensors })
            .map_err(|_| SinkError::Closed)
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    fn finish(&mut self, outcome: TrialOutcome) {
        info!(trial = %self.trial_id, outcome = outcome.name(), "trial finished");
        let _ = self.events.blocking_send(PackEvent::Finished { trial_id: self.trial_id.clone(), outcome });
    }
}

/// Start pack `pack`'s thread; `cancel` holds each trial's cancel flag.
pub(crate) fn spawn(
    pack: u64,
    leases: Vec<TrialLease>,
    cancel: &HashMap<TrialId, Arc<AtomicBool>>,
    events: mpsc::Sender<PackEvent>,
    context: FamilyContext,
    scratch: std::path::PathBuf,
) -> std::io::Result<()> {
    let mut sinks: Vec<ChannelSink> = leases
        .iter()
        .map(|lease| ChannelSink {
            trial_id: lease.lease.trial_id.clone(),
            events: events.clone(),
            cancel: Arc::clone(&cancel[&lease.lease.trial_id]),
        })
        .collect();
    let thread_name = format!("pack-{pack}");
    std::thread::Builder::new().name(thread_name).spawn(move || {
        let span = info_span!("pack", pack, trials = leases.len(), first_trial = %leases[0].lease.trial_id);
        let _entered = span.enter();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let borrowed: Vec<&mut dyn MeasureSink> = sinks.iter_mut().map(|sink| sink as &mut dyn MeasureSink).collect();
            train_pack(leases, borrowed, &context, &scratch);
        }));
        let panic = run.err().map(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string())
        });
        info!(panicked = panic.is_some(), "pack thread ended");
        let _ = events.blocking_send(PackEvent::Ended { pack, panic });
    })?;
    Ok(())
}
