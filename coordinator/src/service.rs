//! The coordinator's domain service: plain async methods over the store and the
//! results writer, plus the background loops (lease expiry, Parquet rolling).
//! Nothing here knows about gRPC.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use sweep_core::{Grid, parse_spec};
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use crate::clock::Clock;
use crate::config::CoordinatorConfig;
use sweep_core::StepMeasures;

use crate::domain::{
    FinalMetrics, LeaseAsk, LeaseRef, Millis, Revocation, SubmitOutcome, SweepSummary, TrialLease, TrialStatus, TrialView,
};
use crate::error::{CoordinatorError, Result};
use crate::flush_reader::{FlushReader, Snapshot};
use crate::part_rows::{PartCache, PartRows};
use crate::results::{ResultsLayout, SeriesTable, StagedFile};
use crate::store::{Store, TrialsPart, WrittenRows};
use crate::store_thread::StoreThread;
use crate::telemetry;

/// A cheaply clonable handle on the coordinator.
#[derive(Debug, Clone)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: StoreThread,
    layout: ResultsLayout,
    config: CoordinatorConfig,
    flush_requested: Notify,
    leasing: AtomicBool,
    /// When a stopping coordinator stops writing results (set by
    /// [`Coordinator::begin_shutdown`] with a shutdown flush budget).
    stop_writing_at: Arc<OnceLock<Instant>>,
    closing: watch::Sender<bool>,
    /// The store's clock at the previous lease-expiry check (0: none yet).
    last_expiry_check_ms: Arc<AtomicI64>,
    /// The `trials` parts the last flushes read, for the next to refresh.
    parts_read: Arc<Mutex<PartCache>>,
}

/// The store's database in the data directory.
const STORE_FILE: &str = "coordinator.sqlite";

/// Trials stored per transaction when a sweep is submitted.
const SUBMIT_CHUNK: u64 = 20_000;

/// Done trials compacted on one blocking thread, then forgotten together.
const COMPACTION_CHUNK: usize = 256;

/// Done trials read from the compaction queue in one store operation.
const COMPACTION_READ: usize = 1024;

/// Time a stopping coordinator spends compacting done trials' files.
const SHUTDOWN_COMPACTION_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);

/// Least time from the end of one flush to a flush asked for by a trial's
/// end (a completion, a failure, a lapsed lease, a cancelled sweep): a
/// trial's end shows in `trials.parquet` within about this long, and a
/// stream of them costs at most one flush per gap.
const REQUESTED_FLUSH_GAP: std::time::Duration = std::time::Duration::from_millis(500);

/// How often the state gauges of the metrics are refreshed (a scrape interval's worth).
const STATE_GAUGES_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

fn ttl_ms(config: &CoordinatorConfig) -> Millis {
    config.lease_ttl.as_millis() as Millis
}

/// How often the background loop checks for lapsed leases.
fn expiry_check_every(config: &CoordinatorConfig) -> std::time::Duration {
    (config.lease_ttl / 4).max(std::time::Duration::from_millis(100))
}

/// A gap between two expiry checks longer than this means the coordinator
/// was stalled (a check is due every [`expiry_check_every`]): half a TTL,
/// and at least two check periods.
fn stall_after_ms(config: &CoordinatorConfig) -> Millis {
    (ttl_ms(config) / 2).max(2 * expiry_check_every(config).as_millis() as Millis)
}

/// What one lease-expiry check did.
enum Expiry {
    /// These leases lapsed.
    Lapsed(Vec<(LeaseRef, TrialStatus)>),
    /// The check came `gap_ms` after the previous one, a stall: `leases`
    /// active leases were given a full TTL again.
    Stalled { gap_ms: Millis, leases: usize },
}

impl Coordinator {
    /// Open the coordinator's state under `config.data_dir`, recover from a
    /// crash (progress already on disk is not buffered twice), and give every
    /// active lease a full period for its worker to reconnect.
    pub fn open(config: CoordinatorConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        std::fs::create_dir_all(&config.data_dir).map_err(|error| CoordinatorError::io(&config.data_dir, error))?;
        let mut store = Store::open(&config.data_dir.join(STORE_FILE), clock)?;
        let layout = ResultsLayout::new(&config.data_dir);
        recover_written_progress(&mut store, &layout)?;
        let extended = store.grant_grace(ttl_ms(&config))?;
        if extended > 0 {
            info!(leases = extended, "resumed with active leases; waiting for their workers");
        }
        let (closing, _) = watch::channel(false);
        let inner = Inner {
            store: StoreThread::start(store)?,
            layout,
            config,
            flush_requested: Notify::new(),
            leasing: AtomicBool::new(true),
            stop_writing_at: Arc::default(),
            closing,
            last_expiry_check_ms: Arc::default(),
            parts_read: Arc::default(),
        };
        Ok(Coordinator { inner: Arc::new(inner) })
    }

    /// The configuration.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.inner.config
    }

    /// The results directory layout.
    pub fn layout(&self) -> &ResultsLayout {
        &self.inner.layout
    }

    /// (SQLite transactions committed, store operations run in them) since
    /// the coordinator opened: their ratio is how many calls shared a commit.
    pub fn store_commits(&self) -> (u64, u64) {
        self.inner.store.commits()
    }

    /// Run `operation` on the store's thread; resolves once it is committed.
    async fn with_store<T: Send + 'static>(&self, operation: impl FnOnce(&mut Store) -> Result<T> + Send + 'static) -> Result<T> {
        self.inner.store.run(operation).await
    }

    /// Validate a YAML spec and store its trials.
    pub async fn submit(&self, source_name: String, yaml: String) -> Result<SubmitOutcome> {
        let spec = parse_spec(&source_name, &yaml).map_err(CoordinatorError::InvalidSpec)?;
        let grid = Grid::new(&spec);
        let limit = self.inner.config.max_trials_per_sweep;
        if grid.len() > u128::from(limit) {
            return Err(CoordinatorError::TooManyTrials { sweep: spec.name, trials: grid.len(), limit });
        }
        let outcome = self.store_trials(Arc::new(spec), Arc::new(yaml), Arc::new(grid), SUBMIT_CHUNK).await?;
        info!(sweep = %outcome.sweep, total = outcome.total, added = outcome.added, "sweep submitted");
        self.inner.flush_requested.notify_one();
        Ok(outcome)
    }

    /// Make and store the trials of `grid` `chunk` at a time, each
    /// chunk made off the async threads and stored in one transaction, so
    /// that heartbeats and leases are served between chunks while a large
    /// sweep is stored (its first trials can be leased before the last are
    /// made) and a shutdown is honoured within one chunk: it stops the
    /// submission, the trials stored so far stay, and submitting the sweep
    /// again adds the rest.
    async fn store_trials(
        &self,
        spec: Arc<sweep_core::SweepSpec>,
        yaml: Arc<String>,
        grid: Arc<Grid>,
        chunk: u64,
    ) -> Result<SubmitOutcome> {
        let size = u64::try_from(grid.len()).expect("`submit` refuses a grid over its limit, a u64");
        let mut added = 0;
        let mut start = 0;
        loop {
            if *self.inner.closing.borrow() {
                warn!(sweep = %spec.name, stored = start, trials = size, "shutting down while storing a sweep; submit it again to add the rest");
                return Err(CoordinatorError::ShuttingDown);
            }
            let end = (start + chunk).min(size);
            let last = end == size;
            let part_of = Arc::clone(&grid);
            let part = tokio::task::spawn_blocking(move || part_of.trials(start..end))
                .await
                .map_err(|error| CoordinatorError::Internal(format!("grid task failed: {error}")))?;
            let (spec, yaml) = (Arc::clone(&spec), Arc::clone(&yaml));
            let outcome = self
                .with_store(move |store| if last { store.submit(&spec, &yaml, &part) } else { store.submit_part(&spec, &yaml, &part) })
                .await?;
            added += outcome.added;
            start = end;
            if start >= size {
                return Ok(SubmitOutcome { added, ..outcome });
            }
        }
    }

    /// Every sweep with its counts.
    pub async fn list_sweeps(&self) -> Result<Vec<SweepSummary>> {
        self.with_store(|store| store.list_sweeps()).await
    }

    /// A sweep's counts and trials.
    pub async fn sweep_status(&self, sweep: String) -> Result<(SweepSummary, Vec<TrialView>)> {
        self.with_store(move |store| Ok((store.sweep_summary(&sweep)?, store.trials_of(&sweep)?))).await
    }

    /// Cancel a sweep.
    pub async fn cancel(&self, sweep: String) -> Result<u32> {
        let cancelled = self.with_store(move |store| store.cancel(&sweep)).await?;
        self.inner.flush_requested.notify_one();
        Ok(cancelled)
    }

    /// Register a worker; returns its id.
    pub async fn register_worker(&self, name: String, backend: String, slots: u32, previous: Option<String>) -> Result<String> {
        let worker_id = self.with_store(move |store| store.register_worker(&name, &backend, slots, previous.as_deref())).await?;
        info!(worker = %worker_id, "worker registered");
        Ok(worker_id)
    }

    /// Lease up to `free_slots` packs of up to `pack_size` trials each (none while shutting down).
    pub async fn lease(&self, ask: LeaseAsk) -> Result<Vec<Vec<TrialLease>>> {
        if !self.may_lease(&ask) {
            return Ok(Vec::new());
        }
        let ttl = ttl_ms(&self.inner.config);
        let worker = ask.worker_id.clone();
        let packs = self.with_store(move |store| store.lease(&ask.worker_id, ask.free_slots, ask.pack_size, ttl)).await?;
        leased(&worker, &packs);
        Ok(packs)
    }

    /// Whether `ask` can lease anything: the coordinator is not stopping and the worker has a free slot.
    fn may_lease(&self, ask: &LeaseAsk) -> bool {
        self.inner.leasing.load(Ordering::SeqCst) && ask.free_slots > 0
    }

    /// Renew leases; returns those to drop.
    pub async fn heartbeat(&self, worker_id: String, leases: Vec<LeaseRef>) -> Result<Vec<Revocation>> {
        let ttl = ttl_ms(&self.inner.config);
        let revoked = self.with_store(move |store| store.heartbeat(&worker_id, &leases, ttl)).await?;
        telemetry::leases_revoked(revoked.len());
        Ok(revoked)
    }

    /// Buffer progress batches durably; returns the number of new rows.
    pub async fn report_progress(&self, batches: Vec<(LeaseRef, Vec<StepMeasures>)>) -> Result<u64> {
        let ttl = ttl_ms(&self.inner.config);
        let accepted = self
            .with_store(move |store| {
                let mut accepted = 0;
                for (lease, rows) in &batches {
                    accepted += store.record_progress(lease, rows, ttl)? as u64;
                }
                Ok(accepted)
            })
            .await?;
        telemetry::progress_rows(accepted);
        Ok(accepted)
    }

    /// Store a checkpoint of a live lease under the sweep's results; returns
    /// its path relative to the sweep's results directory. The file is
    /// written by the store's thread between the lease check and its record,
    /// so a lease that lapses meanwhile cannot leave a file behind in the
    /// results.
    pub async fn store_checkpoint(&self, lease: LeaseRef, step: i64, safetensors: Vec<u8>) -> Result<String> {
        if step < 0 {
            return Err(CoordinatorError::InvalidRequest(format!("checkpoint step {step} is negative")));
        }
        check_safetensors_header(&safetensors)?;
        let ttl = ttl_ms(&self.inner.config);
        let layout = self.inner.layout.clone();
        let (trial, attempt) = (lease.trial_id.clone(), lease.attempt);
        let path = self
            .with_store(move |store| {
                let sweep = store.checkpoint_target(&lease, ttl)?;
                let path = layout.write_checkpoint(&sweep, &lease.trial_id, lease.attempt, step, &safetensors)?;
                store.record_checkpoint(&lease, step, &path)?;
                Ok(path)
            })
            .await?;
        debug!(trial = %trial, attempt, step, path = %path, "checkpoint stored");
        Ok(path)
    }

    /// A trial finished.
    pub async fn complete(&self, lease: LeaseRef, metrics: FinalMetrics) -> Result<()> {
        self.complete_and_lease(lease, Vec::new(), metrics, None).await.map(drop)
    }

    /// A trial finished, with its last progress rows (`final_steps`, stored
    /// with the completion or neither, as [`Coordinator::report_progress`]
    /// would); with `next`, then lease to that worker as
    /// [`Coordinator::lease`] does, in the same store operation (one commit,
    /// one round trip for the worker). The completion stands whatever the
    /// lease does: a lease that fails (an unknown worker) is logged and
    /// answered with no packs, and the worker's next `lease` says why.
    pub async fn complete_and_lease(
        &self,
        lease: LeaseRef,
        final_steps: Vec<StepMeasures>,
        metrics: FinalMetrics,
        next: Option<LeaseAsk>,
    ) -> Result<Vec<Vec<TrialLease>>> {
        let trial = lease.trial_id.clone();
        let next = next.filter(|ask| self.may_lease(ask));
        let ttl = ttl_ms(&self.inner.config);
        let (rows, leasing) = self
            .with_store(move |store| {
                let rows = store.complete_with_rows(&lease, &final_steps, &metrics)?;
                Ok((
                    rows,
                    next.map(|ask| {
                        let packs = store.lease(&ask.worker_id, ask.free_slots, ask.pack_size, ttl);
                        (ask.worker_id, packs)
                    }),
                ))
            })
            .await?;
        telemetry::progress_rows(rows as u64);
        info!(trial = %trial, "trial done");
        self.inner.flush_requested.notify_one();
        let Some((worker, packs)) = leasing else { return Ok(Vec::new()) };
        match packs {
            Ok(packs) => {
                leased(&worker, &packs);
                Ok(packs)
            }
            Err(error) => {
                warn!(trial = %trial, worker = %worker, %error, "no lease with the completion; the worker will ask again");
                Ok(Vec::new())
            }
        }
    }

    /// An attempt failed or was given back.
    pub async fn fail(&self, lease: LeaseRef, reason: String, release: bool) -> Result<TrialStatus> {
        let trial = lease.trial_id.clone();
        let attempt = lease.attempt;
        let logged_reason = reason.clone();
        let status = self.with_store(move |store| store.fail(&lease, &reason, release)).await?;
        warn!(trial = %trial, attempt, release, reason = %logged_reason, status = status.as_str(), "attempt ended without success");
        self.inner.flush_requested.notify_one();
        Ok(status)
    }

    /// Lapse overdue leases, unless the coordinator itself has not run for
    /// a while: after a stall of the whole process (a suspended VM or
    /// laptop, a swap storm, SIGSTOP) the heartbeats its workers sent
    /// meanwhile are still queued, and in the embedded run the workers were
    /// stalled with it, so their leases get a full TTL again (a worker that
    /// really died is found one TTL later) instead of lapsing work that is
    /// alive. A stall is a gap between two checks, on the store's clock,
    /// longer than `stall_after_ms`.
    pub async fn expire_leases(&self) -> Result<()> {
        let (ttl, stall_after) = (ttl_ms(&self.inner.config), stall_after_ms(&self.inner.config));
        let last_check = Arc::clone(&self.inner.last_expiry_check_ms);
        let expiry = self
            .with_store(move |store| {
                let now = store.now_ms();
                let previous = last_check.swap(now, Ordering::SeqCst);
                if previous > 0 && now - previous > stall_after {
                    return Ok(Expiry::Stalled { gap_ms: now - previous, leases: store.grant_grace(ttl)? });
                }
                Ok(Expiry::Lapsed(store.expire_leases()?))
            })
            .await?;
        let outcomes = match expiry {
            Expiry::Stalled { gap_ms, leases } => {
                warn!(gap_ms, leases, "the coordinator did not run for a while; its active leases get a full TTL instead of lapsing");
                return Ok(());
            }
            Expiry::Lapsed(outcomes) => outcomes,
        };
        telemetry::leases_lapsed(outcomes.len());
        for (lease, status) in &outcomes {
            warn!(trial = %lease.trial_id, attempt = lease.attempt, status = status.as_str(), "lease expired");
        }
        if !outcomes.is_empty() {
            self.inner.flush_requested.notify_one();
        }
        Ok(())
    }

    /// Bring the results directory up to date: move superseded attempts out,
    /// write buffered progress, rewrite changed `trials` tables; then, without
    /// holding the state, compact the files of trials that are done.
    pub async fn flush(&self) -> Result<()> {
        if past(&self.inner.stop_writing_at) {
            // A stopping coordinator out of time: not even the snapshot (it
            // reads every buffered row); the next start writes them.
            return Ok(());
        }
        let started = std::time::Instant::now();
        let written = self.flush_results().await;
        telemetry::flush_took(started.elapsed().as_secs_f64());
        let written = written?;
        if let Some(observer) = &self.inner.config.on_trials_written {
            for parts in written.chunk_by(|one, next| one.part.sweep == next.part.sweep) {
                let trials: Vec<&TrialView> = parts.iter().flat_map(|rows| &rows.views).collect();
                observer.trials_written(&parts[0].part.sweep, &trials).await;
            }
        }
        self.compact_done_trials().await
    }

    /// Compact each done trial's rolled files, on a blocking thread (a done
    /// attempt gets no more rows, and only this task writes its files), a
    /// chunk of trials at a time, each chunk then forgotten by one store
    /// operation: a sweep of short trials finishes thousands a second.
    async fn compact_done_trials(&self) -> Result<()> {
        // Directories swapped out by earlier compactions, once no reader can
        // still be listing them.
        let layout = self.inner.layout.clone();
        let purged = tokio::task::spawn_blocking(move || {
            crate::compaction::purge_retired(&layout, crate::compaction::RETIRED_GRACE, std::time::SystemTime::now())
        })
        .await
        .map_err(|error| CoordinatorError::Internal(format!("purge task failed: {error}")))??;
        if purged > 0 {
            debug!(directories = purged, "deleted directories that compaction swapped out");
        }
        let began = std::time::Instant::now();
        loop {
            // At most COMPACTION_READ at a time, so that one store operation
            // stays short however many trials ended since the last pass (at
            // 10,000 trials a second, thousands).
            let ready = self.with_store(|store| store.compaction_ready(COMPACTION_READ)).await?;
            if !self.compact(&ready, began).await? || ready.len() < COMPACTION_READ {
                return Ok(());
            }
        }
    }

    /// Compact the files of `ready` attempts and forget them, a chunk at a
    /// time; false if a stopping coordinator ran out of time for it.
    async fn compact(&self, ready: &[crate::store::SweepAttempt], began: std::time::Instant) -> Result<bool> {
        for chunk in ready.chunks(COMPACTION_CHUNK) {
            let (layout, attempts, closing) = (self.inner.layout.clone(), chunk.to_vec(), self.inner.closing.subscribe());
            let stop_writing_at = Arc::clone(&self.inner.stop_writing_at);
            let (compacted, failed) = tokio::task::spawn_blocking(move || {
                let mut compacted = Vec::with_capacity(attempts.len());
                for attempt in attempts {
                    // A stopping coordinator spends at most a second on it (or
                    // what is left of its shutdown budget) and leaves the rest
                    // for its next start.
                    if *closing.borrow() && (began.elapsed() > SHUTDOWN_COMPACTION_BUDGET || past(&stop_writing_at)) {
                        break;
                    }
                    let started = std::time::Instant::now();
                    match crate::compaction::compact(&layout, &attempt) {
                        Ok(done) => {
                            if done.files_replaced > 0 {
                                debug!(
                                    sweep = %attempt.sweep,
                                    trial = %attempt.trial_id,
                                    attempt = attempt.attempt,
                                    files = done.files_replaced,
                                    rows = done.rows,
                                    ms = started.elapsed().as_millis() as u64,
                                    "compacted a done trial's progress files"
                                );
                            }
                            compacted.push(attempt);
                        }
                        Err(error) => return (compacted, Some(error)),
                    }
                }
                (compacted, None)
            })
            .await
            .map_err(|error| CoordinatorError::Internal(format!("compaction task failed: {error}")))?;
            let stopped_early = compacted.len() < chunk.len();
            self.with_store(move |store| store.forget_compactions(&compacted)).await?;
            if let Some(error) = failed {
                return Err(error);
            }
            if stopped_early {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Trials waiting for or holding a slot: (queued, running), of one sweep or of all.
    pub async fn open_trials(&self, sweep: Option<String>) -> Result<(u64, u64)> {
        self.with_store(move |store| store.open_trials(sweep.as_deref())).await
    }

    /// Refresh the state gauges (trials by sweep and status, connected workers).
    pub async fn record_state(&self) -> Result<()> {
        let since = ttl_ms(&self.inner.config);
        let (sweeps, workers) = self.with_store(move |store| Ok((store.list_sweeps()?, store.workers_seen_within(since)?))).await?;
        telemetry::state(&sweeps, workers);
        Ok(())
    }

    /// Stop handing out leases and end watch streams; called on shutdown.
    pub fn begin_shutdown(&self) {
        self.inner.leasing.store(false, Ordering::SeqCst);
        if let Some(budget) = self.inner.config.shutdown_flush_budget {
            let _ = self.inner.stop_writing_at.set(Instant::now() + budget);
        }
        self.inner.closing.send_replace(true);
        info!("coordinator stopping: no new leases");
    }

    /// Resolves when shutdown has begun.
    pub async fn closed(&self) {
        let mut receiver = self.inner.closing.subscribe();
        let _ = receiver.wait_for(|closing| *closing).await;
    }

    /// Background work until shutdown: lease expiry and Parquet rolling.
    pub async fn run_background(self) {
        let check_every = expiry_check_every(&self.inner.config);
        let mut expiry = tokio::time::interval(check_every);
        let mut roll = tokio::time::interval(self.inner.config.roll_interval);
        let mut gauges = tokio::time::interval(STATE_GAUGES_EVERY);
        // A flush asked for by a trial's end waits until REQUESTED_FLUSH_GAP
        // after the previous flush ended: under load trials end thousands of
        // times a second, and a flush after each kept the store's thread
        // busy reading for flushes.
        let mut last_flush = tokio::time::Instant::now();
        let mut requested: Option<tokio::time::Instant> = None;
        loop {
            let due = requested.unwrap_or(last_flush);
            tokio::select! {
                _ = self.closed() => break,
                _ = gauges.tick(), if self.inner.config.state_gauges => {
                    if let Err(error) = self.record_state().await {
                        warn!(%error, "reading the state for the metrics failed");
                    }
                }
                _ = expiry.tick() => {
                    if let Err(error) = self.expire_leases().await {
                        warn!(%error, "lease expiry failed");
                    }
                }
                _ = roll.tick() => {
                    self.flush_logged().await;
                    (last_flush, requested) = (tokio::time::Instant::now(), None);
                }
                _ = self.inner.flush_requested.notified(), if requested.is_none() => {
                    requested = Some(last_flush + REQUESTED_FLUSH_GAP);
                }
                _ = tokio::time::sleep_until(due), if requested.is_some() => {
                    self.flush_logged().await;
                    (last_flush, requested) = (tokio::time::Instant::now(), None);
                }
            }
        }
        debug!("background loops stopped");
    }

    async fn flush_logged(&self) {
        if let Err(error) = self.flush().await {
            warn!(%error, "writing results failed; will retry");
        }
    }
}

/// Count and log the packs leased to `worker`.
fn leased(worker: &str, packs: &[Vec<TrialLease>]) {
    telemetry::leases_granted(packs.iter().map(Vec::len).sum());
    for pack in packs {
        for lease in pack {
            info!(sweep = %lease.sweep, trial = %lease.lease.trial_id, attempt = lease.lease.attempt, worker = %worker, pack = pack.len(), "trial leased");
        }
    }
}

/// A safetensors file starts with an 8-byte little-endian header length and a
/// JSON header; refuse anything else before it reaches the results.
fn check_safetensors_header(bytes: &[u8]) -> Result<()> {
    let invalid = |why: &str| Err(CoordinatorError::InvalidRequest(format!("checkpoint is not a safetensors file: {why}")));
    let Some(length) = bytes.get(..8) else { return invalid("shorter than its header length") };
    let length = u64::from_le_bytes(length.try_into().expect("8 bytes")) as usize;
    match bytes.get(8..8usize.saturating_add(length)) {
        Some(header) if header.first() == Some(&b'{') => Ok(()),
        Some(_) => invalid("the header is not JSON"),
        None => invalid("the header is longer than the file"),
    }
}

/// What a flush wrote: the rows now on disk, each sweep whose `trials` table
/// was written (with the rows of the parts written), the parts that were not,
/// and the first error.
struct FlushWritten {
    on_disk: Vec<WrittenRows>,
    written: Vec<Arc<PartRows>>,
    unwritten: Vec<TrialsPart>,
    first_error: Option<CoordinatorError>,
}

impl Coordinator {
    /// Returns the parts of `trials` tables written, with their rows, a
    /// sweep's parts next to each other.
    ///
    /// Two operations on the store's thread, both short: the first moves
    /// superseded attempts out of the results (renames, on that thread so
    /// that no checkpoint of a lapsing lease lands behind the move) and
    /// takes the marks of the `trials` parts that changed; then a blocking
    /// thread reads what to write through a read-only connection
    /// ([`FlushReader`]: the buffered attempts and the changed parts, in
    /// one transaction) and writes the files; the second operation forgets
    /// the batches now on disk. This flush is the only writer of progress
    /// files, so nothing moves them in between; a crash in between leaves
    /// rows both buffered and on disk, which the next open reconciles. Each
    /// trial's progress is written before its sweep's `trials` table.
    async fn flush_results(&self) -> Result<Vec<Arc<PartRows>>> {
        let layout = self.inner.layout.clone();
        let dirty: Vec<TrialsPart> = self
            .with_store(move |store| {
                for attempt in store.superseded()? {
                    let moved = layout.move_superseded(&attempt)?;
                    store.forget_superseded(&attempt)?;
                    debug!(trial = %attempt.trial_id, attempt = attempt.attempt, files = moved, "superseded attempt moved out of results");
                }
                // Only the parts of `trials` tables that changed: a large sweep's
                // table is not read and rewritten whole on every roll. Last
                // part first (see `write_snapshot`).
                let mut dirty = store.take_dirty_parts()?;
                dirty.reverse();
                Ok(dirty)
            })
            .await?;
        let (layout, stop_writing_at) = (self.inner.layout.clone(), Arc::clone(&self.inner.stop_writing_at));
        let (database, parts_read) = (self.inner.config.data_dir.join(STORE_FILE), Arc::clone(&self.inner.parts_read));
        let outcome = tokio::task::spawn_blocking(move || write_snapshot(&layout, &database, dirty, &parts_read, &stop_writing_at))
            .await
            .map_err(|error| CoordinatorError::Internal(format!("flush task failed: {error}")))?;
        let FlushWritten { on_disk, written, unwritten, first_error } = outcome;
        // A store operation per chunk, so that leases and heartbeats are
        // answered in between: forgetting a whole flush's rows at once held
        // the store's thread for over a second at 10,000 completions a
        // second (bench/RESULTS.md, "Session 23"). Each chunk stands on its
        // own: rows on disk but not yet forgotten are what crash recovery
        // already handles.
        for chunk in on_disk.chunks(MARK_FLUSHED_CHUNK) {
            let chunk = chunk.to_vec();
            self.with_store(move |store| store.mark_flushed(&chunk)).await?;
        }
        if !unwritten.is_empty() {
            self.with_store(move |store| store.mark_dirty(&unwritten)).await?;
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(written),
        }
    }
}

/// Written attempt tables forgotten per store operation after a flush.
const MARK_FLUSHED_CHUNK: usize = 1024;

/// Whether a stopping coordinator's time for writing results is up.
fn past(stop_writing_at: &OnceLock<Instant>) -> bool {
    stop_writing_at.get().is_some_and(|at| Instant::now() >= *at)
}

/// Read a flush's snapshot ([`FlushReader::snapshot`]) of the buffered
/// attempts and the `dirty` parts (last part first; those kept in
/// `parts_read` are refreshed, and each part written is kept there), and
/// write it: every buffered attempt's tables, then the parts. Once
/// `stop_writing_at` has passed, the attempts not yet written stay
/// buffered, and the parts stay to be rewritten (so that no trial is shown
/// done before its progress is written).
fn write_snapshot(
    layout: &ResultsLayout,
    database: &std::path::Path,
    dirty: Vec<TrialsPart>,
    parts_read: &Mutex<PartCache>,
    stop_writing_at: &OnceLock<Instant>,
) -> FlushWritten {
    let mut first_error = None;
    let snapshot = FlushReader::open(database).and_then(|mut reader| {
        // A stopping coordinator out of time reads no more parts (a sweep
        // being stored has a new one every 10,000 trials).
        let snapshot = reader.snapshot(dirty.clone(), parts_read, || past(stop_writing_at))?;
        Ok((reader, snapshot))
    });
    let (reader, Snapshot { pending: buffered, tables, unread }) = match snapshot {
        Ok(read) => read,
        // Nothing is written: no trial may be shown done before its progress.
        Err(error) => return FlushWritten { on_disk: Vec::new(), written: Vec::new(), unwritten: dirty, first_error: Some(error) },
    };
    let (count, mut on_disk) = (buffered.len(), Vec::with_capacity(buffered.len()));
    let mut staged = Vec::with_capacity(buffered.len());
    let mut out_of_time = false;
    for (position, pending) in buffered.into_iter().enumerate() {
        if past(stop_writing_at) {
            warn!(
                attempts = count - position,
                "stopping: the shutdown budget is spent; the rest of the buffered results are written at the next start"
            );
            out_of_time = true;
            break;
        }
        let attempt = match reader.read(&pending) {
            Ok(attempt) => attempt,
            Err(error) => {
                first_error.get_or_insert(error);
                continue;
            }
        };
        for table in SeriesTable::ALL {
            match layout.stage_series(&attempt, table) {
                Ok(None) => {}
                Ok(Some(file)) => staged.push((
                    file,
                    WrittenRows {
                        trial_id: attempt.trial_id.clone(),
                        attempt: attempt.attempt,
                        last_row_id: attempt.last_row_id,
                        kind: table.kind(),
                    },
                )),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
    }
    // The staged files are made durable and visible together (one sync for
    // all of them, not one per file); only those renamed count as written.
    let (files, rows): (Vec<StagedFile>, Vec<WrittenRows>) = staged.into_iter().unzip();
    match crate::results::publish(&layout.results_root(), &files) {
        Ok(published) => {
            // A visible file counts as written even if the sync after the
            // renames failed: a second file of the same rows would show
            // every reader those rows twice.
            for (outcome, rows) in published.renamed.into_iter().zip(rows) {
                match outcome {
                    Ok(()) => on_disk.push(rows),
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
            }
            if let Some(error) = published.names_not_synced {
                first_error.get_or_insert(error);
            }
        }
        Err(error) => {
            // Nothing was published: the rows stay buffered, and no trial may
            // be shown done before its progress is written.
            let unwritten = tables.iter().map(|rows| rows.part.clone()).chain(unread).collect();
            return FlushWritten { on_disk, written: Vec::new(), unwritten, first_error: Some(error) };
        }
    }
    if out_of_time {
        let unwritten = tables.iter().map(|rows| rows.part.clone()).chain(unread).collect();
        return FlushWritten { on_disk, written: Vec::new(), unwritten, first_error };
    }
    // `tables` has the last part first, so that the single `trials.parquet`
    // of an older data directory (now part 0) is cut down only once the
    // other parts are beside it.
    let (mut written, mut unwritten) = (Vec::new(), unread);
    for rows in tables {
        if past(stop_writing_at) {
            unwritten.push(rows.part.clone());
            continue;
        }
        match layout.write_trials(&rows.part, &rows.views) {
            Ok(_) => {
                parts_read.lock().expect("the cache is never left half-updated").keep(Arc::clone(&rows));
                written.push(rows);
            }
            Err(error) => {
                unwritten.push(rows.part.clone());
                first_error.get_or_insert(error);
            }
        }
    }
    FlushWritten { on_disk, written, unwritten, first_error }
}

/// After a crash between writing a table's file and forgetting its rows, the
/// rows are still buffered: drop those the files already hold, table by
/// table (a crash between two tables' files leaves only the first written).
fn recover_written_progress(store: &mut Store, layout: &ResultsLayout) -> Result<()> {
    let mut recovered = Vec::new();
    for buffered in store.buffered_attempts()? {
        for table in SeriesTable::ALL {
            let written_through = layout
                .series_files(table, &buffered.sweep, &buffered.trial_id)?
                .iter()
                .filter(|file| file.attempt == buffered.attempt && file.last_row_id >= buffered.first_row_id)
                .map(|file| file.last_row_id)
                .max();
            if let Some(last_row_id) = written_through {
                info!(
                    trial = %buffered.trial_id,
                    attempt = buffered.attempt,
                    table = table.directory_name(),
                    "recovered progress already written before a crash"
                );
                recovered.push(WrittenRows {
                    trial_id: buffered.trial_id.clone(),
                    attempt: buffered.attempt,
                    last_row_id,
                    kind: table.kind(),
                });
            }
        }
    }
    store.mark_flushed(&recovered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    fn grid(seeds: usize) -> (Arc<sweep_core::SweepSpec>, Arc<String>, Arc<Grid>) {
        let (spec, yaml, _) = crate::store::tests::seed_grid("chunked", seeds);
        let grid = Grid::new(&spec);
        (Arc::new(spec), Arc::new(yaml), Arc::new(grid))
    }

    #[tokio::test]
    async fn a_sweep_stored_in_chunks_is_whole_and_resubmitting_adds_nothing() {
        let data = tempfile::tempdir().expect("tempdir");
        let coordinator = Coordinator::open(CoordinatorConfig::new(data.path()), Arc::new(SystemClock)).expect("opens");
        let (spec, yaml, trials) = grid(10);
        let outcome = coordinator.store_trials(Arc::clone(&spec), Arc::clone(&yaml), Arc::clone(&trials), 3).await.expect("stored");
        assert_eq!((outcome.total, outcome.added, outcome.done), (10, 10, 0));
        let again = coordinator.store_trials(spec, yaml, trials, 3).await.expect("stored again");
        assert_eq!((again.total, again.added), (10, 0));
        let (_, views) = coordinator.sweep_status("chunked".into()).await.expect("status");
        let mut seeds: Vec<u64> = views.iter().map(|view| view.params.seed).collect();
        seeds.sort();
        assert_eq!(seeds, (0..10).collect::<Vec<u64>>());
    }

    /// A completion that asks for the next lease gets it in the same call;
    /// one whose lease cannot be made (an unknown worker, a stopping
    /// coordinator) still completes, with no packs.
    #[tokio::test]
    async fn a_completion_brings_the_next_lease_and_stands_without_one() {
        let data = tempfile::tempdir().expect("tempdir");
        let coordinator = Coordinator::open(CoordinatorConfig::new(data.path()), Arc::new(SystemClock)).expect("opens");
        let (spec, yaml, trials) = grid(4);
        coordinator.store_trials(spec, yaml, trials, 4).await.expect("stored");
        let worker = coordinator.register_worker("w".into(), "flex".into(), 1, None).await.expect("registered");
        let ask = |worker_id: &str| LeaseAsk { worker_id: worker_id.to_string(), free_slots: 1, pack_size: 1 };
        let only = |mut packs: Vec<Vec<TrialLease>>| {
            assert_eq!(packs.iter().map(Vec::len).collect::<Vec<_>>(), vec![1], "one pack of one");
            packs.remove(0).remove(0).lease
        };
        let done = FinalMetrics { epochs: 1, ..FinalMetrics::default() };
        let first = only(coordinator.lease(ask(&worker)).await.expect("leased"));
        let second =
            only(coordinator.complete_and_lease(first.clone(), Vec::new(), done.clone(), Some(ask(&worker))).await.expect("completed"));
        assert_ne!(second.trial_id, first.trial_id);
        // Asking in a worker's name the coordinator does not know: done all the same.
        let none =
            coordinator.complete_and_lease(second.clone(), Vec::new(), done.clone(), Some(ask("w9-nobody"))).await.expect("completed");
        assert!(none.is_empty(), "{none:?}");
        let third = only(coordinator.lease(ask(&worker)).await.expect("leased"));
        coordinator.begin_shutdown();
        let none = coordinator.complete_and_lease(third.clone(), Vec::new(), done, Some(ask(&worker))).await.expect("completed");
        assert!(none.is_empty(), "a stopping coordinator leases nothing: {none:?}");
        let (summary, views) = coordinator.sweep_status("chunked".into()).await.expect("status");
        assert_eq!((summary.done, summary.running, summary.queued), (3, 0, 1));
        for lease in [first, second, third] {
            let view = views.iter().find(|view| view.trial_id == lease.trial_id).expect("the trial");
            assert_eq!(view.status, TrialStatus::Done, "{}", lease.trial_id);
        }
    }

    /// A stopping coordinator makes and stores no further chunk of a
    /// submission (a real SIGTERM in the middle of one is in the e2e faults);
    /// the chunks stored before stay, and submitting again adds the rest.
    #[tokio::test]
    async fn a_shutdown_stops_a_submission_before_its_next_chunk_and_resubmitting_adds_the_rest() {
        let data = tempfile::tempdir().expect("tempdir");
        let coordinator = Coordinator::open(CoordinatorConfig::new(data.path()), Arc::new(SystemClock)).expect("opens");
        let (spec, yaml, trials) = grid(10);
        // The first 3 of the 10, as a submission stopped after its first chunk leaves them.
        let first = crate::store::tests::seed_grid("chunked", 10).2[..3].to_vec();
        let (stored_spec, stored_yaml) = (Arc::clone(&spec), Arc::clone(&yaml));
        coordinator.with_store(move |store| store.submit_part(&stored_spec, &stored_yaml, &first)).await.expect("first chunk");
        coordinator.begin_shutdown();
        let error = coordinator.store_trials(Arc::clone(&spec), Arc::clone(&yaml), Arc::clone(&trials), 3).await.expect_err("stopped");
        assert!(matches!(error, CoordinatorError::ShuttingDown), "{error}");
        assert_eq!(coordinator.list_sweeps().await.expect("sweeps")[0].total, 3, "nothing stored after the shutdown began");
        drop(coordinator);
        let reopened = Coordinator::open(CoordinatorConfig::new(data.path()), Arc::new(SystemClock)).expect("reopens");
        let outcome = reopened.store_trials(spec, yaml, trials, 3).await.expect("stored");
        assert_eq!((outcome.total, outcome.added), (10, 7));
    }

    /// A coordinator stalled longer than a TTL (here its clock jumps 60 s
    /// between two checks, as after a SIGSTOP or a suspended VM) does not
    /// lapse the leases whose heartbeats it could not hear: they get a full
    /// TTL again. A worker that stays silent while the coordinator runs
    /// (checks every 7.5 s) still loses its lease one TTL later.
    #[tokio::test]
    async fn a_stalled_coordinator_gives_its_leases_a_full_ttl_instead_of_lapsing_them() {
        use crate::clock::ManualClock;
        let data = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(1_800_000_000_000);
        let coordinator = Coordinator::open(CoordinatorConfig::new(data.path()), Arc::new(clock.clone())).expect("opens");
        assert_eq!(stall_after_ms(coordinator.config()), 15_000, "half the default TTL of 30 s");
        let (spec, yaml, trials) = grid(1);
        coordinator.store_trials(spec, yaml, trials, 1).await.expect("stored");
        let worker = coordinator.register_worker("w".into(), "flex".into(), 1, None).await.expect("registered");
        let lease = coordinator
            .lease(LeaseAsk { worker_id: worker.clone(), free_slots: 1, pack_size: 1 })
            .await
            .expect("leased")
            .remove(0)
            .remove(0)
            .lease;
        let status = |coordinator: Coordinator| async move {
            let (_, views) = coordinator.sweep_status("chunked".into()).await.expect("status");
            (views[0].status, views[0].attempt)
        };
        coordinator.expire_leases().await.expect("first check");
        clock.advance(60_000);
        coordinator.expire_leases().await.expect("check after the stall");
        assert_eq!(status(coordinator.clone()).await, (TrialStatus::Running, 1), "lapsed by a stall");
        assert!(coordinator.heartbeat(worker.clone(), vec![lease.clone()]).await.expect("heartbeat").is_empty());
        // The worker now goes silent while the coordinator checks on time.
        for _ in 0..4 {
            clock.advance(7_500);
            coordinator.expire_leases().await.expect("check");
            assert_eq!(status(coordinator.clone()).await.0, TrialStatus::Running, "lapsed before its TTL");
        }
        clock.advance(7_500);
        coordinator.expire_leases().await.expect("check");
        assert_eq!(status(coordinator.clone()).await, (TrialStatus::Queued, 1), "a silent worker's lease lapses after a TTL");
        let revoked = coordinator.heartbeat(worker, vec![lease]).await.expect("heartbeat");
        assert_eq!(revoked.len(), 1, "the late heartbeat is told its lease is gone");
    }

    /// A stopping coordinator with a spent shutdown budget reads and writes
    /// nothing more: its buffered rows and changed `trials` parts stay in its
    /// state and reach Parquet at its next start; without a budget, the last
    /// flush writes everything.
    #[tokio::test]
    async fn a_spent_shutdown_budget_leaves_the_buffered_rows_for_the_next_start() {
        let data = tempfile::tempdir().expect("tempdir");
        let mut config = CoordinatorConfig::new(data.path());
        config.shutdown_flush_budget = Some(std::time::Duration::ZERO);
        let coordinator = Coordinator::open(config, Arc::new(SystemClock)).expect("opens");
        let (spec, yaml, trials) = grid(1);
        coordinator.store_trials(spec, yaml, trials, 1).await.expect("stored");
        let worker = coordinator.register_worker("w".into(), "flex".into(), 1, None).await.expect("registered");
        let lease =
            coordinator.lease(LeaseAsk { worker_id: worker, free_slots: 1, pack_size: 1 }).await.expect("leased").remove(0).remove(0).lease;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis() as i64;
        let step = StepMeasures { step: 0, wall_time_ms: now, measures: vec![sweep_core::Measure::scalar("train_loss", 4.5)] };
        assert_eq!(coordinator.report_progress(vec![(lease.clone(), vec![step])]).await.expect("reported"), 1);
        let progress_files =
            |layout: &ResultsLayout| layout.series_files(SeriesTable::Progress, "chunked", &lease.trial_id).expect("listing");
        let trials_part = |layout: &ResultsLayout| layout.trials_part_path(&TrialsPart { sweep: "chunked".into(), part: 0 }).exists();
        coordinator.begin_shutdown();
        coordinator.flush().await.expect("flushes");
        assert!(progress_files(coordinator.layout()).is_empty(), "written after the budget was spent");
        assert!(!trials_part(coordinator.layout()), "a `trials` part read and written after the budget was spent");
        drop(coordinator);
        // The next start (here without a budget) writes what was left.
        let reopened = Coordinator::open(CoordinatorConfig::new(data.path()), Arc::new(SystemClock)).expect("reopens");
        reopened.begin_shutdown();
        reopened.flush().await.expect("flushes");
        assert_eq!(progress_files(reopened.layout()).len(), 1, "the buffered row reached Parquet");
        assert!(trials_part(reopened.layout()), "the `trials` part left dirty was written at the next start");
    }

    /// A flush that wrote more attempts' tables than one store operation
    /// forgets ([`MARK_FLUSHED_CHUNK`]) forgets every row, over several.
    #[tokio::test]
    async fn a_flush_forgets_the_rows_of_more_attempts_than_one_chunk() {
        let data = tempfile::tempdir().expect("tempdir");
        let coordinator = Coordinator::open(CoordinatorConfig::new(data.path()), Arc::new(SystemClock)).expect("opens");
        let trials = MARK_FLUSHED_CHUNK + 5;
        let (spec, yaml, grid) = grid(trials);
        coordinator.store_trials(spec, yaml, grid, SUBMIT_CHUNK).await.expect("stored");
        let worker = coordinator.register_worker("w".into(), "flex".into(), trials as u32, None).await.expect("registered");
        let asked = LeaseAsk { worker_id: worker, free_slots: trials as u32, pack_size: 1 };
        let leases: Vec<_> = coordinator.lease(asked).await.expect("leased").into_iter().flatten().map(|grant| grant.lease).collect();
        assert_eq!(leases.len(), trials);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis() as i64;
        let step = StepMeasures { step: 0, wall_time_ms: now, measures: vec![sweep_core::Measure::scalar("train_loss", 4.5)] };
        let reports = leases.iter().map(|lease| (lease.clone(), vec![step.clone()])).collect();
        assert_eq!(coordinator.report_progress(reports).await.expect("reported"), trials as u64);
        coordinator.flush().await.expect("flushes");
        let left = coordinator.with_store(|store| store.pending_attempts()).await.expect("pending");
        assert_eq!(left, Vec::new(), "every written row forgotten");
        let files = leases
            .iter()
            .filter(|lease| {
                coordinator.layout().series_files(SeriesTable::Progress, "chunked", &lease.trial_id).expect("listing").len() == 1
            })
            .count();
        assert_eq!(files, trials, "each attempt's rows in its file");
    }

    /// A crash after the `progress` file of a roll and before its `spectra`
    /// file: on restart the scalars are known to be written and the spectra
    /// are not, so only the scalars leave the buffer (they used to go
    /// together, and the spectra of a killed coordinator's first roll were lost).
    #[test]
    fn recovery_after_a_crash_between_two_tables_keeps_the_unwritten_table_s_rows() {
        use sweep_core::{Measure, MeasureKind};
        let data = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&data.path().join("coordinator.sqlite"), Arc::new(SystemClock)).expect("store");
        let layout = ResultsLayout::new(data.path());
        let (spec, yaml, trials) = crate::store::tests::seed_grid("crash", 1);
        store.submit(&spec, &yaml, &trials).expect("submit");
        let worker = store.register_worker("w", "flex", 1, None).expect("register");
        let lease = store.lease(&worker, 1, 1, 10_000).expect("lease").remove(0).remove(0).lease;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis() as i64;
        let step = |at: i64| StepMeasures {
            step: at,
            wall_time_ms: now,
            measures: vec![Measure::scalar("train_loss", 1.0), Measure::spectrum("W_E", vec![1.0, 2.0, 3.0, 4.0])],
        };
        store.record_progress(&lease, &[step(0), step(10)], 10_000).expect("progress");
        let buffered = store.buffered_attempts().expect("buffered").remove(0);
        layout.write_series(&buffered, SeriesTable::Progress).expect("the progress file").expect("scalars to write");
        // The coordinator dies here, before the spectra file.
        recover_written_progress(&mut store, &layout).expect("recovers");
        let left = store.buffered_attempts().expect("buffered").remove(0);
        assert_eq!(left.rows.len(), 8, "both steps' spectra, and nothing else");
        assert!(left.rows.iter().all(|row| row.kind == MeasureKind::Spectrum), "{:?}", left.rows);
        // Resent by the worker, the scalars are repeats and the spectra are already held.
        assert_eq!(store.record_progress(&lease, &[step(0), step(10)], 10_000).expect("resend"), 0);
        // The next roll writes the spectra; a second recovery finds nothing left to drop.
        layout.write_series(&left, SeriesTable::Spectra).expect("the spectra file").expect("spectra to write");
        recover_written_progress(&mut store, &layout).expect("recovers");
        assert!(store.buffered_attempts().expect("buffered").is_empty());
        let spectra = layout.series_files(SeriesTable::Spectra, "crash", &lease.trial_id).expect("listing");
        let progress = layout.series_files(SeriesTable::Progress, "crash", &lease.trial_id).expect("listing");
        assert_eq!((spectra.len(), progress.len()), (1, 1));
    }
}
