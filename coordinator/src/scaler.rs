//! KEDA's external scaler (`externalscaler.ExternalScaler`), so that a KEDA
//! `ScaledObject` sizes the worker Deployment from the queue: the metric is
//! the number of trials queued or running (of one sweep, or of all), and one
//! replica is meant to carry `trialsPerReplica` of them (its slots × its pack
//! size). The HPA then asks for ceil(open trials / trialsPerReplica) workers,
//! and KEDA scales to zero when nothing is open.
//!
//! Trigger metadata (the ScaledObject's `metadata:`): `sweep` (optional: count
//! one sweep's trials only) and `trialsPerReplica` (default 1).

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use sweep_proto::keda;
use sweep_proto::keda::external_scaler_server::ExternalScaler;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::service::Coordinator;

/// The one metric this scaler reports.
pub const METRIC_NAME: &str = "groksweep-open-trials";

/// How often `StreamIsActive` looks at the queue.
const STREAM_POLL: Duration = Duration::from_secs(1);

/// What a trigger asks for, read from its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalerQuery {
    /// Count only this sweep's trials.
    pub sweep: Option<String>,
    /// Open trials one worker replica should carry.
    pub trials_per_replica: f64,
}

impl ScalerQuery {
    /// Read `sweep` and `trialsPerReplica`; a bad number is an error naming
    /// it. Other keys are KEDA's own (it passes the whole trigger metadata,
    /// `scalerAddress` included) and are ignored.
    pub fn from_metadata(metadata: &HashMap<String, String>) -> Result<Self, String> {
        let mut query = ScalerQuery { sweep: None, trials_per_replica: 1.0 };
        for (key, value) in metadata {
            match key.as_str() {
                "sweep" => query.sweep = Some(value.clone()).filter(|sweep| !sweep.is_empty()),
                "trialsPerReplica" => {
                    query.trials_per_replica = value
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|number| number.is_finite() && *number > 0.0)
                        .ok_or_else(|| format!("trigger metadata `trialsPerReplica`: `{value}` is not a positive number"))?;
                }
                _ => {}
            }
        }
        Ok(query)
    }
}

/// Serves the scaler over the coordinator's state.
#[derive(Debug, Clone)]
pub(crate) struct KedaScaler {
    coordinator: Coordinator,
}

impl KedaScaler {
    pub(crate) fn new(coordinator: Coordinator) -> Self {
        KedaScaler { coordinator }
    }

    async fn open_trials(&self, reference: Option<&keda::ScaledObjectRef>) -> Result<u64, Status> {
        let query = query_of(reference)?;
        let (queued, running) = self.coordinator.open_trials(query.sweep).await?;
        Ok(queued + running)
    }
}

fn query_of(reference: Option<&keda::ScaledObjectRef>) -> Result<ScalerQuery, Status> {
    let empty = HashMap::new();
    let metadata = reference.map_or(&empty, |reference| &reference.scaler_metadata);
    ScalerQuery::from_metadata(metadata).map_err(Status::invalid_argument)
}

type ActiveStream = Pin<Box<dyn Stream<Item = Result<keda::IsActiveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalScaler for KedaScaler {
    async fn is_active(&self, request: Request<keda::ScaledObjectRef>) -> Result<Response<keda::IsActiveResponse>, Status> {
        let open = self.open_trials(Some(request.get_ref())).await?;
        Ok(Response::new(keda::IsActiveResponse { result: open > 0 }))
    }

    type StreamIsActiveStream = ActiveStream;

    async fn stream_is_active(&self, request: Request<keda::ScaledObjectRef>) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        let reference = request.into_inner();
        query_of(Some(&reference))?;
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let scaler = self.clone();
        tokio::spawn(async move {
            let mut previous = None;
            loop {
                let active = match scaler.open_trials(Some(&reference)).await {
                    Ok(open) => open > 0,
                    Err(status) => {
                        let _ = sender.send(Err(status)).await;
                        return;
                    }
                };
                if previous != Some(active) {
                    previous = Some(active);
                    if sender.send(Ok(keda::IsActiveResponse { result: active })).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(STREAM_POLL) => {}
                    _ = scaler.coordinator.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn get_metric_spec(&self, request: Request<keda::ScaledObjectRef>) -> Result<Response<keda::GetMetricSpecResponse>, Status> {
        let query = query_of(Some(request.get_ref()))?;
        let spec = keda::MetricSpec {
            metric_name: METRIC_NAME.to_string(),
            target_size: query.trials_per_replica.ceil() as i64,
            target_size_float: query.trials_per_replica,
        };
        Ok(Response::new(keda::GetMetricSpecResponse { metric_specs: vec![spec] }))
    }

    async fn get_metrics(&self, request: Request<keda::GetMetricsRequest>) -> Result<Response<keda::GetMetricsResponse>, Status> {
        let request = request.into_inner();
        // KEDA prefixes the names it shows (`s0-…`); it sends back the one from GetMetricSpec.
        if !request.metric_name.is_empty() && !request.metric_name.ends_with(METRIC_NAME) {
            return Err(Status::not_found(format!("unknown metric `{}`; this scaler reports `{METRIC_NAME}`", request.metric_name)));
        }
        let open = self.open_trials(request.scaled_object_ref.as_ref()).await?;
        let value = keda::MetricValue { metric_name: METRIC_NAME.to_string(), metric_value: open as i64, metric_value_float: open as f64 };
        Ok(Response::new(keda::GetMetricsResponse { metric_values: vec![value] }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    #[test]
    fn metadata_is_read_and_checked() {
        assert_eq!(ScalerQuery::from_metadata(&metadata(&[])).unwrap(), ScalerQuery { sweep: None, trials_per_replica: 1.0 });
        let query = ScalerQuery::from_metadata(&metadata(&[("sweep", "grid"), ("trialsPerReplica", "8")])).unwrap();
        assert_eq!(query, ScalerQuery { sweep: Some("grid".to_string()), trials_per_replica: 8.0 });
        for bad in ["0", "-2", "NaN", "eight"] {
            let error = ScalerQuery::from_metadata(&metadata(&[("trialsPerReplica", bad)])).unwrap_err();
            assert!(error.contains("trialsPerReplica"), "{error}");
        }
        let with_keda_keys = metadata(&[("scalerAddress", "groksweep-coordinator:50051"), ("trialsPerReplica", "4")]);
        assert_eq!(ScalerQuery::from_metadata(&with_keda_keys).unwrap().trials_per_replica, 4.0);
    }
}
