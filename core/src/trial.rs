//! One trial: its family, its point in the grid, and its stable id.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::optimizer::{LossKind, OptimizerKind};

/// A model family groksweep can train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Nanda et al. 2023: one-layer transformer on `[a, b, =]`.
    Transformer,
    /// Flow-matching diffusion transformer generating the symbol image of the sum.
    Diffusion,
}

impl Family {
    /// The name used in YAML, Parquet and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Transformer => "transformer",
            Family::Diffusion => "diffusion",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Family {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "transformer" => Ok(Family::Transformer),
            "diffusion" => Ok(Family::Diffusion),
            other => Err(format!("unknown family `{other}`, expected one of: transformer, diffusion")),
        }
    }
}

/// A trial's position in the grid. Everything that distinguishes two trials of one sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialParams {
    /// Model family.
    pub family: Family,
    /// Modulus p.
    pub modulus: u32,
    /// Training fraction of the p² pairs.
    pub data_fraction: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Model-initialisation seed.
    pub seed: u64,
    /// Data-split seed.
    pub data_seed: u64,
    /// Images per symbol; `Some` only for the diffusion family.
    pub image_diversity: Option<u32>,
    /// Learning rate from the `lr` axis; `None` when it is the sweep's
    /// `training.lr` (see [`TrialParams::learning_rate`]).
    #[serde(default)]
    pub lr: Option<f64>,
    /// Multiplier on every initial weight (Omnigrok's α; 1 leaves the init as it is).
    #[serde(default = "one")]
    pub init_scale: f64,
    /// Optimiser: AdamW alone or behind a gradient filter.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// Loss of the transformer family; `None` is softmax cross-entropy, and
    /// always for the diffusion family, which has a loss of its own.
    #[serde(default)]
    pub loss: Option<LossKind>,
}

fn one() -> f64 {
    1.0
}

impl TrialParams {
    /// A grid point with the later axes (`lr`, `init_scale`, `optimizer`,
    /// `loss`) at their defaults.
    pub fn new(
        family: Family,
        modulus: u32,
        data_fraction: f64,
        weight_decay: f64,
        seed: u64,
        data_seed: u64,
        image_diversity: Option<u32>,
    ) -> Self {
        TrialParams {
            family,
            modulus,
            data_fraction,
            weight_decay,
            seed,
            data_seed,
            image_diversity,
            lr: None,
            init_scale: 1.0,
            optimizer: OptimizerKind::Adamw,
            loss: None,
        }
    }

    /// Canonical text form: fixed key order, shortest round-trip float formatting.
    /// Hashing this gives the trial id, so it must never change for existing keys.
    pub fn canonical(&self) -> String {
        let mut text = format!(
            "family={};modulus={};data_fraction={};weight_decay={};seed={};data_seed={}",
            self.family, self.modulus, self.data_fraction, self.weight_decay, self.seed, self.data_seed
        );
        if let Some(diversity) = self.image_diversity {
            text.push_str(&format!(";image_diversity={diversity}"));
        }
        // Axes added later enter only away from their defaults, so that
        // sweeps written before them keep their ids.
        if let Some(lr) = self.lr {
            text.push_str(&format!(";lr={lr}"));
        }
        if self.init_scale != 1.0 {
            text.push_str(&format!(";init_scale={}", self.init_scale));
        }
        if self.optimizer != OptimizerKind::Adamw {
            text.push_str(&format!(";optimizer={}", self.optimizer));
        }
        if let Some(loss) = self.loss.filter(|loss| *loss != LossKind::Softmax) {
            text.push_str(&format!(";loss={loss}"));
        }
        text
    }

    /// Whether its split leaves any test pair (not so at data fraction 1).
    pub fn has_test_pairs(&self) -> bool {
        crate::split::train_size(self.modulus, self.data_fraction) < (self.modulus as usize).pow(2)
    }

    /// The trial's learning rate: its `lr` axis value, else the sweep's `training.lr`.
    pub fn learning_rate(&self, sweep_lr: f64) -> f64 {
        self.lr.unwrap_or(sweep_lr)
    }

    /// The transformer's loss (softmax unless the `loss` axis says otherwise).
    pub fn loss_kind(&self) -> LossKind {
        self.loss.unwrap_or_default()
    }
}

/// Stable trial id: the first 16 hex digits of SHA-256 over (sweep name, canonical parameters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TrialId(String);

impl TrialId {
    /// Compute the id of a trial.
    pub fn compute(sweep: &str, params: &TrialParams) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(sweep.as_bytes());
        hasher.update([0u8]);
        hasher.update(params.canonical().as_bytes());
        let digest = hasher.finalize();
        let mut hex = String::with_capacity(16);
        for byte in &digest[..8] {
            hex.push_str(&format!("{byte:02x}"));
        }
        TrialId(hex)
    }

    /// Wrap an id read back from storage or the wire.
    pub fn from_raw(raw: impl Into<String>) -> Self {
        TrialId(raw.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TrialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A trial of a sweep, ready to be stored and leased.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialSpec {
    /// Stable id.
    pub id: TrialId,
    /// The sweep it belongs to.
    pub sweep: String,
    /// Its grid point.
    pub params: TrialParams,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> TrialParams {
        TrialParams::new(Family::Transformer, 113, 0.3, 1.0, 0, 0, None)
    }

    #[test]
    fn canonical_form_is_fixed() {
        assert_eq!(params().canonical(), "family=transformer;modulus=113;data_fraction=0.3;weight_decay=1;seed=0;data_seed=0");
        // The later axes at their defaults leave it as it was; away from them they enter.
        assert_eq!(TrialParams { loss: Some(LossKind::Softmax), ..params() }.canonical(), params().canonical());
        let moved = TrialParams {
            lr: Some(3e-3),
            init_scale: 0.5,
            optimizer: OptimizerKind::GrokfastEma,
            loss: Some(LossKind::Stablemax),
            ..params()
        };
        assert_eq!(
            moved.canonical(),
            "family=transformer;modulus=113;data_fraction=0.3;weight_decay=1;seed=0;data_seed=0;lr=0.003;init_scale=0.5;optimizer=grokfast_ema;loss=stablemax"
        );
    }

    #[test]
    fn params_stored_before_the_later_axes_read_back_with_their_defaults() {
        let stored = r#"{"family":"transformer","modulus":113,"data_fraction":0.3,"weight_decay":1.0,"seed":0,"data_seed":0,"image_diversity":null}"#;
        let read: TrialParams = serde_json::from_str(stored).expect("an older row reads");
        assert_eq!(read, params());
        assert_eq!(read.learning_rate(1e-3), 1e-3);
        assert_eq!(read.loss_kind(), LossKind::Softmax);
    }

    #[test]
    fn id_is_a_known_constant() {
        // Pinned: changing the hashing would orphan every stored trial.
        let id = TrialId::compute("nanda-2023", &params());
        assert_eq!(id.as_str().len(), 16);
        assert_eq!(id, TrialId::compute("nanda-2023", &params()));
        assert_ne!(id, TrialId::compute("other", &params()));
    }
}
