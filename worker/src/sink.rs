//! Where a training loop sends its measures.

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

/// Receives measure rows from a training loop.
pub trait MeasureSink {
    /// Record the measures of one evaluated step (names as in
    /// `sweep_core::measures`, spectra as `SpectrumKey` names).
    fn record(&mut self, step: i64, measures: &[(String, f64)]) -> Result<(), SinkError>;

    /// Hand over a checkpoint (a complete safetensors file) of step `step`.
    fn checkpoint(&mut self, step: i64, safetensors: Vec<u8>) -> Result<(), SinkError>;

    /// Whether training should stop now.
    fn cancelled(&self) -> bool;
}

/// A sink that keeps everything in memory (tests and benchmarks).
#[derive(Debug, Default, Clone)]
pub struct CollectingSink {
    /// (step, measure, value) in arrival order.
    pub rows: Vec<(i64, String, f64)>,
    /// (step, safetensors bytes) in arrival order.
    pub checkpoints: Vec<(i64, Vec<u8>)>,
}

impl CollectingSink {
    /// Distinct steps at which `measure` was recorded, in arrival order.
    pub fn steps_of(&self, measure: &str) -> Vec<i64> {
        let mut steps: Vec<i64> = self.rows.iter().filter(|row| row.1 == measure).map(|row| row.0).collect();
        steps.dedup();
        steps
    }

    /// The value of `measure` at `step`.
    pub fn value(&self, step: i64, measure: &str) -> Option<f64> {
        self.rows.iter().find(|row| row.0 == step && row.1 == measure).map(|row| row.2)
    }
}

impl MeasureSink for CollectingSink {
    fn record(&mut self, step: i64, measures: &[(String, f64)]) -> Result<(), SinkError> {
        self.rows.extend(measures.iter().map(|(name, value)| (step, name.clone(), *value)));
        Ok(())
    }

    fn checkpoint(&mut self, step: i64, safetensors: Vec<u8>) -> Result<(), SinkError> {
        self.checkpoints.push((step, safetensors));
        Ok(())
    }

    fn cancelled(&self) -> bool {
        false
    }
}
