//! Rendering numerals into grayscale images, with controlled augmentation.
//!
//! Image `(seed, class, index)` is a pure function of those three numbers and
//! of the set's image size and augmentation strength: it does not depend on
//! the modulus or on how many images per class a trial uses, so the image of
//! N = 1 is the first image of the N = 256 set. Index 0 is the clean
//! prototype of the class (no augmentation); indices from 1 on are drawn with
//! a random affine map, an elastic warp, a stroke width and a blur whose
//! ranges scale with the strength.

use sweep_core::split::SplitMix64;

use crate::font::numeral_strokes;

/// Smallest and largest supported image side, in pixels.
pub const IMAGE_SIZES: std::ops::RangeInclusive<usize> = 16..=64;
/// Numerals of three digits need at least this image side.
pub const THREE_DIGIT_MIN_SIZE: usize = 32;

/// Why a glyph set cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GlyphSetError {
    /// The image side is out of range.
    #[error("image size {0} is not in [16, 64]")]
    ImageSize(usize),
    /// The augmentation strength is out of range.
    #[error("augmentation strength {0} is not in [0, 1]")]
    Strength(f64),
    /// Three-digit labels do not fit legibly in a small image.
    #[error("classes up to {classes} need three-digit numerals, which need an image size of at least 32 (got {size})")]
    TooSmallForClasses {
        /// Number of classes asked for.
        classes: u32,
        /// The set's image side.
        size: usize,
    },
}

/// One grayscale image, row-major, 0 = background, 255 = ink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glyph {
    /// Side length in pixels.
    pub size: usize,
    /// `size × size` pixels.
    pub pixels: Vec<u8>,
}

impl Glyph {
    /// Pixels mapped to [−1, 1] (background −1), the model's input scale.
    pub fn to_unit(&self) -> Vec<f32> {
        self.pixels.iter().map(|&p| p as f32 / 127.5 - 1.0).collect()
    }
}

/// A deterministic family of symbol images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GlyphSet {
    seed: u64,
    size: usize,
    strength: f64,
}

/// The random draws of one augmented image.
#[derive(Debug, Clone)]
struct Augmentation {
    rotation: f64,
    scale: f64,
    shear: f64,
    shift: (f64, f64),
    width_factor: f64,
    /// (wave vector x, wave vector y, phase, amplitude x, amplitude y) in pixels.
    waves: Vec<[f64; 5]>,
    blur_sigma: f64,
}

impl Augmentation {
    fn none() -> Self {
        Augmentation { rotation: 0.0, scale: 1.0, shear: 0.0, shift: (0.0, 0.0), width_factor: 1.0, waves: Vec::new(), blur_sigma: 0.0 }
    }

    fn draw(rng: &mut SplitMix64, strength: f64, size: f64) -> Self {
        let mut symmetric = || 2.0 * rng.next_f64() - 1.0;
        let rotation = (12.0 * strength * symmetric()).to_radians();
        let scale = 1.0 + 0.12 * strength * symmetric();
        let shear = 0.18 * strength * symmetric();
        let shift = (0.06 * size * strength * symmetric(), 0.06 * size * strength * symmetric());
        let width_factor = 1.0 + 0.4 * strength * symmetric();
        let mut waves = Vec::with_capacity(3);
        for _ in 0..3 {
            let angle = std::f64::consts::PI * symmetric();
            let wavelength = size * (0.35 + 0.35 * (symmetric() + 1.0) / 2.0);
            let k = std::f64::consts::TAU / wavelength;
            let amplitude = 0.045 * size * strength;
            waves.push([
                k * angle.cos(),
                k * angle.sin(),
                std::f64::consts::PI * symmetric(),
                amplitude * symmetric(),
                amplitude * symmetric(),
            ]);
        }
        let blur_sigma = 0.9 * strength * (symmetric() + 1.0) / 2.0;
        Augmentation { rotation, scale, shear, shift, width_factor, waves, blur_sigma }
    }

    fn displacement(&self, x: f64, y: f64) -> (f64, f64) {
        self.waves.iter().fold((0.0, 0.0), |(dx, dy), [kx, ky, phase, ax, ay]| {
            let s = (kx * x + ky * y + phase).sin();
            (dx + ax * s, dy + ay * s)
        })
    }
}

fn mix(a: u64, b: u64) -> u64 {
    SplitMix64::new(a ^ b).next_u64()
}

fn distance_to_segment(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let length_sq = dx * dx + dy * dy;
    let t = if length_sq > 0.0 { (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / length_sq).clamp(0.0, 1.0) } else { 0.0 };
    let (x, y) = (a.0 + t * dx - p.0, a.1 + t * dy - p.1);
    (x * x + y * y).sqrt()
}

/// Separable Gaussian blur with edge clamping.
fn blur(image: &mut [f64], size: usize, sigma: f64) {
    let radius = (2.5 * sigma).ceil() as isize;
    let kernel: Vec<f64> = (-radius..=radius).map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp()).collect();
    let total: f64 = kernel.iter().sum();
    let clamp = |i: isize| i.clamp(0, size as isize - 1) as usize;
    let pass = |image: &mut [f64], horizontal: bool| {
        let source = image.to_vec();
        for row in 0..size {
            for column in 0..size {
                let mut value = 0.0;
                for (offset, weight) in (-radius..=radius).zip(&kernel) {
                    let (r, c) = if horizontal { (row, clamp(column as isize + offset)) } else { (clamp(row as isize + offset), column) };
                    value += weight * source[r * size + c];
                }
                image[row * size + column] = value / total;
            }
        }
    };
    pass(image, true);
    pass(image, false);
}

impl GlyphSet {
    /// A glyph set with images of `size × size` pixels and augmentation
    /// strength in [0, 1] (0: every index is the clean prototype).
    pub fn new(seed: u64, size: usize, strength: f64) -> Result<Self, GlyphSetError> {
        if !IMAGE_SIZES.contains(&size) {
            return Err(GlyphSetError::ImageSize(size));
        }
        if !(0.0..=1.0).contains(&strength) {
            return Err(GlyphSetError::Strength(strength));
        }
        Ok(GlyphSet { seed, size, strength })
    }

    /// Image side in pixels.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The set's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Augmentation strength of indices 1...
    pub fn strength(&self) -> f64 {
        self.strength
    }

    /// Check that classes `0..classes` can be drawn legibly at this size.
    pub fn check_classes(&self, classes: u32) -> Result<(), GlyphSetError> {
        if classes > 100 && self.size < THREE_DIGIT_MIN_SIZE {
            return Err(GlyphSetError::TooSmallForClasses { classes, size: self.size });
        }
        Ok(())
    }

    /// The clean image of `class` (index 0).
    pub fn prototype(&self, class: u32) -> Glyph {
        self.image(class, 0)
    }

    /// Image `index` of `class`.
    pub fn image(&self, class: u32, index: u32) -> Glyph {
        let size = self.size as f64;
        let augmentation = if index == 0 || self.strength == 0.0 {
            Augmentation::none()
        } else {
            let mut rng = SplitMix64::new(mix(mix(mix(self.seed, 0x676c_7970_6873), class as u64), index as u64));
            Augmentation::draw(&mut rng, self.strength, size)
        };
        let (strokes, width) = numeral_strokes(class);
        let margin = 0.14 * size;
        let fit = ((size - 2.0 * margin) / width).min(size - 2.0 * margin);
        let (cos, sin) = (augmentation.rotation.cos(), augmentation.rotation.sin());
        let place = |(x, y): (f64, f64)| {
            let (u, v) = ((x - width / 2.0) * fit * augmentation.scale, (y - 0.5) * fit * augmentation.scale);
            let u = u + augmentation.shear * v;
            (size / 2.0 + cos * u - sin * v + augmentation.shift.0, size / 2.0 + sin * u + cos * v + augmentation.shift.1)
        };
        let segments: Vec<((f64, f64), (f64, f64))> =
            strokes.iter().flat_map(|stroke| stroke.windows(2).map(|pair| (place(pair[0]), place(pair[1]))).collect::<Vec<_>>()).collect();
        let half_width = 0.045 * size * augmentation.width_factor;
        let mut ink = vec![0.0f64; self.size * self.size];
        for row in 0..self.size {
            for column in 0..self.size {
                let (x, y) = (column as f64 + 0.5, row as f64 + 0.5);
                let (dx, dy) = augmentation.displacement(x, y);
                let point = (x + dx, y + dy);
                let distance = segments.iter().map(|&(a, b)| distance_to_segment(point, a, b)).fold(f64::INFINITY, f64::min);
                ink[row * self.size + column] = (half_width + 0.5 - distance).clamp(0.0, 1.0);
            }
        }
        if augmentation.blur_sigma > 0.05 {
            blur(&mut ink, self.size, augmentation.blur_sigma);
        }
        Glyph { size: self.size, pixels: ink.iter().map(|&value| (value * 255.0).round().clamp(0.0, 255.0) as u8).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_deterministic_and_depend_on_every_coordinate() {
        let set = GlyphSet::new(7, 28, 0.6).expect("valid");
        let first = set.image(12, 3);
        assert_eq!(first, set.image(12, 3));
        assert_eq!(first, GlyphSet::new(7, 28, 0.6).expect("valid").image(12, 3));
        assert_ne!(first, set.image(12, 4));
        assert_ne!(first, set.image(13, 3));
        assert_ne!(first, GlyphSet::new(8, 28, 0.6).expect("valid").image(12, 3));
    }

    #[test]
    fn pinned_bytes_do_not_drift() {
        // A digest of a few images pins the generator: changing the font,
        // the layout or the augmentation changes every stored experiment's data.
        let set = GlyphSet::new(0, 28, 0.5).expect("valid");
        let mut digest = 0xcbf2_9ce4_8422_2325u64;
        for (class, index) in [(0, 0), (7, 1), (22, 255)] {
            for byte in set.image(class, index).pixels {
                digest = (digest ^ byte as u64).wrapping_mul(0x100_0000_01b3);
            }
        }
        assert_eq!(digest, PINNED_DIGEST, "glyph bytes changed: {digest:#x}");
    }
    const PINNED_DIGEST: u64 = 0xba82_f4bf_957b_f6d6;

    #[test]
    fn prototype_is_index_zero_and_unaugmented() {
        let augmented = GlyphSet::new(1, 28, 1.0).expect("valid");
        let clean = GlyphSet::new(99, 28, 0.0).expect("valid");
        assert_eq!(augmented.prototype(5), clean.image(5, 17));
        assert_ne!(augmented.image(5, 1), augmented.prototype(5));
    }

    #[test]
    fn ink_covers_a_plausible_share_of_the_image() {
        let set = GlyphSet::new(3, 28, 0.5).expect("valid");
        for class in [0, 1, 8, 22, 99] {
            for index in 0..4 {
                let pixels = set.image(class, index).pixels;
                let inked = pixels.iter().filter(|&&p| p > 127).count() as f64 / pixels.len() as f64;
                assert!((0.03..0.45).contains(&inked), "class {class} index {index}: {inked}");
                // Nothing touches the border: the numeral stays inside the frame.
                let border_ink: u32 =
                    (0..28).flat_map(|i| [pixels[i], pixels[27 * 28 + i], pixels[i * 28], pixels[i * 28 + 27]]).map(u32::from).sum();
                assert!(border_ink < 255 * 3, "class {class} index {index}: border ink {border_ink}");
            }
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        assert_eq!(GlyphSet::new(0, 8, 0.5), Err(GlyphSetError::ImageSize(8)));
        assert_eq!(GlyphSet::new(0, 28, 1.5), Err(GlyphSetError::Strength(1.5)));
        let small = GlyphSet::new(0, 28, 0.5).expect("valid");
        assert!(small.check_classes(100).is_ok());
        assert_eq!(small.check_classes(113), Err(GlyphSetError::TooSmallForClasses { classes: 113, size: 28 }));
        assert!(GlyphSet::new(0, 32, 0.5).expect("valid").check_classes(113).is_ok());
    }

    #[test]
    fn unit_scale_maps_background_and_ink() {
        let glyph = Glyph { size: 1, pixels: vec![0] };
        assert_eq!(glyph.to_unit(), vec![-1.0]);
        assert_eq!(Glyph { size: 1, pixels: vec![255] }.to_unit(), vec![1.0]);
    }
}
