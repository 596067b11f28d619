//! The worker loop: register, lease up to `slots` packs of up to `pack_size`
//! trials, upload progress, heartbeat (one call for every trial of every
//! pack), finish or give back trials one by one, and ride out coordinator
//! restarts.
//!
//! All coordinator calls happen in one `sync` pass on a timer. A failed pass
//! (coordinator down, network) is retried with exponential backoff; nothing is
//! dropped meanwhile: progress rows wait in memory and are re-sent (the
//! coordinator ignores rows it already has), finished trials wait to report.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sweep_core::{LeaseRef, Revocation, StepMeasures, TrialId, TrialLease};
use sweep_proto::client::{Client, ConnectOptions, connect_lazy, is_certificate_failure, unreachable_reason};
use sweep_proto::pb;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Code;
use tracing::{debug, info, warn};

use crate::family::FamilyContext;
use crate::pack_thread::{self, PackEvent};
use crate::sink::{TrialError, TrialOutcome};
use crate::{WorkerConfig, WorkerError};

const TICK: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

struct RunningTrial {
    lease: LeaseRef,
    sweep: String,
    /// The pack it trains in (`None` for a lease that never started).
    pack: Option<u64>,
    cancel: Arc<AtomicBool>,
    pending: Vec<StepMeasures>,
    /// Checkpoints not yet stored by the coordinator: (step, safetensors bytes).
    pending_checkpoints: Vec<(i64, Vec<u8>)>,
    outcome: Option<TrialOutcome>,
    /// The coordinator revoked the lease: report nothing more.
    revoked: bool,
    /// The coordinator refused one of its reports as invalid: the trial stops
    /// and fails with this reason.
    refused: Option<String>,
}

impl RunningTrial {
    /// Training ended with final metrics.
    fn is_done(&self) -> bool {
        matches!(self.outcome, Some(TrialOutcome::Done(_)))
    }
}

struct Worker {
    config: WorkerConfig,
    client: Client,
    worker_id: Option<String>,
    previous_worker_id: Option<String>,
    heartbeat_every: Duration,
    next_heartbeat: Instant,
    next_lease: Instant,
    running: HashMap<TrialId, RunningTrial>,
    /// Packs whose threads are running.
    packs: HashSet<u64>,
    next_pack: u64,
    events: mpsc::Sender<PackEvent>,
    stopping: bool,
    /// Since when the last lease calls found nothing and nothing runs.
    idle_since: Option<Instant>,
}

fn is_stale(status: &tonic::Status) -> bool {
    status.code() == Code::FailedPrecondition
}

fn is_refused(status: &tonic::Status) -> bool {
    status.code() == Code::InvalidArgument
}

/// Run a worker until `shutdown` resolves and its trials are finished or given back.
pub async fn run(config: WorkerConfig, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
    let options = ConnectOptions { token: config.token.as_deref(), tls_ca_pem: config.tls_ca_pem.as_deref() };
    let client = connect_lazy(&config.coordinator, options)?;
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
        packs: HashSet::new(),
        next_pack: 0,
        events,
        stopping: false,
        idle_since: None,
    };
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = TICK;
    let mut next_sync = now;
    let mut failing_since: Option<Instant> = None;
    let mut stop_deadline: Option<Instant> = None;
    let mut step_rate = crate::telemetry::StepRate::new(Duration::from_secs(5));
    loop {
        worker.config.liveness.turned();
        step_rate.update(worker.running.len());
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
                        let reason = unreachable_reason(&status, &worker.config.coordinator);
                        if status.code() == Code::Unauthenticated {
                            return Err(WorkerError::Refused(status.message().to_string()));
                        }
                        // Retrying cannot make an untrusted certificate trusted.
                        if is_certificate_failure(&status) {
                            return Err(WorkerError::Certificate(reason));
                        }
                        if failing_since.is_none() {
                            warn!(code = ?status.code(), error = %reason, "coordinator call failed; retrying with backoff");
                            failing_since = Some(Instant::now());
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
        if let (Some(limit), Some(since)) = (worker.config.exit_when_idle, worker.idle_since)
            && !worker.stopping
            && worker.running.is_empty()
            && since.elapsed() >= limit
        {
            info!(idle_seconds = since.elapsed().as_secs(), "nothing to lease; the worker exits (--exit-when-idle)");
            return Ok(());
        }
        if stop_deadline.is_some_and(|deadline| Instant::now() > deadline) {
            warn!(trials = worker.running.len(), "could not give back every trial in time; their leases will lapse");
            return Ok(());
        }
    }
}

impl Worker {
    fn absorb(&mut self, event: PackEvent) {
        match event {
            PackEvent::Measures { trial_id, step } => {
                if let Some(trial) = self.running.get_mut(&trial_id) {
                    trial.pending.push(step);
                }
            }
            PackEvent::Checkpoint { trial_id, step, safetensors } => {
                if let Some(trial) = self.running.get_mut(&trial_id) {
                    trial.pending_checkpoints.push((step, safetensors));
                }
            }
            PackEvent::Finished { trial_id, outcome } => {
                if let Some(trial) = self.running.get_mut(&trial_id) {
                    trial.outcome = Some(outcome);
                }
            }
            PackEvent::Ended { pack, panic } => {
                self.packs.remove(&pack);
                for trial in self.running.values_mut().filter(|trial| trial.pack == Some(pack) && trial.outcome.is_none()) {
                    let why = panic.clone().unwrap_or_else(|| "the pack ended without an outcome for this trial".to_string());
                    trial.outcome = Some(TrialOutcome::Failed(TrialError::Panicked(why)));
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
            pack_size: self.config.pack_size,
        };
        let response = self.client.register_worker(request).await?.into_inner();
        info!(
            worker = %response.worker_id,
            slots = self.config.slots,
            step_threads = self.config.step_threads,
            pack_size = self.config.pack_size,
            backend = crate::backend::BACKEND_NAME,
            "registered with the coordinator"
        );
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

    /// Report the rows of running trials. A trial that is done keeps its
    /// last rows for its completion ([`Worker::report_finished`]), which
    /// carries them: one call at the end instead of two.
    async fn upload_progress(&mut self) -> Result<(), tonic::Status> {
        let with_rows: Vec<TrialId> = self
            .running
            .iter()
            .filter(|(_, trial)| !trial.pending.is_empty() && !trial.revoked && !trial.is_done())
            .map(|(id, _)| id.clone())
            .collect();
        for trial_id in with_rows {
            let trial = self.running.get_mut(&trial_id).expect("ids were taken from the map");
            if matches!(trial.outcome, Some(TrialOutcome::Cancelled)) {
                trial.pending.clear();
                continue;
            }
            let sent = trial.pending.len();
            let batch = pb::ProgressBatch { lease: Some((&trial.lease).into()), steps: trial.pending.iter().map(Into::into).collect() };
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
                Err(status) if is_refused(&status) => {
                    // Sending it again would be refused again: the trial fails with the reason.
                    warn!(trial = %trial_id, reason = %status.message(), "the coordinator refused the trial's progress; stopping the trial");
                    trial.refused = Some(status.message().to_string());
                    trial.cancel.store(true, Ordering::Relaxed);
                    trial.pending.clear();
                    trial.pending_checkpoints.clear();
                }
                Err(status) => return Err(status),
            }
        }
        Ok(())
    }

    /// Store pending checkpoints, oldest first; a checkpoint stays pending
    /// until the coordinator has it, so a restart of the coordinator loses none.
    async fn upload_checkpoints(&mut self) -> Result<(), tonic::Status> {
        let with_checkpoints: Vec<TrialId> = self
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
                let request = pb::UploadCheckpointRequest { lease: Some((&trial.lease).into()), step: *step, safetensors: bytes.clone() };
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
        let finished: Vec<TrialId> = self
            .running
            .iter()
            .filter(|(_, trial)| {
                trial.outcome.is_some()
                    && ((trial.pending_checkpoints.is_empty() && (trial.pending.is_empty() || trial.is_done())) || trial.revoked)
            })
            .map(|(id, _)| id.clone())
            .collect();
        // The last completion asks for the next lease in the same call.
        let last = finished.last().cloned();
        let mut leased_with_completion = None;
        for trial_id in finished {
            let lease_next = if last.as_ref() == Some(&trial_id) { self.lease_request() } else { None };
            let trial = &self.running[&trial_id];
            let lease = Some((&trial.lease).into());
            let fail =
                |reason: String| pb::FailTrialRequest { lease: lease.clone(), reason: sweep_proto::fit_reason(&reason), release: false };
            let result = match (&trial.outcome, trial.revoked) {
                (_, true) => Ok(()),
                (_, false) if trial.refused.is_some() => {
                    let why = trial.refused.clone().unwrap_or_default();
                    self.client.fail_trial(fail(format!("the coordinator refused its progress: {why}"))).await.map(|_| ())
                }
                (Some(TrialOutcome::Done(metrics)), false) => {
                    let asked_for_lease = lease_next.is_some();
                    // Its last rows go with the completion: both are stored, or neither.
                    let final_steps = trial.pending.iter().map(Into::into).collect();
                    let request = pb::CompleteTrialRequest { lease: lease.clone(), metrics: Some(metrics.into()), lease_next, final_steps };
                    match self.client.complete_trial(request).await {
                        Err(status) if is_refused(&status) => {
                            warn!(trial = %trial_id, reason = %status.message(), "the coordinator refused the final metrics or last rows");
                            let reason = format!("the coordinator refused its final metrics or last rows: {}", status.message());
                            self.client.fail_trial(fail(reason)).await.map(|_| ())
                        }
                        Ok(response) => {
                            if asked_for_lease {
                                leased_with_completion = Some(response.into_inner().packs);
                            }
                            Ok(())
                        }
                        Err(status) => Err(status),
                    }
                }
                (Some(TrialOutcome::Failed(error)), false) => {
                    warn!(trial = %trial_id, error = %error, "trial failed");
                    self.client.fail_trial(fail(error.to_string())).await.map(|_| ())
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
        if let Some(packs) = leased_with_completion {
            self.leased(packs);
        }
        Ok(())
    }

    async fn heartbeat(&mut self) -> Result<(), tonic::Status> {
        let worker_id = self.worker_id.clone().unwrap_or_default();
        let leases = self.running.values().filter(|trial| !trial.revoked).map(|trial| (&trial.lease).into()).collect();
        let response = match self.client.heartbeat(pb::HeartbeatRequest { worker_id, leases }).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                self.on_unknown_worker(&status);
                return Err(status);
            }
        };
        for wire in response.revoked {
            let Ok(Revocation { lease, reason }) = Revocation::try_from(wire) else { continue };
            if let Some(trial) = self.running.get_mut(&lease.trial_id) {
                warn!(trial = %lease.trial_id, attempt = lease.attempt, reason = %reason, "lease revoked; stopping the trial");
                trial.revoked = true;
                trial.cancel.store(true, Ordering::Relaxed);
            }
        }
        self.next_heartbeat = Instant::now() + self.heartbeat_every;
        Ok(())
    }

    /// What this worker asks for when it leases, or `None` when it has no
    /// free slot or is stopping.
    fn lease_request(&self) -> Option<pb::LeaseTrialsRequest> {
        let free_slots = self.config.slots.saturating_sub(self.packs.len() as u32);
        (free_slots > 0 && !self.stopping).then(|| pb::LeaseTrialsRequest {
            worker_id: self.worker_id.clone().unwrap_or_default(),
            free_slots,
            backend: crate::backend::BACKEND_NAME.to_string(),
            pack_size: self.config.pack_size,
        })
    }

    async fn lease(&mut self) -> Result<(), tonic::Status> {
        self.next_lease = Instant::now() + Duration::from_secs(1);
        let Some(request) = self.lease_request() else { return Ok(()) };
        let packs = match self.client.lease_trials(request).await {
            Ok(response) => response.into_inner().packs,
            Err(status) => {
                self.on_unknown_worker(&status);
                return Err(status);
            }
        };
        self.leased(packs);
        Ok(())
    }

    /// Start what a lease brought (from `LeaseTrials` or with a completion);
    /// the next lease is asked for a second later, or as soon as a pack ends.
    fn leased(&mut self, packs: Vec<pb::LeasedPack>) {
        self.next_lease = Instant::now() + Duration::from_secs(1);
        if packs.is_empty() && self.running.is_empty() {
            self.idle_since.get_or_insert_with(Instant::now);
        } else {
            self.idle_since = None;
        }
        for pack in packs {
            self.start(pack);
        }
    }

    /// Start a leased pack on its own thread. A lease that does not convert
    /// is failed on its own; the others of the pack start without it.
    fn start(&mut self, pack: pb::LeasedPack) {
        let mut leases = Vec::with_capacity(pack.leases.len());
        for wire in pack.leases {
            let Ok(lease_ref) = sweep_proto::convert::lease_ref(wire.lease.clone()) else {
                warn!("a lease without a usable lease reference; it will lapse");
                continue;
            };
            match TrialLease::try_from(wire) {
                Ok(lease) => leases.push(lease),
                Err(error) => {
                    warn!(trial = %lease_ref.trial_id, %error, "lease is malformed; failing it");
                    self.track(lease_ref, String::new(), None, Some(TrialOutcome::Failed(TrialError::Malformed(error))));
                }
            }
        }
        if leases.is_empty() {
            return;
        }
        let id = self.next_pack;
        self.next_pack += 1;
        let mut cancel = HashMap::new();
        for lease in &leases {
            info!(
                sweep = %lease.sweep,
                trial = %lease.lease.trial_id,
                attempt = lease.lease.attempt,
                modulus = lease.params.modulus,
                pack = id,
                pack_trials = leases.len(),
                "starting trial"
            );
            let flag = self.track(lease.lease.clone(), lease.sweep.clone(), Some(id), None);
            cancel.insert(lease.lease.trial_id.clone(), flag);
        }
        let context = FamilyContext::new(self.config.cache_dir.clone()).with_step_threads(self.config.step_threads as usize);
        let trial_ids: Vec<TrialId> = leases.iter().map(|lease| lease.lease.trial_id.clone()).collect();
        match pack_thread::spawn(id, leases, &cancel, self.events.clone(), context, self.config.scratch_dir.clone()) {
            Ok(()) => {
                self.packs.insert(id);
            }
            Err(error) => {
                let message = error.to_string();
                for trial_id in trial_ids {
                    let trial = self.running.get_mut(&trial_id).expect("just tracked");
                    trial.outcome = Some(TrialOutcome::Failed(TrialError::Thread(std::io::Error::other(message.clone()))));
                }
            }
        }
    }

    fn track(&mut self, lease: LeaseRef, sweep: String, pack: Option<u64>, outcome: Option<TrialOutcome>) -> Arc<AtomicBool> {
        let cancel = Arc::new(AtomicBool::new(false));
        let trial = RunningTrial {
            lease: lease.clone(),
            sweep,
            pack,
            cancel: Arc::clone(&cancel),
            pending: Vec::new(),
            pending_checkpoints: Vec::new(),
            outcome,
            revoked: false,
            refused: None,
        };
        self.running.insert(lease.trial_id, trial);
        cancel
    }
}
