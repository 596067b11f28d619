//! Settings of the diffusion family (the `diffusion:` section of a sweep).
//! Defaults follow ../shared/science/diffusion.md: what the paper states
//! (d_model 512, FFN 512 GeLU, one DiT block) and our documented choices
//! for the rest; every one is a field so researchers can change it.

use serde::{Deserialize, Serialize};

/// How the operands enter the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperandInput {
    /// An image of each operand's symbol through the pre-attention FFN bottleneck (the paper).
    Image,
    /// A learned embedding per operand value (control).
    Token,
}

impl OperandInput {
    /// The name used in YAML and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            OperandInput::Image => "image",
            OperandInput::Token => "token",
        }
    }

    /// Parse the wire name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "image" => Some(OperandInput::Image),
            "token" => Some(OperandInput::Token),
            _ => None,
        }
    }
}

/// Fixed settings of every diffusion trial of a sweep. The learning rate,
/// warm-up, eval cadence and stop rule are the sweep's `training` and `stop`
/// sections; one epoch is one full-batch step over the training pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiffusionSettings {
    /// `image` (the paper) or `token` (control).
    pub operand_input: OperandInput,
    /// Side of the symbol images in pixels (28; 32 for three-digit labels).
    pub image_size: u32,
    /// Side of a patch; the target image becomes (image_size / patch_size)² tokens.
    pub patch_size: u32,
    /// Width of the residual stream (paper: 512).
    pub d_model: u32,
    /// Attention heads.
    pub n_heads: u32,
    /// Hidden width of the block's FFN and of the operand bottleneck (paper: 512, GeLU).
    pub d_ffn: u32,
    /// Seed of the glyph set the symbol images come from.
    pub glyph_seed: u64,
    /// Augmentation strength of images 1.. of each class, in [0, 1].
    pub augmentation: f64,
    /// Euler steps of the sampler from t = 1 to 0.
    pub sample_steps: u32,
    /// Generated samples per (a, b) pair when measuring generation accuracy.
    pub samples_per_pair: u32,
    /// Smallest t used to turn an x0-prediction into a velocity.
    pub t_min: f64,
    /// Points of the decision curve (sampler steps, evenly spaced from t = 1).
    pub decision_points: u32,
    /// The critical timestep is the largest t whose decision accuracy is within this of the final accuracy.
    pub critical_tolerance: f64,
    /// Times at which the operand-switch intervention swaps the operands.
    pub switch_times: Vec<f64>,
    /// Time at which the Fourier analysis reads the FFN pre-activations.
    pub fourier_t: f64,
    /// Images per class the judge classifier (diverse N) trains on.
    pub judge_images_per_class: u32,
    /// Held-out accuracy the judge must reach before its verdicts are used.
    pub judge_min_accuracy: f64,
}

impl Default for DiffusionSettings {
    fn default() -> Self {
        DiffusionSettings {
            operand_input: OperandInput::Image,
            image_size: 28,
            patch_size: 4,
            d_model: 512,
            n_heads: 8,
            d_ffn: 512,
            glyph_seed: 0,
            augmentation: 0.5,
            sample_steps: 50,
            samples_per_pair: 1,
            t_min: 0.02,
            decision_points: 10,
            critical_tolerance: 0.05,
            switch_times: vec![0.9, 0.7, 0.5, 0.3, 0.1],
            fourier_t: 1.0,
            judge_images_per_class: 400,
            judge_min_accuracy: 0.95,
        }
    }
}

impl DiffusionSettings {
    /// Every problem with these settings for trials up to `max_modulus`, as
    /// (field, message) pairs; field names are relative to the section.
    pub fn problems(&self, max_modulus: u32) -> Vec<(&'static str, String)> {
        let mut found = Vec::new();
        let mut check = |ok: bool, field: &'static str, message: String| {
            if !ok {
                found.push((field, message));
            }
        };
        check((16..=64).contains(&self.image_size), "image_size", format!("{} is not in [16, 64]", self.image_size));
        check(
            self.patch_size >= 1 && self.image_size.is_multiple_of(self.patch_size.max(1)),
            "patch_size",
            format!("{} does not divide image_size {}", self.patch_size, self.image_size),
        );
        for (field, value) in [
            ("d_model", self.d_model),
            ("n_heads", self.n_heads),
            ("d_ffn", self.d_ffn),
            ("sample_steps", self.sample_steps),
            ("samples_per_pair", self.samples_per_pair),
            ("decision_points", self.decision_points),
            ("judge_images_per_class", self.judge_images_per_class),
        ] {
            check(value >= 1, field, "must be at least 1".to_string());
        }
        check(
            self.n_heads == 0 || self.d_model.is_multiple_of(self.n_heads),
            "n_heads",
            format!("{} does not divide d_model {}", self.n_heads, self.d_model),
        );
        check((0.0..=1.0).contains(&self.augmentation), "augmentation", format!("{} is not in [0, 1]", self.augmentation));
        check(self.t_min > 0.0 && self.t_min < 1.0, "t_min", format!("{} is not in (0, 1)", self.t_min));
        check(
            self.decision_points <= self.sample_steps,
            "decision_points",
            format!("{} is more than sample_steps {}", self.decision_points, self.sample_steps),
        );
        check((0.0..1.0).contains(&self.critical_tolerance), "critical_tolerance", format!("{} is not in [0, 1)", self.critical_tolerance));
        check(self.switch_times.iter().all(|t| *t > 0.0 && *t < 1.0), "switch_times", "every time must be in (0, 1)".to_string());
        check(self.fourier_t > 0.0 && self.fourier_t <= 1.0, "fourier_t", format!("{} is not in (0, 1]", self.fourier_t));
        check(
            self.judge_min_accuracy > 0.0 && self.judge_min_accuracy <= 1.0,
            "judge_min_accuracy",
            format!("{} is not in (0, 1]", self.judge_min_accuracy),
        );
        check(
            max_modulus <= 100 || self.image_size >= 32,
            "image_size",
            format!("modulus {max_modulus} needs three-digit labels, which need image_size ≥ 32"),
        );
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert!(DiffusionSettings::default().problems(113).iter().any(|(field, _)| *field == "image_size"));
        assert!(DiffusionSettings::default().problems(23).is_empty());
        let bad = DiffusionSettings {
            patch_size: 5,
            n_heads: 7,
            augmentation: 1.5,
            switch_times: vec![0.5, 1.0],
            ..DiffusionSettings::default()
        };
        let fields: Vec<&str> = bad.problems(23).iter().map(|(field, _)| *field).collect();
        assert_eq!(fields, ["patch_size", "n_heads", "augmentation", "switch_times"]);
    }
}
