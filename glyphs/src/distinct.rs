//! Classes must not look alike: the prototypes of any two classes, each
//! normalised to zero mean and unit norm, must be at least a threshold apart.

use crate::render::{Glyph, GlyphSet};

/// Default smallest allowed normalised distance between two class prototypes
/// (the distance lies in [0, 2]; `groksweep glyphs` prints the closest pair
/// of a set: 13/18 at 0.40 for `--modulus 23`, 83/88 at 0.37 for
/// `--modulus 100`, 103/108 at 0.25 for `--modulus 113 --image-size 32`).
pub const DEFAULT_MIN_DISTANCE: f64 = 0.2;

/// Two classes that look alike.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("classes {first} and {second} look alike: normalised distance {distance:.3} < {threshold}")]
pub struct DistinctnessError {
    /// One class.
    pub first: u32,
    /// The other.
    pub second: u32,
    /// Their normalised distance.
    pub distance: f64,
    /// The threshold.
    pub threshold: f64,
}

fn normalise(glyph: &Glyph) -> Vec<f64> {
    let values: Vec<f64> = glyph.pixels.iter().map(|&p| p as f64).collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let centred: Vec<f64> = values.iter().map(|v| v - mean).collect();
    let norm = centred.iter().map(|v| v * v).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
    centred.iter().map(|v| v / norm).collect()
}

/// Euclidean distance of two images after each is shifted to zero mean and
/// scaled to unit norm (so contrast and ink amount do not count).
pub fn normalised_distance(first: &Glyph, second: &Glyph) -> f64 {
    normalise(first).iter().zip(normalise(second)).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt()
}

/// The two classes whose prototypes are closest, and their normalised distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClosestPair {
    /// One class.
    pub first: u32,
    /// The other.
    pub second: u32,
    /// Their normalised distance.
    pub distance: f64,
}

/// Check classes `0..classes` of `set` pairwise; returns the closest pair
/// (`None` for fewer than two classes).
pub fn check_distinct(set: &GlyphSet, classes: u32, threshold: f64) -> Result<Option<ClosestPair>, DistinctnessError> {
    let prototypes: Vec<Vec<f64>> = (0..classes).map(|class| normalise(&set.prototype(class))).collect();
    let mut closest: Option<ClosestPair> = None;
    for first in 0..prototypes.len() {
        for second in first + 1..prototypes.len() {
            let distance = prototypes[first].iter().zip(&prototypes[second]).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
            if distance < threshold {
                return Err(DistinctnessError { first: first as u32, second: second as u32, distance, threshold });
            }
            if closest.is_none_or(|pair| distance < pair.distance) {
                closest = Some(ClosestPair { first: first as u32, second: second as u32, distance });
            }
        }
    }
    Ok(closest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_up_to_113_is_distinct() {
        let small = GlyphSet::new(0, 28, 0.5).expect("valid");
        let closest = check_distinct(&small, 100, DEFAULT_MIN_DISTANCE).expect("distinct at 28 px").expect("a pair");
        assert!(closest.distance >= DEFAULT_MIN_DISTANCE);
        // The closest pair is the one the constant's documentation names.
        let p23 = check_distinct(&small, 23, DEFAULT_MIN_DISTANCE).expect("distinct").expect("a pair");
        assert_eq!((p23.first, p23.second), (13, 18));
        assert!((p23.distance - 0.40).abs() < 0.005, "{}", p23.distance);
        let large = GlyphSet::new(0, 32, 0.5).expect("valid");
        check_distinct(&large, 113, DEFAULT_MIN_DISTANCE).expect("distinct at 32 px");
    }

    #[test]
    fn a_look_alike_is_reported() {
        let set = GlyphSet::new(0, 28, 0.0).expect("valid");
        // With a threshold above every real distance the first pair is reported.
        let error = check_distinct(&set, 3, 2.5).expect_err("threshold above 2");
        assert_eq!((error.first, error.second), (0, 1));
        // Distance is invariant to contrast: an image and its faded copy are 0 apart.
        let glyph = set.prototype(4);
        let faded = Glyph { size: glyph.size, pixels: glyph.pixels.iter().map(|&p| p / 2 + 10).collect() };
        assert!(normalised_distance(&glyph, &faded) < 0.02);
    }
}
