//! Grid expansion: a validated spec becomes its trials, in a stable order,
//! all at once ([`expand`]) or a range of grid positions at a time
//! ([`Grid::trials`]), so that a large sweep is never held whole.

use std::ops::Range;

use crate::optimizer::{LossKind, OptimizerKind};
use crate::spec::SweepSpec;
use crate::trial::{Family, TrialId, TrialParams, TrialSpec};

/// Expand a sweep into trials. The count is the product of the axes that apply
/// to each family, summed over families; `image_diversity` applies to the
/// diffusion family only and `loss` to the transformer only; without a
/// `data_seed` axis each trial splits its data with its model seed.
pub fn expand(spec: &SweepSpec) -> Vec<TrialSpec> {
    let grid = Grid::new(spec);
    let total = u64::try_from(grid.len()).expect("a grid whose trials fit in memory has fewer than 2^64");
    grid.trials(0..total)
}

/// How many trials [`expand`] makes of `spec`, computed from the axes'
/// lengths without building any (so a grid too large to hold is refused
/// before anything is allocated).
pub fn count(spec: &SweepSpec) -> u128 {
    Grid::new(spec).len()
}

/// The values of one family's axes, outermost first, as they enter its
/// trials: an lr equal to `training.lr` and the softmax loss are the
/// defaults and stay out of the trial id (`None`).
#[derive(Debug, Clone)]
struct FamilyAxes {
    family: Family,
    moduli: Vec<u32>,
    fractions: Vec<f64>,
    decays: Vec<f64>,
    rates: Vec<Option<f64>>,
    scales: Vec<f64>,
    optimizers: Vec<OptimizerKind>,
    losses: Vec<Option<LossKind>>,
    diversities: Vec<Option<u32>>,
    seeds: Vec<u64>,
    /// `None`: each trial splits its data with its model seed.
    data_seeds: Option<Vec<u64>>,
}

impl FamilyAxes {
    /// The axes' lengths, outermost first; the data seeds innermost.
    fn lengths(&self) -> [usize; 10] {
        [
            self.moduli.len(),
            self.fractions.len(),
            self.decays.len(),
            self.rates.len(),
            self.scales.len(),
            self.optimizers.len(),
            self.losses.len(),
            self.diversities.len(),
            self.seeds.len(),
            self.data_seeds.as_ref().map_or(1, Vec::len),
        ]
    }

    fn count(&self) -> u128 {
        self.lengths().into_iter().map(|length| length as u128).product()
    }

    /// The trial at `position` (below [`FamilyAxes::count`]), its axis
    /// indices read off `position` in mixed radix, the innermost axis fastest.
    fn params(&self, mut position: u128) -> TrialParams {
        let lengths = self.lengths();
        let mut at = [0usize; 10];
        for (axis, &length) in lengths.iter().enumerate().rev() {
            at[axis] = (position % length as u128) as usize;
            position /= length as u128;
        }
        let seed = self.seeds[at[8]];
        TrialParams {
            lr: self.rates[at[3]],
            init_scale: self.scales[at[4]],
            optimizer: self.optimizers[at[5]],
            loss: self.losses[at[6]],
            image_diversity: self.diversities[at[7]],
            ..TrialParams::new(
                self.family,
                self.moduli[at[0]],
                self.fractions[at[1]],
                self.decays[at[2]],
                seed,
                self.data_seeds.as_ref().map_or(seed, |data_seeds| data_seeds[at[9]]),
                None,
            )
        }
    }
}

/// A sweep's grid: its trials by position, in the order of [`expand`]
/// (family by family as the spec lists them; within one, modulus outermost,
/// then data fraction, weight decay, lr, initial scale, optimiser, loss,
/// image diversity, seed and data seed), each made only when asked for.
#[derive(Debug, Clone)]
pub struct Grid {
    sweep: String,
    families: Vec<FamilyAxes>,
}

impl Grid {
    /// The grid of `spec`.
    pub fn new(spec: &SweepSpec) -> Self {
        let axes = &spec.axes;
        let rates: Vec<Option<f64>> = axes.lr.iter().map(|&lr| (lr != spec.training.lr).then_some(lr)).collect();
        let families = spec
            .families
            .iter()
            .map(|&family| {
                let (diversities, losses) = match family {
                    Family::Diffusion => (axes.image_diversity.iter().copied().map(Some).collect(), vec![None]),
                    Family::Transformer => {
                        (vec![None], axes.loss.iter().map(|&loss| (loss != LossKind::Softmax).then_some(loss)).collect())
                    }
                };
                FamilyAxes {
                    family,
                    moduli: axes.modulus.clone(),
                    fractions: axes.data_fraction.clone(),
                    decays: axes.weight_decay.clone(),
                    rates: rates.clone(),
                    scales: axes.init_scale.clone(),
                    optimizers: axes.optimizer.clone(),
                    losses,
                    diversities,
                    seeds: axes.seed.clone(),
                    data_seeds: axes.data_seed.clone(),
                }
            })
            .collect();
        Grid { sweep: spec.name.clone(), families }
    }

    /// How many trials the grid has.
    pub fn len(&self) -> u128 {
        self.families.iter().map(FamilyAxes::count).sum()
    }

    /// Whether the grid has no trials (never, for a validated spec).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The trials at grid positions `positions` (clipped to the grid), in order.
    pub fn trials(&self, positions: Range<u64>) -> Vec<TrialSpec> {
        let end = u128::from(positions.end).min(self.len());
        let mut trials = Vec::with_capacity(end.saturating_sub(u128::from(positions.start)) as usize);
        let mut position = u128::from(positions.start);
        let mut family_start = 0u128;
        for axes in &self.families {
            let family_end = family_start + axes.count();
            while position < end && position < family_end {
                let params = axes.params(position - family_start);
                let id = TrialId::compute(&self.sweep, &params);
                trials.push(TrialSpec { id, sweep: self.sweep.clone(), params });
                position += 1;
            }
            family_start = family_end;
        }
        trials
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;
    use crate::spec::parse_spec;

    /// The expansion as it was written before [`Grid`]: every point of the
    /// non-seed axes built as a product, then the seeds. [`expand`] must
    /// give the same trials in the same order.
    fn expand_by_products(spec: &SweepSpec) -> Vec<TrialSpec> {
        let axes = &spec.axes;
        let mut trials = Vec::new();
        let rates: Vec<Option<f64>> = axes.lr.iter().map(|&lr| (lr != spec.training.lr).then_some(lr)).collect();
        for &family in &spec.families {
            let (diversities, losses): (Vec<Option<u32>>, Vec<Option<LossKind>>) = match family {
                Family::Diffusion => (axes.image_diversity.iter().copied().map(Some).collect(), vec![None]),
                Family::Transformer => (vec![None], axes.loss.iter().map(|&loss| (loss != LossKind::Softmax).then_some(loss)).collect()),
            };
            let mut points = vec![TrialParams::new(family, 0, 0.0, 0.0, 0, 0, None)];
            points = product(points, &axes.modulus, |p, &v| p.modulus = v);
            points = product(points, &axes.data_fraction, |p, &v| p.data_fraction = v);
            points = product(points, &axes.weight_decay, |p, &v| p.weight_decay = v);
            points = product(points, &rates, |p, &v| p.lr = v);
            points = product(points, &axes.init_scale, |p, &v| p.init_scale = v);
            points = product(points, &axes.optimizer, |p, &v| p.optimizer = v);
            points = product(points, &losses, |p, &v| p.loss = v);
            points = product(points, &diversities, |p, &v| p.image_diversity = v);
            for point in points {
                for &seed in &axes.seed {
                    let data_seeds = axes.data_seed.clone().unwrap_or_else(|| vec![seed]);
                    for data_seed in data_seeds {
                        let params = TrialParams { seed, data_seed, ..point.clone() };
                        let id = TrialId::compute(&spec.name, &params);
                        trials.push(TrialSpec { id, sweep: spec.name.clone(), params });
                    }
                }
            }
        }
        trials
    }

    /// Every point of `points` once per value of an inner axis, in order.
    fn product<T>(points: Vec<TrialParams>, values: &[T], set: impl Fn(&mut TrialParams, &T)) -> Vec<TrialParams> {
        let mut out = Vec::with_capacity(points.len() * values.len());
        for point in points {
            for value in values {
                let mut next = point.clone();
                set(&mut next, value);
                out.push(next);
            }
        }
        out
    }

    /// A spec with every axis that has more than one value, both families.
    fn every_axis(moduli: &[u32], seeds: &[u32], data_seeds: Option<&[u32]>) -> String {
        let list = |values: &[u32]| format!("[{}]", values.iter().map(u32::to_string).collect::<Vec<_>>().join(", "));
        let data_seeds = data_seeds.map(|data_seeds| format!("  data_seed: {}\n", list(data_seeds))).unwrap_or_default();
        format!(
            "version: 1\nname: every\nfamilies: [transformer, diffusion]\naxes:\n  modulus: {}\n  data_fraction: [0.5, 0.9]\n  weight_decay: [0.1, 1]\n  seed: {}\n{data_seeds}  image_diversity: [1, 4]\n  lr: [0.001, 0.003]\n  init_scale: [0.5, 1]\n  optimizer: [adamw, orthograd]\n  loss: [softmax, stablemax]\ntraining:\n  lr: 0.003\n",
            list(moduli),
            list(seeds)
        )
    }

    fn spec_text(moduli: &[u32], fractions: &[u32], decays: &[u32], seeds: &[u32], data_seeds: Option<&[u32]>) -> String {
        let list = |values: &[u32], scale: f64| {
            let items: Vec<String> = values.iter().map(|v| format!("{}", *v as f64 * scale)).collect();
            format!("[{}]", items.join(", "))
        };
        let mut text = format!(
            "version: 1\nname: prop\nfamilies: transformer\naxes:\n  modulus: {}\n  data_fraction: {}\n  weight_decay: {}\n  seed: {}\n",
            list(moduli, 1.0),
            list(fractions, 0.01),
            list(decays, 0.1),
            list(seeds, 1.0)
        );
        if let Some(data_seeds) = data_seeds {
            text.push_str(&format!("  data_seed: {}\n", list(data_seeds, 1.0)));
        }
        text
    }

    fn unique(values: Vec<u32>) -> Vec<u32> {
        let mut seen = HashSet::new();
        values.into_iter().filter(|v| seen.insert(*v)).collect()
    }

    proptest! {
        #[test]
        fn the_grid_by_position_is_the_grid_by_products_in_chunks_of_any_size(
            moduli in proptest::collection::vec((1u32..40).prop_map(|k| 2 * k + 1), 1..3),
            seeds in proptest::collection::vec(0u32..1000, 1..3),
            data_seeds in proptest::option::of(proptest::collection::vec(0u32..1000, 1..3)),
            chunk in 1u64..200,
        ) {
            let (moduli, seeds) = (unique(moduli), unique(seeds));
            let data_seeds = data_seeds.map(unique);
            let spec = parse_spec("every.yaml", &every_axis(&moduli, &seeds, data_seeds.as_deref())).expect("generated spec is valid");
            let reference = expand_by_products(&spec);
            prop_assert_eq!(&expand(&spec), &reference);
            let grid = Grid::new(&spec);
            prop_assert_eq!(grid.len(), reference.len() as u128);
            let mut chunked = Vec::new();
            let mut start = 0;
            while start < reference.len() as u64 {
                chunked.extend(grid.trials(start..start + chunk));
                start += chunk;
            }
            prop_assert_eq!(&chunked, &reference);
        }

        #[test]
        fn count_is_product_and_ids_unique_and_stable(
            moduli in proptest::collection::vec((1u32..40).prop_map(|k| 2 * k + 1), 1..4),
            fractions in proptest::collection::vec(30u32..100, 1..4),
            decays in proptest::collection::vec(0u32..30, 1..4),
            seeds in proptest::collection::vec(0u32..1000, 1..4),
            data_seeds in proptest::option::of(proptest::collection::vec(0u32..1000, 1..3)),
        ) {
            let (moduli, fractions, decays, seeds) = (unique(moduli), unique(fractions), unique(decays), unique(seeds));
            let data_seeds = data_seeds.map(unique);
            let text = spec_text(&moduli, &fractions, &decays, &seeds, data_seeds.as_deref());
            let spec = parse_spec("prop.yaml", &text).expect("generated spec is valid");
            let trials = expand(&spec);
            prop_assert_eq!(count(&spec), trials.len() as u128);
            let data_seed_count = data_seeds.as_ref().map_or(1, Vec::len);
            prop_assert_eq!(trials.len(), moduli.len() * fractions.len() * decays.len() * seeds.len() * data_seed_count);
            let ids: HashSet<_> = trials.iter().map(|t| t.id.clone()).collect();
            prop_assert_eq!(ids.len(), trials.len());
            // Stable: the same text expands to the same ids.
            let again = expand(&parse_spec("prop.yaml", &text).expect("valid"));
            prop_assert_eq!(&trials, &again);
        }

        #[test]
        fn adding_an_axis_value_only_adds_trials(seeds in proptest::collection::vec(0u32..1000, 1..5), extra in 1000u32..2000) {
            let seeds = unique(seeds);
            let before = expand(&parse_spec("a.yaml", &spec_text(&[7], &[50], &[10], &seeds, None)).expect("valid"));
            let mut more = seeds.clone();
            more.push(extra);
            let after = expand(&parse_spec("a.yaml", &spec_text(&[7], &[50], &[10], &more, None)).expect("valid"));
            let after_ids: HashSet<_> = after.iter().map(|t| t.id.clone()).collect();
            for trial in &before {
                prop_assert!(after_ids.contains(&trial.id));
            }
            prop_assert_eq!(after.len(), before.len() + 1);
        }
    }

    #[test]
    fn a_range_past_the_end_is_clipped_and_an_empty_one_is_empty() {
        let spec = parse_spec("every.yaml", &every_axis(&[7], &[0, 1], None)).expect("valid");
        let grid = Grid::new(&spec);
        // transformer: 2 · 2 · 2 · 2 · 2 · 2 losses · 2 seeds; diffusion: 2 diversities instead of the losses.
        assert_eq!(grid.len(), 2 * 128);
        assert_eq!(grid.trials(250..1000).len(), 6);
        assert_eq!(grid.trials(250..1000), expand(&spec)[250..].to_vec());
        assert!(grid.trials(300..400).is_empty());
        assert!(grid.trials(5..5).is_empty());
        assert!(!grid.is_empty());
    }

    #[test]
    fn image_diversity_does_not_multiply_transformer_trials() {
        let text = "version: 1\nname: d\nfamilies: transformer\naxes:\n  modulus: 7\n  data_fraction: 0.5\n  weight_decay: 1\n  seed: [0, 1]\n  image_diversity: [1, 4, 256]\n";
        let trials = expand(&parse_spec("d.yaml", text).expect("valid"));
        assert_eq!(trials.len(), 2);
        assert!(trials.iter().all(|t| t.params.image_diversity.is_none()));
    }

    #[test]
    fn image_diversity_multiplies_diffusion_trials_only() {
        let text = "version: 1\nname: d\nfamilies: [transformer, diffusion]\naxes:\n  modulus: 23\n  data_fraction: 0.9\n  weight_decay: 1\n  seed: [0, 1]\n  image_diversity: [1, 4, 256]\n";
        let trials = expand(&parse_spec("d.yaml", text).expect("valid"));
        assert_eq!(trials.len(), 2 + 2 * 3);
        let diffusion: Vec<_> = trials.iter().filter(|t| t.params.family == Family::Diffusion).collect();
        assert_eq!(diffusion.len(), 6);
        let mut diversities: Vec<u32> = diffusion.iter().filter_map(|t| t.params.image_diversity).collect();
        diversities.sort_unstable();
        assert_eq!(diversities, vec![1, 1, 4, 4, 256, 256]);
        // The families' trials never share an id.
        let ids: HashSet<_> = trials.iter().map(|t| t.id.clone()).collect();
        assert_eq!(ids.len(), trials.len());
    }

    #[test]
    fn trials_that_differ_only_in_weight_decay_share_their_split() {
        let trials = expand(&parse_spec("w.yaml", &spec_text(&[13], &[40], &[3, 10, 30], &[2], None)).expect("valid"));
        assert_eq!(trials.len(), 3);
        let splits: Vec<crate::Split> =
            trials.iter().map(|t| crate::Split::new(t.params.modulus, t.params.data_fraction, t.params.data_seed)).collect();
        assert!(splits.windows(2).all(|pair| pair[0] == pair[1]));
        // A different data seed does change it.
        assert_ne!(splits[0], crate::Split::new(13, 0.4, trials[0].params.data_seed + 1));
    }

    /// `sweeps/diffusion-quick.yaml` before session 8 (comments left out).
    const DIFFUSION_QUICK_BEFORE: &str = "version: 1\nname: diffusion-quick\nfamilies: diffusion\naxes:\n  modulus: 11\n  data_fraction: 0.9\n  weight_decay: 1.0\n  seed: 0\n  image_diversity: [1, 4]\ntraining:\n  lr: 1.0e-3\n  warmup_steps: 10\n  eval_every: 100\nstop:\n  max_epochs: 600\ndiffusion:\n  image_size: 16\n  patch_size: 4\n  d_model: 32\n  n_heads: 4\n  d_ffn: 32\n  sample_steps: 20\n  decision_points: 10\n  switch_times: [0.8, 0.5, 0.2]\n";

    /// The ids of the committed sweep files, as the build before the lr,
    /// init_scale, optimizer and loss axes computed them: count, SHA-256 of
    /// the comma-joined ids (first 16 hex digits), first id.
    #[test]
    fn committed_sweeps_keep_the_ids_of_the_build_before_the_later_axes() {
        use sha2::{Digest, Sha256};
        let pinned = [
            ("quickstart", include_str!("../../sweeps/quickstart.yaml"), 4, "00b25aa71f7b9a2b", "dea0d732b3dea5e4"),
            ("nanda-2023", include_str!("../../sweeps/nanda-2023.yaml"), 5, "9844bed3fa3ba145", "3a45424567446171"),
            ("fraction-x-decay", include_str!("../../sweeps/fraction-x-decay.yaml"), 105, "839af5800fcf5aef", "00ef07766177cb70"),
            // The quick diffusion sweep as it was then (the file has since been made longer).
            ("diffusion-quick", DIFFUSION_QUICK_BEFORE, 2, "3536b427b49b310e", "1cd083756eddf23a"),
            ("diffusion-2026", include_str!("../../sweeps/diffusion-2026.yaml"), 9, "32d96475d92c45f1", "69d6fa8b5e1ed95d"),
        ];
        for (name, text, count, digest, first) in pinned {
            let trials = expand(&parse_spec(name, text).expect("a committed sweep is valid"));
            let ids: Vec<&str> = trials.iter().map(|trial| trial.id.as_str()).collect();
            let hash = Sha256::digest(ids.join(",").as_bytes());
            let hex: String = hash[..8].iter().map(|byte| format!("{byte:02x}")).collect();
            assert_eq!((trials.len(), hex.as_str(), ids[0]), (count, digest, first), "{name}");
        }
    }

    const BASE: &str = "version: 1\nname: knobs\nfamilies: [transformer, diffusion]\naxes:\n  modulus: 23\n  data_fraction: 0.9\n  weight_decay: 1\n  seed: [0, 1]\ntraining:\n  lr: 0.003\n";

    #[test]
    fn the_later_axes_multiply_and_at_their_defaults_keep_the_ids() {
        let before = expand(&parse_spec("k.yaml", BASE).expect("valid"));
        assert_eq!(before.len(), 4);
        // Each later axis written out at its default: the same trials, the same ids.
        let with_axes = |extra: &str| BASE.replace("  seed: [0, 1]\n", &format!("  seed: [0, 1]\n{extra}"));
        let same = expand(
            &parse_spec("k.yaml", &with_axes("  lr: 0.003\n  init_scale: 1\n  optimizer: adamw\n  loss: softmax\n")).expect("valid"),
        );
        assert_eq!(same, before);
        let grid = expand(
            &parse_spec(
                "k.yaml",
                &with_axes("  lr: [0.001, 0.003]\n  init_scale: [0.5, 1]\n  optimizer: [adamw, grokfast_ema, orthograd]\n  loss: [softmax, stablemax]\n"),
            )
            .expect("valid"),
        );
        // transformer: 2 lr × 2 scales × 3 optimisers × 2 losses × 2 seeds; diffusion: no loss axis.
        assert_eq!(grid.len(), 2 * 2 * 3 * 2 * 2 + 2 * 2 * 3 * 2);
        assert_eq!(count(&parse_spec("k.yaml", &with_axes("  lr: [0.001, 0.003]\n  init_scale: [0.5, 1]\n  optimizer: [adamw, grokfast_ema, orthograd]\n  loss: [softmax, stablemax]\n  image_diversity: [1, 2, 4]\n")).expect("valid")), (2 * 2 * 3 * 2 * 2 + 2 * 2 * 3 * 2 * 3) as u128);
        let ids: HashSet<_> = grid.iter().map(|trial| trial.id.clone()).collect();
        assert_eq!(ids.len(), grid.len());
        for trial in &before {
            assert!(ids.contains(&trial.id), "the default point of every axis keeps its id");
        }
        assert!(grid.iter().filter(|t| t.params.family == Family::Diffusion).all(|t| t.params.loss.is_none()));
        let rates: HashSet<_> = grid.iter().map(|t| t.params.lr.map(f64::to_bits)).collect();
        assert_eq!(rates, [None, Some(0.001f64.to_bits())].into_iter().collect(), "the sweep's own lr is stored as the default");
        assert!(grid.iter().all(|t| t.params.learning_rate(0.003) == 0.001 || t.params.lr.is_none()));
    }
}
