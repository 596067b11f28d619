//! The lease state machine under a manual clock: grant, renew, expiry,
//! re-queue, max attempts, stale fencing tokens, idempotent progress.

use super::*;
use crate::clock::ManualClock;
use sweep_core::{expand, parse_spec};

const TTL: Millis = 10_000;

fn spec(max_attempts: u32) -> (SweepSpec, Vec<TrialSpec>) {
    let text = format!(
        "version: 1\nname: lease-test\nfamilies: transformer\naxes:\n  modulus: 7\n  data_fraction: 0.5\n  weight_decay: 1\n  seed: [0, 1]\nretry:\n  max_attempts: {max_attempts}\n"
    );
    let spec = parse_spec("t.yaml", &text).expect("valid");
    let trials = expand(&spec);
    (spec, trials)
}

fn store_with(max_attempts: u32) -> (Store, ManualClock, String) {
    let clock = ManualClock::new(1_000_000);
    let mut store = Store::open_in_memory(Arc::new(clock.clone())).expect("store");
    let (spec, trials) = spec(max_attempts);
    store.submit(&spec, "", &trials).expect("submit");
    let worker = store.register_worker("w", "flex", 1, None).expect("register");
    (store, clock, worker)
}

fn status_of(store: &Store, trial: &TrialId) -> TrialView {
    store.trials_of("lease-test").expect("trials").into_iter().find(|t| &t.trial_id == trial).expect("trial exists")
}

fn row(step: i64, measure: &str, value: f64) -> ProgressRow {
    ProgressRow { step, measure: measure.to_string(), value, wall_time_ms: step }
}

#[test]
fn resubmitting_is_idempotent_and_settings_changes_are_refused() {
    let (mut store, _clock, _) = store_with(3);
    let (spec, trials) = spec(3);
    let outcome = store.submit(&spec, "", &trials).expect("resubmit");
    assert_eq!((outcome.total, outcome.added), (2, 0));
    let mut changed = spec.clone();
    changed.training.lr = 0.5;
    assert!(matches!(store.submit(&changed, "", &trials), Err(CoordinatorError::SweepConflict { .. })));
}

#[test]
fn lease_grants_each_trial_once_with_increasing_tokens() {
    let (mut store, _clock, worker) = store_with(3);
    let first = store.lease(&worker, 1, TTL).expect("lease");
    let second = store.lease(&worker, 5, TTL).expect("lease");
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_ne!(first[0].lease.trial_id, second[0].lease.trial_id);
    assert!(second[0].lease.token > first[0].lease.token);
    assert!(store.lease(&worker, 5, TTL).expect("lease").is_empty());
    assert_eq!(status_of(&store, &first[0].lease.trial_id).status, TrialStatus::Running);
}

#[test]
fn unknown_worker_is_refused() {
    let (mut store, _clock, _) = store_with(3);
    assert!(matches!(store.lease("nobody", 1, TTL), Err(CoordinatorError::UnknownWorker(_))));
}

#[test]
fn heartbeats_keep_a_lease_alive_and_silence_lets_it_lapse() {
    let (mut store, clock, worker) = store_with(3);
    let grant = store.lease(&worker, 1, TTL).expect("lease").remove(0);
    for _ in 0..5 {
        clock.advance(TTL / 2);
        assert!(store.heartbeat(&worker, &[grant.lease.clone()], TTL).expect("heartbeat").is_empty());
        assert!(store.expire_leases().expect("expire").is_empty());
    }
    clock.advance(TTL + 1);
    let expired = store.expire_leases().expect("expire");
    assert_eq!(expired, vec![(grant.lease.clone(), TrialStatus::Queued)]);
    let view = status_of(&store, &grant.lease.trial_id);
    assert_eq!((view.status, view.attempt, view.failures), (TrialStatus::Queued, 1, 1));
    // The lapsed lease is revoked at the next heartbeat, and refused elsewhere.
    let revoked = store.heartbeat(&worker, &[grant.lease.clone()], TTL).expect("heartbeat");
    assert_eq!(revoked.len(), 1);
    assert!(revoked[0].reason.contains("lapsed"), "{}", revoked[0].reason);
    assert!(matches!(store.complete(&grant.lease, &FinalMetrics::default()), Err(CoordinatorError::StaleLease { .. })));
}

#[test]
fn requeued_trial_gets_a_new_attempt_and_the_old_token_is_stale() {
    let (mut store, clock, worker) = store_with(3);
    let first = store.lease(&worker, 1, TTL).expect("lease").remove(0);
    clock.advance(TTL + 1);
    store.expire_leases().expect("expire");
    let mut again = store.lease(&worker, 2, TTL).expect("lease");
    let retry = again.iter().position(|g| g.lease.trial_id == first.lease.trial_id).expect("re-queued trial is leased again");
    let retry = again.remove(retry);
    assert_eq!(retry.lease.attempt, 2);
    assert!(retry.lease.token > first.lease.token);
    let stale = store.record_progress(&first.lease, &[row(1, "train_loss", 1.0)], TTL);
    assert!(matches!(stale, Err(CoordinatorError::StaleLease { .. })));
    let forged = LeaseRef { token: first.lease.token, ..retry.lease.clone() };
    assert!(matches!(store.complete(&forged, &FinalMetrics::default()), Err(CoordinatorError::StaleLease { .. })));
    store.complete(&retry.lease, &FinalMetrics { epochs: 5, ..FinalMetrics::default() }).expect("complete");
    assert_eq!(status_of(&store, &retry.lease.trial_id).status, TrialStatus::Done);
    // The lapsed attempt's progress is queued for removal from the results.
    let superseded = store.superseded().expect("superseded");
    assert_eq!(superseded.len(), 1);
    assert_eq!((superseded[0].trial_id.clone(), superseded[0].attempt), (first.lease.trial_id, 1));
}

#[test]
fn trial_fails_after_max_attempts() {
    let (mut store, clock, worker) = store_with(2);
    let trial = store.lease(&worker, 1, TTL).expect("lease")[0].lease.trial_id.clone();
    clock.advance(TTL + 1);
    store.expire_leases().expect("expire");
    let mut leased = store.lease(&worker, 2, TTL).expect("lease");
    leased.retain(|g| g.lease.trial_id == trial);
    let status = store.fail(&leased[0].lease, "out of memory", false).expect("fail");
    assert_eq!(status, TrialStatus::Failed);
    let view = status_of(&store, &trial);
    assert_eq!((view.status, view.failures), (TrialStatus::Failed, 2));
    assert!(view.error.expect("error recorded").contains("out of memory"));
}

#[test]
fn release_requeues_without_counting_a_failure() {
    let (mut store, _clock, worker) = store_with(1);
    let grant = store.lease(&worker, 1, TTL).expect("lease").remove(0);
    assert_eq!(store.fail(&grant.lease, "worker shutting down", true).expect("release"), TrialStatus::Queued);
    assert_eq!(status_of(&store, &grant.lease.trial_id).failures, 0);
}

#[test]
fn progress_is_idempotent_and_flushed_steps_are_not_buffered_again() {
    let (mut store, _clock, worker) = store_with(3);
    let grant = store.lease(&worker, 1, TTL).expect("lease").remove(0);
    let batch = vec![row(10, "train_loss", 0.5), row(10, "test_accuracy", 0.25)];
    assert_eq!(store.record_progress(&grant.lease, &batch, TTL).expect("progress"), 2);
    assert_eq!(store.record_progress(&grant.lease, &batch, TTL).expect("resend"), 0);
    let buffered = store.buffered_attempts().expect("buffered");
    assert_eq!(buffered.len(), 1);
    assert_eq!(buffered[0].rows.len(), 2);
    store.mark_flushed(&grant.lease.trial_id, 1, buffered[0].last_row_id).expect("flushed");
    assert_eq!(store.record_progress(&grant.lease, &batch, TTL).expect("resend after flush"), 0);
    assert_eq!(store.record_progress(&grant.lease, &[row(20, "train_loss", 0.1)], TTL).expect("new step"), 1);
    let view = status_of(&store, &grant.lease.trial_id);
    assert_eq!((view.last_epoch, view.last_test_accuracy), (Some(20), Some(0.25)));
}

#[test]
fn a_new_measure_may_arrive_at_steps_already_flushed_for_others() {
    let (mut store, _clock, worker) = store_with(3);
    let grant = store.lease(&worker, 1, TTL).expect("lease").remove(0);
    let evals = vec![row(0, "train_loss", 2.0), row(100, "train_loss", 0.5), row(200, "train_loss", 0.1)];
    assert_eq!(store.record_progress(&grant.lease, &evals, TTL).expect("progress"), 3);
    let buffered = store.buffered_attempts().expect("buffered");
    store.mark_flushed(&grant.lease.trial_id, 1, buffered[0].last_row_id).expect("flushed");
    // After training, the final-K losses come for the earlier checkpoint steps.
    let final_k =
        vec![row(0, "excluded_loss_final_k", 4.0), row(100, "excluded_loss_final_k", 3.0), row(200, "excluded_loss_final_k", 5.0)];
    assert_eq!(store.record_progress(&grant.lease, &final_k, TTL).expect("final-K rows"), 3);
    let buffered = store.buffered_attempts().expect("buffered");
    assert_eq!(buffered[0].rows.iter().map(|r| r.step).collect::<Vec<_>>(), vec![0, 100, 200]);
    store.mark_flushed(&grant.lease.trial_id, 1, buffered[0].last_row_id).expect("flushed");
    // Re-sent after their flush, both kinds are repeats.
    assert_eq!(store.record_progress(&grant.lease, &final_k, TTL).expect("resend"), 0);
    assert_eq!(store.record_progress(&grant.lease, &evals, TTL).expect("resend"), 0);
    assert!(store.buffered_attempts().expect("buffered").is_empty());
}

#[test]
fn checkpoints_of_a_live_lease_are_recorded_and_a_stale_one_is_refused() {
    let (mut store, clock, worker) = store_with(3);
    let grant = store.lease(&worker, 1, TTL).expect("lease").remove(0);
    assert_eq!(store.checkpoint_target(&grant.lease, TTL).expect("live"), "lease-test");
    store.record_checkpoint(&grant.lease, 0, "checkpoints/t/a1/step-00000000.safetensors").expect("recorded");
    store.record_checkpoint(&grant.lease, 100, "checkpoints/t/a1/step-00000100.safetensors").expect("recorded");
    let view = status_of(&store, &grant.lease.trial_id);
    assert_eq!(view.final_checkpoint.as_deref(), Some("checkpoints/t/a1/step-00000100.safetensors"));
    clock.advance(TTL + 1);
    store.expire_leases().expect("expiry");
    assert!(matches!(store.checkpoint_target(&grant.lease, TTL), Err(CoordinatorError::StaleLease { .. })));
    // The flush moves the lapsed attempt's files aside and forgets them.
    for attempt in store.superseded().expect("superseded") {
        store.forget_superseded(&attempt).expect("forgotten");
    }
    assert_eq!(status_of(&store, &grant.lease.trial_id).final_checkpoint, None, "the lapsed attempt's checkpoints left the results");
}

#[test]
fn cancel_revokes_running_leases() {
    let (mut store, _clock, worker) = store_with(3);
    let grant = store.lease(&worker, 1, TTL).expect("lease").remove(0);
    assert_eq!(store.cancel("lease-test").expect("cancel"), 2);
    let revoked = store.heartbeat(&worker, &[grant.lease.clone()], TTL).expect("heartbeat");
    assert_eq!(revoked.len(), 1);
    assert!(store.lease(&worker, 5, TTL).expect("lease").is_empty());
}

#[test]
fn grace_extends_leases_after_a_restart() {
    let (mut store, clock, worker) = store_with(3);
    store.lease(&worker, 1, TTL).expect("lease");
    clock.advance(TTL - 1);
    assert_eq!(store.grant_grace(TTL).expect("grace"), 1);
    clock.advance(TTL - 1);
    assert!(store.expire_leases().expect("expire").is_empty());
}
