//! A flush's read-only connection to the store's database, on its writing
//! thread: what a flush writes is read here, not on the store's thread.
//!
//! The store's thread only takes the marks of the `trials` parts that
//! changed (a few rows). The parts themselves (10,000 trials each: 17–67 ms
//! a flush under load, during which every lease, completion and heartbeat
//! waited; bench/RESULTS.md, session 21), the attempts with buffered
//! progress and their batches are read here, while the store goes on
//! (WAL: a reader sees one committed state and does not block the writer).
//!
//! A part that a recent flush read is not read whole again: only the
//! columns that change are, into the views kept of it
//! ([`crate::part_rows::PartCache`]).
//!
//! The parts and the attempts are read in one read transaction, so a trial
//! that a part shows done has its last batches among the attempts read:
//! its progress is written before the part. That state is the one the
//! marks were taken from or a later one; a trial that changed after the
//! marks were taken has marked its part again, and the next flush writes
//! the part again. The store forgets a batch only once a flush has written
//! it or its attempt is superseded (at the start of a later flush), so the
//! batches of a snapshot are there unless a flush running beside it wrote
//! them.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::error::Result;
use crate::part_rows::{PartCache, PartRows, read_part};
use crate::store::{BufferedAttempt, MAPPED_BYTES, PendingAttempt, SpecCache, TrialsPart, cached_spec, read_pending_attempts};

/// What a flush writes, read in one transaction.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// Attempts with buffered progress, each with its range of batches.
    pub(crate) pending: Vec<PendingAttempt>,
    /// Changed `trials` parts with their trials, in the order asked for.
    pub(crate) tables: Vec<Arc<PartRows>>,
    /// Parts not read because a stopping coordinator's time ran out: they
    /// stay to be written at its next start.
    pub(crate) unread: Vec<TrialsPart>,
}

/// The read-only connection.
pub(crate) struct FlushReader {
    conn: Connection,
}

impl FlushReader {
    /// Open the store's database at `path` for reading.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "mmap_size", MAPPED_BYTES)?;
        Ok(FlushReader { conn })
    }

    /// The attempts with buffered progress and the trials of `parts`, in one
    /// transaction; a part that `read_before` kept is only refreshed
    /// ([`PartRows::refresh`]). Before each part, `out_of_time` is asked
    /// whether to stop reading; the parts left are returned in `unread`.
    pub(crate) fn snapshot(
        &mut self,
        parts: Vec<TrialsPart>,
        read_before: &Mutex<PartCache>,
        out_of_time: impl Fn() -> bool,
    ) -> Result<Snapshot> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let mut snapshot = Snapshot { pending: read_pending_attempts(&tx)?, ..Snapshot::default() };
        let specs = SpecCache::default();
        let mut parts = parts.into_iter();
        while let Some(part) = parts.next() {
            if out_of_time() {
                snapshot.unread.push(part);
                snapshot.unread.extend(parts);
                break;
            }
            let kept = read_before.lock().expect("the cache is never left half-updated").take(&part);
            snapshot.tables.push(read_part(&tx, &*cached_spec(&tx, &specs, &part.sweep)?, part, kept)?);
        }
        // Nothing was written: ending the read transaction either way is the same.
        tx.commit()?;
        Ok(snapshot)
    }

    /// The rows of a pending attempt.
    pub(crate) fn read(&self, pending: &PendingAttempt) -> Result<BufferedAttempt> {
        crate::progress_batch::read_attempt(&self.conn, pending)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sweep_core::{FinalMetrics, Measure, StepMeasures};

    use super::*;
    use crate::clock::ManualClock;
    use crate::store::Store;
    use crate::store::tests::seed_grid;

    /// 2026-05-28, so that reports carry plausible wall times.
    const NOW: i64 = 1_780_000_000_000;

    /// Read beside the store, the snapshot holds the changed parts as the
    /// store reads them and every attempt with buffered progress, including
    /// that of a trial completed after the marks were taken (its part shows
    /// it done, so its last rows must be written in the same flush); a
    /// stopping coordinator out of time reads no part.
    #[test]
    fn the_snapshot_reads_what_the_store_holds_in_one_transaction() {
        let data = tempfile::tempdir().expect("tempdir");
        let path = data.path().join("coordinator.sqlite");
        let mut store = Store::open(&path, Arc::new(ManualClock::new(NOW))).expect("store");
        let (spec, yaml, trials) = seed_grid("read", 12_005);
        store.submit(&spec, &yaml, &trials).expect("submit");
        let worker = store.register_worker("w", "flex", 2, None).expect("register");
        let leases: Vec<_> = store.lease(&worker, 2, 1, 10_000).expect("lease").into_iter().flatten().collect();
        let step = |step| StepMeasures { step, wall_time_ms: NOW, measures: vec![Measure::scalar("train_loss", 0.5)] };
        store.record_progress(&leases[0].lease, &[step(0)], 10_000).expect("progress");
        let dirty = store.take_dirty_parts().expect("dirty");
        assert_eq!(dirty.iter().map(|part| part.part).collect::<Vec<_>>(), [0, 1]);
        // After the marks were taken: the other trial reports and completes.
        store.record_progress(&leases[1].lease, &[step(0), step(10)], 10_000).expect("progress");
        store.complete(&leases[1].lease, &FinalMetrics { epochs: 10, ..FinalMetrics::default() }).expect("complete");

        let mut reader = FlushReader::open(&path).expect("reader");
        let mapped: i64 = reader.conn.pragma_query_value(None, "mmap_size", |row| row.get(0)).expect("mmap_size");
        assert!(mapped >= 1 << 30, "the reader maps the database: {mapped}");
        let read_before = Mutex::new(PartCache::default());
        let snapshot = reader.snapshot(dirty.clone(), &read_before, || false).expect("snapshot");
        let mut pending: Vec<_> = snapshot.pending.iter().map(|attempt| attempt.trial_id.clone()).collect();
        pending.sort();
        let mut leased: Vec<_> = leases.iter().map(|lease| lease.lease.trial_id.clone()).collect();
        leased.sort();
        assert_eq!(pending, leased, "both attempts' rows");
        assert_eq!(snapshot.pending, store.pending_attempts().expect("pending"));
        assert!(snapshot.unread.is_empty());
        assert_eq!(snapshot.tables.len(), 2);
        for rows in &snapshot.tables {
            assert_eq!(rows.views, store.trials_of_part(&rows.part).expect("part"), "part {}", rows.part.part);
        }
        assert_eq!((snapshot.tables[0].views.len(), snapshot.tables[1].views.len()), (10_000, 2_005));
        let done = snapshot.tables[0].views.iter().find(|view| view.trial_id == leases[1].lease.trial_id).expect("in part 0");
        assert_eq!(done.status, crate::domain::TrialStatus::Done);
        let rows = reader.read(snapshot.pending.iter().find(|attempt| attempt.trial_id == done.trial_id).expect("pending")).expect("rows");
        assert_eq!(rows.rows.len(), 2, "its last rows are read with it");

        // Kept after writing, the parts are refreshed by the next snapshot.
        for rows in &snapshot.tables {
            read_before.lock().expect("cache").keep(Arc::clone(rows));
        }
        store.complete(&leases[0].lease, &FinalMetrics { epochs: 10, ..FinalMetrics::default() }).expect("complete");
        let again = reader.snapshot(dirty.clone(), &read_before, || false).expect("snapshot");
        for rows in &again.tables {
            assert_eq!(rows.views, store.trials_of_part(&rows.part).expect("part"), "part {}", rows.part.part);
            assert!(read_before.lock().expect("cache").take(&rows.part).is_none(), "taken from the cache");
        }
        assert_eq!(again.tables.len(), 2);

        let stopping = reader.snapshot(dirty.clone(), &read_before, || true).expect("snapshot");
        assert!(stopping.tables.is_empty());
        assert_eq!(stopping.unread, dirty);
    }
}
