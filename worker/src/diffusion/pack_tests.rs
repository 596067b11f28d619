//! The diffusion family through the runner: a tiny model learns one pair,
//! and a pack of two trains each member exactly as its single run.

use super::*;
use crate::backend::TestAutodiffBackend;
use crate::runner::run_pack;
use crate::sink::CollectingSink;
use sweep_core::measures::{DECISION_ACCURACY_TEST, SWITCH_FOLLOWS_NEW, TEST_ACCURACY, TEST_LOSS, TRAIN_LOSS};
use sweep_core::{Family, LeaseRef, MeasureValue, StopRule, TrainingSettings, TrialId};

fn lease(name: &str, modulus: u32, fraction: f64, weight_decay: f64, seed: u64, epochs: u32, input: OperandInput) -> TrialLease {
    TrialLease {
        lease: LeaseRef { trial_id: TrialId::from_raw(name), attempt: 1, token: 1 },
        sweep: "test".into(),
        params: TrialParams::new(Family::Diffusion, modulus, fraction, weight_decay, seed, seed, Some(1)),
        training: TrainingSettings {
            lr: 3e-3,
            warmup_steps: 5,
            eval_every: epochs.div_ceil(2),
            checkpoint_every: 0,
            ..TrainingSettings::default()
        },
        stop: StopRule { max_epochs: epochs, target_test_accuracy: None, patience: 1 },
        family: FamilySettings::Diffusion(DiffusionSettings {
            operand_input: input,
            image_size: 16,
            patch_size: 4,
            d_model: 32,
            n_heads: 2,
            d_ffn: 32,
            sample_steps: 10,
            decision_points: 5,
            switch_times: vec![0.8, 0.2],
            ..DiffusionSettings::default()
        }),
        deadline_ms: 0,
    }
}

fn train(leases: Vec<TrialLease>) -> Vec<CollectingSink> {
    let scratch = tempfile::tempdir().expect("scratch");
    let context = FamilyContext::new(std::env::temp_dir());
    let mut sinks: Vec<CollectingSink> = leases.iter().map(|_| CollectingSink::default()).collect();
    let borrowed: Vec<&mut dyn MeasureSink> = sinks.iter_mut().map(|sink| sink as &mut dyn MeasureSink).collect();
    run_pack::<TestAutodiffBackend, DiffusionPack<TestAutodiffBackend>>(leases, borrowed, &context, scratch.path(), &Default::default());
    sinks
}

#[test]
fn a_tiny_model_overfits_one_pair() {
    // One training pair, 300 full-batch steps: the flow loss falls by far
    // and the sampler draws the right symbol from noise.
    let sink = train(vec![lease("a", 3, 0.12, 0.0, 1, 300, OperandInput::Token)]).remove(0);
    let metrics = sink.metrics().expect("done");
    let first_loss = sink.value(0, TRAIN_LOSS).expect("recorded at step 0");
    assert!(metrics.train_loss < first_loss / 10.0, "loss {first_loss} → {}", metrics.train_loss);
    assert_eq!(metrics.train_accuracy, 1.0);
    assert_eq!(metrics.epochs, 300);
    assert!(metrics.judge_accuracy.is_none());
    assert!(matches!(sink.measure(300, SWITCH_FOLLOWS_NEW), Some(MeasureValue::Curve(points)) if points.len() == 2));
}

/// Relative tolerance of pack-versus-single values (see the transformer's);
/// generation accuracies are counts of judged samples, so a sample whose
/// verdict sits on the judge's margin may flip: those are compared exactly
/// only where both runs are away from it, which the tiny runs here are.
const PACK_TOLERANCE: f64 = 5e-4;

#[test]
fn a_pack_of_two_trains_each_trial_as_its_single_run() {
    let leases = vec![lease("a", 5, 0.6, 1.0, 1, 24, OperandInput::Image), lease("b", 5, 0.4, 0.1, 2, 24, OperandInput::Image)];
    let singles: Vec<CollectingSink> = leases.iter().map(|lease| train(vec![lease.clone()]).remove(0)).collect();
    let packed = train(leases);
    for (index, (pack, single)) in packed.iter().zip(&singles).enumerate() {
        let (got, want) = (pack.values(), single.values());
        assert_eq!(got.len(), want.len(), "trial {index}: the same measures");
        for ((step, name, a), (_, other, b)) in got.iter().zip(&want) {
            assert_eq!(name, other, "trial {index}");
            assert!((a - b).abs() <= PACK_TOLERANCE * b.abs().max(1e-3), "trial {index}: {name} at {step}: pack {a} vs single {b}");
        }
        assert_eq!(pack.metrics().expect("done").epochs, 24);
        assert!(pack.measure(24, DECISION_ACCURACY_TEST).is_some());
    }
}

#[test]
fn everything_a_trial_reports_passes_the_coordinators_checks() {
    let sink = train(vec![lease("c", 5, 0.6, 0.0, 1, 4, OperandInput::Image)]).remove(0);
    let context = sweep_core::checks::TrialContext {
        family: Family::Diffusion,
        modulus: 5,
        max_epochs: 4,
        has_test_pairs: true,
        now_ms: sweep_core::checks::EARLIEST_WALL_TIME_MS * 2,
    };
    assert!(sink.metrics().is_some(), "{:?}", sink.outcome);
    assert_eq!(sink.refused_by(&context), None);
    // Every pair a training pair: no test-side rows, and the final test metrics undefined, not 0.
    let whole = train(vec![lease("w", 5, 1.0, 0.0, 1, 4, OperandInput::Image)]).remove(0);
    assert_eq!(whole.refused_by(&sweep_core::checks::TrialContext { has_test_pairs: false, ..context }), None);
    assert!(whole.steps_of(TEST_ACCURACY).is_empty() && whole.steps_of(TEST_LOSS).is_empty());
    assert!(whole.metrics().expect("done").test_accuracy.is_nan());
}

#[test]
fn a_step_cut_into_parts_has_the_whole_draws_loss_and_gradients() {
    let device = Default::default();
    let context = FamilyContext::new(std::env::temp_dir());
    // Splits of 15, 10 and 2 pairs: with 3 parts the third member has none
    // of its rows in one part.
    let leases = [
        lease("a", 5, 0.6, 1.0, 1, 5, OperandInput::Image),
        lease("b", 5, 0.4, 0.1, 2, 5, OperandInput::Image),
        lease("c", 5, 0.08, 1.0, 3, 5, OperandInput::Image),
    ];
    let pack = || {
        let members = leases.iter().map(|lease| DiffusionPack::<TestAutodiffBackend>::prepare(lease, &context, &device).expect("prepares"));
        DiffusionPack::stack(members.collect(), &context, &device)
    };
    let loss_of = |parts: usize| {
        // Each pack draws from fresh generators, so every cut sees the same draws.
        let mut pack = pack();
        let draws = pack.draw_in(parts);
        assert_eq!(draws.len(), parts);
        let total: f32 = draws.iter().map(|draw| draw_loss(&pack.model, draw).into_scalar()).sum();
        let gradients = parts::PartThreads::new(parts).gradients(&pack.model, &draws, draw_loss);
        (total, parts::gradient_values(&pack.model, &gradients))
    };
    let (whole_loss, whole) = loss_of(1);
    assert!(whole.iter().filter(|values| !values.is_empty()).count() >= 10, "the loss reaches the model's weights");
    for parts in [2, 3] {
        let (loss, cut) = loss_of(parts);
        assert!((loss - whole_loss).abs() <= 1e-5 * whole_loss.abs(), "in {parts}: loss {loss} vs {whole_loss}");
        for (parameter, (got, want)) in cut.iter().zip(&whole).enumerate() {
            assert_eq!(got.len(), want.len(), "in {parts}: parameter {parameter} has a gradient in both or neither");
            let scale = want.iter().fold(0f32, |max, value| max.max(value.abs()));
            for (got, want) in got.iter().zip(want) {
                assert!((got - want).abs() <= 1e-5 * scale, "in {parts}: parameter {parameter}: {got} vs {want}");
            }
        }
    }
}
