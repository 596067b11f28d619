//! The one training loop, for every family and every pack size (a single
//! trial is a pack of one). Per trial it owns the eval and checkpoint
//! cadence (step 0, every `eval_every` / `checkpoint_every` steps and the
//! last step), the stop rules and grokked-at, cancellation, its sink and its
//! final metrics; the family only trains, evaluates and checkpoints. A trial
//! without test pairs reports no test-side measures (whichever family it is).
//!
//! A trial that finishes, stops early, fails or is cancelled leaves the pack
//! at once: its parameters and optimiser state leave the stack, and the
//! others carry on unchanged.

use std::path::Path;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use rayon::prelude::*;
use sweep_core::{FinalMetrics, TrialLease};
use tracing::{debug, info, warn};

use crate::family::{Evaluation, FamilyContext, FamilyError, LocalCheckpoints, PackFamily};
use crate::optim::learning_rate;
use crate::sink::{MeasureSink, SinkError, TrialError, TrialOutcome};
use crate::stopping::StopTracker;

/// One trial of the pack as the runner follows it.
struct Member<'a> {
    lease: TrialLease,
    sink: &'a mut dyn MeasureSink,
    tracker: StopTracker,
    checkpoints: LocalCheckpoints,
    started: Instant,
}

impl Member<'_> {
    fn evaluate_at(&self, step: u64) -> bool {
        step.is_multiple_of(self.lease.training.eval_every.max(1) as u64) || step == self.lease.stop.max_epochs as u64
    }

    fn checkpoint_at(&self, step: u64) -> bool {
        let every = self.lease.training.checkpoint_every as u64;
        every > 0 && step.is_multiple_of(every)
    }

    fn metrics(&self, step: u64, last: &Evaluation) -> FinalMetrics {
        FinalMetrics {
            epochs: step as i64,
            train_loss: last.train_loss,
            test_loss: last.test_loss,
            train_accuracy: last.train_accuracy,
            test_accuracy: last.test_accuracy,
            grokked_at: self.tracker.grokked_at(),
            wall_seconds: self.started.elapsed().as_secs_f64(),
            key_frequencies: last.key_frequencies.clone(),
            judge_accuracy: last.judge_accuracy,
        }
    }
}

/// A trial without test pairs (data fraction 1) has nothing to report on
/// the test side: its test-side measures are left out and its test loss and
/// accuracy are undefined (NaN), whatever the family computed over no pairs.
fn leave_out_test_side(evaluation: &mut Evaluation, family: sweep_core::Family) {
    evaluation.measures.retain(|measure| !sweep_core::checks::is_test_side(family, &measure.name));
    evaluation.test_loss = f64::NAN;
    evaluation.test_accuracy = f64::NAN;
}

fn outcome_of(error: FamilyError) -> TrialOutcome {
    match error {
        FamilyError::Sink(SinkError::Cancelled) => TrialOutcome::Cancelled,
        error => TrialOutcome::Failed(TrialError::Family(error)),
    }
}

/// The evaluations of the members `due`, in that order, side by side on
/// rayon's threads (one per core; the pool burn-flex's kernels already run
/// on, so an evaluation's own tensor work shares it rather than adding
/// threads): most of a member's evaluation is host arithmetic in f64 (its
/// Fourier analysis, singular values and losses), which a GPU pack of 32
/// would otherwise do one member after another while the device waits. A
/// panic in one is raised again here, as if it had happened on the pack's
/// own thread.
fn evaluate_members<B: AutodiffBackend, F: PackFamily<B> + Sync>(family: &F, due: &[usize]) -> Vec<Evaluation> {
    due.par_iter().map(|&index| family.evaluate(index)).collect()
}

/// What one member does at `step` before the pack trains: record its
/// evaluation (`Some` exactly when one is due), checkpoint, and finish when
/// its budget or its stop rule says so. `Some(outcome)` when it leaves the
/// pack now.
fn visit<B: AutodiffBackend, F: PackFamily<B>>(
    family: &F,
    index: usize,
    member: &mut Member<'_>,
    step: u64,
    evaluation: Option<Evaluation>,
) -> Option<TrialOutcome> {
    if member.sink.cancelled() {
        return Some(TrialOutcome::Cancelled);
    }
    let result = (|| -> Result<Option<FinalMetrics>, FamilyError> {
        let mut finishing = None;
        if let Some(mut evaluation) = evaluation {
            if !member.lease.params.has_test_pairs() {
                leave_out_test_side(&mut evaluation, member.lease.params.family);
            }
            let stopped_early = member.tracker.observe(step as i64, evaluation.test_accuracy, &member.lease.stop);
            member.sink.record(step as i64, evaluation.measures.clone())?;
            if step == member.lease.stop.max_epochs as u64 || stopped_early {
                finishing = Some(evaluation);
            }
        }
        if (finishing.is_some() || member.checkpoint_at(step))
            && let Some(bytes) = family.checkpoint(index, step as i64)?
        {
            member.checkpoints.add(step as i64, &bytes)?;
            member.sink.checkpoint(step as i64, bytes)?;
        }
        let Some(last) = finishing else { return Ok(None) };
        family.record_final(index, &last, &member.checkpoints, &mut *member.sink)?;
        Ok(Some(member.metrics(step, &last)))
    })();
    match result {
        Ok(Some(metrics)) => Some(TrialOutcome::Done(metrics)),
        Ok(None) => None,
        Err(error) => Some(outcome_of(error)),
    }
}

/// Train `leases` as one pack of family `F`, each trial reporting to its own
/// sink (`sinks[k]` for `leases[k]`), until every trial has left the pack.
/// Trials the family cannot prepare fail at once; the rest train together.
/// `scratch` holds each trial's checkpoints while it trains.
pub fn run_pack<B: AutodiffBackend, F: PackFamily<B> + Sync>(
    leases: Vec<TrialLease>,
    sinks: Vec<&mut dyn MeasureSink>,
    context: &FamilyContext,
    scratch: &Path,
    device: &B::Device,
) {
    assert_eq!(leases.len(), sinks.len(), "one sink per trial");
    let mut members = Vec::with_capacity(leases.len());
    let mut prepared = Vec::with_capacity(leases.len());
    for (lease, sink) in leases.into_iter().zip(sinks) {
        let label = format!("{}-a{}", lease.lease.trial_id, lease.lease.attempt);
        let ready = F::prepare(&lease, context, device).and_then(|member| Ok((member, LocalCheckpoints::create(scratch, &label)?)));
        match ready {
            Ok((member, checkpoints)) => {
                prepared.push(member);
                members.push(Member { lease, sink, tracker: StopTracker::default(), checkpoints, started: Instant::now() });
            }
            Err(error) => {
                warn!(trial = %lease.lease.trial_id, attempt = lease.lease.attempt, %error, "trial cannot start");
                sink.finish(TrialOutcome::Failed(TrialError::Family(error)));
            }
        }
    }
    if members.is_empty() {
        return;
    }
    info!(family = F::NAME, trials = members.len(), "pack starts");
    let mut family = F::stack(prepared, context, device);
    let mut step = 0u64;
    loop {
        let due: Vec<usize> =
            (0..members.len()).filter(|&index| members[index].evaluate_at(step) && !members[index].sink.cancelled()).collect();
        let mut evaluations = due.iter().copied().zip(evaluate_members(&family, &due)).peekable();
        let mut leaving = Vec::new();
        for (index, member) in members.iter_mut().enumerate() {
            let evaluation = evaluations.next_if(|(due_index, _)| *due_index == index).map(|(_, evaluation)| evaluation);
            if let Some(outcome) = visit(&family, index, member, step, evaluation) {
                leaving.push((index, outcome));
            }
        }
        if !leaving.is_empty() {
            let keep: Vec<usize> = (0..members.len()).filter(|index| !leaving.iter().any(|(gone, _)| gone == index)).collect();
            if !keep.is_empty() {
                family.keep(&keep);
            }
            for (index, outcome) in leaving.into_iter().rev() {
                let member = members.remove(index);
                debug!(trial = %member.lease.lease.trial_id, step, outcome = outcome.name(), "trial leaves the pack");
                member.sink.finish(outcome);
            }
        }
        if members.is_empty() {
            return;
        }
        let learning_rates: Vec<f64> =
            members.iter().map(|member| learning_rate(member.lease.learning_rate(), member.lease.training.warmup_steps, step)).collect();
        family.step(&learning_rates);
        crate::telemetry::trained(members.len());
        step += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use sweep_core::{Family, FamilySettings, LeaseRef, Measure, StopRule, TrainingSettings, TransformerSettings, TrialId, TrialParams};

    use super::*;
    use crate::backend::TestAutodiffBackend;
    use crate::sink::CollectingSink;

    type Device = <TestAutodiffBackend as burn::tensor::backend::BackendTypes>::Device;

    /// Each member's measure "member" is its original position in the pack,
    /// so a member's sink shows whose evaluation it was given.
    const MEMBER: &str = "member";

    /// A family that trains nothing: it evaluates each member as its
    /// original position, and can wait for a second evaluation to run beside
    /// the first or panic on one member.
    struct Fake {
        members: Vec<usize>,
        /// Evaluations under way now.
        running: Mutex<usize>,
        wait_for_company: bool,
        panic_on: Option<usize>,
    }

    impl Fake {
        fn new(wait_for_company: bool, panic_on: Option<usize>) -> Self {
            Fake { members: Vec::new(), running: Mutex::new(0), wait_for_company, panic_on }
        }
    }

    impl PackFamily<TestAutodiffBackend> for Fake {
        type Member = usize;
        const NAME: &'static str = "fake";

        fn prepare(lease: &TrialLease, _: &FamilyContext, _: &Device) -> Result<usize, FamilyError> {
            Ok(lease.params.seed as usize)
        }

        fn stack(members: Vec<usize>, _: &FamilyContext, _: &Device) -> Self {
            let mut fake = FAKE_SETTINGS.with(|settings| {
                let (wait_for_company, panic_on) = settings.get();
                Fake::new(wait_for_company, panic_on)
            });
            fake.members = members;
            fake
        }

        fn step(&mut self, _: &[f64]) {}

        fn evaluate(&self, index: usize) -> Evaluation {
            let member = self.members[index];
            assert_ne!(Some(member), self.panic_on, "member {member} cannot be evaluated");
            *self.running.lock().expect("counter") += 1;
            if self.wait_for_company {
                // Wait (a while, not for ever) for another evaluation to start beside this one.
                for _ in 0..500 {
                    if OVERLAPPED.load(Ordering::Relaxed) || *self.running.lock().expect("counter") > 1 {
                        OVERLAPPED.store(true, Ordering::Relaxed);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            *self.running.lock().expect("counter") -= 1;
            Evaluation {
                train_loss: 0.0,
                test_loss: 0.0,
                train_accuracy: 1.0,
                test_accuracy: 0.0,
                key_frequencies: Vec::new(),
                judge_accuracy: None,
                measures: vec![Measure::scalar(MEMBER, member as f64)],
            }
        }

        fn checkpoint(&self, _: usize, _: i64) -> Result<Option<Vec<u8>>, FamilyError> {
            Ok(None)
        }

        fn record_final(&self, _: usize, _: &Evaluation, _: &LocalCheckpoints, _: &mut dyn MeasureSink) -> Result<(), FamilyError> {
            Ok(())
        }

        fn keep(&mut self, keep: &[usize]) {
            crate::stack::keep_items(&mut self.members, keep);
        }
    }

    thread_local! {
        /// (wait_for_company, panic_on) of the next `Fake::stack` on this thread.
        static FAKE_SETTINGS: std::cell::Cell<(bool, Option<usize>)> = const { std::cell::Cell::new((false, None)) };
    }

    /// Whether an evaluation that waited for company found it (only one test waits).
    static OVERLAPPED: AtomicBool = AtomicBool::new(false);

    fn lease(member: u64, eval_every: u32, max_epochs: u32) -> TrialLease {
        TrialLease {
            lease: LeaseRef { trial_id: TrialId::from_raw(format!("m{member}")), attempt: 1, token: 1 },
            sweep: "fake".into(),
            params: TrialParams::new(Family::Transformer, 11, 0.5, 1.0, member, member, None),
            training: TrainingSettings { eval_every, checkpoint_every: 0, ..TrainingSettings::default() },
            stop: StopRule { max_epochs, target_test_accuracy: None, patience: 1 },
            family: FamilySettings::Transformer(TransformerSettings { d_model: 8, n_heads: 1, d_mlp: 8 }),
            deadline_ms: 0,
        }
    }

    fn run(leases: Vec<TrialLease>, wait_for_company: bool, panic_on: Option<usize>) -> Vec<CollectingSink> {
        FAKE_SETTINGS.with(|settings| settings.set((wait_for_company, panic_on)));
        let scratch = tempfile::tempdir().expect("scratch");
        let context = FamilyContext::new(std::env::temp_dir());
        let mut sinks: Vec<CollectingSink> = leases.iter().map(|_| CollectingSink::default()).collect();
        let borrowed: Vec<&mut dyn MeasureSink> = sinks.iter_mut().map(|sink| sink as &mut dyn MeasureSink).collect();
        run_pack::<TestAutodiffBackend, Fake>(leases, borrowed, &context, scratch.path(), &Default::default());
        sinks
    }

    #[test]
    fn each_member_records_its_own_evaluations_at_its_own_steps() {
        // Members due at different steps, and leaving at different steps, so
        // the due members are a changing subset of a shrinking pack.
        let sinks = run(vec![lease(0, 2, 12), lease(1, 3, 7), lease(2, 1, 5), lease(3, 5, 12)], false, None);
        let expected_steps: [Vec<i64>; 4] = [(0..=12).step_by(2).collect(), vec![0, 3, 6, 7], (0..=5).collect(), vec![0, 5, 10, 12]];
        for (member, (sink, steps)) in sinks.iter().zip(expected_steps).enumerate() {
            assert_eq!(sink.steps_of(MEMBER), steps, "member {member}");
            for step in steps {
                assert_eq!(sink.value(step, MEMBER), Some(member as f64), "member {member} at step {step}");
            }
            assert!(sink.metrics().is_some(), "member {member} finished");
        }
    }

    #[test]
    fn due_members_are_evaluated_side_by_side() {
        if rayon::current_num_threads() < 2 {
            eprintln!("one thread in rayon's pool: evaluations run one after another, nothing to check");
            return;
        }
        // Each evaluation waits up to 5 s for another to start beside it; one
        // after another, none would ever find company.
        let sinks = run(vec![lease(0, 1, 1), lease(1, 1, 1)], true, None);
        assert!(sinks.iter().all(|sink| sink.metrics().is_some()));
        assert!(OVERLAPPED.load(Ordering::Relaxed), "two evaluations ran at once");
    }

    #[test]
    fn a_panic_in_one_evaluation_reaches_the_pack_thread() {
        let caught = std::panic::catch_unwind(|| run(vec![lease(0, 1, 3), lease(1, 1, 3), lease(2, 1, 3)], false, Some(1)));
        let panic = caught.expect_err("the panic was raised again");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("member 1 cannot be evaluated"), "{message}");
    }
}
