//! Bringing a data directory written by an older build up to date, once, when
//! the store opens:
//!
//! - progress buffered before measures were typed: rows whose names encoded
//!   their shape (`spectrum:W_E:14`, `decision_accuracy_test@0.50`) become
//!   typed rows (kind and key columns), and the per-measure watermarks follow;
//! - progress buffered one row per value (typed) becomes batches
//!   (`progress_batch`), each measure's latest step with it;
//! - the per-measure steps of attempts that ended, which older builds kept
//!   for good, are forgotten;
//! - sweeps stored before family settings had sections of their own are read
//!   again from their stored YAML, which this build still parses;
//! - a data directory from before compaction queues its done trials, so
//!   their rolled progress files are compacted like new ones;
//! - a data directory from before the `trials` table was written in parts
//!   rewrites every part of each sweep once, so that a large sweep's single
//!   `trials.parquet` becomes its first part;
//! - a store from before trials had an integer key gets one (the order the
//!   trials were stored in), and its attempts, compaction queue and progress
//!   buffer are keyed by it ([`key_by_trial`]).
//!
//! This is the only place that reads a shape out of a measure name.

use rusqlite::{Connection, OptionalExtension, params};
use sweep_core::{CurvePoint, Measure, MeasureKind, MeasureValue, StepMeasures, SweepSpec, parse_spec};
use tracing::info;

use crate::error::{CoordinatorError, Result};

/// The typed form of a measure name written by an older build: (name, kind, key).
fn legacy_measure(name: &str) -> (String, MeasureKind, f64) {
    if let Some(rest) = name.strip_prefix("spectrum:")
        && let Some((matrix, frequency)) = rest.rsplit_once(':')
        && let Ok(frequency) = frequency.parse::<u32>()
    {
        return (matrix.to_string(), MeasureKind::Spectrum, frequency as f64);
    }
    if let Some((curve, t)) = name.rsplit_once('@')
        && let Ok(t) = t.parse::<f64>()
    {
        return (curve.to_string(), MeasureKind::Curve, t);
    }
    (name.to_string(), MeasureKind::Scalar, 0.0)
}

fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool> {
    Ok(columns(conn, table)?.iter().any(|name| name == column))
}

/// The typed progress buffer of the builds before progress batches: one row
/// per value, `kind` the measure's shape, `key` the frequency of a spectrum
/// entry or the t of a curve point (0 for a scalar).
const TYPED_PROGRESS_BUFFER: &str = "
CREATE TABLE progress_buffer (
    row_id INTEGER PRIMARY KEY AUTOINCREMENT,
    trial_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    step INTEGER NOT NULL,
    measure TEXT NOT NULL,
    kind TEXT NOT NULL,
    key REAL NOT NULL,
    value REAL NOT NULL,
    wall_time_ms INTEGER NOT NULL,
    UNIQUE (trial_id, attempt, step, measure, kind, key)
);
";

fn table_exists(conn: &Connection, name: &str) -> Result<bool> {
    let found: Option<String> =
        conn.query_row("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?1", [name], |row| row.get(0)).optional()?;
    Ok(found.is_some())
}

/// Number the rows of `to` (an AUTOINCREMENT table, its ids in
/// `id_column`) after the last id `from` ever gave, as well as after its own:
/// rolled files are named by these ids, so an id is never given twice.
fn continue_sequence(tx: &Connection, from: &str, to: &str, id_column: &str) -> Result<()> {
    let given: Option<i64> = tx.query_row("SELECT seq FROM sqlite_sequence WHERE name = ?1", [from], |row| row.get(0)).optional()?;
    let Some(given) = given else { return Ok(()) };
    let own: i64 = tx.query_row(&format!("SELECT IFNULL(MAX({id_column}), 0) FROM {to}"), [], |row| row.get(0))?;
    tx.execute("DELETE FROM sqlite_sequence WHERE name = ?1", [to])?;
    tx.execute("INSERT INTO sqlite_sequence(name, seq) VALUES (?1, ?2)", params![to, given.max(own)])?;
    Ok(())
}

/// Rewrite an untyped progress buffer (if this data directory has one) in
/// typed form, for [`progress_in_batches`] to take on.
pub(crate) fn typed_progress(conn: &mut Connection) -> Result<()> {
    if !table_exists(conn, "progress_buffer")? || has_column(conn, "progress_buffer", "kind")? {
        return Ok(());
    }
    let tx = conn.transaction()?;
    tx.execute("ALTER TABLE progress_buffer RENAME TO progress_buffer_untyped", [])?;
    tx.execute_batch(TYPED_PROGRESS_BUFFER)?;
    let mut moved = 0usize;
    {
        let mut read = tx
            .prepare("SELECT row_id, trial_id, attempt, step, measure, value, wall_time_ms FROM progress_buffer_untyped ORDER BY row_id")?;
        let mut insert = tx.prepare(
            "INSERT OR IGNORE INTO progress_buffer(row_id, trial_id, attempt, step, measure, kind, key, value, wall_time_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let (name, kind, key) = legacy_measure(&row.get::<_, String>(4)?);
            let (row_id, trial_id, attempt, step): (i64, String, u32, i64) = (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
            let (value, wall_time_ms): (f64, i64) = (row.get(5)?, row.get(6)?);
            moved += insert.execute(params![row_id, trial_id, attempt, step, name, kind.as_str(), key, value, wall_time_ms])?;
        }
    }
    continue_sequence(&tx, "progress_buffer_untyped", "progress_buffer", "row_id")?;
    tx.execute("DROP TABLE progress_buffer_untyped", [])?;
    let watermarks: Vec<(String, u32, String, i64)> = {
        let mut statement = tx.prepare("SELECT trial_id, attempt, measure, through_step FROM progress_flushed_by_measure")?;
        statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?.collect::<rusqlite::Result<_>>()?
    };
    tx.execute("DELETE FROM progress_flushed_by_measure", [])?;
    for (trial_id, attempt, measure, through_step) in watermarks {
        let (name, _, _) = legacy_measure(&measure);
        tx.execute(
            "INSERT INTO progress_flushed_by_measure(trial_id, attempt, measure, through_step) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(trial_id, attempt, measure) DO UPDATE SET through_step = MAX(through_step, excluded.through_step)",
            params![trial_id, attempt, name, through_step],
        )?;
    }
    tx.commit()?;
    info!(rows = moved, "progress buffered by an older build rewritten with typed measures");
    Ok(())
}

/// Move a typed progress buffer of one row per value (if this data directory
/// has one) into batches, and drop it.
///
/// Each run of rows of one attempt, shape, step and time, in row order,
/// becomes one batch whose id is the run's last row id: every run lies
/// within one report, and a flush took whole reports, so a rolled file an
/// older build wrote (named by row ids) covers whole batches, which is what
/// the recovery after a crash between writing a file and forgetting its rows
/// compares. New batches are numbered after the old rows.
pub(crate) fn progress_in_batches(conn: &mut Connection) -> Result<()> {
    if !table_exists(conn, "progress_buffer")? {
        return Ok(());
    }
    let tx = conn.transaction()?;
    let mut batches = 0usize;
    {
        let mut read = tx.prepare(
            "SELECT row_id, trial_id, attempt, kind, step, wall_time_ms, measure, key, value FROM progress_buffer
             ORDER BY trial_id, attempt, kind, row_id",
        )?;
        let mut insert = tx.prepare(
            "INSERT INTO progress_batches(batch_id, trial_key, trial_id, attempt, kind, steps, through)
                 VALUES (?1, (SELECT key FROM trials WHERE trial_id = ?2), ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut run: Option<LegacyRun> = None;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let kind: String = row.get(3)?;
            let kind = MeasureKind::parse(&kind).ok_or_else(|| CoordinatorError::Internal(format!("unknown measure kind {kind}")))?;
            let at = LegacyKey { trial_id: row.get(1)?, attempt: row.get(2)?, kind, step: row.get(4)?, wall_time_ms: row.get(5)? };
            if run.as_ref().is_some_and(|run| run.key != at) {
                run.take().expect("checked").store(&mut insert)?;
                batches += 1;
            }
            let run = run.get_or_insert_with(|| LegacyRun { key: at, last_row_id: 0, measures: Vec::new() });
            run.push(row.get(0)?, row.get(6)?, row.get(7)?, row.get(8)?);
        }
        if let Some(run) = run {
            run.store(&mut insert)?;
            batches += 1;
        }
    }
    tx.execute(
        "INSERT INTO progress_latest(trial_id, attempt, measure, step) SELECT trial_id, attempt, measure, MAX(step) FROM progress_buffer
         GROUP BY trial_id, attempt, measure
         ON CONFLICT(trial_id, attempt, measure) DO UPDATE SET step = MAX(step, excluded.step)",
        [],
    )?;
    // Batch ids go on from the old row ids, which rolled files are named by.
    continue_sequence(&tx, "progress_buffer", "progress_batches", "batch_id")?;
    tx.execute("DROP TABLE progress_buffer", [])?;
    tx.commit()?;
    info!(batches, "progress buffered one row per value by an older build moved into batches");
    Ok(())
}

/// What makes rows of an older buffer one batch.
#[derive(Debug, PartialEq)]
struct LegacyKey {
    trial_id: String,
    attempt: u32,
    kind: MeasureKind,
    step: i64,
    wall_time_ms: i64,
}

/// Consecutive rows of an older buffer that become one batch.
struct LegacyRun {
    key: LegacyKey,
    last_row_id: i64,
    /// Each measure's values in row order: (key, value).
    measures: Vec<(String, Vec<(f64, f64)>)>,
}

impl LegacyRun {
    fn push(&mut self, row_id: i64, measure: String, key: f64, value: f64) {
        self.last_row_id = self.last_row_id.max(row_id);
        match self.measures.iter_mut().find(|(name, _)| *name == measure) {
            Some((_, values)) => values.push((key, value)),
            None => self.measures.push((measure, vec![(key, value)])),
        }
    }

    fn store(self, insert: &mut rusqlite::Statement<'_>) -> Result<()> {
        let LegacyRun { key, last_row_id, measures } = self;
        let measures = measures
            .into_iter()
            .map(|(name, mut values)| {
                values.sort_by(|a, b| a.0.total_cmp(&b.0));
                let value = match key.kind {
                    MeasureKind::Scalar => MeasureValue::Scalar(values[0].1),
                    MeasureKind::Spectrum => MeasureValue::Spectrum(values.into_iter().map(|(_, value)| value).collect()),
                    MeasureKind::Curve => MeasureValue::Curve(values.into_iter().map(|(t, value)| CurvePoint { t, value }).collect()),
                };
                Measure { name, value }
            })
            .collect();
        let batch = crate::progress_batch::Batch {
            kind: key.kind,
            steps: vec![StepMeasures { step: key.step, wall_time_ms: key.wall_time_ms, measures }],
        };
        insert.execute(params![last_row_id, key.trial_id, key.attempt, key.kind.as_str(), batch.encode()?, batch.encode_through()?])?;
        Ok(())
    }
}

/// Forget the per-measure steps (latest accepted, last written) of every
/// attempt that is no longer active: they only check a live lease's reports,
/// and older builds kept them for good (tens of millions of rows after a
/// million-trial sweep). Idempotent; on a current data directory there is
/// nothing to forget.
pub(crate) fn forget_ended_watermarks(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction()?;
    let mut forgotten = 0;
    for table in ["progress_flushed_by_measure", "progress_latest"] {
        forgotten += tx.execute(
            &format!(
                "DELETE FROM {table} WHERE NOT EXISTS (SELECT 1 FROM attempts a
                 WHERE a.trial_key = (SELECT key FROM trials t WHERE t.trial_id = {table}.trial_id)
                 AND a.attempt = {table}.attempt AND a.state = 'active')"
            ),
            [],
        )?;
    }
    tx.commit()?;
    if forgotten > 0 {
        info!(rows = forgotten, "forgot the per-measure steps of attempts that have ended");
    }
    Ok(())
}

/// Re-read every sweep whose stored JSON an older build wrote.
pub(crate) fn sweep_specs(conn: &mut Connection) -> Result<()> {
    let stored: Vec<(String, String, String)> = {
        let mut statement = conn.prepare("SELECT name, spec_json, spec_yaml FROM sweeps")?;
        statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?.collect::<rusqlite::Result<_>>()?
    };
    for (name, json, yaml) in stored {
        if serde_json::from_str::<SweepSpec>(&json).is_ok() {
            continue;
        }
        let spec = parse_spec(&format!("stored spec of sweep {name}"), &yaml)
            .map_err(|error| CoordinatorError::Internal(format!("the stored spec of sweep `{name}` cannot be read: {error}")))?;
        let json = serde_json::to_string(&spec).map_err(|error| CoordinatorError::Internal(error.to_string()))?;
        conn.execute("UPDATE sweeps SET spec_json = ?2 WHERE name = ?1", params![name, json])?;
        info!(sweep = %name, "stored spec of an older build read again from its YAML");
    }
    Ok(())
}

/// The tables [`key_by_trial`] rebuilds, in order (each after the table its
/// key comes from), with the indexes an older build gave them.
const UNKEYED: [(&str, &[&str]); 4] = [
    ("trials", &["trials_by_status", "trials_by_sweep"]),
    ("attempts", &["attempts_active"]),
    ("compaction_pending", &[]),
    ("progress_batches", &["progress_batches_by_attempt"]),
];

/// Give each trial of a store written before trials had an integer key its
/// key, and key the attempts, the compaction queue and the progress buffer by
/// it, in one transaction, before `schema` (the current tables, created if
/// missing) is applied as usual. A trial's key is the rowid SQLite gave it, so
/// trials keep the order they were stored in, and every row keeps its ids
/// (batch ids go on after the last one given). Rows of those tables whose
/// trial is unknown cannot be keyed and are dropped, with a warning.
pub(crate) fn key_by_trial(conn: &mut Connection, schema: &[&str]) -> Result<()> {
    if !table_exists(conn, "trials")? || has_column(conn, "trials", "key")? {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let tx = conn.transaction()?;
    let mut present = Vec::new();
    for (table, indexes) in UNKEYED {
        if table_exists(&tx, table)? {
            tx.execute_batch(&format!("ALTER TABLE {table} RENAME TO {table}_unkeyed"))?;
            present.push(table);
        }
        for index in indexes {
            tx.execute_batch(&format!("DROP INDEX IF EXISTS {index}"))?;
        }
    }
    for statements in schema {
        tx.execute_batch(statements)?;
    }
    let mut trials = 0;
    for table in present {
        let old = format!("{table}_unkeyed");
        let new_columns = columns(&tx, table)?;
        let shared: Vec<String> = columns(&tx, &old)?.into_iter().filter(|column| new_columns.contains(column)).collect();
        let list = shared.join(", ");
        let from_old = shared.iter().map(|column| format!("o.{column}")).collect::<Vec<_>>().join(", ");
        let copied = if table == "trials" {
            tx.execute(&format!("INSERT INTO trials(key, {list}) SELECT o.rowid, {from_old} FROM {old} o ORDER BY o.rowid"), [])?
        } else {
            tx.execute(
                &format!(
                    "INSERT INTO {table}(trial_key, {list}) SELECT t.key, {from_old} FROM {old} o JOIN trials t ON t.trial_id = o.trial_id
                     ORDER BY o.rowid"
                ),
                [],
            )?
        };
        let rows: usize = tx.query_row(&format!("SELECT COUNT(*) FROM {old}"), [], |row| row.get(0))?;
        if copied < rows {
            tracing::warn!(table, dropped = rows - copied, "rows of unknown trials dropped while keying the store by trial");
        }
        if table == "trials" {
            trials = copied;
        }
        if table == "progress_batches" {
            continue_sequence(&tx, &old, table, "batch_id")?;
        }
        tx.execute_batch(&format!("DROP TABLE {old}"))?;
    }
    tx.commit()?;
    info!(trials, seconds = started.elapsed().as_secs_f64(), "keyed the store's trials, attempts, compaction queue and progress buffer");
    Ok(())
}

fn columns(conn: &Connection, table: &str) -> Result<Vec<String>> {
    let mut statement = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = statement.query_map([], |row| row.get(1))?.collect::<rusqlite::Result<_>>()?;
    Ok(names)
}

/// True when the store predates the compaction queue: it has trials but no
/// `compaction_pending` table yet (checked before the schema creates it).
pub(crate) fn needs_compaction_queue(conn: &Connection) -> Result<bool> {
    Ok(table_exists(conn, "trials")? && !table_exists(conn, "compaction_pending")?)
}

/// Queue every done trial's final attempt for compaction.
pub(crate) fn queue_done_trials_for_compaction(conn: &mut Connection) -> Result<()> {
    let queued = conn.execute(
        "INSERT OR IGNORE INTO compaction_pending(trial_key, trial_id, attempt) SELECT key, trial_id, attempt FROM trials WHERE status = 'done'",
        [],
    )?;
    if queued > 0 {
        info!(trials = queued, "queued the done trials of an older data directory for compaction");
    }
    Ok(())
}

/// Replace an older build's list of dirty sweeps (whole `trials` tables) by
/// dirty parts: every part of every sweep, once, so that the single
/// `trials.parquet` an older build wrote for a sweep larger than one part
/// is cut down to the first part as the others are written beside it.
pub(crate) fn trials_in_parts(conn: &mut Connection) -> Result<()> {
    if !table_exists(conn, "dirty_sweeps")? {
        return Ok(());
    }
    let tx = conn.transaction()?;
    let sweeps: Vec<String> = {
        let mut statement = tx.prepare("SELECT name FROM sweeps")?;
        statement.query_map([], |row| row.get(0))?.collect::<rusqlite::Result<_>>()?
    };
    for sweep in &sweeps {
        crate::store::mark_sweep_dirty(&tx, sweep)?;
    }
    tx.execute("DROP TABLE dirty_sweeps", [])?;
    tx.commit()?;
    info!(sweeps = sweeps.len(), "the trials tables of an older data directory are rewritten in parts");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_names_become_typed() {
        assert_eq!(legacy_measure("spectrum:W_E:14"), ("W_E".to_string(), MeasureKind::Spectrum, 14.0));
        assert_eq!(legacy_measure("spectrum:key_neurons:0"), ("key_neurons".to_string(), MeasureKind::Spectrum, 0.0));
        assert_eq!(legacy_measure("decision_accuracy_test@0.50"), ("decision_accuracy_test".to_string(), MeasureKind::Curve, 0.5));
        assert_eq!(legacy_measure("switch_follows_old@0.90"), ("switch_follows_old".to_string(), MeasureKind::Curve, 0.9));
        assert_eq!(legacy_measure("train_loss"), ("train_loss".to_string(), MeasureKind::Scalar, 0.0));
    }
}
