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

/// What one member does at `step` before the pack trains: evaluate,
/// checkpoint, and finish when its budget or its stop rule says so.
/// `Some(outcome)` when it leaves the pack now.
fn visit<B: AutodiffBackend, F: PackFamily<B>>(family: &F, index: usize, member: &mut Member<'_>, step: u64) -> Option<TrialOutcome> {
    if member.sink.cancelled() {
        return Some(TrialOutcome::Cancelled);
    }
    let result = (|| -> Result<Option<FinalMetrics>, FamilyError> {
        let mut finishing = None;
        if member.evaluate_at(step) {
            let mut evaluation = family.evaluate(index);
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
pub fn run_pack<B: AutodiffBackend, F: PackFamily<B>>(
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
    let mut family = F::stack(prepared, device);
    let mut step = 0u64;
    loop {
        let mut leaving = Vec::new();
        for (index, member) in members.iter_mut().enumerate() {
            if let Some(outcome) = visit(&family, index, member, step) {
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
