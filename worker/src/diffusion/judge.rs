//! Judging generated images: which class does an image show?
//!
//! - N = 1: the nearest exemplar (each class's prototype) in pixel space,
//!   counted only when closer than half the smallest gap between exemplars,
//!   so an image halfway between two classes is nobody's.
//! - Diverse N: a small CNN trained on glyph images no trial uses (see
//!   `classifier`), whose own held-out accuracy is reported beside the results.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::classifier::Classifier;
use crate::host;

/// Nearest-exemplar judge.
#[derive(Debug, Clone)]
pub struct ExemplarJudge {
    /// [class, pixel].
    exemplars: Vec<f32>,
    pixels: usize,
    /// Half the smallest distance between two exemplars.
    margin: f64,
}

fn distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>().sqrt()
}

impl ExemplarJudge {
    /// A judge over `exemplars` ([class, pixel], at least two classes).
    pub fn new(exemplars: Vec<f32>, pixels: usize) -> Self {
        let classes = exemplars.len() / pixels;
        let row = |c: usize| &exemplars[c * pixels..(c + 1) * pixels];
        let mut smallest = f64::INFINITY;
        for first in 0..classes {
            for second in first + 1..classes {
                smallest = smallest.min(distance(row(first), row(second)));
            }
        }
        ExemplarJudge { margin: smallest / 2.0, exemplars, pixels }
    }

    /// Half the smallest gap between exemplars.
    pub fn margin(&self) -> f64 {
        self.margin
    }

    /// The class of one image, or `None` when no exemplar is within the margin.
    pub fn classify_one(&self, image: &[f32]) -> Option<usize> {
        let (class, nearest) = self
            .exemplars
            .chunks_exact(self.pixels)
            .map(|exemplar| distance(exemplar, image))
            .enumerate()
            .min_by(|x, y| x.1.total_cmp(&y.1))?;
        (nearest < self.margin).then_some(class)
    }
}

/// The judge a trial uses.
#[derive(Debug)]
pub enum Judge<B: Backend> {
    /// N = 1.
    Exemplar(ExemplarJudge),
    /// Diverse N (boxed: the network is far larger than the exemplars' handle).
    Classifier(Box<Classifier<B>>),
}

impl<B: Backend> Judge<B> {
    /// The class each row of `images` ([batch, pixels]) shows, if any.
    pub fn classify(&self, images: Tensor<B, 2>) -> Vec<Option<usize>> {
        match self {
            Judge::Exemplar(judge) => {
                let pixels = images.dims()[1];
                host(images).chunks_exact(pixels).map(|image| judge.classify_one(image)).collect()
            }
            Judge::Classifier(classifier) => classifier.classify(images).into_iter().map(Some).collect(),
        }
    }

    /// Held-out accuracy of the classifier; `None` for the exemplar judge.
    pub fn held_out_accuracy(&self) -> Option<f64> {
        match self {
            Judge::Exemplar(_) => None,
            Judge::Classifier(classifier) => Some(classifier.held_out_accuracy()),
        }
    }
}

#[cfg(test)]
mod tests {
    use sweep_glyphs::GlyphSet;

    use super::*;
    use crate::diffusion::data::ImageBank;

    #[test]
    fn clean_exemplars_are_judged_exactly_and_blends_are_refused() {
        let bank = ImageBank::generate(&GlyphSet::new(0, 28, 0.5).expect("valid"), 23, 1);
        let judge = ExemplarJudge::new(bank.prototypes(), bank.pixels());
        assert!(judge.margin() > 0.0);
        for class in 0..23 {
            assert_eq!(judge.classify_one(bank.image(class, 0)), Some(class));
        }
        // Halfway between two exemplars is at least half the gap from each: nobody's.
        let blend: Vec<f32> = bank.image(3, 0).iter().zip(bank.image(8, 0)).map(|(a, b)| (a + b) / 2.0).collect();
        assert_eq!(judge.classify_one(&blend), None);
        // A lightly noised exemplar is still its class.
        let noisy: Vec<f32> = bank.image(5, 0).iter().enumerate().map(|(i, v)| v + if i % 2 == 0 { 0.05 } else { -0.05 }).collect();
        assert_eq!(judge.classify_one(&noisy), Some(5));
    }
}
