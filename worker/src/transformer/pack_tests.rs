//! The transformer family through the runner: single trials (packs of one)
//! and packs that must train each member exactly as its single run.

use super::*;
use crate::backend::{TestAutodiffBackend, TestBackend};
use crate::runner::run_pack;
use crate::sink::{CollectingSink, TrialOutcome};
use sweep_core::measures::{RESTRICTED_LOSS, SUM_SQUARED_WEIGHTS, TEST_ACCURACY, TRAIN_ACCURACY, TRAIN_LOSS};
use sweep_core::{Family, LeaseRef, MeasureValue, StopRule, TrainingSettings, TransformerSettings, TrialId};
use sweep_core::{LossKind, OptimizerKind};

fn lease(name: &str, weight_decay: f64, data_fraction: f64, seed: u64, max_epochs: u32) -> TrialLease {
    TrialLease {
        lease: LeaseRef { trial_id: TrialId::from_raw(name), attempt: 1, token: 1 },
        sweep: "test".into(),
        params: TrialParams::new(Family::Transformer, 11, data_fraction, weight_decay, seed, seed + 1, None),
        training: TrainingSettings { lr: 1e-2, warmup_steps: 5, eval_every: 20, checkpoint_every: 100, ..TrainingSettings::default() },
        stop: StopRule { max_epochs, target_test_accuracy: None, patience: 1 },
        family: FamilySettings::Transformer(TransformerSettings { d_model: 32, n_heads: 4, d_mlp: 64 }),
        deadline_ms: 0,
    }
}

fn context() -> FamilyContext {
    FamilyContext::new(std::env::temp_dir())
}

/// Train `leases` as one pack; one collecting sink per trial.
fn train(leases: Vec<TrialLease>) -> Vec<CollectingSink> {
    train_with(leases, &context())
}

/// [`train`] with the given context (its step threads).
fn train_with(leases: Vec<TrialLease>, context: &FamilyContext) -> Vec<CollectingSink> {
    let scratch = tempfile::tempdir().expect("scratch");
    let mut sinks: Vec<CollectingSink> = leases.iter().map(|_| CollectingSink::default()).collect();
    let borrowed: Vec<&mut dyn MeasureSink> = sinks.iter_mut().map(|sink| sink as &mut dyn MeasureSink).collect();
    run_pack::<TestAutodiffBackend, TransformerPack<TestAutodiffBackend>>(leases, borrowed, context, scratch.path(), &Default::default());
    sinks
}

fn train_one(lease: TrialLease) -> CollectingSink {
    train(vec![lease]).remove(0)
}

fn close(got: f64, want: f64, tolerance: f64) -> bool {
    (got - want).abs() <= tolerance * want.abs().max(1e-3) || (got.is_nan() && want.is_nan())
}

#[test]
fn training_memorises_the_training_pairs_and_reports_every_eval() {
    let sink = train_one(lease("a", 0.1, 0.6, 1, 200));
    let metrics = sink.metrics().expect("done");
    assert_eq!(metrics.epochs, 200);
    assert_eq!(sink.steps_of(TRAIN_LOSS), (0..=200).step_by(20).collect::<Vec<_>>());
    assert_eq!(sink.checkpoints.iter().map(|c| c.0).collect::<Vec<_>>(), vec![0, 100, 200]);
    assert_eq!(sink.steps_of(RESTRICTED_LOSS_FINAL_K), vec![0, 100, 200]);
    // At the last step K is the same either way, so both definitions agree there.
    let last = |name| sink.value(200, name).expect("measured at the last step");
    assert_eq!(last(RESTRICTED_LOSS_FINAL_K), last(RESTRICTED_LOSS));
    assert_eq!(last(EXCLUDED_LOSS_FINAL_K), last(sweep_core::measures::EXCLUDED_LOSS));
    let first_loss = sink.value(0, TRAIN_LOSS).expect("loss at step 0");
    assert!((first_loss - (11f64).ln()).abs() < 1.0, "initial loss {first_loss} should be near ln 11");
    assert!(metrics.train_loss < 0.1 * first_loss, "loss fell from {first_loss} to {}", metrics.train_loss);
    assert_eq!(metrics.train_accuracy, 1.0);
    assert!(matches!(sink.measure(200, "W_E"), Some(MeasureValue::Spectrum(values)) if values.len() == 6));
}

#[test]
fn same_seeds_give_identical_series_and_other_seeds_do_not() {
    let run = |seed: u64| train_one(lease("a", 1.0, 0.6, seed, 40)).steps;
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn early_stop_ends_when_the_target_is_held() {
    let mut early = lease("a", 0.1, 0.9, 1, 400);
    early.stop = StopRule { max_epochs: 400, target_test_accuracy: Some(0.01), patience: 2 };
    let sink = train_one(early);
    let accuracies: Vec<(i64, f64)> =
        sink.steps_of(TEST_ACCURACY).into_iter().map(|step| (step, sink.value(step, TEST_ACCURACY).expect("recorded"))).collect();
    let held = accuracies.windows(2).find(|pair| pair[0].1 >= 0.01 && pair[1].1 >= 0.01).map(|pair| pair[1].0).expect("the target is met");
    assert!(held < 400);
    assert_eq!(sink.metrics().expect("done").epochs, held, "stops at the second consecutive evaluation at the target");
    assert_eq!(accuracies.last().map(|a| a.0), Some(held), "and evaluates nothing after it");
}

/// Relative tolerance of the pack-versus-single comparisons: the stacked
/// products and the weighted loss sum in another order than a pack of one,
/// so values agree to f32 rounding accumulated over the steps, not bit for bit.
const PACK_TOLERANCE: f64 = 2e-4;

fn assert_same_run(pack: &CollectingSink, single: &CollectingSink, what: &str) {
    let (pack_rows, single_rows) = (pack.values(), single.values());
    assert_eq!(pack_rows.len(), single_rows.len(), "{what}: the same measures at the same steps");
    for ((step, name, got), (single_step, single_name, want)) in pack_rows.iter().zip(&single_rows) {
        assert_eq!((step, name), (single_step, single_name), "{what}");
        assert!(close(*got, *want, PACK_TOLERANCE), "{what}: {name} at step {step}: pack {got} vs single {want}");
    }
    let (pack_metrics, single_metrics) = (pack.metrics().expect("done"), single.metrics().expect("done"));
    assert_eq!(pack_metrics.epochs, single_metrics.epochs, "{what}: ends at the same step");
    assert_eq!(pack_metrics.key_frequencies, single_metrics.key_frequencies, "{what}");
    assert_eq!(pack_metrics.grokked_at, single_metrics.grokked_at, "{what}");
    let (pack_last, single_last) = (pack.checkpoints.last().expect("checkpoint"), single.checkpoints.last().expect("checkpoint"));
    assert_eq!(pack_last.0, single_last.0, "{what}: final checkpoint step");
    let device = Default::default();
    let (a, _) = checkpoint::load::<TestBackend>(&pack_last.1, &device).expect("loads");
    let (b, _) = checkpoint::load::<TestBackend>(&single_last.1, &device).expect("loads");
    for (got, want) in crate::host(a.w_in.val()).iter().zip(crate::host(b.w_in.val())) {
        assert!(close(*got as f64, want as f64, PACK_TOLERANCE), "{what}: final W_in {got} vs {want}");
    }
    for (got, want) in crate::host(a.embed.val()).iter().zip(crate::host(b.embed.val())) {
        assert!(close(*got as f64, want as f64, PACK_TOLERANCE), "{what}: final W_E {got} vs {want}");
    }
}

#[test]
fn a_pack_of_three_trains_each_trial_as_its_single_run() {
    // Different weight decay, data fraction (so different split sizes and
    // padding) and seed; the second stops early at its own rule.
    let mut stopping = lease("b", 0.1, 0.5, 2, 60);
    stopping.stop = StopRule { max_epochs: 60, target_test_accuracy: Some(0.01), patience: 2 };
    let leases = vec![lease("a", 1.0, 0.8, 1, 60), stopping, lease("c", 0.0, 0.3, 3, 60)];
    let singles: Vec<CollectingSink> = leases.iter().map(|lease| train_one(lease.clone())).collect();
    let packed = train(leases);
    for (index, (pack, single)) in packed.iter().zip(&singles).enumerate() {
        assert_same_run(pack, single, &format!("trial {index}"));
    }
    assert_eq!(packed[1].metrics().expect("done").epochs, 20, "the early stopper left at step 20");
    assert_eq!(packed[0].metrics().expect("done").epochs, 60);
    assert_eq!(packed[2].steps_of(TEST_ACCURACY), vec![0, 20, 40, 60], "the others trained on after it left");
}

/// A sink that asks its trial to stop once it has recorded `after` steps.
struct CancelAfter {
    inner: CollectingSink,
    after: usize,
}

impl MeasureSink for CancelAfter {
    fn record(&mut self, step: i64, measures: Vec<Measure>) -> Result<(), crate::sink::SinkError> {
        self.inner.record(step, measures)
    }

    fn checkpoint(&mut self, step: i64, safetensors: Vec<u8>) -> Result<(), crate::sink::SinkError> {
        self.inner.checkpoint(step, safetensors)
    }

    fn cancelled(&self) -> bool {
        self.inner.steps.len() >= self.after
    }

    fn finish(&mut self, outcome: TrialOutcome) {
        self.inner.finish(outcome)
    }
}

#[test]
fn a_cancelled_trial_leaves_the_pack_and_the_others_train_as_alone() {
    let leases = vec![lease("a", 1.0, 0.6, 1, 60), lease("b", 0.3, 0.5, 2, 60)];
    let single = train_one(leases[0].clone());
    let scratch = tempfile::tempdir().expect("scratch");
    let mut kept = CollectingSink::default();
    let mut cancelled = CancelAfter { inner: CollectingSink::default(), after: 2 };
    run_pack::<TestAutodiffBackend, TransformerPack<TestAutodiffBackend>>(
        leases,
        vec![&mut kept, &mut cancelled],
        &context(),
        scratch.path(),
        &Default::default(),
    );
    assert!(matches!(cancelled.inner.outcome, Some(TrialOutcome::Cancelled)), "{:?}", cancelled.inner.outcome);
    assert_eq!(cancelled.inner.steps_of(TRAIN_LOSS), vec![0, 20], "it stopped after its second evaluation");
    assert_same_run(&kept, &single, "the trial that stayed");
}

#[test]
fn a_trial_of_another_family_fails_alone() {
    let mut wrong = lease("b", 1.0, 0.5, 2, 20);
    wrong.family = FamilySettings::Diffusion(sweep_core::DiffusionSettings::default());
    let sinks = train(vec![lease("a", 1.0, 0.5, 1, 20), wrong]);
    assert!(sinks[0].metrics().is_some());
    assert!(matches!(sinks[1].outcome, Some(TrialOutcome::Failed(_))));
}

#[test]
fn cross_entropy_matches_f64_and_keeps_tiny_gradients() {
    use burn::tensor::{Tensor, TensorData};
    let device = Default::default();
    // Row 0: an ordinary row. Row 1: margin 20 over 4 classes, loss ≈ 3·e^−20 ≈ 6e-9,
    // where an f32 `log_softmax` gives the label a gradient of exactly 0.
    let rows = [vec![0.3f32, -1.2, 2.0, 0.5], vec![20.0f32, 0.0, 0.0, 0.0]];
    let labels = [2usize, 0];
    let logits: Vec<f32> = rows.iter().flatten().copied().collect();
    let mut one_hot = vec![0f32; 8];
    one_hot[labels[0]] = 1.0;
    one_hot[4 + labels[1]] = 1.0;
    let logits = Tensor::<TestAutodiffBackend, 2>::from_data(TensorData::new(logits, [2, 4]), &device).require_grad();
    let one_hot = Tensor::<TestAutodiffBackend, 2>::from_data(TensorData::new(one_hot, [2, 4]), &device);
    let loss = cross_entropy_rows(logits.clone(), one_hot).mean();
    let value: f32 = loss.clone().into_scalar();
    let gradients = loss.backward();
    let gradient: Vec<f32> = logits.grad(&gradients).expect("gradient").into_data().to_vec().expect("f32");
    let mut expected_loss = 0.0;
    for (index, (row, &label)) in rows.iter().zip(&labels).enumerate() {
        let row: Vec<f64> = row.iter().map(|&x| x as f64).collect();
        let expected = reference_gradient(&row, label);
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
        expected_loss += (lse - row[label]) / 2.0;
        for (column, want) in expected.iter().enumerate() {
            let got = gradient[index * 4 + column] as f64 * 2.0; // the mean over 2 rows halves it
            assert!((got - want).abs() <= 1e-5 * want.abs().max(1e-3), "row {index} column {column}: {got} vs {want}");
        }
    }
    assert!((value as f64 - expected_loss).abs() < 1e-6, "{value} vs {expected_loss}");
    // The label's gradient in the confident row is −3e^−20 to 1e-5 relative, not 0.
    assert!(gradient[4] < 0.0 && ((gradient[4] as f64 * 2.0) / (-3.0 * (-20f64).exp()) - 1.0).abs() < 1e-5);
}

/// Row-wise f64 reference of d loss / d logits, with the label's entry
/// written as −Σ_{i≠c} p_i so it keeps its precision.
fn reference_gradient(row: &[f64], label: usize) -> Vec<f64> {
    let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let denominator: f64 = row.iter().map(|x| (x - max).exp()).sum();
    let softmax: Vec<f64> = row.iter().map(|x| (x - max).exp() / denominator).collect();
    let others: f64 = softmax.iter().enumerate().filter(|(i, _)| *i != label).map(|(_, p)| p).sum();
    softmax.iter().enumerate().map(|(i, p)| if i == label { -others } else { *p }).collect()
}

#[test]
fn every_optimiser_and_loss_trains_and_init_scale_multiplies_the_initial_weights() {
    let with = |optimizer: OptimizerKind, loss: Option<LossKind>, init_scale: f64| {
        let mut trial = lease("k", 0.1, 0.6, 1, 200);
        trial.params = TrialParams { optimizer, loss, init_scale, ..trial.params };
        // A short window, and λ = 1: at this lr the default λ = 5 stalls this
        // small model (train loss 2.43 → 2.03 in 200 steps; λ = 0 is exactly AdamW).
        trial.training.grokfast_ma = sweep_core::GrokfastMaSettings { window: 10, lambda: 1.0 };
        train_one(trial)
    };
    let scalar = |sink: &CollectingSink, name: &str, step: i64| sink.value(step, name).unwrap_or_else(|| panic!("{name} at {step}"));
    let plain = with(OptimizerKind::Adamw, None, 1.0);
    for (optimizer, loss) in [
        (OptimizerKind::GrokfastEma, None),
        (OptimizerKind::GrokfastMa, None),
        (OptimizerKind::Orthograd, None),
        (OptimizerKind::Adamw, Some(LossKind::Stablemax)),
    ] {
        let sink = with(optimizer, loss, 1.0);
        let what = format!("{optimizer} {loss:?}");
        // One initialisation: before the first step only the loss can tell them apart.
        assert_eq!(scalar(&sink, TRAIN_LOSS, 0) == scalar(&plain, TRAIN_LOSS, 0), loss.is_none(), "{what}");
        assert!(scalar(&sink, TRAIN_ACCURACY, 200) >= 0.95, "{what} memorises: {}", scalar(&sink, TRAIN_ACCURACY, 200));
        assert_ne!(scalar(&sink, TRAIN_LOSS, 200), scalar(&plain, TRAIN_LOSS, 200), "{what} is not plain AdamW");
    }
    // The same initialisation twice as large has four times the squared weights (biases start at 0).
    let doubled = with(OptimizerKind::Adamw, None, 2.0);
    let (one, two) = (scalar(&plain, SUM_SQUARED_WEIGHTS, 0), scalar(&doubled, SUM_SQUARED_WEIGHTS, 0));
    assert!((two / one - 4.0).abs() < 1e-5, "{two} vs 4 × {one}");
}

/// StableMax cross-entropy in f64, the formula of Prieto et al.
fn stablemax_reference(row: &[f64], label: usize) -> f64 {
    let s = |x: f64| if x >= 0.0 { x + 1.0 } else { 1.0 / (1.0 - x) };
    let total: f64 = row.iter().map(|&x| s(x)).sum();
    -(s(row[label]) / total).ln()
}

#[test]
fn stablemax_matches_its_formula_and_a_finite_difference_gradient() {
    use burn::tensor::{Tensor, TensorData};
    let device = Default::default();
    let rows = [vec![0.3f32, -1.2, 2.0, 0.5], vec![-0.7f32, 1.5, -2.5, 0.1], vec![40.0f32, 0.0, -3.0, 1.0]];
    let labels = [2usize, 0, 0];
    let logits: Vec<f32> = rows.iter().flatten().copied().collect();
    let mut one_hot = vec![0f32; 12];
    for (index, &label) in labels.iter().enumerate() {
        one_hot[index * 4 + label] = 1.0;
    }
    let logits = Tensor::<TestAutodiffBackend, 2>::from_data(TensorData::new(logits, [3, 4]), &device).require_grad();
    let one_hot = Tensor::<TestAutodiffBackend, 2>::from_data(TensorData::new(one_hot, [3, 4]), &device);
    let per_row = stablemax_cross_entropy_rows(logits.clone(), one_hot.clone());
    let values: Vec<f32> = per_row.clone().into_data().to_vec().expect("f32");
    let gradients = per_row.sum().backward();
    let gradient: Vec<f32> = logits.grad(&gradients).expect("gradient").into_data().to_vec().expect("f32");
    let softmax: Vec<f32> = cross_entropy_rows(logits.inner(), one_hot.inner()).into_data().to_vec().expect("f32");
    for (index, (row, &label)) in rows.iter().zip(&labels).enumerate() {
        let row: Vec<f64> = row.iter().map(|&x| x as f64).collect();
        let want = stablemax_reference(&row, label);
        assert!((values[index] as f64 - want).abs() <= 1e-6 * want.max(1e-3), "row {index}: {} vs {want}", values[index]);
        assert!((values[index] - softmax[index]).abs() > 1e-3, "row {index}: StableMax is not softmax here");
        for column in 0..4 {
            let h = 1e-6;
            let (mut up, mut down) = (row.clone(), row.clone());
            up[column] += h;
            down[column] -= h;
            let numeric = (stablemax_reference(&up, label) - stablemax_reference(&down, label)) / (2.0 * h);
            let got = gradient[index * 4 + column] as f64;
            assert!((got - numeric).abs() <= 1e-4 * numeric.abs().max(1e-3), "row {index} column {column}: {got} vs {numeric}");
        }
    }
    // Where they must agree: equal logits give ln(classes) for both.
    let equal = Tensor::<TestBackend, 2>::from_data(TensorData::new(vec![0.7f32; 4], [1, 4]), &device);
    let label = Tensor::<TestBackend, 2>::from_data(TensorData::new(vec![0f32, 0.0, 1.0, 0.0], [1, 4]), &device);
    let stable: f32 = stablemax_cross_entropy_rows(equal.clone(), label.clone()).into_scalar();
    let soft: f32 = cross_entropy_rows(equal, label).into_scalar();
    assert!((stable as f64 - 4f64.ln()).abs() < 1e-6 && (soft as f64 - 4f64.ln()).abs() < 1e-6, "{stable} {soft}");
}

#[test]
fn everything_a_trial_reports_passes_the_coordinators_checks() {
    let now = sweep_core::checks::EARLIEST_WALL_TIME_MS * 2;
    for (fraction, has_test_pairs) in [(0.5, true), (1.0, false)] {
        let sink = train_one(lease("c", 1.0, fraction, 1, 40));
        let context =
            sweep_core::checks::TrialContext { family: Family::Transformer, modulus: 11, max_epochs: 40, has_test_pairs, now_ms: now };
        assert_eq!(sink.refused_by(&context), None, "fraction {fraction}");
        if !has_test_pairs {
            assert!(sink.steps_of(TEST_ACCURACY).is_empty(), "no test pairs, no test-side rows");
        }
    }
}

#[test]
fn a_step_cut_into_parts_has_the_whole_batchs_loss_and_gradients() {
    let device = Default::default();
    // Trials with splits of different sizes, so every part pads some of
    // them; the third has 2 pairs, so one of 3 parts holds none of its.
    let leases = [lease("a", 1.0, 0.6, 1, 10), lease("b", 0.3, 0.35, 2, 10), lease("c", 1.0, 0.02, 3, 10)];
    let members = leases.iter().map(|lease| TransformerPack::<TestAutodiffBackend>::prepare(lease, &context(), &device).expect("prepares"));
    let pack = TransformerPack::stack(members.collect(), &context(), &device);
    assert_eq!(pack.parts.len(), 1, "one step thread, one part");
    for kind in [LossKind::Softmax, LossKind::Stablemax] {
        let loss_of = |parts: usize| {
            let batches = batches_in(&pack.members, pack.modulus, parts, &device);
            let total: f32 = batches.iter().map(|batch| pack_loss(&pack.model, batch, kind).into_scalar()).sum();
            let gradients = parts::PartThreads::new(parts).gradients(&pack.model, &batches, |model, batch| pack_loss(model, batch, kind));
            (total, parts::gradient_values(&pack.model, &gradients))
        };
        let (whole_loss, whole) = loss_of(1);
        assert!(whole.iter().all(|values| !values.is_empty()), "every parameter has a gradient");
        for parts in [2, 3] {
            let (loss, cut) = loss_of(parts);
            assert!((loss - whole_loss).abs() <= 1e-5 * whole_loss.abs(), "{kind:?} in {parts}: loss {loss} vs {whole_loss}");
            for (parameter, (got, want)) in cut.iter().zip(&whole).enumerate() {
                let scale = want.iter().fold(0f32, |max, value| max.max(value.abs()));
                for (got, want) in got.iter().zip(want) {
                    assert!((got - want).abs() <= 1e-5 * scale, "{kind:?} in {parts}: parameter {parameter}: {got} vs {want}");
                }
            }
        }
    }
}

#[test]
fn a_pack_is_cut_into_one_part_per_step_thread_where_it_has_the_rows() {
    let device = Default::default();
    // p = 47 at fraction 0.6: 1,325 training pairs, room for two parts of 256 rows or more.
    let mut large = lease("large", 1.0, 0.6, 1, 10);
    large.params.modulus = 47;
    let prepare = |lease: &TrialLease| TransformerPack::<TestAutodiffBackend>::prepare(lease, &context(), &device).expect("prepares");
    let two = context().with_step_threads(2);
    let pack = TransformerPack::stack(vec![prepare(&large)], &two, &device);
    assert_eq!(pack.parts.len(), 2);
    let rows: Vec<usize> = pack.parts.iter().map(PackBatch::rows).collect();
    assert_eq!(rows.iter().sum::<usize>(), sweep_core::split::train_size(47, 0.6), "the parts hold every pair once: {rows:?}");
    let single = TransformerPack::stack(vec![prepare(&large)], &context(), &device);
    assert_eq!(single.parts.len(), 1, "one step thread");
    let mut smaller = lease("smaller", 1.0, 0.3, 2, 10);
    smaller.params.modulus = 47;
    let mut pack = TransformerPack::stack(vec![prepare(&large), prepare(&smaller)], &two, &device);
    pack.keep(&[1]);
    let rows: Vec<usize> = pack.parts.iter().map(PackBatch::rows).collect();
    assert_eq!(rows.iter().sum::<usize>(), sweep_core::split::train_size(47, 0.3), "the parts are made again when a member leaves");
    // The small trials of the other tests (p = 11, 72 pairs) are not cut.
    let small = TransformerPack::stack(vec![prepare(&lease("small", 1.0, 0.6, 2, 10))], &two, &device);
    assert_eq!(small.parts.len(), 1);
}

#[test]
fn a_pack_on_step_threads_trains_each_trial_as_on_one_thread() {
    // p = 47 at fraction 0.6 (1,325 pairs) is cut into 2 parts on 2 step
    // threads; the p = 11 trial (72 pairs) is not cut, but its step runs on
    // the pack's pool. Only the order of the gradient's sums differs, and
    // AdamW turns rounding-sized differences of near-zero gradients into
    // lr-sized steps, so the runs are compared over 20 steps at 1e-3.
    let short = |mut lease: TrialLease| {
        lease.training.eval_every = 5;
        lease.stop.max_epochs = 20;
        lease
    };
    let mut large = short(lease("large", 1.0, 0.6, 1, 20));
    large.params.modulus = 47;
    for trials in [vec![large.clone(), large], vec![short(lease("small", 1.0, 0.6, 2, 20))]] {
        let one = train_with(trials.clone(), &context());
        let two = train_with(trials.clone(), &context().with_step_threads(2));
        let again = train_with(trials, &context().with_step_threads(2));
        for (index, ((two, again), one)) in two.iter().zip(&again).zip(&one).enumerate() {
            assert_eq!(two.values(), again.values(), "trial {index}: the same run twice on 2 step threads");
            assert_eq!(two.values().len(), one.values().len());
            for ((step, name, got), (_, _, want)) in two.values().iter().zip(&one.values()) {
                assert!(close(*got, *want, 1e-3), "trial {index}: {name} at step {step}: 2 threads {got} vs 1 thread {want}");
            }
        }
    }
}
