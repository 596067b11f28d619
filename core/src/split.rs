//! The train/test split of the p² pairs: a pure function of (p, fraction, data seed).

/// Number of training pairs: `floor(fraction · p²)` (fraction 0.3 at p = 113 gives 3830).
pub fn train_size(modulus: u32, fraction: f64) -> usize {
    let total = (modulus as usize) * (modulus as usize);
    let wanted = (fraction * total as f64).floor() as usize;
    wanted.min(total)
}

/// SplitMix64: a tiny, fully specified generator, so the split never changes
/// with a dependency upgrade.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// Seed the generator.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform integer in `0..bound` (Lemire's multiply-shift; the bias is
    /// below 2⁻³² for the bounds used here).
    pub fn below(&mut self, bound: u64) -> u64 {
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }

    /// Uniform float in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The split: every pair `(a, b)` in lexicographic order, Fisher–Yates shuffled
/// with `data_seed`; the first `train_size` are training pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Training pairs, in shuffled order.
    pub train: Vec<(u32, u32)>,
    /// Test pairs, in shuffled order.
    pub test: Vec<(u32, u32)>,
}

impl Split {
    /// Build the split for a trial.
    pub fn new(modulus: u32, fraction: f64, data_seed: u64) -> Self {
        let mut pairs = Vec::with_capacity((modulus * modulus) as usize);
        for a in 0..modulus {
            for b in 0..modulus {
                pairs.push((a, b));
            }
        }
        let mut rng = SplitMix64::new(data_seed);
        for i in (1..pairs.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            pairs.swap(i, j);
        }
        let test = pairs.split_off(train_size(modulus, fraction));
        Split { train: pairs, test }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_size_matches_the_paper() {
        assert_eq!(train_size(113, 0.3), 3830);
        assert_eq!(train_size(7, 1.0), 49);
    }

    #[test]
    fn split_is_a_partition_and_deterministic() {
        let split = Split::new(13, 0.4, 7);
        assert_eq!(split.train.len(), train_size(13, 0.4));
        let mut all: Vec<_> = split.train.iter().chain(&split.test).copied().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 169);
        assert_eq!(split, Split::new(13, 0.4, 7));
        assert_ne!(split.train, Split::new(13, 0.4, 8).train);
    }

    #[test]
    fn splitmix_reference_values() {
        // Reference output of SplitMix64 seeded with 0 (Vigna's public test vector).
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }
}
