//! What a flush writes, read off the store's thread: a read-only connection
//! to the store's database (WAL: it reads committed state while the store
//! writes) that reads, in one read transaction, the attempts with buffered
//! progress, their batches and the `trials` parts to rewrite. The store's
//! thread only takes the list of changed parts; reading a roll's batches
//! (millions of rows) or a part's 10,000 trials there held every report,
//! lease and heartbeat behind it.
//!
//! One read transaction makes the files agree with each other: a trial that
//! a part shows done has every row it reported among the batches read (a
//! trial reports before it completes, and never after), so no trial is
//! shown done before its progress is written.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::domain::TrialView;
use crate::error::Result;
use crate::results::TRIALS_PER_PART;
use crate::store::{BufferedAttempt, PendingAttempt, SpecCache, TrialsPart};

/// A read-only connection holding one read transaction.
pub(crate) struct SnapshotReader {
    conn: Connection,
    specs: SpecCache,
}

impl SnapshotReader {
    /// Open the store's database at `path` and begin a read transaction
    /// (its snapshot is taken at the first read).
    pub(crate) fn begin(path: &Path) -> Result<Self> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch("BEGIN")?;
        Ok(SnapshotReader { conn, specs: std::cell::RefCell::new(HashMap::new()) })
    }

    /// Attempts with buffered progress to write, each with its range of batches.
    pub(crate) fn pending_attempts(&self) -> Result<Vec<PendingAttempt>> {
        crate::store::pending_attempts(&self.conn)
    }

    /// The rows of a pending attempt.
    pub(crate) fn read(&self, pending: &PendingAttempt) -> Result<BufferedAttempt> {
        crate::progress_batch::read_attempt(&self.conn, pending)
    }

    /// The trials of one part of a sweep's `trials` table, in grid order.
    pub(crate) fn trials_of_part(&self, part: &TrialsPart) -> Result<Vec<TrialView>> {
        let seqs = part.part * TRIALS_PER_PART..(part.part + 1) * TRIALS_PER_PART;
        crate::store::trials_in(&self.conn, &self.specs, &part.sweep, seqs)
    }
}

impl Drop for SnapshotReader {
    fn drop(&mut self) {
        // Ends the read transaction (a read-only one has nothing to commit).
        let _ = self.conn.execute_batch("COMMIT");
    }
}
