//! The coordinator's Prometheus metrics, through the `metrics` facade: names
//! and descriptions here, values recorded where things happen. Without an
//! installed recorder (tests, `groksweep run` without `--metrics-listen`)
//! every call is a no-op.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::domain::SweepSummary;

/// Trials of a sweep in a status (labels `sweep`, `status`).
pub const TRIALS: &str = "groksweep_trials";
/// Leases handed to workers.
pub const LEASES_GRANTED: &str = "groksweep_leases_granted_total";
/// Leases that lapsed because their worker stopped heartbeating.
pub const LEASES_LAPSED: &str = "groksweep_leases_lapsed_total";
/// Leases a heartbeat told a worker to drop (cancelled sweep, superseded attempt).
pub const LEASES_REVOKED: &str = "groksweep_leases_revoked_total";
/// Progress rows accepted into the durable buffer.
pub const PROGRESS_ROWS: &str = "groksweep_progress_rows_ingested_total";
/// Duration of one flush of buffered results to Parquet.
pub const FLUSH_SECONDS: &str = "groksweep_parquet_flush_seconds";
/// Workers heard from within one lease period.
pub const WORKERS_CONNECTED: &str = "groksweep_workers_connected";
/// Store operations (calls' state changes and reads) committed in one SQLite transaction.
pub const STORE_COMMIT_OPERATIONS: &str = "groksweep_store_commit_operations";

/// Duration of one copy of the store's write-ahead log back into its database.
pub const STORE_CHECKPOINT_SECONDS: &str = "groksweep_store_checkpoint_seconds";

/// Describe every metric once, after a recorder is installed.
pub fn describe() {
    describe_gauge!(TRIALS, "Trials of a sweep in each status.");
    describe_counter!(LEASES_GRANTED, "Trial leases handed to workers.");
    describe_counter!(LEASES_LAPSED, "Leases that lapsed because their worker stopped heartbeating.");
    describe_counter!(LEASES_REVOKED, "Leases that a heartbeat told the worker to drop.");
    describe_counter!(PROGRESS_ROWS, "Progress rows accepted into the durable buffer.");
    describe_histogram!(FLUSH_SECONDS, metrics::Unit::Seconds, "Duration of one flush of buffered results to Parquet.");
    describe_gauge!(WORKERS_CONNECTED, "Workers heard from within one lease period.");
    describe_histogram!(STORE_COMMIT_OPERATIONS, "Store operations committed together in one SQLite transaction (group commit).");
    describe_histogram!(
        STORE_CHECKPOINT_SECONDS,
        metrics::Unit::Seconds,
        "Duration of one checkpoint of the store's write-ahead log, made off the store's thread."
    );
}

pub(crate) fn leases_granted(count: usize) {
    counter!(LEASES_GRANTED).increment(count as u64);
}

pub(crate) fn leases_lapsed(count: usize) {
    counter!(LEASES_LAPSED).increment(count as u64);
}

pub(crate) fn leases_revoked(count: usize) {
    counter!(LEASES_REVOKED).increment(count as u64);
}

pub(crate) fn progress_rows(count: u64) {
    counter!(PROGRESS_ROWS).increment(count);
}

pub(crate) fn store_committed(operations: usize) {
    histogram!(STORE_COMMIT_OPERATIONS).record(operations as f64);
}

pub(crate) fn checkpoint_took(seconds: f64) {
    histogram!(STORE_CHECKPOINT_SECONDS).record(seconds);
}

pub(crate) fn flush_took(seconds: f64) {
    histogram!(FLUSH_SECONDS).record(seconds);
}

/// Set the state gauges from the store's current counts.
pub(crate) fn state(sweeps: &[SweepSummary], workers: u64) {
    for sweep in sweeps {
        let by_status = [
            ("queued", sweep.queued),
            ("running", sweep.running),
            ("done", sweep.done),
            ("failed", sweep.failed),
            ("cancelled", sweep.cancelled),
        ];
        for (status, count) in by_status {
            gauge!(TRIALS, "sweep" => sweep.name.clone(), "status" => status).set(f64::from(count));
        }
    }
    gauge!(WORKERS_CONNECTED).set(workers as f64);
}
