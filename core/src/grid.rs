//! Grid expansion: a validated spec becomes its trials, in a stable order.

use crate::spec::SweepSpec;
use crate::trial::{Family, TrialId, TrialParams, TrialSpec};

/// Expand a sweep into trials. The count is the product of the axes that apply
/// to each family, summed over families; `image_diversity` applies to the
/// diffusion family only; without a `data_seed` axis each trial splits its data
/// with its model seed.
pub fn expand(spec: &SweepSpec) -> Vec<TrialSpec> {
    let axes = &spec.axes;
    let mut trials = Vec::new();
    for &family in &spec.families {
        let diversities: Vec<Option<u32>> = match family {
            Family::Diffusion => axes.image_diversity.iter().copied().map(Some).collect(),
            Family::Transformer => vec![None],
        };
        for &modulus in &axes.modulus {
            for &data_fraction in &axes.data_fraction {
                for &weight_decay in &axes.weight_decay {
                    for &image_diversity in &diversities {
                        for &seed in &axes.seed {
                            let data_seeds = axes.data_seed.clone().unwrap_or_else(|| vec![seed]);
                            for data_seed in data_seeds {
                                let params = TrialParams { family, modulus, data_fraction, weight_decay, seed, data_seed, image_diversity };
                                let id = TrialId::compute(&spec.name, &params);
                                trials.push(TrialSpec { id, sweep: spec.name.clone(), params });
                            }
                        }
                    }
                }
            }
        }
    }
    trials
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;
    use crate::spec::parse_spec;

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
}
