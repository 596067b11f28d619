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
use crate::trial::Family;

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

    /// The key of the packs a trial at `modulus` with these settings can join.
    pub fn pack_key(&self, modulus: u32) -> PackKey {
        let text = match self {
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
        PackKey(text)
    }
}

/// Which trials can share one stacked program: the family, the modulus, the
/// model's sizes and, for diffusion, the image settings. Data fraction,
/// weight decay, seeds, image diversity and every training, stop and
/// evaluation setting may differ inside a pack.
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
        let transformer = FamilySettings::Transformer(TransformerSettings::default());
        assert_eq!(transformer.pack_key(113), transformer.pack_key(113));
        assert_ne!(transformer.pack_key(113), transformer.pack_key(59));
        let wider = FamilySettings::Transformer(TransformerSettings { d_mlp: 1024, ..TransformerSettings::default() });
        assert_ne!(transformer.pack_key(113), wider.pack_key(113));
        let diffusion = DiffusionSettings::default();
        let other_sampler = DiffusionSettings { sample_steps: 10, judge_images_per_class: 50, ..diffusion.clone() };
        assert_eq!(
            FamilySettings::Diffusion(diffusion.clone()).pack_key(23),
            FamilySettings::Diffusion(other_sampler).pack_key(23),
            "evaluation settings do not split packs"
        );
        let other_images = DiffusionSettings { augmentation: 0.2, ..diffusion.clone() };
        assert_ne!(FamilySettings::Diffusion(diffusion).pack_key(23), FamilySettings::Diffusion(other_images).pack_key(23));
    }

    #[test]
    fn sizes_are_checked() {
        assert!(TransformerSettings::default().problems().is_empty());
        let bad = TransformerSettings { d_model: 10, n_heads: 3, d_mlp: 0 };
        let fields: Vec<&str> = bad.problems().iter().map(|(field, _)| *field).collect();
        assert_eq!(fields, ["d_mlp", "n_heads"]);
    }
}
