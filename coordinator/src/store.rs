//! Durable coordinator state in SQLite: sweeps, trials, attempts (an active
//! attempt is a lease), workers and the progress buffer. The coordinator is the
//! only writer. Every method is one savepoint, and so one transaction on its
//! own or a part of the batch that the store's thread commits together
//! ([`Store::begin_batch`]); every method takes time from the clock.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use sweep_core::checks::TrialContext;
use sweep_core::{MeasureKind, PackKey, StepMeasures, SweepSpec, TrialId, TrialParams, TrialSpec};

use crate::clock::Clock;
use crate::domain::{
    BufferedRow, FinalMetrics, LeaseRef, Millis, Revocation, SubmitOutcome, SweepSummary, TrialLease, TrialStatus, TrialView,
};
use crate::error::{CoordinatorError, Result};
use crate::part_rows::read_trials;
use crate::results::TRIALS_PER_PART;

/// The tables. A trial has a text id (a hash, `TrialId`) and an integer
/// `key` in the order its sweep's trials were stored (grid order, which is
/// also the order they are leased in). The tables that gain rows as trials
/// are leased and end (`attempts`, the compaction queue, the progress
/// buffer) are keyed by `trial_key` rather than by the id, so that their
/// indexes grow at one end instead of at random places: keyed by the hashed
/// id, a minute of leases at saturation touched ever more pages of ever larger
/// indexes, and the store's thread took 82–84 µs a round trip instead of 57
/// (bench/RESULTS.md, session 23). They keep the id beside the key, for
/// reading.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sweeps (
    name TEXT PRIMARY KEY,
    spec_json TEXT NOT NULL,
    spec_yaml TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    key INTEGER PRIMARY KEY,
    trial_id TEXT NOT NULL UNIQUE,
    sweep TEXT NOT NULL REFERENCES sweeps(name),
    seq INTEGER NOT NULL,
    params_json TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    worker_id TEXT,
    started_at_ms INTEGER,
    finished_at_ms INTEGER,
    last_epoch INTEGER,
    last_train_accuracy REAL,
    last_test_accuracy REAL,
    metrics_json TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS trials_by_status ON trials(status, sweep, seq);
CREATE INDEX IF NOT EXISTS trials_by_sweep ON trials(sweep, seq);
CREATE TABLE IF NOT EXISTS attempts (
    trial_key INTEGER NOT NULL,
    trial_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker_id TEXT NOT NULL,
    fencing_token INTEGER NOT NULL,
    state TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    deadline_ms INTEGER NOT NULL,
    ended_at_ms INTEGER,
    reason TEXT,
    PRIMARY KEY (trial_key, attempt)
);
CREATE INDEX IF NOT EXISTS attempts_active ON attempts(state, deadline_ms);
CREATE TABLE IF NOT EXISTS workers (
    worker_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    backend TEXT NOT NULL,
    slots INTEGER NOT NULL,
    registered_at_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS progress_flushed_by_measure (
    trial_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    measure TEXT NOT NULL,
    through_step INTEGER NOT NULL,
    PRIMARY KEY (trial_id, attempt, measure)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    trial_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    step INTEGER NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (trial_id, attempt, step)
);
CREATE TABLE IF NOT EXISTS superseded (
    trial_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    PRIMARY KEY (trial_id, attempt)
);
-- Parts of sweeps' `trials` tables to rewrite (part = seq / TRIALS_PER_PART).
CREATE TABLE IF NOT EXISTS dirty_trial_parts (sweep TEXT NOT NULL, part INTEGER NOT NULL, PRIMARY KEY (sweep, part));
CREATE TABLE IF NOT EXISTS compaction_pending (
    trial_key INTEGER NOT NULL,
    trial_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    PRIMARY KEY (trial_key, attempt)
);
";

/// Progress not yet in Parquet, one row per report and measure shape (see
/// `progress_batch`): `steps` holds the report's steps with that shape's
/// measures, `through` each of those measures' last step. `batch_id` orders
/// batches and names the rolled files (`a1-r<first>-<last>`). Beside it,
/// `progress_latest` holds each measure's latest step accepted in an attempt,
/// which is all a report's order check needs.
const PROGRESS_BATCHES: &str = "
CREATE TABLE IF NOT EXISTS progress_batches (
    batch_id INTEGER PRIMARY KEY AUTOINCREMENT,
    trial_key INTEGER NOT NULL,
    trial_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    kind TEXT NOT NULL,
    steps BLOB NOT NULL,
    through BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS progress_batches_by_key ON progress_batches(trial_key, attempt, batch_id);
CREATE TABLE IF NOT EXISTS progress_latest (
    trial_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    measure TEXT NOT NULL,
    step INTEGER NOT NULL,
    PRIMARY KEY (trial_id, attempt, measure)
);
";

/// How many queued trials one pack is chosen from.
const PACK_WINDOW: u32 = 512;

/// Buffered progress rows of one attempt, ready to be written to Parquet.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferedAttempt {
    /// Sweep.
    pub sweep: String,
    /// Trial.
    pub trial_id: TrialId,
    /// Attempt.
    pub attempt: u32,
    /// Rows in (step, measure, key) order.
    pub rows: Vec<BufferedRow>,
    /// Largest progress batch id included (the rolled file's name holds
    /// the range; the field keeps its name from when each row had an id).
    pub last_row_id: i64,
    /// Smallest progress batch id included.
    pub first_row_id: i64,
}

/// Buffered progress of one attempt, by the range of its batches' ids: what
/// a flush reads first, before the batches themselves
/// (`flush_reader::FlushReader`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAttempt {
    /// Sweep.
    pub sweep: String,
    /// Trial.
    pub trial_id: TrialId,
    /// Attempt.
    pub attempt: u32,
    /// Smallest progress batch id.
    pub first_row_id: i64,
    /// Largest progress batch id: batches stored after the snapshot are
    /// left for the next flush.
    pub last_row_id: i64,
}

/// One file of a sweep's `trials` table: the trials at grid positions
/// `part * TRIALS_PER_PART ..` up to the next part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialsPart {
    /// Sweep.
    pub sweep: String,
    /// Part number, from 0.
    pub part: i64,
}

impl TrialsPart {
    /// The grid positions (`seq`) of its trials.
    pub(crate) fn seqs(&self) -> std::ops::Range<i64> {
        self.part * TRIALS_PER_PART..(self.part + 1) * TRIALS_PER_PART
    }
}

/// The attempts with buffered progress ([`Store::pending_attempts`]).
const PENDING_ATTEMPTS: &str = "SELECT t.trial_id, b.attempt, t.sweep, MIN(b.batch_id), MAX(b.batch_id)
     FROM progress_batches b CROSS JOIN attempts a CROSS JOIN trials t
     WHERE a.trial_key = b.trial_key AND a.attempt = b.attempt AND t.key = b.trial_key AND a.state IN ('active', 'completed')
     GROUP BY b.trial_key, b.attempt";

/// Up to ?1 attempts ready for compaction ([`Store::compaction_ready`]). As
/// in [`PENDING_ATTEMPTS`], CROSS JOIN keeps the queue the outer loop, read in
/// order until the limit: driven by the trials' status index, SQLite read
/// every done trial of every sweep and sorted them, about 100 ms a call
/// after 200,000 trials (bench/RESULTS.md, "Session 20").
const COMPACTION_READY: &str = "SELECT t.sweep, t.trial_id, c.trial_key, c.attempt FROM compaction_pending c
     CROSS JOIN trials t ON t.key = c.trial_key AND t.status = 'done' AND t.attempt = c.attempt
     WHERE NOT EXISTS (SELECT 1 FROM progress_batches b WHERE b.trial_key = c.trial_key AND b.attempt = c.attempt)
     ORDER BY c.rowid LIMIT ?1";

/// Buffered rows of one attempt and one shape, through a row id, that a
/// Parquet file now holds ([`Store::mark_flushed`]).
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenRows {
    /// Trial.
    pub trial_id: TrialId,
    /// Attempt.
    pub attempt: u32,
    /// Every buffered batch of this shape up to this batch id is written.
    pub last_row_id: i64,
    /// The shape, that is the table: scalars, spectra or curves.
    pub kind: MeasureKind,
}

/// One attempt of a trial of a sweep: one whose progress must leave the
/// results (failed, lapsed, released, cancelled), or a finished one whose
/// rolled files are to be compacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepAttempt {
    /// Sweep.
    pub sweep: String,
    /// Trial.
    pub trial_id: TrialId,
    /// The trial's `key`, by which the store finds its rows without a
    /// lookup of the id (a seek at a random place of a large index).
    pub(crate) trial_key: i64,
    /// Attempt.
    pub attempt: u32,
}

/// The SQLite store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    clock: Arc<dyn Clock>,
    /// Parsed specs by sweep name, each read once: the hot calls (lease,
    /// report, complete) need a trial's settings, and a stored spec changes
    /// only when its sweep is submitted again ([`cached_spec`]).
    specs: SpecCache,
}

/// WAL pages after which a commit copies them back to the database itself
/// (SQLite's automatic checkpoint), while every call of its batch waits:
/// 20,000 (80 MiB), a backstop. The store's checkpoints are made by a thread
/// of their own (`checkpointer`) every 50 ms, and the log stayed under
/// 10,000 pages at 10,000 round trips a second (bench/RESULTS.md, "Session
/// 24"); this mark is reached only if that thread falls behind. Made by the
/// commits, at 2,000 pages, the checkpoints held the store's thread for
/// 8–10 ms about 25 times a second under load.
const WAL_BACKSTOP_PAGES: i64 = 20_000;

pub(crate) type SpecCache = std::cell::RefCell<std::collections::HashMap<String, Arc<SweepSpec>>>;

/// The parsed spec of a stored sweep, from the cache or else from the table.
pub(crate) fn cached_spec(conn: &Connection, specs: &SpecCache, name: &str) -> Result<Arc<SweepSpec>> {
    if let Some(spec) = specs.borrow().get(name) {
        return Ok(Arc::clone(spec));
    }
    let stored: Option<String> =
        conn.prepare_cached("SELECT spec_json FROM sweeps WHERE name = ?1")?.query_row([name], |row| row.get(0)).optional()?;
    let stored = stored.ok_or_else(|| CoordinatorError::SweepNotFound(name.to_string()))?;
    let spec: Arc<SweepSpec> = Arc::new(serde_json::from_str(&stored).map_err(json_error)?);
    specs.borrow_mut().insert(name.to_string(), Arc::clone(&spec));
    Ok(spec)
}

/// The attempts with buffered progress to write ([`Store::pending_attempts`]),
/// read on `conn` (the store's, or a flush's read-only one).
pub(crate) fn read_pending_attempts(conn: &Connection) -> Result<Vec<PendingAttempt>> {
    // CROSS JOIN keeps SQLite from driving the join from `attempts` by
    // its state index: that read every completed attempt of every sweep
    // at each flush, 300 ms a flush after 200,000 trials, all on the
    // store's thread (bench/RESULTS.md, "Session 20"). The buffered
    // batches are few; each finds its attempt and trial by key.
    let mut statement = conn.prepare_cached(PENDING_ATTEMPTS)?;
    let pending = statement.query_map([], |row| {
        Ok(PendingAttempt {
            trial_id: TrialId::from_raw(row.get::<_, String>(0)?),
            attempt: row.get(1)?,
            sweep: row.get(2)?,
            first_row_id: row.get(3)?,
            last_row_id: row.get(4)?,
        })
    })?;
    Ok(pending.collect::<rusqlite::Result<_>>()?)
}

/// Run a statement from the connection's cache of prepared statements (the
/// hot calls run the same few statements thousands of times a second).
fn execute_cached(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<usize> {
    Ok(conn.prepare_cached(sql)?.execute(params)?)
}

fn next_token(tx: &Connection) -> Result<u64> {
    execute_cached(tx, "INSERT INTO meta(key, value) VALUES('fencing_token', 1) ON CONFLICT(key) DO UPDATE SET value = value + 1", [])?;
    let token: i64 = tx.prepare_cached("SELECT value FROM meta WHERE key = 'fencing_token'")?.query_row([], |row| row.get(0))?;
    Ok(token as u64)
}

/// The part of the `trials` table that holds this trial must be rewritten.
fn mark_trial_dirty(tx: &Connection, trial_key: i64) -> Result<()> {
    execute_cached(
        tx,
        "INSERT OR IGNORE INTO dirty_trial_parts(sweep, part) SELECT sweep, seq / ?2 FROM trials WHERE key = ?1",
        params![trial_key, TRIALS_PER_PART],
    )?;
    Ok(())
}

/// A lease found to be its trial's active attempt ([`Store::check_lease`]).
#[derive(Debug)]
struct LiveLease {
    sweep: String,
    /// The trial's `key`, which the statements that follow use.
    trial_key: i64,
}

/// The last step of a report and the accuracies it carries, which the
/// trial's `last_*` columns show.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LastEpoch {
    step: i64,
    train_accuracy: Option<f64>,
    test_accuracy: Option<f64>,
}

impl LastEpoch {
    /// Of the latest step in `steps`, if any.
    fn of(steps: &[StepMeasures]) -> Option<Self> {
        let last = steps.iter().map(|step| step.step).max()?;
        let mut found = LastEpoch { step: last, train_accuracy: None, test_accuracy: None };
        for measure in steps.iter().filter(|step| step.step == last).flat_map(|step| &step.measures) {
            match (measure.name.as_str(), measure.as_scalar()) {
                (sweep_core::measures::TRAIN_ACCURACY, Some(value)) => found.train_accuracy = Some(value),
                (sweep_core::measures::TEST_ACCURACY, Some(value)) => found.test_accuracy = Some(value),
                _ => {}
            }
        }
        Some(found)
    }
}

/// Forget an ended attempt's per-measure steps (latest accepted, last
/// written): they only check reports of a live lease, and a sweep of a
/// million trials would otherwise keep tens of millions of them.
fn forget_watermarks(tx: &Connection, attempt: &SweepAttempt) -> Result<()> {
    let key = params![attempt.trial_id.as_str(), attempt.attempt];
    execute_cached(tx, "DELETE FROM progress_latest WHERE trial_id = ?1 AND attempt = ?2", key)?;
    execute_cached(tx, "DELETE FROM progress_flushed_by_measure WHERE trial_id = ?1 AND attempt = ?2", key)?;
    Ok(())
}

/// Every part of a sweep's `trials` table must be rewritten.
pub(crate) fn mark_sweep_dirty(tx: &Connection, sweep: &str) -> Result<()> {
    execute_cached(
        tx,
        "INSERT OR IGNORE INTO dirty_trial_parts(sweep, part) SELECT DISTINCT sweep, seq / ?2 FROM trials WHERE sweep = ?1",
        params![sweep, TRIALS_PER_PART],
    )?;
    Ok(())
}

pub(crate) fn json_error(error: serde_json::Error) -> CoordinatorError {
    CoordinatorError::Internal(format!("stored json is unreadable: {error}"))
}

/// How much of the database file a connection maps into memory instead of
/// reading it with `pread` (SQLite caps it at 0x7fff0000 bytes on Linux; the
/// database of a million-trial sweep is a few hundred MB): the store's own
/// and each flush's.
///
/// A flush reads its parts through a fresh connection, so without the map
/// every page was read by a system call and copied into that connection's
/// cold page cache. Most of the slowest leases under load (83 % of the
/// slowest 1 %) began while a flush was reading its parts. Mapped, the read
/// costs 2.4–2.6 µs a trial instead of 3.3–3.5, and at 10,000 round trips a
/// second (think 90 ms, 1,000 workers) the p99 lease latency was 31–47 ms
/// against 52–58 ms in five interleaved pairs of runs (bench/RESULTS.md,
/// "Session 25"). The store's own connection finds most pages it needs in
/// its page cache, but not the index of trial ids, which each check of a
/// lease seeks at a random place: mapped, its reads (`pread` and the copy,
/// 7 % of the store thread's samples under load) are gone (bench/RESULTS.md,
/// "Session 26").
///
/// SQLite's caveat for mapped files: a read of a page that the file no longer
/// has (the file truncated underneath) or that the disk cannot deliver stops
/// the process with SIGBUS instead of returning an error. The coordinator
/// never shrinks its database (no `VACUUM`, no auto-vacuum); a disk that
/// fails its reads fails the store's writes too.
pub(crate) const MAPPED_BYTES: i64 = 1 << 31;

impl Store {
    /// Open (or create) the store at `path`.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        let conn = Connection::open(path)?;
        Self::init(conn, clock)
    }

    /// An in-memory store (tests).
    pub fn open_in_memory(clock: Arc<dyn Clock>) -> Result<Self> {
        Self::init(Connection::open_in_memory()?, clock)
    }

    /// The database's file (`None` for a store in memory).
    pub(crate) fn file(&self) -> Option<&Path> {
        // SQLite names an in-memory database "".
        self.conn.path().filter(|path| !path.is_empty()).map(Path::new)
    }

    fn init(mut conn: Connection, clock: Arc<dyn Clock>) -> Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // 8 MiB of page cache (SQLite's default is 2 MiB). Not more: when a
        // B-tree page splits, SQLite swaps pages through the page number of
        // the 1 GiB lock byte, past the end of the database, and the commit
        // then drops that number from the cache by scanning its whole hash
        // table (`pcache1TruncateUnsafe`), a cost that grows with the cache.
        // At 64 MiB that scan was 17 % of the store's thread, about 200 µs a
        // commit; at 8 MiB the p99 lease latency at think 90 ms was 45–50 ms
        // at 10,100 round trips a second against 56–63 ms at 9,800–9,900 in
        // two pairs of runs, for storing a million trials in 8.3–8.5 s
        // instead of 7.6–7.9 (bench/RESULTS.md, "Session 24"). The pages
        // calls touch (the trials in flight, the ends of the keyed tables)
        // fit in 8 MiB.
        conn.pragma_update(None, "cache_size", -8_192)?;
        conn.pragma_update(None, "mmap_size", MAPPED_BYTES)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // See WAL_BACKSTOP_PAGES.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_BACKSTOP_PAGES)?;
        // Savepoint sub-journals in memory: SQLite spills one to a temporary
        // file past 64 KiB, and once one operation of a batch had spilled,
        // every later savepoint of the batch wrote each page it touched to
        // that file (two `write`s a page): 19 % of the store's thread with a
        // report per trial (bench/RESULTS.md, session 22).
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // One plan per statement whatever its bound values. Without it,
        // SQLite (3.50) plans with the value bound to a `LIMIT ?` and
        // re-prepares the statement each time it is bound again: the lease
        // query's re-preparing was 8 % of the store's thread (bench/RESULTS.md,
        // session 22).
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(64);
        let queue_done_trials = crate::migrate::needs_compaction_queue(&conn)?;
        crate::migrate::key_by_trial(&mut conn, &[SCHEMA, PROGRESS_BATCHES])?;
        conn.execute_batch(SCHEMA)?;
        if queue_done_trials {
            crate::migrate::queue_done_trials_for_compaction(&mut conn)?;
        }
        conn.execute_batch(PROGRESS_BATCHES)?;
        crate::migrate::typed_progress(&mut conn)?;
        crate::migrate::progress_in_batches(&mut conn)?;
        crate::migrate::forget_ended_watermarks(&mut conn)?;
        crate::migrate::sweep_specs(&mut conn)?;
        crate::migrate::trials_in_parts(&mut conn)?;
        Ok(Store { conn, clock, specs: SpecCache::default() })
    }

    /// Begin a batch: every method called until [`Store::end_batch`] runs in
    /// one transaction (each in its own savepoint, so one that fails undoes
    /// only its own changes), and so is durable only once the batch is.
    pub fn begin_batch(&mut self) -> Result<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    /// Commit the batch begun by [`Store::begin_batch`]. If that fails, the
    /// batch is rolled back, with the specs cached meanwhile.
    pub fn end_batch(&mut self) -> Result<()> {
        match self.conn.execute_batch("COMMIT") {
            Ok(()) => Ok(()),
            Err(error) => {
                if !self.conn.is_autocommit() {
                    // Best effort: a failed COMMIT may have rolled back already.
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                self.specs.borrow_mut().clear();
                Err(error.into())
            }
        }
    }

    /// Now, by the store's clock.
    pub fn now_ms(&self) -> Millis {
        self.clock.now_ms()
    }

    /// Store a sweep and its trials. Resubmitting the same sweep adds only new
    /// trials; a sweep of the same name with other fixed settings is refused.
    pub fn submit(&mut self, spec: &SweepSpec, yaml: &str, trials: &[TrialSpec]) -> Result<SubmitOutcome> {
        self.store_sweep(spec, yaml, trials, true)
    }

    /// Store one part of a sweep that is submitted in parts: as [`Store::submit`],
    /// without counting the sweep's trials (its `total` and `done` are 0), which
    /// would make storing a large sweep in parts quadratic.
    pub fn submit_part(&mut self, spec: &SweepSpec, yaml: &str, trials: &[TrialSpec]) -> Result<SubmitOutcome> {
        self.store_sweep(spec, yaml, trials, false)
    }

    fn store_sweep(&mut self, spec: &SweepSpec, yaml: &str, trials: &[TrialSpec], count: bool) -> Result<SubmitOutcome> {
        let now = self.now_ms();
        let spec_json = serde_json::to_string(spec).map_err(json_error)?;
        let tx = self.conn.savepoint()?;
        let existing: Option<String> =
            tx.query_row("SELECT spec_json FROM sweeps WHERE name = ?1", [&spec.name], |row| row.get(0)).optional()?;
        match existing {
            None => {
                execute_cached(
                    &tx,
                    "INSERT INTO sweeps(name, spec_json, spec_yaml, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![spec.name, spec_json, yaml, now],
                )?;
            }
            Some(stored) => {
                let stored: SweepSpec = serde_json::from_str(&stored).map_err(json_error)?;
                if let Some(reason) = settings_difference(&stored, spec) {
                    return Err(CoordinatorError::SweepConflict { name: spec.name.clone(), reason });
                }
                execute_cached(
                    &tx,
                    "UPDATE sweeps SET spec_json = ?2, spec_yaml = ?3 WHERE name = ?1",
                    params![spec.name, spec_json, yaml],
                )?;
            }
        }
        let mut next_seq: i64 =
            tx.query_row("SELECT COALESCE(MAX(seq) + 1, 0) FROM trials WHERE sweep = ?1", [&spec.name], |row| row.get(0))?;
        let first_seq = next_seq;
        let mut added = 0;
        {
            let mut insert =
                tx.prepare("INSERT OR IGNORE INTO trials(trial_id, sweep, seq, params_json, status) VALUES (?1, ?2, ?3, ?4, 'queued')")?;
            for trial in trials {
                let params_json = serde_json::to_string(&trial.params).map_err(json_error)?;
                let inserted = insert.execute(params![trial.id.as_str(), spec.name, next_seq, params_json])?;
                if inserted == 1 {
                    added += 1;
                    next_seq += 1;
                }
            }
        }
        // Only the parts the new trials fall in: a large sweep's earlier
        // parts are not rewritten for each chunk.
        if next_seq > first_seq {
            let mut dirty = tx.prepare_cached("INSERT OR IGNORE INTO dirty_trial_parts(sweep, part) VALUES (?1, ?2)")?;
            for part in first_seq / TRIALS_PER_PART..=(next_seq - 1) / TRIALS_PER_PART {
                dirty.execute(params![spec.name, part])?;
            }
        }
        let (total, done): (u32, u32) = if count {
            tx.query_row("SELECT COUNT(*), COALESCE(SUM(status = 'done'), 0) FROM trials WHERE sweep = ?1", [&spec.name], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
        } else {
            (0, 0)
        };
        tx.commit()?;
        self.specs.borrow_mut().remove(&spec.name);
        Ok(SubmitOutcome { sweep: spec.name.clone(), total, added, done })
    }

    /// The stored spec of a sweep.
    pub fn sweep_spec(&self, name: &str) -> Result<Arc<SweepSpec>> {
        cached_spec(&self.conn, &self.specs, name)
    }

    /// Every sweep with its counts, oldest first.
    pub fn list_sweeps(&self) -> Result<Vec<SweepSummary>> {
        let mut statement = self.conn.prepare(
            "SELECT s.name, s.created_at_ms, COUNT(t.trial_id),
                    COALESCE(SUM(t.status = 'queued'), 0), COALESCE(SUM(t.status = 'running'), 0),
                    COALESCE(SUM(t.status = 'done'), 0), COALESCE(SUM(t.status = 'failed'), 0),
                    COALESCE(SUM(t.status = 'cancelled'), 0)
             FROM sweeps s LEFT JOIN trials t ON t.sweep = s.name
             GROUP BY s.name ORDER BY s.created_at_ms, s.name",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(SweepSummary {
                name: row.get(0)?,
                created_at_ms: row.get(1)?,
                total: row.get(2)?,
                queued: row.get(3)?,
                running: row.get(4)?,
                done: row.get(5)?,
                failed: row.get(6)?,
                cancelled: row.get(7)?,
            })
        })?;
        let mut summaries = Vec::new();
        for summary in rows {
            summaries.push(summary?);
        }
        Ok(summaries)
    }

    /// One sweep's counts.
    pub fn sweep_summary(&self, name: &str) -> Result<SweepSummary> {
        let summaries = self.list_sweeps()?;
        summaries.into_iter().find(|summary| summary.name == name).ok_or_else(|| CoordinatorError::SweepNotFound(name.to_string()))
    }

    /// Every trial of a sweep in grid order.
    pub fn trials_of(&self, sweep: &str) -> Result<Vec<TrialView>> {
        self.trials_in(sweep, 0..i64::MAX)
    }

    /// The trials of one part of a sweep's `trials` table, in grid order.
    pub fn trials_of_part(&self, part: &TrialsPart) -> Result<Vec<TrialView>> {
        self.trials_in(&part.sweep, part.seqs())
    }

    /// Trials of a sweep whose grid position (`seq`) is in `seqs`, in grid order.
    fn trials_in(&self, sweep: &str, seqs: std::ops::Range<i64>) -> Result<Vec<TrialView>> {
        read_trials(&self.conn, &*self.sweep_spec(sweep)?, seqs)
    }

    /// Cancel a sweep: queued and running trials become cancelled; their leases
    /// are revoked at the workers' next heartbeat.
    pub fn cancel(&mut self, sweep: &str) -> Result<u32> {
        let now = self.now_ms();
        self.sweep_spec(sweep)?;
        let tx = self.conn.savepoint()?;
        execute_cached(
            &tx,
            "INSERT OR IGNORE INTO superseded(trial_id, attempt)
             SELECT a.trial_id, a.attempt FROM attempts a JOIN trials t ON t.key = a.trial_key
             WHERE t.sweep = ?1 AND a.state = 'active'",
            [sweep],
        )?;
        execute_cached(
            &tx,
            "UPDATE attempts SET state = 'cancelled', ended_at_ms = ?2, reason = 'sweep cancelled'
             WHERE state = 'active' AND trial_key IN (SELECT key FROM trials WHERE sweep = ?1)",
            params![sweep, now],
        )?;
        let cancelled = execute_cached(
            &tx,
            "UPDATE trials SET status = 'cancelled', finished_at_ms = ?2 WHERE sweep = ?1 AND status IN ('queued', 'running')",
            params![sweep, now],
        )?;
        mark_sweep_dirty(&tx, sweep)?;
        tx.commit()?;
        Ok(cancelled as u32)
    }

    /// Trials waiting for or holding a slot: (queued, running), of one sweep or of all.
    pub fn open_trials(&self, sweep: Option<&str>) -> Result<(u64, u64)> {
        let count = |status: &str| -> Result<u64> {
            let count: i64 = match sweep {
                Some(sweep) => {
                    self.conn.query_row("SELECT COUNT(*) FROM trials WHERE status = ?1 AND sweep = ?2", params![status, sweep], |row| {
                        row.get(0)
                    })?
                }
                None => self.conn.query_row("SELECT COUNT(*) FROM trials WHERE status = ?1", [status], |row| row.get(0))?,
            };
            Ok(count as u64)
        };
        Ok((count("queued")?, count("running")?))
    }

    /// Workers heard from (registered, leased or heartbeated) within the last `window_ms`.
    pub fn workers_seen_within(&self, window_ms: Millis) -> Result<u64> {
        let since = self.now_ms() - window_ms;
        let count: i64 = self.conn.query_row("SELECT COUNT(*) FROM workers WHERE last_seen_ms >= ?1", [since], |row| row.get(0))?;
        Ok(count as u64)
    }

    /// Register a worker, or refresh a known one that re-registers after a restart.
    pub fn register_worker(&mut self, name: &str, backend: &str, slots: u32, previous: Option<&str>) -> Result<String> {
        let now = self.now_ms();
        let tx = self.conn.savepoint()?;
        let known = match previous {
            Some(id) => {
                tx.query_row("SELECT worker_id FROM workers WHERE worker_id = ?1", [id], |row| row.get::<_, String>(0)).optional()?
            }
            None => None,
        };
        let worker_id = match known {
            Some(id) => {
                execute_cached(&tx, "UPDATE workers SET last_seen_ms = ?2, slots = ?3 WHERE worker_id = ?1", params![id, now, slots])?;
                id
            }
            None => {
                let serial = next_token(&tx)?;
                let id = format!("w{serial}-{name}");
                execute_cached(
                    &tx,
                    "INSERT INTO workers(worker_id, name, backend, slots, registered_at_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    params![id, name, backend, slots, now],
                )?;
                id
            }
        };
        tx.commit()?;
        Ok(worker_id)
    }

    fn require_worker(tx: &Connection, worker_id: &str, now: Millis) -> Result<()> {
        let updated = execute_cached(tx, "UPDATE workers SET last_seen_ms = ?2 WHERE worker_id = ?1", params![worker_id, now])?;
        if updated == 0 {
            return Err(CoordinatorError::UnknownWorker(worker_id.to_string()));
        }
        Ok(())
    }

    /// Lease up to `free_slots` packs to a worker, each of up to `pack_size`
    /// queued trials of one pack key: a pack starts with the oldest queued
    /// trial (oldest sweep first, grid order) and takes the next queued trials
    /// that share its key. Each trial gets its own attempt and fencing token.
    pub fn lease(&mut self, worker_id: &str, free_slots: u32, pack_size: u32, ttl_ms: Millis) -> Result<Vec<Vec<TrialLease>>> {
        let now = self.now_ms();
        let pack_size = pack_size.max(1);
        let tx = self.conn.savepoint()?;
        Self::require_worker(&tx, worker_id, now)?;
        let sweeps: Vec<String> = tx
            .prepare_cached("SELECT name FROM sweeps ORDER BY created_at_ms, name")?
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        // A pack of one needs only the oldest queued trial; a larger pack
        // is chosen from a window of the oldest.
        let window = if pack_size == 1 { 1 } else { PACK_WINDOW.max(pack_size) as usize };
        let mut packs = Vec::new();
        for _ in 0..free_slots {
            // The oldest queued trials, oldest sweep first and in grid order,
            // each sweep's read from the (status, sweep, seq) index.
            let mut candidates: Vec<(i64, String, String, String, u32)> = Vec::new();
            for sweep in &sweeps {
                let wanted = window - candidates.len();
                let mut statement = tx.prepare_cached(
                    "SELECT key, trial_id, params_json, attempt FROM trials WHERE status = 'queued' AND sweep = ?1 ORDER BY seq LIMIT ?2",
                )?;
                let rows = statement.query_map(params![sweep, wanted as i64], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, sweep.clone(), row.get::<_, String>(2)?, row.get::<_, u32>(3)?))
                })?;
                for row in rows {
                    candidates.push(row?);
                }
                if candidates.len() == window {
                    break;
                }
            }
            let mut pack: Vec<TrialLease> = Vec::new();
            let mut pack_key: Option<PackKey> = None;
            for (trial_key, trial_id, sweep, params_json, previous_attempt) in candidates {
                let spec = cached_spec(&tx, &self.specs, &sweep)?;
                let params: TrialParams = serde_json::from_str(&params_json).map_err(json_error)?;
                let family = spec.family_settings(params.family);
                let key = family.pack_key(&params, &spec.training);
                if pack_key.as_ref().is_some_and(|first| *first != key) {
                    continue;
                }
                pack_key = Some(key);
                let lease = Self::grant(&tx, worker_id, trial_key, &trial_id, previous_attempt + 1, now, ttl_ms)?;
                pack.push(TrialLease {
                    lease,
                    family,
                    params,
                    training: spec.training.clone(),
                    stop: spec.stop.clone(),
                    sweep,
                    deadline_ms: now + ttl_ms,
                });
                if pack.len() as u32 == pack_size {
                    break;
                }
            }
            if pack.is_empty() {
                break;
            }
            packs.push(pack);
        }
        tx.commit()?;
        Ok(packs)
    }

    /// Start attempt `attempt` of a queued trial for a worker.
    fn grant(
        tx: &Connection,
        worker_id: &str,
        trial_key: i64,
        trial_id: &str,
        attempt: u32,
        now: Millis,
        ttl_ms: Millis,
    ) -> Result<LeaseRef> {
        let token = next_token(tx)?;
        execute_cached(
            tx,
            "INSERT INTO attempts(trial_key, trial_id, attempt, worker_id, fencing_token, state, started_at_ms, deadline_ms)
             VALUES (?7, ?1, ?2, ?3, ?4, 'active', ?5, ?6)",
            params![trial_id, attempt, worker_id, token as i64, now, now + ttl_ms, trial_key],
        )?;
        execute_cached(
            tx,
            "UPDATE trials SET status = 'running', attempt = ?2, worker_id = ?3, started_at_ms = ?4,
                    last_epoch = NULL, last_train_accuracy = NULL, last_test_accuracy = NULL, error = NULL
             WHERE key = ?1",
            params![trial_key, attempt, worker_id, now],
        )?;
        mark_trial_dirty(tx, trial_key)?;
        Ok(LeaseRef { trial_id: TrialId::from_raw(trial_id), attempt, token })
    }

    /// Check that `lease` is the trial's active attempt.
    fn check_lease(tx: &Connection, lease: &LeaseRef) -> Result<LiveLease> {
        let found: Option<(String, i64, LiveLease)> = tx
            .prepare_cached(
                "SELECT a.state, a.fencing_token, t.sweep, t.key FROM trials t JOIN attempts a ON a.trial_key = t.key AND a.attempt = ?2
                 WHERE t.trial_id = ?1",
            )?
            .query_row(params![lease.trial_id.as_str(), lease.attempt], |row| {
                Ok((row.get(0)?, row.get(1)?, LiveLease { sweep: row.get(2)?, trial_key: row.get(3)? }))
            })
            .optional()?;
        let stale = |reason: String| CoordinatorError::StaleLease { trial_id: lease.trial_id.to_string(), attempt: lease.attempt, reason };
        match found {
            None => Err(stale("no such attempt".to_string())),
            Some((_, token, _)) if token as u64 != lease.token => {
                Err(stale(format!("fencing token {} is not the current token {token}", lease.token)))
            }
            Some((state, _, _)) if state != "active" => Err(stale(format!("the attempt is {state}"))),
            Some((_, _, live)) => Ok(live),
        }
    }

    /// What the checks of a report need to know about the trial of `lease`.
    fn trial_context(tx: &Connection, specs: &SpecCache, live: &LiveLease, now: Millis) -> Result<TrialContext> {
        let params_json: String =
            tx.prepare_cached("SELECT params_json FROM trials WHERE key = ?1")?.query_row([live.trial_key], |row| row.get(0))?;
        let params: TrialParams = serde_json::from_str(&params_json).map_err(json_error)?;
        let max_epochs = cached_spec(tx, specs, &live.sweep)?.stop.max_epochs;
        Ok(TrialContext {
            family: params.family,
            modulus: params.modulus,
            max_epochs,
            has_test_pairs: params.has_test_pairs(),
            now_ms: now,
        })
    }

    /// Refuse a report whose `problem` is `Some`, naming the field.
    fn refuse(problem: Option<sweep_core::checks::Problem>) -> Result<()> {
        match problem {
            Some((field, message)) => Err(CoordinatorError::InvalidRequest(format!("invalid `{field}`: {message}"))),
            None => Ok(()),
        }
    }

    /// Renew a worker's leases; returns those it must drop.
    pub fn heartbeat(&mut self, worker_id: &str, leases: &[LeaseRef], ttl_ms: Millis) -> Result<Vec<Revocation>> {
        let now = self.now_ms();
        let tx = self.conn.savepoint()?;
        Self::require_worker(&tx, worker_id, now)?;
        let mut revoked = Vec::new();
        for lease in leases {
            match Self::check_lease(&tx, lease) {
                Ok(live) => {
                    execute_cached(
                        &tx,
                        "UPDATE attempts SET deadline_ms = ?3 WHERE trial_key = ?1 AND attempt = ?2",
                        params![live.trial_key, lease.attempt, now + ttl_ms],
                    )?;
                }
                Err(CoordinatorError::StaleLease { reason, .. }) => revoked.push(Revocation { lease: lease.clone(), reason }),
                Err(other) => return Err(other),
            }
        }
        tx.commit()?;
        Ok(revoked)
    }

    /// Buffer the typed measures of a live lease (which also renews it).
    /// Rows already buffered or already written to Parquet are ignored, so a
    /// batch may be re-sent safely: each measure's steps arrive in order, and
    /// a row at or below the last step of its measure already written is a
    /// repeat. (Per measure, because a measure may come later at earlier
    /// steps, like the final-K losses computed after training.) Returns the
    /// number of new rows (a spectrum or a curve is one row per entry).
    pub fn record_progress(&mut self, lease: &LeaseRef, steps: &[StepMeasures], ttl_ms: Millis) -> Result<usize> {
        let now = self.now_ms();
        let tx = self.conn.savepoint()?;
        let live = Self::check_lease(&tx, lease)?;
        let context = Self::trial_context(&tx, &self.specs, &live, now)?;
        let inserted = Self::record_progress_in(&tx, &context, &live, lease, steps, ttl_ms, now)?;
        tx.commit()?;
        Ok(inserted)
    }

    /// [`Store::record_progress`] inside the caller's savepoint, for a lease
    /// the caller has checked, with its trial's `context`.
    fn record_progress_in(
        tx: &Connection,
        context: &TrialContext,
        live: &LiveLease,
        lease: &LeaseRef,
        steps: &[StepMeasures],
        ttl_ms: Millis,
        now: Millis,
    ) -> Result<usize> {
        let (inserted, advanced) = Self::buffer_rows(tx, context, live, lease, steps)?;
        {
            let mut advance = tx.prepare_cached(
                "INSERT INTO progress_latest(trial_id, attempt, measure, step) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(trial_id, attempt, measure) DO UPDATE SET step = MAX(step, excluded.step)",
            )?;
            for (measure, step) in advanced {
                advance.execute(params![lease.trial_id.as_str(), lease.attempt, measure, step])?;
            }
        }
        if let Some(LastEpoch { step, train_accuracy, test_accuracy }) = LastEpoch::of(steps) {
            execute_cached(
                tx,
                "UPDATE trials SET last_epoch = ?2, last_train_accuracy = COALESCE(?3, last_train_accuracy),
                        last_test_accuracy = COALESCE(?4, last_test_accuracy)
                 WHERE key = ?1 AND (last_epoch IS NULL OR last_epoch <= ?2)",
                params![live.trial_key, step, train_accuracy, test_accuracy],
            )?;
        }
        execute_cached(
            tx,
            "UPDATE attempts SET deadline_ms = ?3 WHERE trial_key = ?1 AND attempt = ?2",
            params![live.trial_key, lease.attempt, now + ttl_ms],
        )?;
        Ok(inserted)
    }

    /// Check `steps` against the trial and the attempt's earlier rows and
    /// buffer the new ones. Returns the number of new rows and each measure
    /// whose latest accepted step moved, with that step (the caller records
    /// it if the lease goes on).
    fn buffer_rows(
        tx: &Connection,
        context: &TrialContext,
        live: &LiveLease,
        lease: &LeaseRef,
        steps: &[StepMeasures],
    ) -> Result<(usize, Vec<(String, i64)>)> {
        for step in steps {
            Self::refuse(context.progress_problem(step))?;
        }
        let key = params![lease.trial_id.as_str(), lease.attempt];
        let flushed_through: HashMap<String, i64> = tx
            .prepare_cached("SELECT measure, through_step FROM progress_flushed_by_measure WHERE trial_id = ?1 AND attempt = ?2")?
            .query_map(key, |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let accepted: HashMap<String, i64> = tx
            .prepare_cached("SELECT measure, step FROM progress_latest WHERE trial_id = ?1 AND attempt = ?2")?
            .query_map(key, |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        // Each measure moves forward within an attempt: a measure at a step
        // it already has is a resend (a retried batch) and is left out; a
        // new one is never before the latest one already held.
        let mut latest_by_measure = accepted.clone();
        for (measure, &through) in &flushed_through {
            let latest = latest_by_measure.entry(measure.clone()).or_insert(through);
            *latest = (*latest).max(through);
        }
        let mut held: Option<HashSet<(String, i64)>> = None;
        let mut fresh = Vec::with_capacity(steps.len());
        for step in steps {
            let mut measures = Vec::with_capacity(step.measures.len());
            for measure in &step.measures {
                match latest_by_measure.get(&measure.name).copied() {
                    Some(latest) if step.step < latest => {
                        let flushed = flushed_through.get(&measure.name).is_some_and(|&through| step.step <= through);
                        if !flushed {
                            if held.is_none() {
                                held = Some(Self::buffered_steps(tx, live.trial_key, lease.attempt)?);
                            }
                            if !held.as_ref().is_some_and(|held| held.contains(&(measure.name.clone(), step.step))) {
                                return Err(CoordinatorError::InvalidRequest(format!(
                                    "invalid `step`: `{}` at step {} comes after step {latest} of the same attempt",
                                    measure.name, step.step
                                )));
                            }
                        }
                    }
                    Some(latest) if step.step == latest => {}
                    _ => {
                        latest_by_measure.insert(measure.name.clone(), step.step);
                        measures.push(measure.clone());
                    }
                }
            }
            if !measures.is_empty() {
                fresh.push((step.step, step.wall_time_ms, measures));
            }
        }
        let mut inserted = 0;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO progress_batches(trial_key, trial_id, attempt, kind, steps, through) VALUES (?6, ?1, ?2, ?3, ?4, ?5)",
            )?;
            for batch in crate::progress_batch::by_kind(fresh) {
                insert.execute(params![
                    lease.trial_id.as_str(),
                    lease.attempt,
                    batch.kind.as_str(),
                    batch.encode()?,
                    batch.encode_through()?,
                    live.trial_key
                ])?;
                inserted += batch.rows();
            }
        }
        let advanced = latest_by_measure.into_iter().filter(|(measure, step)| accepted.get(measure) != Some(step)).collect();
        Ok((inserted, advanced))
    }

    /// Mark a trial done with its final metrics.
    pub fn complete(&mut self, lease: &LeaseRef, metrics: &FinalMetrics) -> Result<()> {
        self.complete_with_rows(lease, &[], metrics).map(drop)
    }

    /// Mark a trial done with its final metrics and its last progress rows
    /// (`steps`, buffered as [`Store::record_progress`] would), both or
    /// neither: a refused row refuses the completion. Returns the new rows.
    pub fn complete_with_rows(&mut self, lease: &LeaseRef, steps: &[StepMeasures], metrics: &FinalMetrics) -> Result<usize> {
        let now = self.now_ms();
        let tx = self.conn.savepoint()?;
        let live = Self::check_lease(&tx, lease)?;
        let context = Self::trial_context(&tx, &self.specs, &live, now)?;
        Self::refuse(context.metrics_problem(metrics))?;
        // The attempt ends here: its rows are buffered, but no latest steps
        // are kept (they check the reports of a live lease) and the lease is
        // not renewed; the trial's last epoch goes with its status.
        let rows = if steps.is_empty() { 0 } else { Self::buffer_rows(&tx, &context, &live, lease, steps)?.0 };
        execute_cached(
            &tx,
            "UPDATE attempts SET state = 'completed', ended_at_ms = ?3 WHERE trial_key = ?1 AND attempt = ?2",
            params![live.trial_key, lease.attempt, now],
        )?;
        // Without rows (a NULL step) the trial's `last_*` columns stay as they are.
        let last = LastEpoch::of(steps);
        execute_cached(
            &tx,
            "UPDATE trials SET status = 'done', finished_at_ms = ?2, metrics_json = ?3, error = NULL,
                    last_train_accuracy = CASE WHEN last_epoch IS NULL OR last_epoch <= ?4 THEN COALESCE(?5, last_train_accuracy) ELSE last_train_accuracy END,
                    last_test_accuracy = CASE WHEN last_epoch IS NULL OR last_epoch <= ?4 THEN COALESCE(?6, last_test_accuracy) ELSE last_test_accuracy END,
                    last_epoch = CASE WHEN last_epoch IS NULL OR last_epoch <= ?4 THEN ?4 ELSE last_epoch END
             WHERE key = ?1",
            params![
                live.trial_key,
                now,
                metrics_to_json(metrics),
                last.map(|last| last.step),
                last.and_then(|last| last.train_accuracy),
                last.and_then(|last| last.test_accuracy)
            ],
        )?;
        execute_cached(
            &tx,
            "INSERT OR IGNORE INTO compaction_pending(trial_key, trial_id, attempt) VALUES (?3, ?1, ?2)",
            params![lease.trial_id.as_str(), lease.attempt, live.trial_key],
        )?;
        mark_trial_dirty(&tx, live.trial_key)?;
        tx.commit()?;
        Ok(rows)
    }

    /// End an attempt without success. `release` is a graceful give-back that
    /// does not count against the retry policy.
    pub fn fail(&mut self, lease: &LeaseRef, reason: &str, release: bool) -> Result<TrialStatus> {
        let now = self.now_ms();
        let tx = self.conn.savepoint()?;
        let live = Self::check_lease(&tx, lease)?;
        let state = if release { "released" } else { "failed" };
        let status = Self::end_attempt(&tx, &self.specs, &live, lease, state, reason, !release, now)?;
        tx.commit()?;
        Ok(status)
    }

    /// End the active attempt `lease` in `state`, re-queueing the trial or
    /// failing it when the retry policy is exhausted.
    #[allow(clippy::too_many_arguments)]
    fn end_attempt(
        tx: &Connection,
        specs: &SpecCache,
        live: &LiveLease,
        lease: &LeaseRef,
        state: &str,
        reason: &str,
        counts_as_failure: bool,
        now: Millis,
    ) -> Result<TrialStatus> {
        execute_cached(
            tx,
            "UPDATE attempts SET state = ?3, ended_at_ms = ?4, reason = ?5 WHERE trial_key = ?1 AND attempt = ?2",
            params![live.trial_key, lease.attempt, state, now, reason],
        )?;
        execute_cached(
            tx,
            "INSERT OR IGNORE INTO superseded(trial_id, attempt) VALUES (?1, ?2)",
            params![lease.trial_id.as_str(), lease.attempt],
        )?;
        let spec = cached_spec(tx, specs, &live.sweep)?;
        let failures: u32 = tx.query_row(
            "UPDATE trials SET failures = failures + ?2 WHERE key = ?1 RETURNING failures",
            params![live.trial_key, counts_as_failure as u32],
            |row| row.get(0),
        )?;
        let status = if failures >= spec.retry.max_attempts { TrialStatus::Failed } else { TrialStatus::Queued };
        let error = format!("attempt {} {state}: {reason}", lease.attempt);
        let finished = (status == TrialStatus::Failed).then_some(now);
        execute_cached(
            tx,
            "UPDATE trials SET status = ?2, error = ?3, finished_at_ms = ?4, worker_id = NULL WHERE key = ?1",
            params![live.trial_key, status.as_str(), error, finished],
        )?;
        mark_trial_dirty(tx, live.trial_key)?;
        Ok(status)
    }

    /// Lapse every active lease past its deadline. Returns (lease, new status) pairs.
    pub fn expire_leases(&mut self) -> Result<Vec<(LeaseRef, TrialStatus)>> {
        let now = self.now_ms();
        let tx = self.conn.savepoint()?;
        let lapsed: Vec<(String, u32, i64, String, LiveLease)> = {
            let mut statement = tx.prepare(
                "SELECT a.trial_id, a.attempt, a.fencing_token, a.worker_id, t.sweep, t.key FROM attempts a
                 JOIN trials t ON t.key = a.trial_key WHERE a.state = 'active' AND a.deadline_ms < ?1",
            )?;
            let rows = statement.query_map([now], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, LiveLease { sweep: row.get(4)?, trial_key: row.get(5)? }))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut outcomes = Vec::with_capacity(lapsed.len());
        for (trial_id, attempt, token, worker, live) in lapsed {
            let lease = LeaseRef { trial_id: TrialId::from_raw(trial_id), attempt, token: token as u64 };
            let reason = format!("lease lapsed (worker {worker} stopped heartbeating)");
            let status = Self::end_attempt(&tx, &self.specs, &live, &lease, "lapsed", &reason, true, now)?;
            outcomes.push((lease, status));
        }
        tx.commit()?;
        Ok(outcomes)
    }

    /// Push every active deadline to at least now + `ttl_ms`: after a
    /// coordinator restart, workers get a full lease period to reconnect.
    pub fn grant_grace(&mut self, ttl_ms: Millis) -> Result<usize> {
        let deadline = self.now_ms() + ttl_ms;
        Ok(self.conn.execute("UPDATE attempts SET deadline_ms = MAX(deadline_ms, ?1) WHERE state = 'active'", [deadline])?)
    }

    /// Each (measure, step) buffered for an attempt: what a resent row
    /// before the latest one is checked against.
    fn buffered_steps(tx: &Connection, trial_key: i64, attempt: u32) -> Result<HashSet<(String, i64)>> {
        let mut statement = tx.prepare_cached("SELECT steps FROM progress_batches WHERE trial_key = ?1 AND attempt = ?2")?;
        let mut batches = statement.query(params![trial_key, attempt])?;
        let mut held = HashSet::new();
        while let Some(batch) = batches.next()? {
            for step in crate::progress_batch::decode(crate::progress_batch::blob(batch, 0)?)? {
                held.extend(step.measures.into_iter().map(|measure| (measure.name, step.step)));
            }
        }
        Ok(held)
    }

    /// Attempts with buffered progress that should be written to Parquet
    /// (active or completed attempts only), with their rows.
    pub fn buffered_attempts(&self) -> Result<Vec<BufferedAttempt>> {
        self.pending_attempts()?.iter().map(|pending| crate::progress_batch::read_attempt(&self.conn, pending)).collect()
    }

    /// Attempts with buffered progress that should be written to Parquet
    /// (active or completed attempts only), each with the range of its
    /// batches, read on the store's connection (crash recovery and tests; a
    /// flush reads the same through its own read-only connection,
    /// `crate::flush_reader`, off the store's thread).
    pub fn pending_attempts(&self) -> Result<Vec<PendingAttempt>> {
        read_pending_attempts(&self.conn)
    }

    /// Forget buffered rows now durable in Parquet, in one transaction (a
    /// flush calls it a chunk of written tables at a time).
    /// Per table (measure shape), because the tables' files are written one
    /// after the other: a crash or an error between them leaves one table's
    /// rows on disk and the next one's only here.
    pub fn mark_flushed(&mut self, written: &[WrittenRows]) -> Result<()> {
        let tx = self.conn.savepoint()?;
        {
            let mut trial_key = tx.prepare_cached("SELECT key FROM trials WHERE trial_id = ?1")?;
            let mut read = tx.prepare_cached(
                "SELECT through FROM progress_batches WHERE trial_key = ?1 AND attempt = ?2 AND batch_id <= ?3 AND kind = ?4",
            )?;
            let mut through = tx.prepare_cached(
                "INSERT INTO progress_flushed_by_measure(trial_id, attempt, measure, through_step) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(trial_id, attempt, measure) DO UPDATE SET through_step = MAX(through_step, excluded.through_step)",
            )?;
            let mut forget =
                tx.prepare_cached("DELETE FROM progress_batches WHERE trial_key = ?1 AND attempt = ?2 AND batch_id <= ?3 AND kind = ?4")?;
            for rows in written {
                // An unknown trial has no buffered rows to forget.
                let Some(trial) = trial_key.query_row([rows.trial_id.as_str()], |row| row.get::<_, i64>(0)).optional()? else {
                    continue;
                };
                let key = params![trial, rows.attempt, rows.last_row_id, rows.kind.as_str()];
                let mut last_steps: HashMap<String, i64> = HashMap::new();
                let mut batches = read.query(key)?;
                while let Some(batch) = batches.next()? {
                    for (measure, step) in crate::progress_batch::decode_through(crate::progress_batch::blob(batch, 0)?)? {
                        let last = last_steps.entry(measure).or_insert(step);
                        *last = (*last).max(step);
                    }
                }
                for (measure, step) in last_steps {
                    through.execute(params![rows.trial_id.as_str(), rows.attempt, measure, step])?;
                }
                forget.execute(key)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The sweep of a live lease (renewing it), for storing a checkpoint.
    pub fn checkpoint_target(&mut self, lease: &LeaseRef, ttl_ms: Millis) -> Result<String> {
        let now = self.now_ms();
        let tx = self.conn.savepoint()?;
        let live = Self::check_lease(&tx, lease)?;
        execute_cached(
            &tx,
            "UPDATE attempts SET deadline_ms = MAX(deadline_ms, ?3) WHERE trial_key = ?1 AND attempt = ?2",
            params![live.trial_key, lease.attempt, now + ttl_ms],
        )?;
        tx.commit()?;
        Ok(live.sweep)
    }

    /// Record a stored checkpoint of a live lease; `path` is relative to the sweep's results directory.
    pub fn record_checkpoint(&mut self, lease: &LeaseRef, step: i64, path: &str) -> Result<()> {
        let tx = self.conn.savepoint()?;
        let live = Self::check_lease(&tx, lease)?;
        execute_cached(
            &tx,
            "INSERT INTO checkpoints(trial_id, attempt, step, path) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(trial_id, attempt, step) DO UPDATE SET path = excluded.path",
            params![lease.trial_id.as_str(), lease.attempt, step, path],
        )?;
        mark_trial_dirty(&tx, live.trial_key)?;
        tx.commit()?;
        Ok(())
    }

    /// Attempts whose progress must be moved out of the results.
    pub fn superseded(&self) -> Result<Vec<SweepAttempt>> {
        let mut statement =
            self.conn.prepare("SELECT t.sweep, s.trial_id, t.key, s.attempt FROM superseded s JOIN trials t ON t.trial_id = s.trial_id")?;
        let rows = statement.query_map([], |row| {
            Ok(SweepAttempt {
                sweep: row.get(0)?,
                trial_id: TrialId::from_raw(row.get::<_, String>(1)?),
                trial_key: row.get(2)?,
                attempt: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The superseded attempt's files are gone from the results: drop its buffer too.
    pub fn forget_superseded(&mut self, attempt: &SweepAttempt) -> Result<()> {
        let tx = self.conn.savepoint()?;
        let key = params![attempt.trial_id.as_str(), attempt.attempt];
        execute_cached(
            &tx,
            "DELETE FROM progress_batches WHERE trial_key = ?1 AND attempt = ?2",
            params![attempt.trial_key, attempt.attempt],
        )?;
        forget_watermarks(&tx, attempt)?;
        execute_cached(&tx, "DELETE FROM checkpoints WHERE trial_id = ?1 AND attempt = ?2", key)?;
        execute_cached(&tx, "DELETE FROM superseded WHERE trial_id = ?1 AND attempt = ?2", key)?;
        tx.commit()?;
        Ok(())
    }

    /// Up to `limit` finished attempts whose rolled files can be compacted
    /// now, oldest first: the trial is done with this attempt and none of its
    /// rows is still buffered. (A limit, so that one call holds the store's
    /// thread for a bounded time however many trials ended.)
    pub fn compaction_ready(&self, limit: usize) -> Result<Vec<SweepAttempt>> {
        let mut statement = self.conn.prepare_cached(COMPACTION_READY)?;
        let rows = statement.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
            Ok(SweepAttempt {
                sweep: row.get(0)?,
                trial_id: TrialId::from_raw(row.get::<_, String>(1)?),
                trial_key: row.get(2)?,
                attempt: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// These attempts' files are compacted (or need not be).
    pub fn forget_compactions(&mut self, attempts: &[SweepAttempt]) -> Result<()> {
        let tx = self.conn.savepoint()?;
        for attempt in attempts {
            execute_cached(
                &tx,
                "DELETE FROM compaction_pending WHERE trial_key = ?1 AND attempt = ?2",
                params![attempt.trial_key, attempt.attempt],
            )?;
            forget_watermarks(&tx, attempt)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Parts of `trials` tables that must be rewritten, by sweep and part;
    /// clears the marks.
    pub fn take_dirty_parts(&mut self) -> Result<Vec<TrialsPart>> {
        let tx = self.conn.savepoint()?;
        let parts: Vec<TrialsPart> = {
            let mut statement = tx.prepare("SELECT sweep, part FROM dirty_trial_parts ORDER BY sweep, part")?;
            statement.query_map([], |row| Ok(TrialsPart { sweep: row.get(0)?, part: row.get(1)? }))?.collect::<rusqlite::Result<_>>()?
        };
        execute_cached(&tx, "DELETE FROM dirty_trial_parts", [])?;
        tx.commit()?;
        Ok(parts)
    }

    /// Mark parts to be rewritten again (after a failed write).
    pub fn mark_dirty(&mut self, parts: &[TrialsPart]) -> Result<()> {
        let tx = self.conn.savepoint()?;
        {
            let mut dirty = tx.prepare_cached("INSERT OR IGNORE INTO dirty_trial_parts(sweep, part) VALUES (?1, ?2)")?;
            for part in parts {
                dirty.execute(params![part.sweep, part.part])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

fn settings_difference(stored: &SweepSpec, submitted: &SweepSpec) -> Option<String> {
    if stored.training != submitted.training {
        return Some("training settings differ".to_string());
    }
    if stored.stop != submitted.stop {
        return Some("stop rules differ".to_string());
    }
    if stored.transformer != submitted.transformer {
        return Some("transformer settings differ".to_string());
    }
    if stored.diffusion != submitted.diffusion {
        return Some("diffusion settings differ".to_string());
    }
    None
}

/// A done trial's metrics as `trials.metrics_json` holds them (written from
/// [`FinalMetrics`] by serde) read back: a null number (one that was not finite) reads
/// as NaN, and a missing field as before (epochs 0, a number NaN, no key
/// frequencies, no grokking epoch, no judge); the keys may come in any order
/// (earlier builds wrote them sorted).
#[derive(serde::Deserialize)]
struct MetricsIn {
    #[serde(default)]
    epochs: i64,
    train_loss: Option<f64>,
    test_loss: Option<f64>,
    train_accuracy: Option<f64>,
    test_accuracy: Option<f64>,
    grokked_at: Option<i64>,
    wall_seconds: Option<f64>,
    #[serde(default)]
    key_frequencies: Vec<u32>,
    judge_accuracy: Option<f64>,
}

/// Metrics as `trials.metrics_json` holds them, written by serde's derived
/// code, not through a `serde_json::Value`: that built and dropped a map of
/// nine owned keys on the store's thread at every completion (2 % of that
/// thread's samples under load) and again for each done trial each time a
/// flush read its part whole (a third of the samples of the flush's read;
/// the read became 5–10 % cheaper a trial, bench/RESULTS.md, "Session 25").
/// A part refreshed from the views a flush kept parses only metrics whose
/// text changed (`part_rows`).
fn metrics_to_json(metrics: &FinalMetrics) -> String {
    serde_json::to_string(metrics).expect("a struct of numbers serializes")
}

pub(crate) fn metrics_from_json(text: &str) -> Result<FinalMetrics> {
    let stored: MetricsIn = serde_json::from_str(text).map_err(json_error)?;
    let number = |value: Option<f64>| value.unwrap_or(f64::NAN);
    Ok(FinalMetrics {
        epochs: stored.epochs,
        train_loss: number(stored.train_loss),
        test_loss: number(stored.test_loss),
        train_accuracy: number(stored.train_accuracy),
        test_accuracy: number(stored.test_accuracy),
        grokked_at: stored.grokked_at,
        wall_seconds: number(stored.wall_seconds),
        key_frequencies: stored.key_frequencies,
        judge_accuracy: stored.judge_accuracy,
    })
}

#[cfg(test)]
#[path = "store_tests.rs"]
pub(crate) mod tests;
