//! Wire ↔ domain conversions. Everything arriving from the network is checked here.

use sweep_core::{DiffusionSettings, Family, OperandInput, StopRule, TrainingSettings, TrialParams};

use crate::pb;

/// A wire message that does not describe a valid domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`: {message}")]
pub struct ConvertError {
    /// The offending field.
    pub field: &'static str,
    /// Why it is invalid.
    pub message: String,
}

impl ConvertError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        ConvertError { field, message: message.into() }
    }
}

/// Require an optional sub-message.
pub fn required<T>(value: Option<T>, field: &'static str) -> Result<T, ConvertError> {
    value.ok_or_else(|| ConvertError::new(field, "missing"))
}

impl From<&TrialParams> for pb::TrialParams {
    fn from(params: &TrialParams) -> Self {
        pb::TrialParams {
            family: params.family.as_str().to_string(),
            modulus: params.modulus,
            data_fraction: params.data_fraction,
            weight_decay: params.weight_decay,
            seed: params.seed,
            data_seed: params.data_seed,
            image_diversity: params.image_diversity,
        }
    }
}

impl TryFrom<pb::TrialParams> for TrialParams {
    type Error = ConvertError;

    fn try_from(wire: pb::TrialParams) -> Result<Self, Self::Error> {
        let family: Family = wire.family.parse().map_err(|message: String| ConvertError::new("family", message))?;
        if wire.modulus < 3 {
            return Err(ConvertError::new("modulus", format!("{} is below 3", wire.modulus)));
        }
        if !(wire.data_fraction > 0.0 && wire.data_fraction <= 1.0) {
            return Err(ConvertError::new("data_fraction", format!("{} is not in (0, 1]", wire.data_fraction)));
        }
        if !(wire.weight_decay.is_finite() && wire.weight_decay >= 0.0) {
            return Err(ConvertError::new("weight_decay", format!("{} is not a finite number ≥ 0", wire.weight_decay)));
        }
        Ok(TrialParams {
            family,
            modulus: wire.modulus,
            data_fraction: wire.data_fraction,
            weight_decay: wire.weight_decay,
            seed: wire.seed,
            data_seed: wire.data_seed,
            image_diversity: wire.image_diversity,
        })
    }
}

impl From<&TrainingSettings> for pb::TrainingSettings {
    fn from(settings: &TrainingSettings) -> Self {
        pb::TrainingSettings {
            lr: settings.lr,
            warmup_steps: settings.warmup_steps,
            eval_every: settings.eval_every,
            d_model: settings.d_model,
            n_heads: settings.n_heads,
            d_mlp: settings.d_mlp,
            checkpoint_every: settings.checkpoint_every,
        }
    }
}

impl TryFrom<pb::TrainingSettings> for TrainingSettings {
    type Error = ConvertError;

    fn try_from(wire: pb::TrainingSettings) -> Result<Self, Self::Error> {
        if !(wire.lr.is_finite() && wire.lr > 0.0) {
            return Err(ConvertError::new("lr", format!("{} is not positive", wire.lr)));
        }
        if wire.eval_every == 0 || wire.d_model == 0 || wire.n_heads == 0 || wire.d_mlp == 0 {
            return Err(ConvertError::new("training", "eval_every, d_model, n_heads and d_mlp must be ≥ 1"));
        }
        if wire.d_model % wire.n_heads != 0 {
            return Err(ConvertError::new("n_heads", format!("{} does not divide d_model {}", wire.n_heads, wire.d_model)));
        }
        Ok(TrainingSettings {
            lr: wire.lr,
            warmup_steps: wire.warmup_steps,
            eval_every: wire.eval_every,
            d_model: wire.d_model,
            n_heads: wire.n_heads,
            d_mlp: wire.d_mlp,
            checkpoint_every: wire.checkpoint_every,
        })
    }
}

impl From<&StopRule> for pb::StopRule {
    fn from(stop: &StopRule) -> Self {
        pb::StopRule { max_epochs: stop.max_epochs, target_test_accuracy: stop.target_test_accuracy, patience: stop.patience }
    }
}

impl TryFrom<pb::StopRule> for StopRule {
    type Error = ConvertError;

    fn try_from(wire: pb::StopRule) -> Result<Self, Self::Error> {
        if wire.max_epochs == 0 {
            return Err(ConvertError::new("max_epochs", "must be ≥ 1"));
        }
        Ok(StopRule { max_epochs: wire.max_epochs, target_test_accuracy: wire.target_test_accuracy, patience: wire.patience.max(1) })
    }
}

impl From<&DiffusionSettings> for pb::DiffusionSettings {
    fn from(settings: &DiffusionSettings) -> Self {
        pb::DiffusionSettings {
            operand_input: settings.operand_input.as_str().to_string(),
            image_size: settings.image_size,
            patch_size: settings.patch_size,
            d_model: settings.d_model,
            n_heads: settings.n_heads,
            d_ffn: settings.d_ffn,
            glyph_seed: settings.glyph_seed,
            augmentation: settings.augmentation,
            sample_steps: settings.sample_steps,
            samples_per_pair: settings.samples_per_pair,
            t_min: settings.t_min,
            decision_points: settings.decision_points,
            critical_tolerance: settings.critical_tolerance,
            switch_times: settings.switch_times.clone(),
            fourier_t: settings.fourier_t,
            judge_images_per_class: settings.judge_images_per_class,
            judge_min_accuracy: settings.judge_min_accuracy,
        }
    }
}

impl TryFrom<pb::DiffusionSettings> for DiffusionSettings {
    type Error = ConvertError;

    /// Checked with the same rules as a spec (for moduli up to 1024 the
    /// image-size rule is left to the worker, which knows the trial's modulus).
    fn try_from(wire: pb::DiffusionSettings) -> Result<Self, Self::Error> {
        let operand_input = OperandInput::parse(&wire.operand_input)
            .ok_or_else(|| ConvertError::new("operand_input", format!("`{}` is not `image` or `token`", wire.operand_input)))?;
        let settings = DiffusionSettings {
            operand_input,
            image_size: wire.image_size,
            patch_size: wire.patch_size,
            d_model: wire.d_model,
            n_heads: wire.n_heads,
            d_ffn: wire.d_ffn,
            glyph_seed: wire.glyph_seed,
            augmentation: wire.augmentation,
            sample_steps: wire.sample_steps,
            samples_per_pair: wire.samples_per_pair,
            t_min: wire.t_min,
            decision_points: wire.decision_points,
            critical_tolerance: wire.critical_tolerance,
            switch_times: wire.switch_times,
            fourier_t: wire.fourier_t,
            judge_images_per_class: wire.judge_images_per_class,
            judge_min_accuracy: wire.judge_min_accuracy,
        };
        match settings.problems(0).into_iter().next() {
            Some((field, message)) => Err(ConvertError::new(field, message)),
            None => Ok(settings),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_round_trip_and_bad_values_are_refused() {
        let params = TrialParams {
            family: Family::Transformer,
            modulus: 59,
            data_fraction: 0.35,
            weight_decay: 1.0,
            seed: 3,
            data_seed: 4,
            image_diversity: None,
        };
        let wire = pb::TrialParams::from(&params);
        assert_eq!(TrialParams::try_from(wire.clone()).expect("valid"), params);
        let bad = pb::TrialParams { data_fraction: 1.5, ..wire.clone() };
        assert_eq!(TrialParams::try_from(bad).expect_err("invalid").field, "data_fraction");
        let bad = pb::TrialParams { family: "gpt".into(), ..wire };
        assert_eq!(TrialParams::try_from(bad).expect_err("invalid").field, "family");
    }

    #[test]
    fn diffusion_settings_round_trip_and_are_checked() {
        let settings = DiffusionSettings { operand_input: OperandInput::Token, switch_times: vec![0.25], ..DiffusionSettings::default() };
        let wire = pb::DiffusionSettings::from(&settings);
        assert_eq!(DiffusionSettings::try_from(wire.clone()).expect("valid"), settings);
        let bad = pb::DiffusionSettings { patch_size: 3, ..wire.clone() };
        assert_eq!(DiffusionSettings::try_from(bad).expect_err("invalid").field, "patch_size");
        let bad = pb::DiffusionSettings { operand_input: "pixels".into(), ..wire };
        assert_eq!(DiffusionSettings::try_from(bad).expect_err("invalid").field, "operand_input");
    }
}
