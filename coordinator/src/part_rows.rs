//! Trials as the store holds them, read into [`TrialView`]s: a range of
//! grid positions ([`read_trials`]), or one part of a sweep's `trials`
//! table as a flush writes it ([`PartRows`]), and the parts the last
//! flushes read ([`PartCache`]), kept so that the next read of a part reads
//! only what can change.
//!
//! Under load a flush rewrites the two or three parts that leases and
//! completions are going through about once a second, each of 10,000
//! trials; building every trial's view anew was most of the flush's read
//! (its grid point parsed from JSON, its id and sweep copied, a done
//! trial's metrics parsed). What a trial's row can change is read every
//! time; what cannot (id, grid point, learning rate, epoch limit) and the
//! metrics parsed from the same stored text are taken from the part as read
//! before. (A stored trial's id and grid point are never rewritten, and a
//! sweep submitted again must keep its training and stop settings.) A
//! cached part is never trusted for anything that can change, so a stale
//! one (another flush read it earlier or later) only costs a parse.

use std::ops::Range;
use std::sync::Arc;

use rusqlite::{Connection, Row, params};
use sweep_core::{SweepSpec, TrialId, TrialParams};

use crate::domain::{TrialStatus, TrialView};
use crate::error::{CoordinatorError, Result};
use crate::results::TRIALS_PER_PART;
use crate::store::{TrialsPart, json_error, metrics_from_json};

/// The columns of a `trials` row that change as its trial runs, and the
/// latest checkpoint of its current attempt, in [`Changing`]'s order. A
/// trial never leased (attempt 0) has no checkpoint to look up: most of a
/// large sweep's trials are queued when their part is read.
macro_rules! changing_columns {
    () => {
        "t.status, t.attempt, t.failures, t.worker_id, t.started_at_ms, t.finished_at_ms,
         t.last_epoch, t.last_train_accuracy, t.last_test_accuracy, t.metrics_json, t.error,
         CASE WHEN t.attempt > 0 THEN
             (SELECT c.path FROM checkpoints c WHERE c.trial_id = t.trial_id AND c.attempt = t.attempt ORDER BY c.step DESC LIMIT 1)
         END"
    };
}

/// Whole rows: the id and grid point, then the changing columns.
const READ: &str = concat!(
    "SELECT t.trial_id, t.params_json, ",
    changing_columns!(),
    " FROM trials t WHERE t.sweep = ?1 AND t.seq >= ?2 AND t.seq < ?3 ORDER BY t.seq"
);

/// The grid position, then the changing columns.
const REFRESH: &str =
    concat!("SELECT t.seq, ", changing_columns!(), " FROM trials t WHERE t.sweep = ?1 AND t.seq >= ?2 AND t.seq < ?3 ORDER BY t.seq");

/// Trials of `spec`'s sweep whose grid position (`seq`) is in `seqs`, in
/// grid order, read on `conn` (the store's, or a flush's read-only one).
pub(crate) fn read_trials(conn: &Connection, spec: &SweepSpec, seqs: Range<i64>) -> Result<Vec<TrialView>> {
    Ok(read_rows(conn, spec, seqs)?.0)
}

/// A trial's metrics as stored (JSON); none before it is done.
type StoredMetrics = Option<Box<str>>;

/// The views, and beside each its metrics as stored.
fn read_rows(conn: &Connection, spec: &SweepSpec, seqs: Range<i64>) -> Result<(Vec<TrialView>, Vec<StoredMetrics>)> {
    // A part's worth at most: `seqs` may be open-ended (a whole sweep).
    let expected = (seqs.end.saturating_sub(seqs.start)).clamp(0, TRIALS_PER_PART) as usize;
    let (mut views, mut texts) = (Vec::with_capacity(expected), Vec::with_capacity(expected));
    let mut statement = conn.prepare_cached(READ)?;
    let mut rows = statement.query(params![spec.name, seqs.start, seqs.end])?;
    while let Some(row) = rows.next()? {
        let changing = Changing::from_row(row, 2)?;
        let params: TrialParams = serde_json::from_str(text(row, 1)?.unwrap_or_default()).map_err(json_error)?;
        views.push(TrialView {
            trial_id: TrialId::from_raw(row.get::<_, String>(0)?),
            sweep: spec.name.clone(),
            learning_rate: params.learning_rate(spec.training.lr),
            params,
            status: changing.status()?,
            attempt: changing.attempt,
            failures: changing.failures,
            worker: changing.worker.map(str::to_owned),
            started_at_ms: changing.started_at_ms,
            finished_at_ms: changing.finished_at_ms,
            last_epoch: changing.last_epoch,
            last_train_accuracy: changing.last_train_accuracy,
            last_test_accuracy: changing.last_test_accuracy,
            metrics: changing.metrics.map(metrics_from_json).transpose()?,
            error: changing.error.map(str::to_owned),
            final_checkpoint: changing.checkpoint.map(str::to_owned),
            max_epochs: spec.stop.max_epochs,
        });
        texts.push(changing.metrics.map(Box::from));
    }
    Ok((views, texts))
}

/// A row's text column, or `None` for null.
fn text<'row>(row: &'row Row<'_>, index: usize) -> Result<Option<&'row str>> {
    let value = row.get_ref(index)?;
    value
        .as_str_or_null()
        .map_err(|error| CoordinatorError::Storage(rusqlite::Error::FromSqlConversionFailure(index, value.data_type(), Box::new(error))))
}

/// The changing columns of one row, borrowed from it.
struct Changing<'row> {
    status: &'row str,
    attempt: u32,
    failures: u32,
    worker: Option<&'row str>,
    started_at_ms: Option<i64>,
    finished_at_ms: Option<i64>,
    last_epoch: Option<i64>,
    last_train_accuracy: Option<f64>,
    last_test_accuracy: Option<f64>,
    metrics: Option<&'row str>,
    error: Option<&'row str>,
    checkpoint: Option<&'row str>,
}

impl<'row> Changing<'row> {
    /// The columns of [`changing_columns`] from column `first` on.
    fn from_row(row: &'row Row<'_>, first: usize) -> Result<Self> {
        Ok(Changing {
            status: text(row, first)?.unwrap_or_default(),
            attempt: row.get(first + 1)?,
            failures: row.get(first + 2)?,
            worker: text(row, first + 3)?,
            started_at_ms: row.get(first + 4)?,
            finished_at_ms: row.get(first + 5)?,
            last_epoch: row.get(first + 6)?,
            last_train_accuracy: row.get(first + 7)?,
            last_test_accuracy: row.get(first + 8)?,
            metrics: text(row, first + 9)?,
            error: text(row, first + 10)?,
            checkpoint: text(row, first + 11)?,
        })
    }

    fn status(&self) -> Result<TrialStatus> {
        TrialStatus::parse(self.status).ok_or_else(|| CoordinatorError::Internal(format!("unknown status {}", self.status)))
    }
}

/// One part of a sweep's `trials` table as read.
#[derive(Debug, Clone)]
pub(crate) struct PartRows {
    /// Which part.
    pub(crate) part: TrialsPart,
    /// Its trials in grid order.
    pub(crate) views: Vec<TrialView>,
    /// Beside each view, its trial's metrics as stored (JSON), so that a
    /// later read parses only metrics that changed.
    metrics: Vec<StoredMetrics>,
}

impl PartRows {
    /// Read the whole part.
    pub(crate) fn read(conn: &Connection, spec: &SweepSpec, part: TrialsPart) -> Result<Self> {
        let (views, metrics) = read_rows(conn, spec, part.seqs())?;
        Ok(PartRows { part, views, metrics })
    }

    /// Bring the part up to the state `conn` sees, reading only the
    /// changing columns; false (and the part left half-updated, to be read
    /// whole) if the store holds other grid positions than those read before
    /// (a sweep still being stored adds trials to its last part).
    pub(crate) fn refresh(&mut self, conn: &Connection) -> Result<bool> {
        let seqs = self.part.seqs();
        let mut statement = conn.prepare_cached(REFRESH)?;
        let mut rows = statement.query(params![self.part.sweep, seqs.start, seqs.end])?;
        let mut count = 0;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            if count >= self.views.len() || seq != seqs.start + count as i64 {
                return Ok(false);
            }
            let changing = Changing::from_row(row, 1)?;
            let (view, stored) = (&mut self.views[count], &mut self.metrics[count]);
            if changing.status != view.status.as_str() {
                view.status = changing.status()?;
            }
            view.attempt = changing.attempt;
            view.failures = changing.failures;
            refresh_text(&mut view.worker, changing.worker);
            view.started_at_ms = changing.started_at_ms;
            view.finished_at_ms = changing.finished_at_ms;
            view.last_epoch = changing.last_epoch;
            view.last_train_accuracy = changing.last_train_accuracy;
            view.last_test_accuracy = changing.last_test_accuracy;
            if changing.metrics != stored.as_deref() {
                view.metrics = changing.metrics.map(metrics_from_json).transpose()?;
                *stored = changing.metrics.map(Box::from);
            }
            refresh_text(&mut view.error, changing.error);
            refresh_text(&mut view.final_checkpoint, changing.checkpoint);
            count += 1;
        }
        Ok(count == self.views.len())
    }
}

/// Set `field` to `now`, allocating only if it differs.
fn refresh_text(field: &mut Option<String>, now: Option<&str>) {
    if field.as_deref() != now {
        *field = now.map(str::to_owned);
    }
}

/// How many parts [`PartCache`] keeps: under load, the parts that leases
/// and completions are going through (two or three at a time). A part of
/// 10,000 trials takes 4 MB of views (400 bytes each) and their strings: a
/// few MB more once its trials are done (metrics, stored and parsed).
const CACHED_PARTS: usize = 4;

/// The parts the last flushes read, most recent last, shared with the
/// flush that is writing them (and, after it, with whoever is told of the
/// written trials).
#[derive(Debug, Default)]
pub(crate) struct PartCache {
    parts: Vec<Arc<PartRows>>,
}

impl PartCache {
    /// The part as read before, if kept; it leaves the cache.
    pub(crate) fn take(&mut self, part: &TrialsPart) -> Option<Arc<PartRows>> {
        let position = self.parts.iter().position(|rows| rows.part == *part)?;
        Some(self.parts.remove(position))
    }

    /// Keep `rows` for the next read of its part, in place of what was
    /// kept of it; the part kept longest leaves beyond [`CACHED_PARTS`].
    pub(crate) fn keep(&mut self, rows: Arc<PartRows>) {
        self.parts.retain(|kept| kept.part != rows.part);
        self.parts.push(rows);
        if self.parts.len() > CACHED_PARTS {
            self.parts.remove(0);
        }
    }
}

/// Read `part`: what was `kept` of it refreshed, else the whole part.
pub(crate) fn read_part(conn: &Connection, spec: &SweepSpec, part: TrialsPart, kept: Option<Arc<PartRows>>) -> Result<Arc<PartRows>> {
    if let Some(mut rows) = kept {
        // Copied only while an earlier flush or its observer still holds it.
        if Arc::make_mut(&mut rows).refresh(conn)? {
            return Ok(rows);
        }
    }
    Ok(Arc::new(PartRows::read(conn, spec, part)?))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sweep_core::measures::{TEST_ACCURACY, TRAIN_ACCURACY};
    use sweep_core::{FinalMetrics, Measure, StepMeasures};

    use super::*;
    use crate::clock::ManualClock;
    use crate::store::Store;
    use crate::store::tests::seed_grid;

    /// 2026-05-28, so that reports carry plausible wall times.
    const NOW: i64 = 1_780_000_000_000;

    fn part(number: i64) -> TrialsPart {
        TrialsPart { sweep: "refresh".into(), part: number }
    }

    /// Refresh `kept` on `conn` and check it against the part read whole;
    /// returns whether the refresh could be used.
    fn refreshed_as_read(conn: &Connection, spec: &SweepSpec, kept: &mut PartRows) -> bool {
        let whole = PartRows::read(conn, spec, kept.part.clone()).expect("read");
        if !kept.refresh(conn).expect("refresh") {
            return false;
        }
        assert_eq!(kept.views, whole.views, "part {}", kept.part.part);
        assert_eq!(kept.metrics, whole.metrics);
        true
    }

    /// A part read before and refreshed equals the part read whole after
    /// every kind of change a trial's row goes through (each changing
    /// column changes at least once); a part that gained trials since is
    /// not refreshed but read whole.
    #[test]
    fn a_refreshed_part_equals_the_part_read_whole() {
        let data = tempfile::tempdir().expect("tempdir");
        let path = data.path().join("coordinator.sqlite");
        let clock = ManualClock::new(NOW);
        let mut store = Store::open(&path, Arc::new(clock.clone())).expect("store");
        let (spec, yaml, trials) = seed_grid("refresh", 10_003);
        store.submit_part(&spec, &yaml, &trials[..10_001]).expect("first chunk");
        let conn = Connection::open(&path).expect("reader");
        let (mut first, mut second) =
            (PartRows::read(&conn, &spec, part(0)).expect("0"), PartRows::read(&conn, &spec, part(1)).expect("1"));
        assert_eq!((first.views.len(), second.views.len()), (10_000, 1));
        assert!(refreshed_as_read(&conn, &spec, &mut first), "nothing changed");

        let worker = store.register_worker("w", "flex", 5, None).expect("register");
        clock.advance(1_000);
        let leases: Vec<_> = store.lease(&worker, 5, 1, 10_000).expect("lease").into_iter().flatten().map(|lease| lease.lease).collect();
        assert_eq!(leases.len(), 5);
        assert!(refreshed_as_read(&conn, &spec, &mut first), "leased: status, attempt, worker, start");
        clock.advance(1_000);
        let report = StepMeasures {
            step: 10,
            wall_time_ms: NOW,
            measures: vec![Measure::scalar(TRAIN_ACCURACY, 0.75), Measure::scalar(TEST_ACCURACY, 0.25)],
        };
        store.record_progress(&leases[0], &[report], 10_000).expect("progress");
        store.record_checkpoint(&leases[1], 10, "checkpoints/one").expect("checkpoint");
        let metrics =
            FinalMetrics { epochs: 20, train_accuracy: 1.0, test_accuracy: 0.5, key_frequencies: vec![1, 3], ..FinalMetrics::default() };
        store.complete(&leases[2], &metrics).expect("complete");
        store.fail(&leases[3], "diverged", false).expect("fail");
        store.fail(&leases[4], "worker left", true).expect("release");
        assert!(refreshed_as_read(&conn, &spec, &mut first), "reported, checkpointed, done, failed, released");
        assert!(first.views.iter().any(|view| view.error.is_some() && view.failures > 0));
        assert!(first.views.iter().any(|view| view.final_checkpoint.is_some()));
        assert!(first.views.iter().any(|view| view.last_epoch == Some(10) && view.last_test_accuracy == Some(0.25)));
        assert!(refreshed_as_read(&conn, &spec, &mut second), "part 1 unchanged");

        clock.advance(1_000);
        store.cancel("refresh").expect("cancel");
        assert!(refreshed_as_read(&conn, &spec, &mut first), "cancelled");
        assert!(first.views.iter().any(|view| view.metrics.is_some()), "the done trial's metrics kept");

        store.submit_part(&spec, &yaml, &trials[10_001..]).expect("second chunk");
        assert!(!refreshed_as_read(&conn, &spec, &mut second), "part 1 gained trials: read it whole");
    }

    /// The cache hands out each kept part once, keeps the latest of a part,
    /// and the most recent parts only.
    #[test]
    fn the_cache_keeps_the_latest_parts() {
        let rows = |number| Arc::new(PartRows { part: part(number), views: Vec::new(), metrics: Vec::new() });
        let mut cache = PartCache::default();
        for number in 0..=CACHED_PARTS as i64 {
            cache.keep(rows(number));
        }
        cache.keep(rows(1));
        assert!(cache.take(&part(0)).is_none(), "the part kept longest left");
        assert!(cache.take(&part(1)).is_some());
        assert!(cache.take(&part(1)).is_none(), "taken once");
        assert_eq!(cache.parts.len(), CACHED_PARTS - 1);
    }
}
