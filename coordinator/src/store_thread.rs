//! The store's own thread, with group commit.
//!
//! Every operation on the [`Store`] is sent to one thread that owns it. The
//! thread takes the operations that have arrived, up to [`MAX_BATCH`], runs
//! them one after the other inside one SQLite transaction (each in its own
//! savepoint, so one that fails undoes only its own changes), commits once,
//! and only then answers each caller: an answer is never sent for a change
//! that is not yet durable. Under load many calls share one commit (one WAL
//! append for the pages they touch) instead of paying one each; an idle
//! coordinator still commits each call at once, since nothing waits to fill
//! a batch. The store's write-ahead log is copied back into its database by
//! a thread of its own (`checkpointer`), not by these commits.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use tracing::{error, warn};

use crate::checkpointer::Checkpointer;
use crate::error::{CoordinatorError, Result};
use crate::store::Store;

/// Most operations committed in one transaction.
pub(crate) const MAX_BATCH: usize = 512;

/// An operation's answer, sent once its batch is committed (or has failed).
type Answer = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
/// An operation on the store; it returns how to answer its caller.
type Job = Box<dyn FnOnce(&mut Store) -> Answer + Send>;

/// The handle on the store's thread; dropping it lets the thread finish the
/// operations already sent and waits for it, so the database is closed.
#[derive(Debug)]
pub(crate) struct StoreThread {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    counts: Arc<Counts>,
    /// For a store in a file.
    checkpointer: Option<Checkpointer>,
}

/// Transactions committed and operations run, since the thread started.
#[derive(Debug, Default)]
struct Counts {
    commits: AtomicU64,
    operations: AtomicU64,
}

impl StoreThread {
    /// Start the thread that owns `store`, and the one that checkpoints it.
    pub(crate) fn start(store: Store) -> Result<Self> {
        let (jobs, received) = mpsc::channel::<Job>();
        let counts = Arc::new(Counts::default());
        let checkpointer = match store.file() {
            Some(file) => {
                let counted = Arc::clone(&counts);
                Some(Checkpointer::start(file, move || counted.commits.load(Ordering::Relaxed))?)
            }
            None => None,
        };
        let counted = Arc::clone(&counts);
        let thread = std::thread::Builder::new()
            .name("groksweep-store".to_string())
            .spawn(move || serve(store, received, &counted))
            .map_err(|error| CoordinatorError::Internal(format!("cannot start the store's thread: {error}")))?;
        Ok(StoreThread { jobs: Some(jobs), thread: Some(thread), counts, checkpointer })
    }

    /// (transactions committed, operations run in them) so far.
    pub(crate) fn commits(&self) -> (u64, u64) {
        (self.counts.commits.load(Ordering::Relaxed), self.counts.operations.load(Ordering::Relaxed))
    }

    /// Run `operation` on the store; resolves once its batch is committed.
    pub(crate) async fn run<T: Send + 'static>(&self, operation: impl FnOnce(&mut Store) -> Result<T> + Send + 'static) -> Result<T> {
        let (answer, answered) = tokio::sync::oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |store: &mut Store| {
            let result = operation(store);
            Box::new(move |committed: std::result::Result<(), String>| {
                let result = match committed {
                    Ok(()) => result,
                    Err(why) => Err(CoordinatorError::Internal(format!("the store's transaction did not commit: {why}"))),
                };
                // The caller may have gone (its request was cancelled): nothing to tell.
                let _ = answer.send(result);
            })
        });
        let stopped = || CoordinatorError::Internal("the store's thread has stopped".to_string());
        self.jobs.as_ref().ok_or_else(stopped)?.send(job).map_err(|_| stopped())?;
        answered.await.map_err(|_| CoordinatorError::Internal("a store operation panicked; see the log".to_string()))?
    }
}

impl Drop for StoreThread {
    fn drop(&mut self) {
        // First, so that the store's connection is the last to close (the
        // commits still to come checkpoint at the store's own mark).
        self.checkpointer.take();
        // Closing the channel ends the thread once it has run what was sent.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() == std::thread::current().id() {
                return;
            }
            if thread.join().is_err() {
                error!("the store's thread panicked");
            }
        }
    }
}

/// The thread's loop: batches of the operations waiting, one transaction each.
fn serve(mut store: Store, jobs: mpsc::Receiver<Job>, counts: &Counts) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let began = store.begin_batch();
        counts.commits.fetch_add(1, Ordering::Relaxed);
        counts.operations.fetch_add(batch.len() as u64, Ordering::Relaxed);
        crate::telemetry::store_committed(batch.len());
        let mut answers = Vec::with_capacity(batch.len());
        for job in batch {
            // A panicking operation's savepoint is rolled back as it unwinds;
            // its caller hears that it failed, and the others go on.
            match catch_unwind(AssertUnwindSafe(|| job(&mut store))) {
                Ok(answer) => answers.push(answer),
                Err(_) => error!("a store operation panicked; its changes were rolled back"),
            }
        }
        let committed = match began {
            // Without the batch's transaction each operation committed its own savepoint.
            Err(error) => {
                warn!(%error, "could not begin a batch transaction; its operations committed one by one");
                Ok(())
            }
            Ok(()) => store.end_batch().map_err(|error| {
                error!(%error, operations = answers.len(), "a batch of store operations did not commit");
                error.to_string()
            }),
        };
        for answer in answers {
            answer(committed.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::SystemClock;

    fn thread_with_a_sweep(seeds: usize) -> (tempfile::TempDir, StoreThread) {
        let data = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&data.path().join("coordinator.sqlite"), Arc::new(SystemClock)).expect("store");
        let (spec, yaml, trials) = crate::store::tests::seed_grid("batched", seeds);
        store.submit(&spec, &yaml, &trials).expect("submit");
        (data, StoreThread::start(store).expect("thread"))
    }

    /// Many concurrent leases end up in shared batches and each trial is
    /// leased exactly once; an operation that fails in the middle of a batch
    /// leaves the others' changes in place.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_operations_share_batches_and_a_failing_one_undoes_only_itself() {
        let (data, thread) = thread_with_a_sweep(64);
        let thread = Arc::new(thread);
        let worker = thread.run(|store| store.register_worker("w", "none", 1, None)).await.expect("register");
        // Hold the thread until the calls below are waiting, so that they share batches.
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (holds, held) = std::sync::mpsc::channel::<()>();
        let holding = {
            let thread = Arc::clone(&thread);
            tokio::spawn(async move {
                thread
                    .run(move |_store| {
                        let _ = holds.send(());
                        Ok(released.recv())
                    })
                    .await
            })
        };
        // The holding operation's batch is counted before it runs.
        tokio::task::spawn_blocking(move || held.recv()).await.expect("joined").expect("the thread holds");
        let before = thread.commits();
        let mut calls = Vec::new();
        for index in 0..80 {
            let (thread, worker) = (Arc::clone(&thread), worker.clone());
            calls.push(tokio::spawn(async move {
                if index % 10 == 5 {
                    // Unknown worker: refused, and its savepoint rolled back.
                    thread.run(|store| store.lease("w-nobody", 1, 1, 10_000)).await.map(|_| Vec::new())
                } else {
                    thread.run(move |store| store.lease(&worker, 1, 1, 10_000)).await
                }
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        release.send(()).expect("the holding operation waits");
        holding.await.expect("joined").expect("held").expect("released");
        let (mut leased, mut refused) = (Vec::new(), 0);
        for call in calls {
            match call.await.expect("joined") {
                Ok(packs) => leased.extend(packs.into_iter().flatten().map(|lease| lease.lease.trial_id.to_string())),
                Err(CoordinatorError::UnknownWorker(_)) => refused += 1,
                Err(other) => panic!("unexpected error {other}"),
            }
        }
        assert_eq!(refused, 8);
        let mut unique = leased.clone();
        unique.sort();
        unique.dedup();
        assert_eq!((leased.len(), unique.len()), (64, 64), "each of the 64 trials leased once");
        let (commits, operations) = thread.commits();
        let (commits, operations) = (commits - before.0, operations - before.1);
        assert_eq!(operations, 80, "the 80 calls, after the holding operation");
        assert!(commits <= 10, "80 operations in {commits} transactions: they were not batched");
        // Durable: a fresh store on the same file sees every lease.
        drop(thread);
        let store = Store::open(&data.path().join("coordinator.sqlite"), Arc::new(SystemClock)).expect("reopen");
        assert_eq!(store.open_trials(None).expect("counts"), (0, 64));
    }

    /// A store in a file is checkpointed by a thread of its own; one in
    /// memory has no log to checkpoint.
    #[test]
    fn a_store_in_a_file_gets_a_checkpointer_and_one_in_memory_none() {
        let (_data, in_a_file) = thread_with_a_sweep(1);
        assert!(in_a_file.checkpointer.is_some());
        let in_memory = StoreThread::start(Store::open_in_memory(Arc::new(SystemClock)).expect("store")).expect("thread");
        assert!(in_memory.checkpointer.is_none());
    }

    #[tokio::test]
    async fn a_panicking_operation_is_reported_and_the_thread_goes_on() {
        let (_data, thread) = thread_with_a_sweep(2);
        let panicked = thread.run(|_store| -> Result<()> { panic!("on purpose") }).await;
        assert!(matches!(panicked, Err(CoordinatorError::Internal(ref why)) if why.contains("panicked")), "{panicked:?}");
        let counts = thread.run(|store| store.open_trials(None)).await.expect("still serving");
        assert_eq!(counts, (2, 0));
    }
}
