//! The worker's Prometheus metrics, through the `metrics` facade (no-ops
//! unless the binary installs a recorder), and its liveness for health probes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics::{counter, describe_counter, describe_gauge, gauge};

/// Training steps taken, summed over trials (a pack of K taking one step adds K).
pub const TRIAL_STEPS: &str = "groksweep_worker_trial_steps_total";
/// Trial steps per second over the last few seconds.
pub const STEPS_PER_SECOND: &str = "groksweep_worker_steps_per_second";
/// Trials this worker holds a lease on.
pub const TRIALS_RUNNING: &str = "groksweep_worker_trials_running";

/// Steps since the process started, for the rate gauge.
static STEPS: AtomicU64 = AtomicU64::new(0);

/// Describe every metric once, after a recorder is installed.
pub fn describe() {
    describe_counter!(TRIAL_STEPS, "Training steps taken, summed over the trials of each pack.");
    describe_gauge!(STEPS_PER_SECOND, "Trial steps per second over the last few seconds.");
    describe_gauge!(TRIALS_RUNNING, "Trials this worker holds a lease on.");
}

/// A pack of `trials` took one step.
pub(crate) fn trained(trials: usize) {
    STEPS.fetch_add(trials as u64, Ordering::Relaxed);
    counter!(TRIAL_STEPS).increment(trials as u64);
}

/// Sets the rate gauge from the step count, at most once per `every`.
#[derive(Debug)]
pub(crate) struct StepRate {
    every: Duration,
    since: Instant,
    steps: u64,
}

impl StepRate {
    pub(crate) fn new(every: Duration) -> Self {
        gauge!(STEPS_PER_SECOND).set(0.0);
        StepRate { every, since: Instant::now(), steps: STEPS.load(Ordering::Relaxed) }
    }

    pub(crate) fn update(&mut self, running: usize) {
        gauge!(TRIALS_RUNNING).set(running as f64);
        let elapsed = self.since.elapsed();
        if elapsed < self.every {
            return;
        }
        let steps = STEPS.load(Ordering::Relaxed);
        gauge!(STEPS_PER_SECOND).set((steps - self.steps) as f64 / elapsed.as_secs_f64());
        self.since = Instant::now();
        self.steps = steps;
    }
}

/// When the worker's control loop last went round: a health probe reads it
/// to tell a stuck worker from a busy one. Training runs on other threads,
/// so the loop keeps turning while packs train.
#[derive(Debug, Clone)]
pub struct Liveness {
    started: Instant,
    last_turn_ms: Arc<AtomicU64>,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness { started: Instant::now(), last_turn_ms: Arc::new(AtomicU64::new(0)) }
    }
}

impl Liveness {
    /// The loop went round now.
    pub(crate) fn turned(&self) {
        self.last_turn_ms.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long ago the loop last went round.
    pub fn since_last_turn(&self) -> Duration {
        let now = self.started.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_turn_ms.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_tracks_the_last_turn() {
        let liveness = Liveness::default();
        std::thread::sleep(Duration::from_millis(30));
        assert!(liveness.since_last_turn() >= Duration::from_millis(30));
        liveness.turned();
        assert!(liveness.since_last_turn() < Duration::from_millis(30));
    }
}
