//! The gRPC adapter: unpack the request, call the domain method, map the error.

use std::pin::Pin;

use sweep_core::{FinalMetrics, StepMeasures, TrialParams};
use sweep_proto::convert::{self, required};
use sweep_proto::pb;
use sweep_proto::pb::coordinator_server::Coordinator as CoordinatorRpc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::domain::{LeaseAsk, LeaseRef, SweepSummary, TrialLease, TrialView};
use crate::error::CoordinatorError;
use crate::service::Coordinator;

/// Serves [`Coordinator`] over gRPC.
#[derive(Debug, Clone)]
pub(crate) struct GrpcAdapter {
    coordinator: Coordinator,
}

impl GrpcAdapter {
    /// Wrap a coordinator.
    pub(crate) fn new(coordinator: Coordinator) -> Self {
        GrpcAdapter { coordinator }
    }
}

fn invalid(error: impl std::fmt::Display) -> Status {
    Status::from(CoordinatorError::InvalidRequest(error.to_string()))
}

/// Refuse a text field longer than `max` bytes, naming it.
fn bounded(field: &str, value: &str, max: usize) -> Result<(), Status> {
    if value.len() > max {
        return Err(invalid(format!("invalid `{field}`: {} bytes, at most {max}", value.len())));
    }
    Ok(())
}

/// Refuse a count outside `range`, naming it.
fn within(field: &str, value: u32, range: std::ops::RangeInclusive<u32>) -> Result<(), Status> {
    if !range.contains(&value) {
        return Err(invalid(format!("invalid `{field}`: {value} is not in {}..={}", range.start(), range.end())));
    }
    Ok(())
}

/// Longest worker name or backend name accepted.
const MAX_NAME: usize = 128;
/// Longest worker id accepted (ids are `w<serial>-<name>`).
const MAX_WORKER_ID: usize = MAX_NAME + 32;
/// Longest spec accepted (a million-trial grid is a few lines).
const MAX_SPEC_BYTES: usize = 1 << 20;
/// Most slots or packs a worker may claim.
const MAX_SLOTS: u32 = 1024;
/// Largest pack a worker may ask for.
const MAX_PACK: u32 = 4096;
/// Most leases one heartbeat may renew.
const MAX_HEARTBEAT_LEASES: usize = 100_000;

fn lease_from_wire(wire: Option<pb::LeaseRef>) -> Result<LeaseRef, Status> {
    convert::lease_ref(wire).map_err(invalid)
}

/// A lease request, its fields checked.
fn lease_ask(request: pb::LeaseTrialsRequest) -> Result<LeaseAsk, Status> {
    bounded("worker_id", &request.worker_id, MAX_WORKER_ID)?;
    bounded("backend", &request.backend, MAX_NAME)?;
    within("free_slots", request.free_slots, 0..=MAX_SLOTS)?;
    within("pack_size", request.pack_size, 0..=MAX_PACK)?;
    Ok(LeaseAsk { worker_id: request.worker_id, free_slots: request.free_slots, pack_size: request.pack_size.max(1) })
}

fn packs_to_wire(packs: &[Vec<TrialLease>]) -> Vec<pb::LeasedPack> {
    packs
        .iter()
        .map(|pack| pb::LeasedPack {
            pack_key: pack.first().map(|lease| lease.pack_key().to_string()).unwrap_or_default(),
            leases: pack.iter().map(pb::Lease::from).collect(),
        })
        .collect()
}

fn summary_to_wire(summary: &SweepSummary) -> pb::SweepSummary {
    pb::SweepSummary {
        name: summary.name.clone(),
        total: summary.total,
        queued: summary.queued,
        running: summary.running,
        done: summary.done,
        failed: summary.failed,
        cancelled: summary.cancelled,
        created_at_ms: summary.created_at_ms,
    }
}

fn trial_to_wire(trial: &TrialView) -> pb::TrialStatus {
    let params: &TrialParams = &trial.params;
    pb::TrialStatus {
        trial_id: trial.trial_id.to_string(),
        params: Some(params.into()),
        status: trial.status.as_str().to_string(),
        attempt: trial.attempt,
        failures: trial.failures,
        worker: trial.worker.clone().unwrap_or_default(),
        epoch: trial.metrics.as_ref().map(|m| m.epochs).or(trial.last_epoch),
        train_accuracy: trial.metrics.as_ref().map(|m| m.train_accuracy).or(trial.last_train_accuracy),
        test_accuracy: trial.metrics.as_ref().map(|m| m.test_accuracy).or(trial.last_test_accuracy),
        max_epochs: trial.max_epochs,
        grokked_at: trial.metrics.as_ref().and_then(|m| m.grokked_at),
        wall_seconds: trial.metrics.as_ref().map(|m| m.wall_seconds),
        error: trial.error.clone().unwrap_or_default(),
    }
}

fn status_to_wire(summary: &SweepSummary, trials: &[TrialView]) -> pb::SweepStatus {
    pb::SweepStatus {
        summary: Some(summary_to_wire(summary)),
        trials: trials.iter().map(trial_to_wire).collect(),
        finished: summary.finished(),
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::SweepStatus, Status>> + Send>>;

#[tonic::async_trait]
impl CoordinatorRpc for GrpcAdapter {
    async fn submit_sweep(&self, request: Request<pb::SubmitSweepRequest>) -> Result<Response<pb::SubmitSweepResponse>, Status> {
        let request = request.into_inner();
        bounded("source_name", &request.source_name, MAX_NAME * 4)?;
        bounded("spec_yaml", &request.spec_yaml, MAX_SPEC_BYTES)?;
        let source_name = if request.source_name.is_empty() { "<submitted>".to_string() } else { request.source_name };
        let outcome = self.coordinator.submit(source_name, request.spec_yaml).await?;
        Ok(Response::new(pb::SubmitSweepResponse {
            sweep: outcome.sweep,
            trials_total: outcome.total,
            trials_added: outcome.added,
            trials_done: outcome.done,
        }))
    }

    async fn list_sweeps(&self, _request: Request<pb::ListSweepsRequest>) -> Result<Response<pb::ListSweepsResponse>, Status> {
        let sweeps = self.coordinator.list_sweeps().await?;
        Ok(Response::new(pb::ListSweepsResponse { sweeps: sweeps.iter().map(summary_to_wire).collect() }))
    }

    async fn get_sweep(&self, request: Request<pb::GetSweepRequest>) -> Result<Response<pb::SweepStatus>, Status> {
        let (summary, trials) = self.coordinator.sweep_status(request.into_inner().sweep).await?;
        Ok(Response::new(status_to_wire(&summary, &trials)))
    }

    type WatchSweepStream = WatchStream;

    async fn watch_sweep(&self, request: Request<pb::GetSweepRequest>) -> Result<Response<Self::WatchSweepStream>, Status> {
        let sweep = request.into_inner().sweep;
        // Fail fast on an unknown sweep, before the stream starts.
        self.coordinator.sweep_status(sweep.clone()).await?;
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let coordinator = self.coordinator.clone();
        tokio::spawn(async move {
            let interval = coordinator.config().watch_interval;
            let mut previous: Option<pb::SweepStatus> = None;
            loop {
                let snapshot = match coordinator.sweep_status(sweep.clone()).await {
                    Ok((summary, trials)) => status_to_wire(&summary, &trials),
                    Err(error) => {
                        let _ = sender.send(Err(Status::from(error))).await;
                        return;
                    }
                };
                let finished = snapshot.finished;
                if previous.as_ref() != Some(&snapshot) {
                    previous = Some(snapshot.clone());
                    if sender.send(Ok(snapshot)).await.is_err() {
                        return;
                    }
                }
                if finished {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = coordinator.closed() => {
                        let _ = sender.send(Err(Status::unavailable("the coordinator is shutting down"))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn cancel_sweep(&self, request: Request<pb::CancelSweepRequest>) -> Result<Response<pb::CancelSweepResponse>, Status> {
        let cancelled = self.coordinator.cancel(request.into_inner().sweep).await?;
        Ok(Response::new(pb::CancelSweepResponse { cancelled }))
    }

    async fn register_worker(&self, request: Request<pb::RegisterWorkerRequest>) -> Result<Response<pb::RegisterWorkerResponse>, Status> {
        let request = request.into_inner();
        bounded("name", &request.name, MAX_NAME)?;
        bounded("backend", &request.backend, MAX_NAME)?;
        bounded("previous_worker_id", &request.previous_worker_id, MAX_WORKER_ID)?;
        within("slots", request.slots, 1..=MAX_SLOTS)?;
        let previous = (!request.previous_worker_id.is_empty()).then_some(request.previous_worker_id);
        let name = if request.name.is_empty() { "worker".to_string() } else { request.name };
        let worker_id = self.coordinator.register_worker(name, request.backend, request.slots, previous).await?;
        let config = self.coordinator.config();
        Ok(Response::new(pb::RegisterWorkerResponse {
            worker_id,
            lease_ttl_ms: config.lease_ttl.as_millis() as u32,
            heartbeat_interval_ms: config.heartbeat_interval.as_millis() as u32,
        }))
    }

    async fn lease_trials(&self, request: Request<pb::LeaseTrialsRequest>) -> Result<Response<pb::LeaseTrialsResponse>, Status> {
        let packs = self.coordinator.lease(lease_ask(request.into_inner())?).await?;
        Ok(Response::new(pb::LeaseTrialsResponse { packs: packs_to_wire(&packs) }))
    }

    async fn heartbeat(&self, request: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let request = request.into_inner();
        bounded("worker_id", &request.worker_id, MAX_WORKER_ID)?;
        if request.leases.len() > MAX_HEARTBEAT_LEASES {
            return Err(invalid(format!("invalid `leases`: {} in one heartbeat, at most {MAX_HEARTBEAT_LEASES}", request.leases.len())));
        }
        let mut leases = Vec::with_capacity(request.leases.len());
        for wire in request.leases {
            leases.push(lease_from_wire(Some(wire))?);
        }
        let revoked = self.coordinator.heartbeat(request.worker_id, leases).await?;
        let revoked = revoked.iter().map(pb::Revocation::from).collect();
        Ok(Response::new(pb::HeartbeatResponse { revoked }))
    }

    async fn report_progress(
        &self,
        request: Request<Streaming<pb::ProgressBatch>>,
    ) -> Result<Response<pb::ReportProgressResponse>, Status> {
        let mut stream = request.into_inner();
        let mut accepted = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let lease = lease_from_wire(batch.lease)?;
            let mut steps = Vec::with_capacity(batch.steps.len());
            for step in batch.steps {
                steps.push(StepMeasures::try_from(step).map_err(invalid)?);
            }
            accepted += self.coordinator.report_progress(vec![(lease, steps)]).await?;
        }
        Ok(Response::new(pb::ReportProgressResponse { rows_accepted: accepted }))
    }

    async fn complete_trial(&self, request: Request<pb::CompleteTrialRequest>) -> Result<Response<pb::CompleteTrialResponse>, Status> {
        let request = request.into_inner();
        let lease = lease_from_wire(request.lease)?;
        let metrics = FinalMetrics::try_from(required(request.metrics, "metrics").map_err(invalid)?).map_err(invalid)?;
        let next = request.lease_next.map(lease_ask).transpose()?;
        let mut final_steps = Vec::with_capacity(request.final_steps.len());
        for step in request.final_steps {
            final_steps.push(StepMeasures::try_from(step).map_err(invalid)?);
        }
        let packs = self.coordinator.complete_and_lease(lease, final_steps, metrics, next).await?;
        Ok(Response::new(pb::CompleteTrialResponse { packs: packs_to_wire(&packs) }))
    }

    async fn upload_checkpoint(
        &self,
        request: Request<pb::UploadCheckpointRequest>,
    ) -> Result<Response<pb::UploadCheckpointResponse>, Status> {
        let request = request.into_inner();
        let lease = lease_from_wire(request.lease)?;
        let path = self.coordinator.store_checkpoint(lease, request.step, request.safetensors).await?;
        Ok(Response::new(pb::UploadCheckpointResponse { path }))
    }

    async fn fail_trial(&self, request: Request<pb::FailTrialRequest>) -> Result<Response<pb::FailTrialResponse>, Status> {
        let request = request.into_inner();
        bounded("reason", &request.reason, sweep_proto::MAX_REASON_BYTES)?;
        let lease = lease_from_wire(request.lease)?;
        self.coordinator.fail(lease, request.reason, request.release).await?;
        Ok(Response::new(pb::FailTrialResponse {}))
    }
}
