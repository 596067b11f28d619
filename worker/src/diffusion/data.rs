//! The trial's symbol images and its batches.
//!
//! Every training step uses every training pair once ("fixed batches") and
//! draws afresh, per pair, which of the N images of a, b and c = (a + b) mod P
//! to use, the time t ~ U(0, 1) and the noise ε. All draws come from a
//! seeded generator, so a trial is reproducible.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use sweep_core::OperandInput;
use sweep_core::split::SplitMix64;
use sweep_glyphs::GlyphSet;

use super::flow::interpolate;
use super::model::{Operands, time_features};
use crate::random::normal_samples;

/// The N images of each of the P classes, in [−1, 1], on the host.
#[derive(Debug, Clone)]
pub struct ImageBank {
    classes: usize,
    per_class: usize,
    pixels: usize,
    /// [class, index, pixel].
    values: Vec<f32>,
}

impl ImageBank {
    /// Render images `0..per_class` of classes `0..classes`.
    pub fn generate(set: &GlyphSet, classes: usize, per_class: usize) -> Self {
        Self::from_indices(set, classes, per_class, 0)
    }

    /// Render images `first..first + per_class` of each class (the judge's
    /// classifier trains on indices no trial uses).
    pub fn from_indices(set: &GlyphSet, classes: usize, per_class: usize, first: u32) -> Self {
        let pixels = set.size() * set.size();
        let mut values = Vec::with_capacity(classes * per_class * pixels);
        for class in 0..classes {
            for index in 0..per_class {
                values.extend(set.image(class as u32, first + index as u32).to_unit());
            }
        }
        ImageBank { classes, per_class, pixels, values }
    }

    /// Number of classes P.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Images per class N.
    pub fn per_class(&self) -> usize {
        self.per_class
    }

    /// Pixels per image.
    pub fn pixels(&self) -> usize {
        self.pixels
    }

    /// Image `index` of `class`.
    pub fn image(&self, class: usize, index: usize) -> &[f32] {
        let start = (class * self.per_class + index) * self.pixels;
        &self.values[start..start + self.pixels]
    }

    /// Image 0 of every class, [P · pixels].
    pub fn prototypes(&self) -> Vec<f32> {
        (0..self.classes).flat_map(|class| self.image(class, 0).to_vec()).collect()
    }
}

/// The draws of one batch on the host: per pair, the images of a, b and
/// c = (a + b) mod P, a time and the noise.
#[derive(Debug, Clone)]
pub struct HostDraw {
    /// The pairs, in order.
    pub pairs: Vec<(usize, usize)>,
    /// Images of a, [n · pixels] (empty for token input).
    pub a_images: Vec<f32>,
    /// Images of b, [n · pixels] (empty for token input).
    pub b_images: Vec<f32>,
    /// Target images x0, [n · pixels].
    pub x0: Vec<f32>,
    /// Noise ε, [n · pixels].
    pub noise: Vec<f32>,
    /// The drawn times.
    pub times: Vec<f64>,
    /// The sums c.
    pub targets: Vec<usize>,
}

impl HostDraw {
    /// Draw images, times and noise for `pairs` from `rng`. With `time`
    /// given, every pair uses that t instead of a random one.
    pub fn draw(bank: &ImageBank, pairs: &[(usize, usize)], input: OperandInput, time: Option<f64>, rng: &mut SplitMix64) -> Self {
        let (n, pixels, p) = (pairs.len(), bank.pixels(), bank.classes());
        let pick = |rng: &mut SplitMix64| rng.below(bank.per_class() as u64) as usize;
        let (mut a_images, mut b_images, mut x0) =
            (Vec::with_capacity(n * pixels), Vec::with_capacity(n * pixels), Vec::with_capacity(n * pixels));
        let mut times = Vec::with_capacity(n);
        let mut targets = Vec::with_capacity(n);
        for &(a, b) in pairs {
            let c = (a + b) % p;
            let (ia, ib, ic) = (pick(rng), pick(rng), pick(rng));
            if input == OperandInput::Image {
                a_images.extend_from_slice(bank.image(a, ia));
                b_images.extend_from_slice(bank.image(b, ib));
            }
            x0.extend_from_slice(bank.image(c, ic));
            times.push(time.unwrap_or_else(|| rng.next_f64()));
            targets.push(c);
        }
        let noise = normal_samples(rng, n * pixels, 1.0);
        HostDraw { pairs: pairs.to_vec(), a_images, b_images, x0, noise, times, targets }
    }

    /// Pairs drawn.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// No pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// A copy of rows `range` of this draw.
    pub fn rows(&self, range: std::ops::Range<usize>, pixels: usize) -> Self {
        let images = |values: &Vec<f32>| {
            if values.is_empty() { Vec::new() } else { values[range.start * pixels..range.end * pixels].to_vec() }
        };
        HostDraw {
            pairs: self.pairs[range.clone()].to_vec(),
            a_images: images(&self.a_images),
            b_images: images(&self.b_images),
            x0: images(&self.x0),
            noise: images(&self.noise),
            times: self.times[range.clone()].to_vec(),
            targets: self.targets[range].to_vec(),
        }
    }

    /// The same draw with its first row repeated until it has `rows` rows
    /// (padding of a pack; the repeated rows carry no loss weight).
    pub fn padded(mut self, rows: usize, pixels: usize) -> Self {
        let n = self.len();
        for _ in n..rows {
            let pad = |values: &mut Vec<f32>| {
                if !values.is_empty() {
                    values.extend_from_within(0..pixels);
                }
            };
            pad(&mut self.a_images);
            pad(&mut self.b_images);
            pad(&mut self.x0);
            pad(&mut self.noise);
            self.pairs.push(self.pairs[0]);
            self.times.push(self.times[0]);
            self.targets.push(self.targets[0]);
        }
        self
    }
}

/// One batch of (a, b) pairs with the images, times and noise drawn for it.
#[derive(Debug, Clone)]
pub struct Batch<B: Backend> {
    /// The operands as the model takes them.
    pub operands: Operands<B>,
    /// Target images x0, [batch, pixels].
    pub x0: Tensor<B, 2>,
    /// Noise ε, [batch, pixels].
    pub noise: Tensor<B, 2>,
    /// The drawn times.
    pub times: Vec<f64>,
    /// The sums c = (a + b) mod P.
    pub targets: Vec<usize>,
}

impl<B: Backend> Batch<B> {
    /// Draw images, times and noise for `pairs` from `rng` ([`HostDraw::draw`]) as tensors.
    pub fn draw(
        bank: &ImageBank,
        pairs: &[(usize, usize)],
        input: OperandInput,
        time: Option<f64>,
        rng: &mut SplitMix64,
        device: &B::Device,
    ) -> Self {
        let draw = HostDraw::draw(bank, pairs, input, time, rng);
        let (n, pixels) = (draw.len(), bank.pixels());
        let matrix = |values: Vec<f32>| Tensor::<B, 2>::from_data(TensorData::new(values, [n, pixels]), device);
        let operands = match input {
            OperandInput::Image => Operands::Images(matrix(draw.a_images), matrix(draw.b_images)),
            OperandInput::Token => {
                let column = |values: Vec<i64>| Tensor::<B, 1, Int>::from_data(TensorData::new(values, [n]), device);
                Operands::Tokens(
                    column(draw.pairs.iter().map(|pair| pair.0 as i64).collect()),
                    column(draw.pairs.iter().map(|pair| pair.1 as i64).collect()),
                )
            }
        };
        Batch { operands, x0: matrix(draw.x0), noise: matrix(draw.noise), times: draw.times, targets: draw.targets }
    }

    /// x_t for the drawn times, and the time features the model takes.
    pub fn noisy_input(&self, device: &B::Device) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let n = self.times.len();
        let t: Vec<f32> = self.times.iter().map(|&t| t as f32).collect();
        let t = Tensor::<B, 2>::from_data(TensorData::new(t, [n, 1]), device);
        (interpolate(self.x0.clone(), self.noise.clone(), t), time_features(&self.times, device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestBackend;

    #[test]
    fn bank_holds_the_glyph_images_and_batches_pick_from_them() {
        let set = GlyphSet::new(0, 16, 0.5).expect("valid");
        let bank = ImageBank::generate(&set, 5, 3);
        assert_eq!(bank.image(4, 2), &set.image(4, 2).to_unit()[..]);
        assert_eq!(&bank.prototypes()[256..512], &set.prototype(1).to_unit()[..]);
        let pairs = [(1, 2), (4, 4), (0, 3)];
        let device = Default::default();
        let batch = Batch::<TestBackend>::draw(&bank, &pairs, OperandInput::Image, Some(0.25), &mut SplitMix64::new(9), &device);
        assert_eq!(batch.targets, vec![3, 3, 3]);
        assert_eq!(batch.times, vec![0.25; 3]);
        // Every target row is one of the three images of its class.
        let x0 = crate::host(batch.x0.clone());
        for (row, &c) in batch.targets.iter().enumerate() {
            assert!((0..3).any(|i| bank.image(c, i) == &x0[row * 256..(row + 1) * 256]));
        }
        // Same seed, same batch.
        let again = Batch::<TestBackend>::draw(&bank, &pairs, OperandInput::Image, Some(0.25), &mut SplitMix64::new(9), &device);
        assert_eq!(crate::host(again.noise), crate::host(batch.noise.clone()));
        let (x_t, features) = batch.noisy_input(&device);
        assert_eq!(features.dims(), [3, super::super::model::TIME_FEATURES]);
        let (x_t, noise) = (crate::host(x_t), crate::host(batch.noise));
        assert!((x_t[5] - (0.75 * x0[5] + 0.25 * noise[5])).abs() < 1e-6);
    }
}
