//! Where the runner sends one trial's measures, checkpoints and outcome.

use sweep_core::{FinalMetrics, Measure, MeasureValue};

use crate::family::FamilyError;

/// Why training stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The lease was revoked or the worker is shutting down.
    #[error("training was cancelled")]
    Cancelled,
    /// Nobody listens to the measures any more.
    #[error("the progress channel is closed")]
    Closed,
}

/// Why a trial failed, kept typed until it is reported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrialError {
    /// The family could not prepare, train, evaluate or checkpoint it.
    #[error(transparent)]
    Family(#[from] FamilyError),
    /// The lease did not describe a trial this worker can train.
    #[error("the lease is malformed: {0}")]
    Malformed(#[from] sweep_proto::ConvertError),
    /// Training panicked (the whole pack stops).
    #[error("training panicked: {0}")]
    Panicked(String),
    /// No thread could be started for the pack.
    #[error("cannot start a training thread: {0}")]
    Thread(std::io::Error),
}

/// How one trial of a pack ended.
#[derive(Debug)]
pub enum TrialOutcome {
    /// Training finished (its budget, or the early-stop rule).
    Done(FinalMetrics),
    /// Stopped by a revocation or shutdown.
    Cancelled,
    /// Training failed.
    Failed(TrialError),
}

impl TrialOutcome {
    /// The outcome's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            TrialOutcome::Done(_) => "done",
            TrialOutcome::Cancelled => "cancelled",
            TrialOutcome::Failed(_) => "failed",
        }
    }
}

/// Receives one trial's results from the runner.
pub trait MeasureSink {
    /// Record the measures of one evaluated step.
    fn record(&mut self, step: i64, measures: Vec<Measure>) -> Result<(), SinkError>;

    /// Hand over a checkpoint (a complete safetensors file) of step `step`.
    fn checkpoint(&mut self, step: i64, safetensors: Vec<u8>) -> Result<(), SinkError>;

    /// Whether training of this trial should stop now.
    fn cancelled(&self) -> bool;

    /// The trial has left its pack: this is the last call.
    fn finish(&mut self, outcome: TrialOutcome);
}

/// A sink that keeps everything in memory (tests and benchmarks).
#[derive(Debug, Default)]
pub struct CollectingSink {
    /// (step, measures) in arrival order.
    pub steps: Vec<(i64, Vec<Measure>)>,
    /// (step, safetensors bytes) in arrival order.
    pub checkpoints: Vec<(i64, Vec<u8>)>,
    /// How the trial ended.
    pub outcome: Option<TrialOutcome>,
}

impl CollectingSink {
    /// Distinct steps at which `measure` was recorded, in arrival order.
    pub fn steps_of(&self, measure: &str) -> Vec<i64> {
        let mut steps: Vec<i64> =
            self.steps.iter().filter(|(_, measures)| measures.iter().any(|m| m.name == measure)).map(|(step, _)| *step).collect();
        steps.dedup();
        steps
    }

    /// The measure `measure` at `step`.
    pub fn measure(&self, step: i64, measure: &str) -> Option<&MeasureValue> {
        self.steps.iter().filter(|(at, _)| *at == step).flat_map(|(_, measures)| measures).find(|m| m.name == measure).map(|m| &m.value)
    }

    /// The first record or final metrics that the coordinator's checks
    /// ([`sweep_core::checks`]) would refuse for a trial of `context`, as text.
    pub fn refused_by(&self, context: &sweep_core::checks::TrialContext) -> Option<String> {
        for (step, measures) in &self.steps {
            let report = sweep_core::StepMeasures { step: *step, wall_time_ms: context.now_ms, measures: measures.clone() };
            if let Some((field, message)) = context.progress_problem(&report) {
                return Some(format!("step {step}: `{field}`: {message}"));
            }
        }
        let metrics = self.metrics()?;
        context.metrics_problem(metrics).map(|(field, message)| format!("final metrics: `{field}`: {message}"))
    }

    /// The scalar `measure` at `step`.
    pub fn value(&self, step: i64, measure: &str) -> Option<f64> {
        match self.measure(step, measure)? {
            MeasureValue::Scalar(value) => Some(*value),
            _ => None,
        }
    }

    /// Every recorded value as (step, name, value), in arrival order: a
    /// spectrum entry named `name[k]`, a curve point `name@t`.
    pub fn values(&self) -> Vec<(i64, String, f64)> {
        let mut values = Vec::new();
        for (step, measures) in &self.steps {
            for measure in measures {
                match &measure.value {
                    MeasureValue::Scalar(value) => values.push((*step, measure.name.clone(), *value)),
                    MeasureValue::Spectrum(spectrum) => {
                        values.extend(spectrum.iter().enumerate().map(|(k, v)| (*step, format!("{}[{k}]", measure.name), *v)))
                    }
                    MeasureValue::Curve(points) => {
                        values.extend(points.iter().map(|point| (*step, format!("{}@{}", measure.name, point.t), point.value)))
                    }
                }
            }
        }
        values
    }

    /// The final metrics, when the trial finished.
    pub fn metrics(&self) -> Option<&FinalMetrics> {
        match &self.outcome {
            Some(TrialOutcome::Done(metrics)) => Some(metrics),
            _ => None,
        }
    }
}

impl MeasureSink for CollectingSink {
    fn record(&mut self, step: i64, measures: Vec<Measure>) -> Result<(), SinkError> {
        self.steps.push((step, measures));
        Ok(())
    }

    fn checkpoint(&mut self, step: i64, safetensors: Vec<u8>) -> Result<(), SinkError> {
        self.checkpoints.push((step, safetensors));
        Ok(())
    }

    fn cancelled(&self) -> bool {
        false
    }

    fn finish(&mut self, outcome: TrialOutcome) {
        self.outcome = Some(outcome);
    }
}
