//! The settings that belong to one model family: one tagged enum with a
//! variant per family, and the [`PackKey`] that says which trials can be
//! trained together as one stacked program.
//!
//! A new family adds a variant here (its settings in a module of their own,
//! like [`crate::diffusion`]), a `oneof` case on the wire and a trainer in
//! the worker's family registry.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::diffusion::DiffusionSettings;
use crate::optimizer::{LossKind, OptimizerKind};
use crate::spec::TrainingSettings;
use crate::trial::{Family, TrialParams};

/// Sizes of the transformer family's model (Nanda et al. 2023 by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransformerSettings {
    /// Residual stream width (paper: 128).
    pub d_model: u32,
    /// Attention heads (paper: 4); `d_head = d_model / n_heads`.
    pub n_heads: u32,
    /// MLP hidden width (paper: 512).
    pub d_mlp: u32,
}

impl Default for TransformerSettings {
    fn default() -> Self {
        TransformerSettings { d_model: 128, n_heads: 4, d_mlp: 512 }
    }
}

impl TransformerSettings {
    /// Every problem with these sizes, as (field, message) pairs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut found = Vec::new();
        for (field, value) in [("d_model", self.d_model), ("n_heads", self.n_heads), ("d_mlp", self.d_mlp)] {
            if value == 0 {
                found.push((field, "must be at least 1".to_string()));
            }
        }
        if self.n_heads != 0 && !self.d_model.is_multiple_of(self.n_heads) {
            found.push(("n_heads", format!("{} does not divide d_model {}", self.n_heads, self.d_model)));
        }
        found
    }
}

/// The settings of one family, as a trial carries them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "lowercase")]
pub enum FamilySettings {
    /// The one-layer transformer.
    Transformer(TransformerSettings),
    /// The diffusion transformer drawing the symbol of the sum.
    Diffusion(DiffusionSettings),
}

impl FamilySettings {
    /// The family these settings are for.
    pub fn family(&self) -> Family {
        match self {
            FamilySettings::Transformer(_) => Family::Transformer,
            FamilySettings::Diffusion(_) => Family::Diffusion,
        }
    }

    /// Every problem with these settings for a trial at `modulus`, as (field, message) pairs.
    pub fn problems(&self, modulus: u32) -> Vec<(&'static str, String)> {
        match self {
            FamilySettings::Transformer(settings) => settings.problems(),
            FamilySettings::Diffusion(settings) => settings.problems(modulus),
        }
    }

    /// The key of the packs a trial with these settings can join.
    pub fn pack_key(&self, params: &TrialParams, training: &TrainingSettings) -> PackKey {
        let modulus = params.modulus;
        let mut text = match self {
            FamilySettings::Transformer(s) => {
                format!("transformer;p={modulus};d_model={};n_heads={};d_mlp={}", s.d_model, s.n_heads, s.d_mlp)
            }
            FamilySettings::Diffusion(s) => format!(
                "diffusion;p={modulus};operand_input={};image_size={};patch_size={};d_model={};n_heads={};d_ffn={};glyph_seed={};augmentation={}",
                s.operand_input.as_str(),
                s.image_size,
                s.patch_size,
                s.d_model,
                s.n_heads,
                s.d_ffn,
                s.glyph_seed,
                s.augmentation
            ),
        };
        // The optimiser's filter state and the loss are one per pack; AdamW
        // and softmax leave the key as it was before those axes.
        match params.optimizer {
            OptimizerKind::Adamw => {}
            OptimizerKind::GrokfastEma => {
                let ema = &training.grokfast_ema;
                text.push_str(&format!(";optimizer=grokfast_ema;alpha={};lambda={}", ema.alpha, ema.lambda));
            }
            OptimizerKind::GrokfastMa => {
                let ma = &training.grokfast_ma;
                text.push_str(&format!(";optimizer=grokfast_ma;window={};lambda={}", ma.window, ma.lambda));
            }
            OptimizerKind::Orthograd => text.push_str(";optimizer=orthograd"),
        }
        if params.loss_kind() != LossKind::Softmax {
            text.push_str(&format!(";loss={}", params.loss_kind()));
        }
        PackKey(text)
    }
}

/// Which trials can share one stacked program: the family, the modulus, the
/// model's sizes, for diffusion the image settings, the optimiser (with its
/// filter's settings) and the loss. Data fraction, weight decay, learning
/// rate, initial scale, seeds, image diversity and every other training,
/// stop and evaluation setting may differ inside a pack.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackKey(String);

impl PackKey {
    /// The key as text (stable; used in logs).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PackKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_key_ignores_what_may_differ_inside_a_pack() {
        let training = TrainingSettings::default();
        let at = |modulus| TrialParams::new(Family::Transformer, modulus, 0.3, 1.0, 0, 0, None);
        let key = |settings: &FamilySettings, params: &TrialParams| settings.pack_key(params, &training);
        let transformer = FamilySettings::Transformer(TransformerSettings::default());
        assert_eq!(
            key(&transformer, &at(113)),
            key(&transformer, &TrialParams { lr: Some(3e-3), init_scale: 2.0, weight_decay: 0.0, ..at(113) })
        );
        assert_eq!(
            key(&transformer, &at(113)).as_str(),
            "transformer;p=113;d_model=128;n_heads=4;d_mlp=512",
            "unchanged for AdamW and softmax"
        );
        assert_ne!(key(&transformer, &at(113)), key(&transformer, &at(59)));
        let wider = FamilySettings::Transformer(TransformerSettings { d_mlp: 1024, ..TransformerSettings::default() });
        assert_ne!(key(&transformer, &at(113)), key(&wider, &at(113)));
        for optimizer in [OptimizerKind::GrokfastEma, OptimizerKind::GrokfastMa, OptimizerKind::Orthograd] {
            assert_ne!(key(&transformer, &at(113)), key(&transformer, &TrialParams { optimizer, ..at(113) }));
        }
        assert_ne!(key(&transformer, &at(113)), key(&transformer, &TrialParams { loss: Some(LossKind::Stablemax), ..at(113) }));
        let diffusion_at = |modulus| TrialParams { family: Family::Diffusion, image_diversity: Some(1), ..at(modulus) };
        let diffusion = DiffusionSettings::default();
        let other_sampler = DiffusionSettings { sample_steps: 10, judge_images_per_class: 50, ..diffusion.clone() };
        assert_eq!(
            key(&FamilySettings::Diffusion(diffusion.clone()), &diffusion_at(23)),
            key(&FamilySettings::Diffusion(other_sampler), &diffusion_at(23)),
            "evaluation settings do not split packs"
        );
        let other_images = DiffusionSettings { augmentation: 0.2, ..diffusion.clone() };
        assert_ne!(
            key(&FamilySettings::Diffusion(diffusion), &diffusion_at(23)),
            key(&FamilySettings::Diffusion(other_images), &diffusion_at(23))
        );
    }

    #[test]
    fn sizes_are_checked() {
        assert!(TransformerSettings::default().problems().is_empty());
        let bad = TransformerSettings { d_model: 10, n_heads: 3, d_mlp: 0 };
        let fields: Vec<&str> = bad.problems().iter().map(|(field, _)| *field).collect();
        assert_eq!(fields, ["d_mlp", "n_heads"]);
    }
}
