//! The lease state machine under a manual clock: grant, renew, expiry,
//! re-queue, max attempts, stale fencing tokens, idempotent progress.

use super::*;
use crate::clock::ManualClock;
use sweep_core::{expand, parse_spec};

const TTL: Millis = 10_000;

/// The manual clock's start: 2026-05-28, so that reports carry plausible wall times.
const NOW: Millis = 1_780_000_000_000;

fn spec(max_attempts: u32) -> (SweepSpec, Vec<TrialSpec>) {
    let text = format!(
        "version: 1\nname: lease-test\nfamilies: transformer\naxes:\n  modulus: 7\n  data_fraction: 0.5\n  weight_decay: 1\n  seed: [0, 1]\nretry:\n  max_attempts: {max_attempts}\n"
    );
    let spec = parse_spec("t.yaml", &text).expect("valid");
    let trials = expand(&spec);
    (spec, trials)
}

/// Every buffered row of the attempt through `last_row_id` is written, in all three tables.
fn flush_all(store: &mut Store, trial_id: &TrialId, attempt: u32, last_row_id: i64) {
    let written: Vec<WrittenRows> =
        MeasureKind::ALL.into_iter().map(|kind| WrittenRows { trial_id: trial_id.clone(), attempt, last_row_id, kind }).collect();
    store.mark_flushed(&written).expect("flushed");
}

fn store_with(max_attempts: u32) -> (Store, ManualClock, String) {
    let clock = ManualClock::new(NOW);
    let mut store = Store::open_in_memory(Arc::new(clock.clone())).expect("store");
    let (spec, trials) = spec(max_attempts);
    store.submit(&spec, "", &trials).expect("submit");
    let worker = store.register_worker("w", "flex", 1, None).expect("register");
    (store, clock, worker)
}

fn status_of(store: &Store, trial: &TrialId) -> TrialView {
    store.trials_of("lease-test").expect("trials").into_iter().find(|t| &t.trial_id == trial).expect("trial exists")
}

fn row(step: i64, measure: &str, value: f64) -> StepMeasures {
    StepMeasures { step, wall_time_ms: NOW + step, measures: vec![sweep_core::Measure::scalar(measure, value)] }
}

/// Lease up to `count` trials, one pack of one each.
fn lease(store: &mut Store, worker: &str, count: u32) -> Result<Vec<TrialLease>> {
    Ok(store.lease(worker, count, 1, TTL)?.into_iter().flatten().collect())
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
    let first = lease(&mut store, &worker, 1).expect("lease");
    let second = lease(&mut store, &worker, 5).expect("lease");
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_ne!(first[0].lease.trial_id, second[0].lease.trial_id);
    assert!(second[0].lease.token > first[0].lease.token);
    assert!(lease(&mut store, &worker, 5).expect("lease").is_empty());
    assert_eq!(status_of(&store, &first[0].lease.trial_id).status, TrialStatus::Running);
}

#[test]
fn unknown_worker_is_refused() {
    let (mut store, _clock, _) = store_with(3);
    assert!(matches!(lease(&mut store, "nobody", 1), Err(CoordinatorError::UnknownWorker(_))));
}

#[test]
fn heartbeats_keep_a_lease_alive_and_silence_lets_it_lapse() {
    let (mut store, clock, worker) = store_with(3);
    let grant = lease(&mut store, &worker, 1).expect("lease").remove(0);
    for _ in 0..5 {
        clock.advance(TTL / 2);
        assert!(store.heartbeat(&worker, std::slice::from_ref(&grant.lease), TTL).expect("heartbeat").is_empty());
        assert!(store.expire_leases().expect("expire").is_empty());
    }
    clock.advance(TTL + 1);
    let expired = store.expire_leases().expect("expire");
    assert_eq!(expired, vec![(grant.lease.clone(), TrialStatus::Queued)]);
    let view = status_of(&store, &grant.lease.trial_id);
    assert_eq!((view.status, view.attempt, view.failures), (TrialStatus::Queued, 1, 1));
    // The lapsed lease is revoked at the next heartbeat, and refused elsewhere.
    let revoked = store.heartbeat(&worker, std::slice::from_ref(&grant.lease), TTL).expect("heartbeat");
    assert_eq!(revoked.len(), 1);
    assert!(revoked[0].reason.contains("lapsed"), "{}", revoked[0].reason);
    assert!(matches!(store.complete(&grant.lease, &FinalMetrics::default()), Err(CoordinatorError::StaleLease { .. })));
}

#[test]
fn requeued_trial_gets_a_new_attempt_and_the_old_token_is_stale() {
    let (mut store, clock, worker) = store_with(3);
    let first = lease(&mut store, &worker, 1).expect("lease").remove(0);
    clock.advance(TTL + 1);
    store.expire_leases().expect("expire");
    let mut again = lease(&mut store, &worker, 2).expect("lease");
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
    let trial = lease(&mut store, &worker, 1).expect("lease")[0].lease.trial_id.clone();
    clock.advance(TTL + 1);
    store.expire_leases().expect("expire");
    let mut leased = lease(&mut store, &worker, 2).expect("lease");
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
    let grant = lease(&mut store, &worker, 1).expect("lease").remove(0);
    assert_eq!(store.fail(&grant.lease, "worker shutting down", true).expect("release"), TrialStatus::Queued);
    assert_eq!(status_of(&store, &grant.lease.trial_id).failures, 0);
}

#[test]
fn progress_is_idempotent_and_flushed_steps_are_not_buffered_again() {
    let (mut store, _clock, worker) = store_with(3);
    let grant = lease(&mut store, &worker, 1).expect("lease").remove(0);
    let batch = vec![row(10, "train_loss", 0.5), row(10, "test_accuracy", 0.25)];
    assert_eq!(store.record_progress(&grant.lease, &batch, TTL).expect("progress"), 2);
    assert_eq!(store.record_progress(&grant.lease, &batch, TTL).expect("resend"), 0);
    let buffered = store.buffered_attempts().expect("buffered");
    assert_eq!(buffered.len(), 1);
    assert_eq!(buffered[0].rows.len(), 2);
    flush_all(&mut store, &grant.lease.trial_id, 1, buffered[0].last_row_id);
    assert_eq!(store.record_progress(&grant.lease, &batch, TTL).expect("resend after flush"), 0);
    assert_eq!(store.record_progress(&grant.lease, &[row(20, "train_loss", 0.1)], TTL).expect("new step"), 1);
    let view = status_of(&store, &grant.lease.trial_id);
    assert_eq!((view.last_epoch, view.last_test_accuracy), (Some(20), Some(0.25)));
}

#[test]
fn an_earlier_step_is_taken_as_a_resend_only_if_it_is_held() {
    let (mut store, _clock, worker) = store_with(3);
    let grant = lease(&mut store, &worker, 1).expect("lease").remove(0);
    let first = vec![row(10, "train_loss", 0.5), row(20, "train_loss", 0.4)];
    assert_eq!(store.record_progress(&grant.lease, &first, TTL).expect("progress"), 2);
    assert_eq!(store.record_progress(&grant.lease, &[row(30, "train_loss", 0.3)], TTL).expect("progress"), 1);
    // Step 10 is behind the latest (30) and still buffered: a retried batch.
    assert_eq!(store.record_progress(&grant.lease, &first, TTL).expect("resend"), 0);
    // Step 15 was never sent: out of order, and nothing of its batch is kept.
    let late = vec![row(40, "test_loss", 1.0), row(15, "train_loss", 0.45)];
    let error = store.record_progress(&grant.lease, &late, TTL).expect_err("out of order");
    assert!(error.to_string().contains("`train_loss` at step 15 comes after step 30"), "{error}");
    let buffered = store.buffered_attempts().expect("buffered").remove(0);
    let held: Vec<(i64, &str)> = buffered.rows.iter().map(|row| (row.step, row.measure.as_str())).collect();
    assert_eq!(held, vec![(10, "train_loss"), (20, "train_loss"), (30, "train_loss")]);
    // After a flush the same resend is recognised by the watermark.
    flush_all(&mut store, &grant.lease.trial_id, 1, buffered.last_row_id);
    assert_eq!(store.record_progress(&grant.lease, &first, TTL).expect("resend after flush"), 0);
    // Once written, what a step held is no longer known: a step at or
    // before the measure's last written one is dropped as a resend.
    assert_eq!(store.record_progress(&grant.lease, &[row(25, "train_loss", 0.3)], TTL).expect("dropped"), 0);
    assert_eq!(store.record_progress(&grant.lease, &late[..1], TTL).expect("a new measure"), 1);
}

#[test]
fn a_new_measure_may_arrive_at_steps_already_flushed_for_others() {
    let (mut store, _clock, worker) = store_with(3);
    let grant = lease(&mut store, &worker, 1).expect("lease").remove(0);
    let evals = vec![row(0, "train_loss", 2.0), row(100, "train_loss", 0.5), row(200, "train_loss", 0.1)];
    assert_eq!(store.record_progress(&grant.lease, &evals, TTL).expect("progress"), 3);
    let buffered = store.buffered_attempts().expect("buffered");
    flush_all(&mut store, &grant.lease.trial_id, 1, buffered[0].last_row_id);
    // After training, the final-K losses come for the earlier checkpoint steps.
    let final_k =
        vec![row(0, "excluded_loss_final_k", 4.0), row(100, "excluded_loss_final_k", 3.0), row(200, "excluded_loss_final_k", 5.0)];
    assert_eq!(store.record_progress(&grant.lease, &final_k, TTL).expect("final-K rows"), 3);
    let buffered = store.buffered_attempts().expect("buffered");
    assert_eq!(buffered[0].rows.iter().map(|r| r.step).collect::<Vec<_>>(), vec![0, 100, 200]);
    flush_all(&mut store, &grant.lease.trial_id, 1, buffered[0].last_row_id);
    // Re-sent after their flush, both kinds are repeats.
    assert_eq!(store.record_progress(&grant.lease, &final_k, TTL).expect("resend"), 0);
    assert_eq!(store.record_progress(&grant.lease, &evals, TTL).expect("resend"), 0);
    assert!(store.buffered_attempts().expect("buffered").is_empty());
}

#[test]
fn checkpoints_of_a_live_lease_are_recorded_and_a_stale_one_is_refused() {
    let (mut store, clock, worker) = store_with(3);
    let grant = lease(&mut store, &worker, 1).expect("lease").remove(0);
    assert_eq!(store.checkpoint_target(&grant.lease, TTL).expect("live"), "lease-test");
    store.record_checkpoint(&grant.lease, 0, "checkpoints/t/a1/step-00000000.safetensors").expect("recorded");
    store.record_checkpoint(&grant.lease, 100, "checkpoints/t/a1/step-00000100.safetensors").expect("recorded");
    let view = status_of(&store, &grant.lease.trial_id);
    assert_eq!(view.final_checkpoint.as_deref(), Some("checkpoints/t/a1/step-00000100.safetensors"));
    store.record_progress(&grant.lease, &[row(100, "train_loss", 0.5)], TTL).expect("progress");
    clock.advance(TTL + 1);
    store.expire_leases().expect("expiry");
    assert!(matches!(store.checkpoint_target(&grant.lease, TTL), Err(CoordinatorError::StaleLease { .. })));
    // The flush moves the lapsed attempt's files aside and forgets them.
    for attempt in store.superseded().expect("superseded") {
        store.forget_superseded(&attempt).expect("forgotten");
    }
    assert_eq!(status_of(&store, &grant.lease.trial_id).final_checkpoint, None, "the lapsed attempt's checkpoints left the results");
    let batches: i64 = store.conn.query_row("SELECT COUNT(*) FROM progress_batches", [], |row| row.get(0)).expect("count");
    assert_eq!(batches, 0, "and its buffered progress with them");
}

#[test]
fn cancel_revokes_running_leases() {
    let (mut store, _clock, worker) = store_with(3);
    let grant = lease(&mut store, &worker, 1).expect("lease").remove(0);
    assert_eq!(store.cancel("lease-test").expect("cancel"), 2);
    let revoked = store.heartbeat(&worker, std::slice::from_ref(&grant.lease), TTL).expect("heartbeat");
    assert_eq!(revoked.len(), 1);
    assert!(lease(&mut store, &worker, 5).expect("lease").is_empty());
}

#[test]
fn grace_extends_leases_after_a_restart() {
    let (mut store, clock, worker) = store_with(3);
    lease(&mut store, &worker, 1).expect("lease");
    clock.advance(TTL - 1);
    assert_eq!(store.grant_grace(TTL).expect("grace"), 1);
    clock.advance(TTL - 1);
    assert!(store.expire_leases().expect("expire").is_empty());
}

fn pack_store() -> (Store, ManualClock, String) {
    let clock = ManualClock::new(NOW);
    let mut store = Store::open_in_memory(Arc::new(clock.clone())).expect("store");
    let text = "version: 1\nname: packs\nfamilies: transformer\naxes:\n  modulus: [7, 11]\n  data_fraction: [0.5, 0.9]\n  weight_decay: 1\n  seed: [0, 1]\n";
    let spec = parse_spec("t.yaml", text).expect("valid");
    store.submit(&spec, text, &expand(&spec)).expect("submit");
    let worker = store.register_worker("w", "flex", 2, None).expect("register");
    (store, clock, worker)
}

#[test]
fn a_pack_holds_queued_trials_of_one_key_each_with_its_own_lease() {
    let (mut store, clock, worker) = pack_store();
    let packs = store.lease(&worker, 2, 3, TTL).expect("lease");
    assert_eq!(packs.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 1], "four trials at p = 7: a pack of 3, then the last one");
    for pack in &packs {
        assert!(pack.iter().all(|lease| lease.pack_key() == pack[0].pack_key() && lease.params.modulus == 7));
    }
    let mut tokens: Vec<u64> = packs.iter().flatten().map(|lease| lease.lease.token).collect();
    tokens.dedup();
    assert_eq!(tokens.len(), 4, "every trial has its own fencing token");
    let next = store.lease(&worker, 1, 8, TTL).expect("lease");
    assert_eq!(next.len(), 1);
    assert!(next[0].len() == 4 && next[0].iter().all(|lease| lease.params.modulus == 11));
    // One trial of the first pack completes; the others go silent and lapse on their own.
    let first = &packs[0];
    store.complete(&first[0].lease, &FinalMetrics { epochs: 3, ..FinalMetrics::default() }).expect("complete");
    clock.advance(TTL + 1);
    let lapsed = store.expire_leases().expect("expire");
    assert_eq!(lapsed.len(), 7, "each remaining trial lapses by itself");
    assert_eq!(status_of_sweep(&store, "packs", &first[0].lease.trial_id).status, TrialStatus::Done);
    assert_eq!(status_of_sweep(&store, "packs", &first[1].lease.trial_id).status, TrialStatus::Queued);
}

/// The two columns of every row `sql` selects.
fn pairs<A: rusqlite::types::FromSql, B: rusqlite::types::FromSql>(store: &Store, sql: &str) -> Vec<(A, B)> {
    let mut statement = store.conn.prepare(sql).expect("prepare");
    statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).expect("query").collect::<rusqlite::Result<_>>().expect("rows")
}

fn status_of_sweep(store: &Store, sweep: &str, trial: &TrialId) -> TrialView {
    store.trials_of(sweep).expect("trials").into_iter().find(|t| &t.trial_id == trial).expect("trial exists")
}

#[test]
fn typed_measures_are_buffered_by_shape_and_resent_ones_are_ignored() {
    use sweep_core::{CurvePoint, Measure};
    let clock = ManualClock::new(NOW);
    let mut store = Store::open_in_memory(Arc::new(clock)).expect("store");
    let text = "version: 1\nname: shapes\nfamilies: diffusion\naxes:\n  modulus: 7\n  data_fraction: 0.5\n  weight_decay: 1\n  seed: 0\n";
    let spec = parse_spec("t.yaml", text).expect("valid");
    store.submit(&spec, text, &expand(&spec)).expect("submit");
    let worker = store.register_worker("w", "flex", 1, None).expect("register");
    let grant = lease(&mut store, &worker, 1).expect("lease").remove(0);
    let step = StepMeasures {
        step: 10,
        wall_time_ms: NOW,
        measures: vec![
            Measure::scalar("test_accuracy", 0.5),
            Measure::spectrum("key_neurons", vec![1.0, 2.0, 3.0, 0.0]),
            Measure::curve("decision_accuracy_test", vec![CurvePoint { t: 1.0, value: 0.1 }, CurvePoint { t: 0.5, value: 0.4 }]),
        ],
    };
    assert_eq!(store.record_progress(&grant.lease, std::slice::from_ref(&step), TTL).expect("progress"), 7);
    assert_eq!(store.record_progress(&grant.lease, std::slice::from_ref(&step), TTL).expect("resend"), 0);
    let buffered = store.buffered_attempts().expect("buffered").remove(0);
    let shapes: Vec<(String, MeasureKind, f64)> = buffered.rows.iter().map(|row| (row.measure.clone(), row.kind, row.key)).collect();
    let spectrum = |k: f64| ("key_neurons".to_string(), MeasureKind::Spectrum, k);
    assert_eq!(
        shapes,
        vec![
            ("decision_accuracy_test".to_string(), MeasureKind::Curve, 0.5),
            ("decision_accuracy_test".to_string(), MeasureKind::Curve, 1.0),
            spectrum(0.0),
            spectrum(1.0),
            spectrum(2.0),
            spectrum(3.0),
            ("test_accuracy".to_string(), MeasureKind::Scalar, 0.0),
        ]
    );
    flush_all(&mut store, &grant.lease.trial_id, 1, buffered.last_row_id);
    assert_eq!(store.record_progress(&grant.lease, &[step], TTL).expect("resend after flush"), 0);
}

#[test]
fn a_data_directory_of_the_untyped_build_is_migrated_on_open() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("coordinator.sqlite");
    let yaml = "version: 1\nname: old\nfamilies: transformer\naxes:\n  modulus: 7\n  data_fraction: 0.5\n  weight_decay: 1\n  seed: 0\ntraining:\n  d_model: 32\n  n_heads: 2\n";
    let spec = parse_spec("t.yaml", yaml).expect("valid");
    {
        // What the build before typed measures and family sections left on disk.
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(SCHEMA).expect("schema");
        conn.execute_batch(
            "CREATE TABLE progress_buffer (row_id INTEGER PRIMARY KEY AUTOINCREMENT, trial_id TEXT NOT NULL, attempt INTEGER NOT NULL,
             step INTEGER NOT NULL, measure TEXT NOT NULL, value REAL NOT NULL, wall_time_ms INTEGER NOT NULL,
             UNIQUE (trial_id, attempt, step, measure));",
        )
        .expect("old buffer");
        let json = serde_json::to_string(&spec)
            .expect("json")
            .replace("\"checkpoint_every\":1000},", "\"d_model\":32,\"n_heads\":2,\"d_mlp\":512,\"checkpoint_every\":1000},");
        let old_json = json.replace(",\"transformer\":{\"d_model\":32,\"n_heads\":2,\"d_mlp\":512}", "");
        assert!(serde_json::from_str::<SweepSpec>(&old_json).is_err());
        conn.execute("INSERT INTO sweeps VALUES ('old', ?1, ?2, 0)", params![old_json, yaml]).expect("sweep");
        for (id, step, measure) in [
            (1, 100, "train_loss"),
            (2, 100, "spectrum:W_E:1"),
            (3, 100, "decision_accuracy_test@0.50"),
            (4, 200, "train_loss"),
            (5, 100, "spectrum:W_E:0"),
        ] {
            conn.execute("INSERT INTO progress_buffer VALUES (?1, 't', 1, ?2, ?3, ?1 / 8.0, 7)", params![id, step, measure]).expect("row");
        }
        // Rows up to 500 were written and forgotten: rolled files are named up to r500.
        conn.execute("UPDATE sqlite_sequence SET seq = 500 WHERE name = 'progress_buffer'", []).expect("sequence");
        conn.execute("INSERT INTO progress_flushed_by_measure VALUES ('t', 1, 'spectrum:W_E:3', 50)", []).expect("watermark");
        conn.execute("INSERT INTO progress_flushed_by_measure VALUES ('t', 1, 'spectrum:W_E:0', 60)", []).expect("watermark");
        // Trial t's attempt is live; trial u's ended, and its watermark was kept for good.
        for (key, trial) in [(1, "t"), (2, "u")] {
            conn.execute(
                "INSERT INTO trials(key, trial_id, sweep, seq, params_json, status) VALUES (?1, ?2, 'old', ?1, '{}', 'running')",
                params![key, trial],
            )
            .expect("trial");
        }
        conn.execute("INSERT INTO attempts VALUES (1, 't', 1, 'w', 1, 'active', 0, 0, NULL, NULL)", []).expect("attempt");
        conn.execute("INSERT INTO attempts VALUES (2, 'u', 1, 'w', 2, 'completed', 0, 0, 5, NULL)", []).expect("attempt");
        conn.execute("INSERT INTO progress_flushed_by_measure VALUES ('u', 1, 'train_loss', 90)", []).expect("watermark");
    }
    let store = Store::open(&path, Arc::new(ManualClock::new(0))).expect("migrates");
    assert_eq!(store.sweep_spec("old").expect("readable").transformer.d_model, 32);
    // Typed, then one batch per run of one shape, step and time, named by its last row id.
    let batches: Vec<(i64, String, Vec<StepMeasures>)> = {
        let mut statement = store.conn.prepare("SELECT batch_id, kind, steps FROM progress_batches ORDER BY batch_id").expect("query");
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get::<_, Vec<u8>>(2)?)))
            .expect("rows")
            .map(|r| r.expect("row"))
            .map(|(id, kind, steps)| (id, kind, crate::progress_batch::decode(&steps).expect("decodes")))
            .collect()
    };
    let at = |step, measures| vec![StepMeasures { step, wall_time_ms: 7, measures }];
    assert_eq!(
        batches,
        vec![
            (1, "scalar".to_string(), at(100, vec![sweep_core::Measure::scalar("train_loss", 0.125)])),
            (
                3,
                "curve".to_string(),
                at(100, vec![sweep_core::Measure::curve("decision_accuracy_test", vec![sweep_core::CurvePoint { t: 0.5, value: 0.375 }])])
            ),
            (4, "scalar".to_string(), at(200, vec![sweep_core::Measure::scalar("train_loss", 0.5)])),
            (5, "spectrum".to_string(), at(100, vec![sweep_core::Measure::spectrum("W_E", vec![0.625, 0.25])])),
        ]
    );
    let latest: i64 = store
        .conn
        .query_row("SELECT step FROM progress_latest WHERE trial_id = 't' AND measure = 'train_loss'", [], |row| row.get(0))
        .expect("latest");
    assert_eq!(latest, 200);
    let old_buffer: Option<String> = store
        .conn
        .query_row("SELECT name FROM sqlite_master WHERE name = 'progress_buffer'", [], |row| row.get(0))
        .optional()
        .expect("query");
    assert_eq!(old_buffer, None, "the old buffer is dropped");
    // New batches are numbered after the old rows.
    store
        .conn
        .execute(
            "INSERT INTO progress_batches(trial_key, trial_id, attempt, kind, steps, through) VALUES (1, 't', 1, 'scalar', x'90', x'80')",
            [],
        )
        .expect("insert");
    assert_eq!(store.conn.last_insert_rowid(), 501);
    let through: i64 = store
        .conn
        .query_row("SELECT through_step FROM progress_flushed_by_measure WHERE measure = 'W_E'", [], |row| row.get(0))
        .expect("watermark");
    assert_eq!(through, 60);
    let ended: i64 =
        store.conn.query_row("SELECT COUNT(*) FROM progress_flushed_by_measure WHERE trial_id = 'u'", [], |row| row.get(0)).expect("count");
    assert_eq!(ended, 0, "an ended attempt's watermarks are forgotten");
}

#[test]
fn a_done_trial_is_ready_for_compaction_once_its_rows_are_flushed() {
    let (mut store, _clock, worker) = store_with(3);
    let grants = lease(&mut store, &worker, 2).expect("lease");
    let (done, running) = (&grants[0].lease, &grants[1].lease);
    store.record_progress(done, &[row(10, "train_loss", 0.5)], TTL).expect("progress");
    store.record_progress(running, &[row(10, "train_loss", 0.5)], TTL).expect("progress");
    store.complete(done, &FinalMetrics { epochs: 10, ..FinalMetrics::default() }).expect("complete");
    assert!(store.compaction_ready(usize::MAX).expect("ready").is_empty(), "its last rows are still buffered");
    for buffered in store.buffered_attempts().expect("buffered") {
        flush_all(&mut store, &buffered.trial_id, buffered.attempt, buffered.last_row_id);
    }
    let ready = store.compaction_ready(usize::MAX).expect("ready");
    let key: i64 =
        store.conn.query_row("SELECT key FROM trials WHERE trial_id = ?1", [done.trial_id.as_str()], |row| row.get(0)).expect("key");
    assert_eq!(ready, vec![SweepAttempt { sweep: "lease-test".into(), trial_id: done.trial_id.clone(), trial_key: key, attempt: 1 }]);
    let watermarks = |store: &Store, lease: &LeaseRef| -> i64 {
        let key = params![lease.trial_id.as_str(), lease.attempt];
        let count = |table: &str| -> i64 {
            let sql = format!("SELECT COUNT(*) FROM {table} WHERE trial_id = ?1 AND attempt = ?2");
            store.conn.query_row(&sql, key, |row| row.get(0)).expect("count")
        };
        count("progress_latest") + count("progress_flushed_by_measure")
    };
    assert_eq!((watermarks(&store, done), watermarks(&store, running)), (2, 2));
    store.forget_compactions(&ready[..1]).expect("forget");
    assert!(store.compaction_ready(usize::MAX).expect("ready").is_empty());
    // A compacted attempt's per-measure steps are gone; a live one keeps its own.
    assert_eq!((watermarks(&store, done), watermarks(&store, running)), (0, 2));
    assert_eq!(store.record_progress(running, &[row(10, "train_loss", 0.5)], TTL).expect("resend"), 0);
}

#[test]
fn compaction_is_offered_oldest_first_and_at_most_the_limit_at_a_time() {
    let (mut store, _clock, worker) = store_with(3);
    let grants = lease(&mut store, &worker, 2).expect("lease");
    assert_eq!(grants.len(), 2);
    // The second ends first: the queue is in the order trials ended.
    for grant in grants.iter().rev() {
        store.complete(&grant.lease, &FinalMetrics { epochs: 10, ..FinalMetrics::default() }).expect("complete");
    }
    let trials = |ready: &[SweepAttempt]| ready.iter().map(|attempt| attempt.trial_id.clone()).collect::<Vec<_>>();
    let first = store.compaction_ready(1).expect("ready");
    assert_eq!(trials(&first), vec![grants[1].lease.trial_id.clone()]);
    store.forget_compactions(&first).expect("forget");
    assert_eq!(trials(&store.compaction_ready(1).expect("ready")), vec![grants[0].lease.trial_id.clone()]);
    assert_eq!(store.compaction_ready(5).expect("ready").len(), 1);
}

/// SQLite's plan for `sql` (bound to `parameters`), one line per step.
fn query_plan(store: &Store, sql: &str, parameters: impl rusqlite::Params) -> Vec<String> {
    let mut statement = store.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).expect("explain");
    statement.query_map(parameters, |row| row.get::<_, String>(3)).expect("plan").collect::<rusqlite::Result<_>>().expect("rows")
}

#[test]
fn the_flushes_queries_read_their_queues_not_every_trial() {
    // Each plan starts from its small table (the buffered batches, the
    // compaction queue) and finds each row's attempt and trial by key.
    // Driven by the attempts' state index or the trials' status index, they
    // read every completed attempt or done trial at every flush.
    let (store, _clock, _worker) = store_with(3);
    let pending = query_plan(&store, PENDING_ATTEMPTS, []);
    assert!(pending[0].starts_with("SCAN b"), "{pending:?}");
    let ready = query_plan(&store, COMPACTION_READY, [10]);
    assert!(ready[0].starts_with("SCAN c"), "{ready:?}");
    for step in pending.iter().skip(1).chain(ready.iter().skip(1)) {
        assert!(
            !step.contains("attempts_active") && !step.contains("trials_by_status") && !step.contains("TEMP B-TREE"),
            "{pending:?} {ready:?}"
        );
    }
}

#[test]
fn an_older_data_directory_queues_its_done_trials_for_compaction_once() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("coordinator.sqlite");
    let trial = {
        let (spec, trials) = spec(3);
        let mut store = Store::open(&path, Arc::new(ManualClock::new(NOW))).expect("store");
        store.submit(&spec, "", &trials).expect("submit");
        let worker = store.register_worker("w", "flex", 1, None).expect("register");
        let grant = lease(&mut store, &worker, 1).expect("lease").remove(0);
        store.complete(&grant.lease, &FinalMetrics { epochs: 10, ..FinalMetrics::default() }).expect("complete");
        // As the build before compaction left it: no queue.
        store.conn.execute("DROP TABLE compaction_pending", []).expect("drop");
        grant.lease.trial_id
    };
    let mut store = Store::open(&path, Arc::new(ManualClock::new(NOW))).expect("reopens");
    let ready = store.compaction_ready(usize::MAX).expect("ready");
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].trial_id, trial);
    store.forget_compactions(&ready[..1]).expect("forget");
    drop(store);
    let store = Store::open(&path, Arc::new(ManualClock::new(NOW))).expect("reopens again");
    assert!(store.compaction_ready(usize::MAX).expect("ready").is_empty(), "queued once, not on every open");
}

/// A store in a file maps its database (see `MAPPED_BYTES`).
#[test]
fn a_store_in_a_file_maps_its_database() {
    let directory = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&directory.path().join("coordinator.sqlite"), Arc::new(ManualClock::new(NOW))).expect("store");
    let mapped: i64 = store.conn.pragma_query_value(None, "mmap_size", |row| row.get(0)).expect("mmap_size");
    assert!(mapped >= 1 << 30, "mapped: {mapped}");
}

/// A sweep `name` of `seeds` trials (seeds 0, 1, …) at p = 7: its spec, YAML and trials.
pub(crate) fn seed_grid(name: &str, seeds: usize) -> (SweepSpec, String, Vec<TrialSpec>) {
    let seeds: Vec<String> = (0..seeds).map(|seed| seed.to_string()).collect();
    let yaml = format!(
        "version: 1\nname: {name}\nfamilies: transformer\naxes:\n  modulus: 7\n  data_fraction: 0.5\n  weight_decay: 1\n  seed: [{}]\n",
        seeds.join(", ")
    );
    let spec = parse_spec(&format!("{name}.yaml"), &yaml).expect("valid");
    let trials = expand(&spec);
    (spec, yaml, trials)
}

fn big_sweep(trials: usize) -> (SweepSpec, Vec<TrialSpec>) {
    let (spec, _, trials) = seed_grid("big", trials);
    (spec, trials)
}

fn part(number: i64) -> TrialsPart {
    TrialsPart { sweep: "big".into(), part: number }
}

#[test]
fn only_the_parts_of_the_trials_table_that_changed_are_rewritten() {
    let clock = ManualClock::new(NOW);
    let mut store = Store::open_in_memory(Arc::new(clock)).expect("store");
    let (spec, trials) = big_sweep(25_000);
    // Stored in two chunks, as a large submission is: each marks its own parts.
    store.submit_part(&spec, "", &trials[..12_000]).expect("first chunk");
    assert_eq!(store.take_dirty_parts().expect("dirty"), vec![part(0), part(1)]);
    store.submit_part(&spec, "", &trials[12_000..]).expect("second chunk");
    assert_eq!(store.take_dirty_parts().expect("dirty"), vec![part(1), part(2)]);
    assert!(store.take_dirty_parts().expect("dirty").is_empty(), "taking clears the marks");
    // Each part holds its 10,000 trials in grid order, the last one the rest.
    let sizes: Vec<usize> = (0..3).map(|n| store.trials_of_part(&part(n)).expect("part").len()).collect();
    assert_eq!(sizes, vec![10_000, 10_000, 5_000]);
    let third = store.trials_of_part(&part(2)).expect("part");
    assert_eq!((third[0].params.seed, third[4_999].params.seed), (20_000, 24_999));
    // A lease and a completion touch the first part only.
    let worker = store.register_worker("w", "flex", 1, None).expect("register");
    let grant = lease(&mut store, &worker, 1).expect("lease").remove(0);
    assert_eq!(store.take_dirty_parts().expect("dirty"), vec![part(0)]);
    store.complete(&grant.lease, &FinalMetrics { epochs: 10, ..FinalMetrics::default() }).expect("complete");
    assert_eq!(store.take_dirty_parts().expect("dirty"), vec![part(0)]);
    // Resubmitting adds nothing and rewrites nothing; a cancel rewrites every part.
    store.submit(&spec, "", &trials).expect("resubmit");
    assert!(store.take_dirty_parts().expect("dirty").is_empty());
    store.cancel("big").expect("cancel");
    assert_eq!(store.take_dirty_parts().expect("dirty"), vec![part(0), part(1), part(2)]);
    // A failed write puts its part back.
    store.mark_dirty(&[part(1)]).expect("mark");
    assert_eq!(store.take_dirty_parts().expect("dirty"), vec![part(1)]);
}

#[test]
fn an_older_data_directory_rewrites_each_sweep_s_trials_table_in_parts_once() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("coordinator.sqlite");
    {
        let mut store = Store::open(&path, Arc::new(ManualClock::new(NOW))).expect("store");
        let (spec, trials) = big_sweep(12_000);
        store.submit(&spec, "", &trials).expect("submit");
        store.take_dirty_parts().expect("written");
        // As a build before the parts left it: a list of dirty sweeps.
        store.conn.execute_batch("DROP TABLE dirty_trial_parts; CREATE TABLE dirty_sweeps (sweep TEXT PRIMARY KEY);").expect("old schema");
    }
    let mut store = Store::open(&path, Arc::new(ManualClock::new(NOW))).expect("reopens");
    assert_eq!(store.take_dirty_parts().expect("dirty"), vec![part(0), part(1)]);
    drop(store);
    let mut store = Store::open(&path, Arc::new(ManualClock::new(NOW))).expect("reopens again");
    assert!(store.take_dirty_parts().expect("dirty").is_empty(), "once, not on every open");
}

/// Final metrics come back from the state bit for bit (serde_json's default
/// float parsing read 11/61 back an ulp or two away, which a checkpoint's
/// re-evaluation then disagreed with).
#[test]
fn final_metrics_are_stored_to_the_last_bit() {
    let (mut store, _clock, worker) = store_with(3);
    let grant = lease(&mut store, &worker, 1).expect("lease").remove(0);
    let metrics = FinalMetrics {
        epochs: 10,
        train_loss: 1.0 / 3.0,
        test_loss: 2.0_f64.sqrt(),
        train_accuracy: 60.0 / 61.0,
        test_accuracy: 11.0 / 61.0,
        wall_seconds: 0.1 + 0.2,
        judge_accuracy: Some(std::f64::consts::PI / 4.0),
        ..FinalMetrics::default()
    };
    store.complete(&grant.lease, &metrics).expect("complete");
    let stored = status_of(&store, &grant.lease.trial_id).metrics.expect("metrics stored");
    let bits = |m: &FinalMetrics| {
        [m.train_loss, m.test_loss, m.train_accuracy, m.test_accuracy, m.wall_seconds, m.judge_accuracy.unwrap_or(f64::NAN)]
            .map(f64::to_bits)
    };
    assert_eq!(bits(&stored), bits(&metrics));
}

/// A completion's last rows are buffered with it in one savepoint: a bad
/// row refuses both (the trial still runs, nothing new is buffered), good
/// ones are stored with the completion and then written like any report.
#[test]
fn a_completion_stores_its_last_rows_with_it_or_neither() {
    let (mut store, _clock, worker) = store_with(3);
    let grant = lease(&mut store, &worker, 1).expect("lease").remove(0);
    assert_eq!(store.record_progress(&grant.lease, &[row(10, "train_loss", 0.5)], TTL).expect("progress"), 1);
    let done = FinalMetrics { epochs: 30, ..FinalMetrics::default() };
    let bad = [row(20, "train_loss", 0.4), row(30, "train_loss", -1.0)];
    assert!(matches!(store.complete_with_rows(&grant.lease, &bad, &done), Err(CoordinatorError::InvalidRequest(_))));
    let view = status_of(&store, &grant.lease.trial_id);
    assert_eq!((view.status, view.last_epoch), (TrialStatus::Running, Some(10)));
    assert_eq!(store.buffered_attempts().expect("buffered")[0].rows.len(), 1, "nothing of the refused call");
    // Good rows with bad metrics: the rows are not kept either.
    let good = [row(20, "train_loss", 0.4), row(30, "train_loss", 0.3)];
    let impossible = FinalMetrics { train_accuracy: 7.0, ..done.clone() };
    assert!(matches!(store.complete_with_rows(&grant.lease, &good, &impossible), Err(CoordinatorError::InvalidRequest(_))));
    assert_eq!(store.buffered_attempts().expect("buffered")[0].rows.len(), 1, "the rows went with the refused metrics");
    assert_eq!(status_of(&store, &grant.lease.trial_id).last_epoch, Some(10));
    let mut good = good.to_vec();
    good[1].measures.push(sweep_core::Measure::scalar(sweep_core::measures::TEST_ACCURACY, 0.25));
    assert_eq!(store.complete_with_rows(&grant.lease, &good, &done).expect("complete"), 3);
    let view = status_of(&store, &grant.lease.trial_id);
    assert_eq!((view.status, view.last_epoch), (TrialStatus::Done, Some(30)));
    assert_eq!((view.last_train_accuracy, view.last_test_accuracy), (None, Some(0.25)), "the last step's accuracies");
    let steps: Vec<i64> = store.buffered_attempts().expect("buffered")[0].rows.iter().map(|row| row.step).collect();
    assert_eq!(steps, [10, 20, 30, 30]);
    // The ended attempt keeps no latest steps of its own (only those of the
    // report before, forgotten once its files are compacted).
    let latest: Vec<(String, i64)> = pairs(&store, "SELECT measure, step FROM progress_latest");
    assert_eq!(latest, [("train_loss".to_string(), 10)]);
    // Nothing more once done: the lease is over.
    assert!(matches!(store.record_progress(&grant.lease, &[row(40, "train_loss", 0.2)], TTL), Err(CoordinatorError::StaleLease { .. })));
}

/// A completion whose rows are all before the trial's last reported step
/// (a measure computed after training, at earlier steps) leaves the trial's
/// last epoch and accuracies as the later report set them.
#[test]
fn a_completion_with_earlier_rows_keeps_the_last_epoch() {
    let (mut store, _clock, worker) = store_with(3);
    let grant = lease(&mut store, &worker, 1).expect("lease").remove(0);
    store.record_progress(&grant.lease, &[row(50, sweep_core::measures::TRAIN_ACCURACY, 0.9)], TTL).expect("progress");
    let late = [row(20, sweep_core::measures::TEST_ACCURACY, 0.1)];
    let done = FinalMetrics { epochs: 50, ..FinalMetrics::default() };
    assert_eq!(store.complete_with_rows(&grant.lease, &late, &done).expect("complete"), 1);
    let view = status_of(&store, &grant.lease.trial_id);
    assert_eq!((view.status, view.last_epoch), (TrialStatus::Done, Some(50)));
    assert_eq!((view.last_train_accuracy, view.last_test_accuracy), (Some(0.9), None));
}

/// `trials`, `attempts`, the compaction queue and the progress buffer as the
/// builds before trial keys made them.
const UNKEYED_TABLES: &str = "
CREATE TABLE trials (trial_id TEXT PRIMARY KEY, sweep TEXT NOT NULL REFERENCES sweeps(name), seq INTEGER NOT NULL,
    params_json TEXT NOT NULL, status TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
    worker_id TEXT, started_at_ms INTEGER, finished_at_ms INTEGER, last_epoch INTEGER, last_train_accuracy REAL,
    last_test_accuracy REAL, metrics_json TEXT, error TEXT);
CREATE INDEX trials_by_status ON trials(status, sweep, seq);
CREATE INDEX trials_by_sweep ON trials(sweep, seq);
CREATE TABLE attempts (trial_id TEXT NOT NULL, attempt INTEGER NOT NULL, worker_id TEXT NOT NULL, fencing_token INTEGER NOT NULL,
    state TEXT NOT NULL, started_at_ms INTEGER NOT NULL, deadline_ms INTEGER NOT NULL, ended_at_ms INTEGER, reason TEXT,
    PRIMARY KEY (trial_id, attempt));
CREATE INDEX attempts_active ON attempts(state, deadline_ms);
CREATE TABLE compaction_pending (trial_id TEXT NOT NULL, attempt INTEGER NOT NULL, PRIMARY KEY (trial_id, attempt));
CREATE TABLE progress_batches (batch_id INTEGER PRIMARY KEY AUTOINCREMENT, trial_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    kind TEXT NOT NULL, steps BLOB NOT NULL, through BLOB NOT NULL);
CREATE INDEX progress_batches_by_attempt ON progress_batches(trial_id, attempt, batch_id);
";

/// Rewrite the four keyed tables of the store at `path` as an older build
/// had them, rows and ids kept; `batches_given` is the last batch id that
/// build had given (rows up to it were written and forgotten).
fn unkey(path: &Path, batches_given: i64) {
    let mut conn = Connection::open(path).expect("open");
    let tx = conn.transaction().expect("transaction");
    for table in ["trials", "attempts", "compaction_pending", "progress_batches"] {
        tx.execute_batch(&format!("ALTER TABLE {table} RENAME TO {table}_keyed")).expect("aside");
    }
    for index in ["trials_by_status", "trials_by_sweep", "attempts_active", "progress_batches_by_key"] {
        tx.execute_batch(&format!("DROP INDEX {index}")).expect("index");
    }
    tx.execute_batch(UNKEYED_TABLES).expect("old tables");
    tx.execute_batch(
        "INSERT INTO trials SELECT trial_id, sweep, seq, params_json, status, attempt, failures, worker_id, started_at_ms,
             finished_at_ms, last_epoch, last_train_accuracy, last_test_accuracy, metrics_json, error FROM trials_keyed ORDER BY key;
         INSERT INTO attempts SELECT trial_id, attempt, worker_id, fencing_token, state, started_at_ms, deadline_ms, ended_at_ms, reason
             FROM attempts_keyed ORDER BY rowid;
         INSERT INTO compaction_pending SELECT trial_id, attempt FROM compaction_pending_keyed ORDER BY rowid;
         INSERT INTO progress_batches SELECT batch_id, trial_id, attempt, kind, steps, through FROM progress_batches_keyed;
         DROP TABLE trials_keyed; DROP TABLE attempts_keyed; DROP TABLE compaction_pending_keyed; DROP TABLE progress_batches_keyed;",
    )
    .expect("rows");
    tx.execute("UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'progress_batches'", [batches_given]).expect("sequence");
    // An attempt of a trial the store does not know: it cannot be keyed.
    tx.execute("INSERT INTO attempts VALUES ('0123456789abcdef', 1, 'w', 99, 'completed', 0, 0, 0, NULL)", []).expect("orphan");
    tx.commit().expect("commit");
}

/// A store written before trials had integer keys opens with every trial,
/// lease, buffered row and queued compaction as it was, keyed in the order
/// the trials were stored; batch ids go on after the last one given.
#[test]
fn a_store_without_trial_keys_is_keyed_on_open() {
    let directory = tempfile::tempdir().expect("tempdir");
    let path = directory.path().join("coordinator.sqlite");
    let clock = ManualClock::new(NOW);
    let (spec, yaml, trials) = seed_grid("old", 6);
    let (before, worker, done, running, requeued) = {
        let mut store = Store::open(&path, Arc::new(clock.clone())).expect("store");
        store.submit(&spec, &yaml, &trials).expect("submit");
        let worker = store.register_worker("w", "flex", 4, None).expect("register");
        let leases: Vec<LeaseRef> = lease(&mut store, &worker, 4).expect("lease").into_iter().map(|grant| grant.lease).collect();
        let finished = FinalMetrics { epochs: 20, ..FinalMetrics::default() };
        store.complete_with_rows(&leases[0], &[row(10, "train_loss", 0.5), row(20, "train_loss", 0.4)], &finished).expect("complete");
        store.record_progress(&leases[1], &[row(10, "train_loss", 0.7)], TTL).expect("progress");
        store.complete(&leases[2], &finished).expect("complete without rows");
        store.fail(&leases[3], "released", true).expect("release");
        let again = lease(&mut store, &worker, 1).expect("lease").remove(0).lease;
        assert_eq!((&again.trial_id, again.attempt), (&leases[3].trial_id, 2));
        let before = (
            store.trials_of("old").expect("trials"),
            store.pending_attempts().expect("pending"),
            store.compaction_ready(10).expect("ready"),
        );
        assert_eq!(before.1.len(), 2, "the first two trials' rows");
        assert_eq!(before.2.len(), 1, "the third trial, done without rows");
        (before, worker, leases[0].clone(), leases[1].clone(), again)
    };
    unkey(&path, 500);
    {
        let store = Store::open(&path, Arc::new(clock.clone())).expect("keyed on open");
        let after = (
            store.trials_of("old").expect("trials"),
            store.pending_attempts().expect("pending"),
            store.compaction_ready(10).expect("ready"),
        );
        assert_eq!(after, before);
        let keys: Vec<(i64, String)> = pairs(&store, "SELECT key, trial_id FROM trials ORDER BY key");
        let stored: Vec<(i64, String)> = trials.iter().enumerate().map(|(seq, trial)| (seq as i64 + 1, trial.id.to_string())).collect();
        assert_eq!(keys, stored, "keys in the order the trials were stored");
        let attempts: i64 = store.conn.query_row("SELECT COUNT(*) FROM attempts", [], |row| row.get(0)).expect("count");
        assert_eq!(attempts, 5, "the four leases and the second attempt; not the unknown trial's");
    }
    // Opening again changes nothing; the leases go on where they were.
    let mut store = Store::open(&path, Arc::new(clock)).expect("reopen");
    assert_eq!(store.trials_of("old").expect("trials"), before.0);
    let live = [running.clone(), requeued.clone()];
    assert_eq!(store.heartbeat(&worker, &live, TTL).expect("heartbeat"), Vec::new());
    assert!(matches!(store.record_progress(&done, &[row(30, "train_loss", 0.3)], TTL), Err(CoordinatorError::StaleLease { .. })));
    store.record_progress(&requeued, &[row(10, "train_loss", 0.6)], TTL).expect("progress");
    let newest: i64 = store.conn.query_row("SELECT MAX(batch_id) FROM progress_batches", [], |row| row.get(0)).expect("max");
    assert_eq!(newest, 501, "after the last batch id the older build gave");
    store.complete(&running, &FinalMetrics { epochs: 20, ..FinalMetrics::default() }).expect("complete");
    assert_eq!(status_of_sweep(&store, "old", &running.trial_id).status, TrialStatus::Done);
}

/// Metrics survive the round trip through `trials.metrics_json`; a value
/// that is not finite comes back NaN (null in the text); and the text the
/// earlier writer produced (a `serde_json::Value`, keys sorted) reads the
/// same, as does a missing field. Compared by `Debug`, in which NaN equals NaN.
#[test]
fn metrics_round_trip_and_earlier_text_reads_the_same() {
    let metrics = FinalMetrics {
        epochs: 12,
        train_loss: 0.25,
        test_loss: f64::INFINITY,
        train_accuracy: 1.0,
        test_accuracy: 0.5,
        grokked_at: Some(9),
        wall_seconds: 3.5,
        key_frequencies: vec![4, 17],
        judge_accuracy: None,
    };
    let expected = FinalMetrics { test_loss: f64::NAN, ..metrics.clone() };
    let text = metrics_to_json(&metrics);
    assert!(text.contains(r#""test_loss":null"#), "{text}");
    assert_eq!(format!("{:?}", metrics_from_json(&text).expect("read")), format!("{expected:?}"));

    let earlier = serde_json::json!({
        "epochs": metrics.epochs,
        "train_loss": metrics.train_loss,
        "test_loss": metrics.test_loss,
        "train_accuracy": metrics.train_accuracy,
        "test_accuracy": metrics.test_accuracy,
        "grokked_at": metrics.grokked_at,
        "wall_seconds": metrics.wall_seconds,
        "key_frequencies": metrics.key_frequencies,
        "judge_accuracy": metrics.judge_accuracy,
    })
    .to_string();
    assert!(earlier.starts_with(r#"{"epochs":12,"grokked_at":9,"#), "{earlier}");
    assert_eq!(format!("{:?}", metrics_from_json(&earlier).expect("earlier")), format!("{expected:?}"));

    let diffusion = FinalMetrics { key_frequencies: Vec::new(), judge_accuracy: Some(0.875), grokked_at: None, ..expected.clone() };
    assert_eq!(format!("{:?}", metrics_from_json(&metrics_to_json(&diffusion)).expect("read")), format!("{diffusion:?}"));

    let nothing = FinalMetrics {
        train_loss: f64::NAN,
        test_loss: f64::NAN,
        train_accuracy: f64::NAN,
        test_accuracy: f64::NAN,
        wall_seconds: f64::NAN,
        ..FinalMetrics::default()
    };
    assert_eq!(format!("{:?}", metrics_from_json("{}").expect("empty")), format!("{nothing:?}"));
    assert!(metrics_from_json("[1, 2]").is_err());
}
