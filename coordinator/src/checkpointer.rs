//! The store's WAL checkpoints, on a thread of their own.
//!
//! SQLite appends each commit to its write-ahead log and copies the log back
//! into the database in a checkpoint, with an `fsync` of each file. Made by
//! the commit that crosses SQLite's automatic mark, a checkpoint held the
//! store's thread, and every call waiting for it, for 8–10 ms about 25 times
//! a second at 10,000 round trips a second, and for 80–110 ms while a flush
//! was writing its files to the same filesystem (bench/RESULTS.md, "Session
//! 24"). This
//! thread makes them instead, on a connection of its own, every
//! [`CHECKPOINT_EVERY`] when the store has committed since the last one. A
//! PASSIVE checkpoint takes no lock that a writer needs, so the store's
//! thread goes on appending to the log meanwhile; the store's own automatic
//! checkpoint stays, at a higher mark, for the case that this thread falls
//! behind (`WAL_BACKSTOP_PAGES` in `store`).

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tracing::{debug, error, info, warn};

use crate::error::{CoordinatorError, Result};

/// How often the log is copied back while the store commits: about 2,500
/// pages at a time at 10,000 round trips a second.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

/// The checkpointing thread; dropping it stops the thread and waits for it,
/// so that its connection is closed.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Checkpoint the database at `file` while `commits` (a count that
    /// grows as the store commits) changes.
    pub(crate) fn start(file: &Path, commits: impl Fn() -> u64 + Send + 'static) -> Result<Self> {
        let conn = Connection::open(file)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("groksweep-checkpoint".to_string())
            .spawn(move || checkpoint_while_committing(&conn, &stopped, &commits))
            .map_err(|error| CoordinatorError::Internal(format!("cannot start the checkpoint thread: {error}")))?;
        Ok(Checkpointer { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // A closed channel ends the thread's wait at once.
        self.stop.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            error!("the checkpoint thread panicked");
        }
    }
}

fn checkpoint_while_committing(conn: &Connection, stopped: &mpsc::Receiver<()>, commits: &dyn Fn() -> u64) {
    let mut seen = commits();
    let mut failing = false;
    loop {
        match stopped.recv_timeout(CHECKPOINT_EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = commits();
        if now == seen {
            continue;
        }
        seen = now;
        let started = Instant::now();
        match checkpoint(conn) {
            Ok((frames, copied)) => {
                if failing {
                    info!("WAL checkpoints work again");
                    failing = false;
                }
                let seconds = started.elapsed().as_secs_f64();
                crate::telemetry::checkpoint_took(seconds);
                debug!(frames, copied, ms = seconds * 1e3, "WAL checkpoint");
            }
            // Logged once per streak: it is tried again every period, and
            // the store's own checkpoint takes over at its mark meanwhile.
            Err(error) if !failing => {
                warn!(%error, "a WAL checkpoint failed; the store's commits will checkpoint at their mark");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// One PASSIVE checkpoint: (frames in the log, frames copied back so far).
fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    // The row is (busy, log, checkpointed); busy (another checkpoint under
    // way, or a reader keeping the log) leaves the rest for the next period.
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| Ok((row.get(1)?, row.get(2)?)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    const PAGE: u64 = 4096;

    /// The log is copied back once commits are counted (not before), and a
    /// dropped checkpointer has closed its connection: the writer's close is
    /// then the last, which checkpoints and removes the log.
    #[test]
    fn commits_are_copied_back_and_a_dropped_checkpointer_lets_go_of_the_database() {
        let data = tempfile::tempdir().expect("tempdir");
        let file = data.path().join("store.sqlite");
        let writer = Connection::open(&file).expect("open");
        writer.pragma_update(None, "journal_mode", "WAL").expect("wal");
        writer.pragma_update(None, "wal_autocheckpoint", 0).expect("no automatic checkpoint");
        writer.execute_batch("CREATE TABLE t (x BLOB)").expect("table");
        for _ in 0..100 {
            writer.execute("INSERT INTO t VALUES (zeroblob(4000))", []).expect("insert");
        }
        let pages_in_database = || std::fs::metadata(&file).expect("database file").len() / PAGE;
        let before = pages_in_database();
        assert!(before < 10, "the rows are in the log, not yet in the database ({before} pages)");

        let commits = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&commits);
        let checkpointer = Checkpointer::start(&file, move || counted.load(Ordering::Relaxed)).expect("start");
        std::thread::sleep(4 * CHECKPOINT_EVERY);
        assert_eq!(pages_in_database(), before, "no commit counted, no checkpoint");

        commits.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(10);
        while pages_in_database() < 100 && Instant::now() < deadline {
            std::thread::sleep(CHECKPOINT_EVERY);
        }
        assert!(pages_in_database() >= 100, "copied back: {} pages", pages_in_database());

        drop(checkpointer);
        drop(writer);
        let log = data.path().join("store.sqlite-wal");
        assert!(!log.exists(), "the last connection's close removes the log; another is still open");
    }
}
