//! Classes must not look alike: the prototypes of any two classes, each
//! normalised to zero mean and unit norm, must be at least a threshold apart.

use crate::render::{Glyph, GlyphSet};

/// Default smallest allowed normalised distance between two class prototypes
/// (the distance lies in [0, 2]; with this font the closest pair is 13/18 at
/// 0.40 for P = 23, 83/88 at 0.37 for P ≤ 100 at 28 px, 103/108 at 0.25 for
/// P = 113 at 32 px).
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

/// Check classes `0..classes` of `set` pairwise; returns the smallest distance.
pub fn check_distinct(set: &GlyphSet, classes: u32, threshold: f64) -> Result<f64, DistinctnessError> {
    let prototypes: Vec<Vec<f64>> = (0..classes).map(|class| normalise(&set.prototype(class))).collect();
    let mut smallest = f64::INFINITY;
    for first in 0..prototypes.len() {
        for second in first + 1..prototypes.len() {
            let distance = prototypes[first].iter().zip(&prototypes[second]).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
            if distance < threshold {
                return Err(DistinctnessError { first: first as u32, second: second as u32, distance, threshold });
            }
            smallest = smallest.min(distance);
        }
    }
    Ok(smallest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_up_to_113_is_distinct() {
        let small = GlyphSet::new(0, 28, 0.5).expect("valid");
        let smallest = check_distinct(&small, 100, DEFAULT_MIN_DISTANCE).expect("distinct at 28 px");
        assert!(smallest >= DEFAULT_MIN_DISTANCE);
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
