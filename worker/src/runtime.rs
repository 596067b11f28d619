//! The worker loop: register, lease up to `slots` trials, upload progress,
//! heartbeat, finish or give back trials, and ride out coordinator restarts.
//!
//! All coordinator calls happen in one `sync` pass on a timer. A failed pass
//! (coordinator down, network) is retried with exponential backoff; nothing is
//! dropped meanwhile: progress rows wait in memory and are re-sent (the
//! coordinator ignores rows it already has), finished trials wait to report.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sweep_core::{DiffusionSettings, StopRule, TrainingSettings, TrialParams};
use sweep_proto::client::{Client, connect_lazy};
use sweep_proto::pb;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Code;
use tracing::{debug, info, warn};

use crate::trial_thread::{self, TrialEvent, TrialJob, TrialOutcome};
use crate::{WorkerConfig, WorkerError};

const TICK: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

struct RunningTrial {
    lease: pb::LeaseRef,
    sweep: String,
    cancel: Arc<AtomicBool>,
    pending: Vec<pb::ProgressRow>,
    /// Checkpoints not yet stored by the coordinator: (step, safetensors bytes).
    pending_checkpoints: Vec<(i64, Vec<u8>)>,
    outcome: Option<TrialOutcome>,
    /// The coordinator revoked the lease: report nothing more.
    revoked: bool,
}

struct Worker {
    config: WorkerConfig,
    client: Client,
    worker_id: Option<String>,
    previous_worker_id: Option<String>,
    heartbeat_every: Duration,
    next_heartbeat: Instant,
    next_lease: Instant,
    running: HashMap<String, RunningTrial>,
    events: mpsc::Sender<TrialEvent>,
    stopping: bool,
}

fn is_stale(status: &tonic::Status) -> bool {
    status.code() == Code::FailedPrecondition
}

/// Run a worker until `shutdown` resolves and its trials are finished or given back.
pub async fn run(config: WorkerConfig, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
    let client = connect_lazy(&config.coordinator, config.token.as_deref())?;
    let (events, mut event_receiver) = mpsc::channel(256);
    let now = Instant::now();
    let mut worker = Worker {
        config,
        client,
        worker_id: None,
        previous_worker_id: None,
        heartbeat_every: Duration::from_secs(5),
        next_heartbeat: now,
        next_lease: now,
        running: HashMap::new(),
        events,
        stopping: false,
    };
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = TICK;
    let mut next_sync = now;
    let mut failing_since: Option<Instant> = None;
    let mut stop_deadline: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = &mut shutdown, if !worker.stopping => {
                info!(running = worker.running.len(), "worker stopping: giving back running trials");
                worker.stopping = true;
                stop_deadline = Some(Instant::now() + SHUTDOWN_GRACE);
                for trial in worker.running.values() {
                    trial.cancel.store(true, Ordering::Relaxed);
                }
                next_sync = Instant::now();
            }
            Some(event) = event_receiver.recv() => worker.absorb(event),
            _ = tokio::time::sleep_until(next_sync) => {
                match worker.sync().await {
                    Ok(()) => {
                        if let Some(since) = failing_since.take() {
                            info!(after_seconds = since.elapsed().as_secs(), "coordinator reachable again");
                        }
                        backoff = TICK;
                    }
                    Err(status) => {
                        if failing_since.is_none() {
                            warn!(code = ?status.code(), error = %status.message(), "coordinator call failed; retrying with backoff");
                            failing_since = Some(Instant::now());
                        }
                        if status.code() == Code::Unauthenticated {
                            return Err(WorkerError::Refused(status.message().to_string()));
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
                next_sync = Instant::now() + backoff;
            }
        }
        if worker.stopping && worker.running.is_empty() {
            info!("worker stopped");
            return Ok(());
        }
        if stop_deadline.is_some_and(|deadline| Instant::now() > deadline) {
            warn!(trials = worker.running.len(), "could not give back every trial in time; their leases will lapse");
            return Ok(());
        }
    }
}

impl Worker {
    fn absorb(&mut self, event: TrialEvent) {
        match event {
            TrialEvent::Rows { trial_id, rows } => {
                if let Some(trial) = self.running.get_mut(&trial_id) {
                    trial.pending.extend(rows);
                }
            }
            TrialEvent::Checkpoint { trial_id, step, safetensors } => {
                if let Some(trial) = self.running.get_mut(&trial_id) {
                    trial.pending_checkpoints.push((step, safetensors));
                }
            }
            TrialEvent::Finished { trial_id, outcome } => {
                if let Some(trial) = self.running.get_mut(&trial_id) {
                    trial.outcome = Some(outcome);
                }
                self.next_lease = Instant::now();
            }
        }
    }

    /// One round of coordinator calls.
    async fn sync(&mut self) -> Result<(), tonic::Status> {
        if self.worker_id.is_none() {
            self.register().await?;
        }
        self.upload_progress().await?;
        self.upload_checkpoints().await?;
        self.report_finished().await?;
        if Instant::now() >= self.next_heartbeat {
            self.heartbeat().await?;
        }
        if !self.stopping && Instant::now() >= self.next_lease {
            self.lease().await?;
        }
        Ok(())
    }

    async fn register(&mut self) -> Result<(), tonic::Status> {
        let request = pb::RegisterWorkerRequest {
            name: self.config.name.clone(),
            backend: crate::backend::BACKEND_NAME.to_string(),
            slots: self.config.slots,
            previous_worker_id: self.previous_worker_id.clone().unwrap_or_default(),
        };
        let response = self.client.register_worker(request).await?.into_inner();
        info!(worker = %response.worker_id, slots = self.config.slots, backend = crate::backend::BACKEND_NAME, "registered with the coordinator");
        self.heartbeat_every = Duration::from_millis(response.heartbeat_interval_ms.max(100) as u64);
        self.previous_worker_id = Some(response.worker_id.clone());
        self.worker_id = Some(response.worker_id);
        Ok(())
    }

    /// Forget the registration when the coordinator no longer knows us.
    fn on_unknown_worker(&mut self, status: &tonic::Status) {
        if status.code() == Code::NotFound {
            self.worker_id = None;
        }
    }

    async fn upload_progress(&mut self) -> Result<(), tonic::Status> {
        let with_rows: Vec<String> =
            self.running.iter().filter(|(_, trial)| !trial.pending.is_empty() && !trial.revoked).map(|(id, _)| id.clone()).collect();
        for trial_id in with_rows {
            let trial = self.running.get_mut(&trial_id).expect("ids were taken from the map");
            if matches!(trial.outcome, Some(TrialOutcome::Cancelled)) {
                trial.pending.clear();
                continue;
            }
            let sent = trial.pending.len();
            let batch = pb::ProgressBatch { lease: Some(trial.lease.clone()), rows: trial.pending.clone() };
            match self.client.report_progress(tokio_stream::iter(vec![batch])).await {
                Ok(_) => {
                    trial.pending.drain(..sent);
                }
                Err(status) if is_stale(&status) => {
                    warn!(trial = %trial_id, reason = %status.message(), "lease is stale; stopping the trial");
                    trial.revoked = true;
                    trial.cancel.store(true, Ordering::Relaxed);
                    trial.pending.clear();
                }
                Err(status) => return Err(status),
            }
        }
        Ok(())
    }

    /// Store pending checkpoints, oldest first; a checkpoint stays pending
    /// until the coordinator has it, so a restart of the coordinator loses none.
    async fn upload_checkpoints(&mut self) -> Result<(), tonic::Status> {
        let with_checkpoints: Vec<String> = self
            .running
            .iter()
            .filter(|(_, trial)| !trial.pending_checkpoints.is_empty() && !trial.revoked)
            .map(|(id, _)| id.clone())
            .collect();
        for trial_id in with_checkpoints {
            let trial = self.running.get_mut(&trial_id).expect("ids were taken from the map");
            if matches!(trial.outcome, Some(TrialOutcome::Cancelled)) {
                trial.pending_checkpoints.clear();
                continue;
            }
            while let Some((step, bytes)) = trial.pending_checkpoints.first() {
                let request = pb::UploadCheckpointRequest { lease: Some(trial.lease.clone()), step: *step, safetensors: bytes.clone() };
                match self.client.upload_checkpoint(request).await {
                    Ok(response) => {
                        debug!(trial = %trial_id, step = *step, path = %response.into_inner().path, "checkpoint stored");
                        trial.pending_checkpoints.remove(0);
                    }
                    Err(status) if is_stale(&status) => {
                        warn!(trial = %trial_id, reason = %status.message(), "lease is stale; stopping the trial");
                        trial.revoked = true;
                        trial.cancel.store(true, Ordering::Relaxed);
                        trial.pending_checkpoints.clear();
                        break;
                    }
                    Err(status) => return Err(status),
                }
            }
        }
        Ok(())
    }

    async fn report_finished(&mut self) -> Result<(), tonic::Status> {
        let finished: Vec<String> = self
            .running
            .iter()
            .filter(|(_, trial)| {
                trial.outcome.is_some() && ((trial.pending.is_empty() && trial.pending_checkpoints.is_empty()) || trial.revoked)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for trial_id in finished {
            let trial = &self.running[&trial_id];
            let lease = Some(trial.lease.clone());
            let result = match (&trial.outcome, trial.revoked) {
                (_, true) => Ok(()),
                (Some(TrialOutcome::Done(metrics)), false) => {
                    let request = pb::CompleteTrialRequest { lease, metrics: Some(metrics.clone()) };
                    self.client.complete_trial(request).await.map(|_| ())
                }
                (Some(TrialOutcome::Failed(reason)), false) => {
                    warn!(trial = %trial_id, reason = %reason, "trial failed");
                    let request = pb::FailTrialRequest { lease, reason: reason.clone(), release: false };
                    self.client.fail_trial(request).await.map(|_| ())
                }
                (Some(TrialOutcome::Cancelled), false) | (None, false) => {
                    let request = pb::FailTrialRequest { lease, reason: "worker shutting down".to_string(), release: true };
                    self.client.fail_trial(request).await.map(|_| ())
                }
            };
            match result {
                Ok(()) => {}
                Err(status) if is_stale(&status) => warn!(trial = %trial_id, reason = %status.message(), "result refused: lease is stale"),
                Err(status) => return Err(status),
            }
            if let Some(trial) = self.running.remove(&trial_id) {
                info!(sweep = %trial.sweep, trial = %trial_id, attempt = trial.lease.attempt, "trial reported");
            }
        }
        Ok(())
    }

    async fn heartbeat(&mut self) -> Result<(), tonic::Status> {
        let worker_id = self.worker_id.clone().unwrap_or_default();
        let leases = self.running.values().filter(|trial| !trial.revoked).map(|trial| trial.lease.clone()).collect();
        let response = match self.client.heartbeat(pb::HeartbeatRequest { worker_id, leases }).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                self.on_unknown_worker(&status);
                return Err(status);
            }
        };
        for revocation in response.revoked {
            let Some(lease) = revocation.lease else { continue };
            if let Some(trial) = self.running.get_mut(&lease.trial_id) {
                warn!(trial = %lease.trial_id, attempt = lease.attempt, reason = %revocation.reason, "lease revoked; stopping the trial");
                trial.revoked = true;
                trial.cancel.store(true, Ordering::Relaxed);
            }
        }
        self.next_heartbeat = Instant::now() + self.heartbeat_every;
        Ok(())
    }

    async fn lease(&mut self) -> Result<(), tonic::Status> {
        let free_slots = self.config.slots.saturating_sub(self.running.len() as u32);
        self.next_lease = Instant::now() + Duration::from_secs(1);
        if free_slots == 0 {
            return Ok(());
        }
        let request = pb::LeaseTrialsRequest {
            worker_id: self.worker_id.clone().unwrap_or_default(),
            free_slots,
            backend: crate::backend::BACKEND_NAME.to_string(),
        };
        let leases = match self.client.lease_trials(request).await {
            Ok(response) => response.into_inner().leases,
            Err(status) => {
                self.on_unknown_worker(&status);
                return Err(status);
            }
        };
        for lease in leases {
            self.start(lease);
        }
        Ok(())
    }

    fn start(&mut self, lease: pb::Lease) {
        let Some(lease_ref) = lease.lease.clone() else { return };
        let job = match job_from_lease(lease, &self.config.cache_dir) {
            Ok(job) => job,
            Err(message) => {
                warn!(trial = %lease_ref.trial_id, error = %message, "lease is malformed; failing it");
                self.track(lease_ref, String::new(), Some(TrialOutcome::Failed(message)));
                return;
            }
        };
        let sweep = job.sweep.clone();
        info!(sweep = %sweep, trial = %job.trial_id, attempt = job.attempt, modulus = job.params.modulus, "starting trial");
        let cancel = self.track(lease_ref.clone(), sweep, None);
        if let Err(error) = trial_thread::spawn(job, self.events.clone(), cancel) {
            self.running.get_mut(&lease_ref.trial_id).expect("just tracked").outcome =
                Some(TrialOutcome::Failed(format!("cannot start a training thread: {error}")));
        }
    }

    fn track(&mut self, lease: pb::LeaseRef, sweep: String, outcome: Option<TrialOutcome>) -> Arc<AtomicBool> {
        let cancel = Arc::new(AtomicBool::new(false));
        let trial = RunningTrial {
            lease: lease.clone(),
            sweep,
            cancel: Arc::clone(&cancel),
            pending: Vec::new(),
            pending_checkpoints: Vec::new(),
            outcome,
            revoked: false,
        };
        self.running.insert(lease.trial_id, trial);
        cancel
    }
}

fn job_from_lease(lease: pb::Lease, cache_dir: &std::path::Path) -> Result<TrialJob, String> {
    use sweep_proto::convert::required;
    let lease_ref = required(lease.lease, "lease").map_err(|error| error.to_string())?;
    let params = TrialParams::try_from(required(lease.params, "params").map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let training =
        TrainingSettings::try_from(required(lease.training, "training").map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let stop = StopRule::try_from(required(lease.stop, "stop").map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let diffusion = lease.diffusion.map(DiffusionSettings::try_from).transpose().map_err(|e| e.to_string())?;
    Ok(TrialJob {
        trial_id: lease_ref.trial_id,
        sweep: lease.sweep,
        attempt: lease_ref.attempt,
        params,
        training,
        stop,
        diffusion,
        cache_dir: cache_dir.to_path_buf(),
    })
}
