//! The judge of diverse-N trials: a two-convolution CNN trained on glyph
//! images that no trial uses (indices from [`FIRST_INDEX`] on), trained once
//! per (P, glyph seed, image size, augmentation, images per class) and cached
//! in a directory, so parallel trials and later sweeps reuse it. Its held-out
//! accuracy (on further unused indices) is stored beside the weights.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use burn::module::{AutodiffModule, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::record::{BinFileRecorder, FullPrecisionSettings};
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use sweep_core::split::SplitMix64;
use sweep_glyphs::GlyphSet;
use tracing::info;

use super::data::ImageBank;

/// First glyph index the classifier trains on; trials use indices below 4096.
pub const FIRST_INDEX: u32 = 1 << 30;
/// Version of the architecture and recipe, part of the cache key.
const RECIPE_VERSION: u32 = 1;
const EPOCHS: usize = 6;
const BATCH: usize = 128;

/// Why a classifier could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClassifierError {
    /// The cache directory or its files failed.
    #[error("judge cache {path}: {message}")]
    Cache {
        /// The file or directory.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// What the classifier is for: its cache key.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierKey {
    /// Classes P.
    pub classes: usize,
    /// The glyph set (seed, image size, augmentation strength).
    pub glyphs: GlyphSet,
    /// Training images per class (held-out: a quarter of that, at least 20).
    pub images_per_class: usize,
}

impl ClassifierKey {
    /// File name without extension; no dots in it (the augmentation is in thousandths).
    fn file_stem(&self) -> String {
        format!(
            "judge-v{RECIPE_VERSION}-p{}-seed{}-{}px-aug{}-n{}",
            self.classes,
            self.glyphs.seed(),
            self.glyphs.size(),
            (self.glyphs.strength() * 1000.0).round() as u32,
            self.images_per_class
        )
    }
}

/// The CNN: conv 3×3 (16) → ReLU → max-pool 2 → conv 3×3 (32) → ReLU → max-pool 2 → dense 128 → ReLU → dense P.
#[derive(Module, Debug)]
pub struct Cnn<B: Backend> {
    conv1: Conv2d<B>,
    conv2: Conv2d<B>,
    pool: MaxPool2d,
    hidden: Linear<B>,
    out: Linear<B>,
    size: usize,
}

impl<B: Backend> Cnn<B> {
    fn new(classes: usize, size: usize, device: &B::Device) -> Self {
        let quarter = size / 4;
        Cnn {
            conv1: Conv2dConfig::new([1, 16], [3, 3]).with_padding(PaddingConfig2d::Same).init(device),
            conv2: Conv2dConfig::new([16, 32], [3, 3]).with_padding(PaddingConfig2d::Same).init(device),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            hidden: LinearConfig::new(32 * quarter * quarter, 128).init(device),
            out: LinearConfig::new(128, classes).init(device),
            size,
        }
    }

    /// Logits for images [batch, pixels] in [−1, 1].
    fn forward(&self, images: Tensor<B, 2>) -> Tensor<B, 2> {
        let batch = images.dims()[0];
        let x = images.reshape([batch, 1, self.size, self.size]);
        let x = self.pool.forward(relu(self.conv1.forward(x)));
        let x = self.pool.forward(relu(self.conv2.forward(x)));
        let features = x.dims()[1] * x.dims()[2] * x.dims()[3];
        self.out.forward(relu(self.hidden.forward(x.reshape([batch, features]))))
    }
}

/// A trained classifier and its held-out accuracy.
#[derive(Debug)]
pub struct Classifier<B: Backend> {
    model: Cnn<B>,
    held_out_accuracy: f64,
}

/// Where a classifier came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Read from the cache.
    Cached,
    /// Trained now (and written to the cache).
    Trained,
}

/// One classifier is trained at a time in a process; other processes are
/// kept out by a lock file.
static TRAINING: Mutex<()> = Mutex::new(());

fn cache_error(path: &Path, error: impl std::fmt::Display) -> ClassifierError {
    ClassifierError::Cache { path: path.display().to_string(), message: error.to_string() }
}

/// A lock file held while a classifier is trained; removed on drop. A lock
/// older than ten minutes is taken to be left by a crashed process.
struct LockFile(PathBuf);

impl LockFile {
    fn acquire(path: PathBuf) -> Result<Self, ClassifierError> {
        let started = Instant::now();
        loop {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => return Ok(LockFile(path)),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .map(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(600))
                        .unwrap_or(false);
                    if stale {
                        let _ = std::fs::remove_file(&path);
                    } else if started.elapsed() > Duration::from_secs(3600) {
                        return Err(cache_error(&path, "still locked by another process after an hour"));
                    } else {
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
                Err(error) => return Err(cache_error(&path, error)),
            }
        }
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl<B: Backend> Classifier<B> {
    /// Accuracy on held-out glyph images no trial and no training step saw.
    pub fn held_out_accuracy(&self) -> f64 {
        self.held_out_accuracy
    }

    /// The class of each row of `images` ([batch, pixels]).
    pub fn classify(&self, images: Tensor<B, 2>) -> Vec<usize> {
        let logits = self.model.forward(images);
        logits.argmax(1).into_data().iter::<i64>().map(|class| class as usize).collect()
    }
}

/// Load the classifier for `key` from `cache_dir`, or train it there (with
/// the autodiff backend `A`) and store it.
pub fn load_or_train<A: AutodiffBackend>(
    key: &ClassifierKey,
    cache_dir: &Path,
    device: &A::Device,
) -> Result<(Classifier<A::InnerBackend>, Origin), ClassifierError> {
    std::fs::create_dir_all(cache_dir).map_err(|error| cache_error(cache_dir, error))?;
    let stem = cache_dir.join(key.file_stem());
    let weights = stem.with_extension("bin");
    let accuracy_file = stem.with_extension("accuracy");
    let _guard = TRAINING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let _lock = LockFile::acquire(stem.with_extension("lock"))?;
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    if let Ok(text) = std::fs::read_to_string(&accuracy_file)
        && let Ok(held_out_accuracy) = text.trim().parse::<f64>()
        && weights.exists()
    {
        let model = Cnn::<A::InnerBackend>::new(key.classes, key.glyphs.size(), device)
            .load_file(stem.clone(), &recorder, device)
            .map_err(|error| cache_error(&weights, error))?;
        return Ok((Classifier { model, held_out_accuracy }, Origin::Cached));
    }
    let started = Instant::now();
    let (model, held_out_accuracy) = train::<A>(key, device);
    model.clone().save_file(stem.clone(), &recorder).map_err(|error| cache_error(&weights, error))?;
    // The accuracy file is written last: its presence marks a complete entry.
    let temporary = stem.with_extension("accuracy.tmp");
    std::fs::write(&temporary, format!("{held_out_accuracy}\n")).map_err(|error| cache_error(&temporary, error))?;
    std::fs::rename(&temporary, &accuracy_file).map_err(|error| cache_error(&accuracy_file, error))?;
    info!(classes = key.classes, held_out_accuracy, seconds = started.elapsed().as_secs_f64(), "trained the judge classifier");
    Ok((Classifier { model, held_out_accuracy }, Origin::Trained))
}

fn image_of(bank: &ImageBank, item: usize, per_class: usize) -> &[f32] {
    bank.image(item / per_class, item % per_class)
}

/// Train the CNN with Adam on images `FIRST_INDEX..` and measure it on the next ones.
fn train<A: AutodiffBackend>(key: &ClassifierKey, device: &A::Device) -> (Cnn<A::InnerBackend>, f64) {
    A::seed(device, 0x006a_7564_6765 ^ key.glyphs.seed());
    let per_class = key.images_per_class;
    let held_out_per_class = (per_class / 4).max(20);
    let train_bank = ImageBank::from_indices(&key.glyphs, key.classes, per_class, FIRST_INDEX);
    let held_out_bank = ImageBank::from_indices(&key.glyphs, key.classes, held_out_per_class, FIRST_INDEX + per_class as u32);
    let pixels = train_bank.pixels();
    let mut model = Cnn::<A>::new(key.classes, key.glyphs.size(), device);
    let mut optimizer = AdamConfig::new().init::<A, Cnn<A>>();
    let total = key.classes * per_class;
    let mut order: Vec<usize> = (0..total).collect();
    let mut rng = SplitMix64::new(key.glyphs.seed() ^ 0x0063_6e6e);
    for _ in 0..EPOCHS {
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for chunk in order.chunks(BATCH) {
            let images: Vec<f32> = chunk.iter().flat_map(|&item| image_of(&train_bank, item, per_class).to_vec()).collect();
            let labels: Vec<i64> = chunk.iter().map(|&item| (item / per_class) as i64).collect();
            let images = Tensor::<A, 2>::from_data(TensorData::new(images, [chunk.len(), pixels]), device);
            let labels = Tensor::<A, 1, Int>::from_data(TensorData::new(labels, [chunk.len()]), device);
            let log_probabilities = log_softmax(model.forward(images), 1);
            let loss = log_probabilities.gather(1, labels.unsqueeze_dim(1)).mean().neg();
            let gradients = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(1e-3, model, gradients);
        }
    }
    let model = model.valid();
    let held_out_total = key.classes * held_out_per_class;
    let mut correct = 0usize;
    for start in (0..held_out_total).step_by(512) {
        let items: Vec<usize> = (start..(start + 512).min(held_out_total)).collect();
        let images: Vec<f32> = items.iter().flat_map(|&item| image_of(&held_out_bank, item, held_out_per_class).to_vec()).collect();
        let images = Tensor::from_data(TensorData::new(images, [items.len(), pixels]), device);
        let classifier = Classifier { model: model.clone(), held_out_accuracy: 0.0 };
        correct += classifier.classify(images).iter().zip(&items).filter(|(class, item)| **class == **item / held_out_per_class).count();
    }
    (model, correct as f64 / held_out_total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{TestAutodiffBackend, TestBackend};

    #[test]
    fn the_cached_classifier_is_reused_not_retrained() {
        let directory = tempfile::tempdir().expect("tempdir");
        let key = ClassifierKey { classes: 5, glyphs: GlyphSet::new(2, 16, 0.3).expect("valid"), images_per_class: 40 };
        let device = Default::default();
        let (first, origin) = load_or_train::<TestAutodiffBackend>(&key, directory.path(), &device).expect("trained");
        assert_eq!(origin, Origin::Trained);
        // Five distinct numerals with mild augmentation: far above chance (0.2).
        assert!(first.held_out_accuracy() > 0.8, "held-out accuracy {}", first.held_out_accuracy());
        let (second, origin) = load_or_train::<TestAutodiffBackend>(&key, directory.path(), &device).expect("cached");
        assert_eq!(origin, Origin::Cached);
        assert_eq!(second.held_out_accuracy(), first.held_out_accuracy());
        // The reloaded weights classify exactly like the trained ones.
        let bank = ImageBank::from_indices(&key.glyphs, 5, 3, 7);
        let images = Tensor::<TestBackend, 2>::from_data(TensorData::new(bank.prototypes(), [5, 256]), &device);
        assert_eq!(first.classify(images.clone()), second.classify(images));
        // Another key trains its own.
        let other = ClassifierKey { classes: 4, ..key.clone() };
        let (_, origin) = load_or_train::<TestAutodiffBackend>(&other, directory.path(), &device).expect("trained");
        assert_eq!(origin, Origin::Trained);
        let stronger = ClassifierKey { glyphs: GlyphSet::new(2, 16, 0.35).expect("valid"), ..key };
        let (_, origin) = load_or_train::<TestAutodiffBackend>(&stronger, directory.path(), &device).expect("trained");
        assert_eq!(origin, Origin::Trained, "another augmentation strength is another classifier");
        assert!(
            !directory.path().read_dir().expect("dir").any(|entry| entry.expect("entry").path().extension().is_some_and(|e| e == "lock"))
        );
    }
}
