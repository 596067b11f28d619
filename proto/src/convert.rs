//! Wire ↔ domain conversions. Everything arriving from the network is checked
//! here, once, with the same rules as a spec; the rest of the system sees
//! only `sweep-core` types.

use sweep_core::{
    CurvePoint, DiffusionSettings, Family, FamilySettings, FinalMetrics, GrokfastEmaSettings, GrokfastMaSettings, LeaseRef, LossKind,
    Measure, MeasureValue, OperandInput, OptimizerKind, Revocation, StepMeasures, StopRule, TrainingSettings, TransformerSettings, TrialId,
    TrialLease, TrialParams,
};

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

    fn from_problem((field, message): (&'static str, String)) -> Self {
        ConvertError { field, message }
    }
}

/// Require an optional sub-message.
pub fn required<T>(value: Option<T>, field: &'static str) -> Result<T, ConvertError> {
    value.ok_or_else(|| ConvertError::new(field, "missing"))
}

/// Longest trial id accepted (ids are 16 hex digits).
const MAX_TRIAL_ID: usize = 64;

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
            lr: params.lr,
            init_scale: params.init_scale,
            optimizer: params.optimizer.as_str().to_string(),
            loss: params.loss.map(|loss| loss.as_str().to_string()),
        }
    }
}

impl TryFrom<pb::TrialParams> for TrialParams {
    type Error = ConvertError;

    fn try_from(wire: pb::TrialParams) -> Result<Self, Self::Error> {
        let family: Family = wire.family.parse().map_err(|message: String| ConvertError::new("family", message))?;
        if let Err(message) = sweep_core::spec::check_modulus(wire.modulus as i64) {
            return Err(ConvertError::new("modulus", format!("{} {message}", wire.modulus)));
        }
        if !(wire.data_fraction > 0.0 && wire.data_fraction <= 1.0) {
            return Err(ConvertError::new("data_fraction", format!("{} is not in (0, 1]", wire.data_fraction)));
        }
        if !(wire.weight_decay.is_finite() && wire.weight_decay >= 0.0) {
            return Err(ConvertError::new("weight_decay", format!("{} is not a finite number ≥ 0", wire.weight_decay)));
        }
        if wire.image_diversity == Some(0) {
            return Err(ConvertError::new("image_diversity", "must be at least 1"));
        }
        if let Some(lr) = wire.lr {
            sweep_core::spec::check_lr(lr).map_err(|message| ConvertError::new("lr", format!("{lr} {message}")))?;
        }
        sweep_core::spec::check_init_scale(wire.init_scale)
            .map_err(|message| ConvertError::new("init_scale", format!("{} {message}", wire.init_scale)))?;
        let optimizer: OptimizerKind = wire.optimizer.parse().map_err(|message: String| ConvertError::new("optimizer", message))?;
        let loss = match wire.loss {
            None => None,
            Some(_) if family != Family::Transformer => {
                return Err(ConvertError::new("loss", format!("the {family} family has no loss axis")));
            }
            Some(name) => Some(name.parse::<LossKind>().map_err(|message| ConvertError::new("loss", message))?),
        };
        Ok(TrialParams {
            family,
            modulus: wire.modulus,
            data_fraction: wire.data_fraction,
            weight_decay: wire.weight_decay,
            seed: wire.seed,
            data_seed: wire.data_seed,
            image_diversity: wire.image_diversity,
            lr: wire.lr,
            init_scale: wire.init_scale,
            optimizer,
            loss,
        })
    }
}

impl From<&TrainingSettings> for pb::TrainingSettings {
    fn from(settings: &TrainingSettings) -> Self {
        pb::TrainingSettings {
            lr: settings.lr,
            warmup_steps: settings.warmup_steps,
            eval_every: settings.eval_every,
            checkpoint_every: settings.checkpoint_every,
            grokfast_ema: Some(pb::GrokfastEmaSettings { alpha: settings.grokfast_ema.alpha, lambda: settings.grokfast_ema.lambda }),
            grokfast_ma: Some(pb::GrokfastMaSettings { window: settings.grokfast_ma.window, lambda: settings.grokfast_ma.lambda }),
        }
    }
}

impl TryFrom<pb::TrainingSettings> for TrainingSettings {
    type Error = ConvertError;

    fn try_from(wire: pb::TrainingSettings) -> Result<Self, Self::Error> {
        if !(wire.lr.is_finite() && wire.lr > 0.0) {
            return Err(ConvertError::new("lr", format!("{} is not positive", wire.lr)));
        }
        if wire.eval_every == 0 {
            return Err(ConvertError::new("eval_every", "must be ≥ 1"));
        }
        let ema = required(wire.grokfast_ema, "grokfast_ema")?;
        let grokfast_ema = GrokfastEmaSettings { alpha: ema.alpha, lambda: ema.lambda };
        if let Some(problem) = grokfast_ema.problems().into_iter().next() {
            return Err(ConvertError::new("grokfast_ema", format!("{}: {}", problem.0, problem.1)));
        }
        let ma = required(wire.grokfast_ma, "grokfast_ma")?;
        let grokfast_ma = GrokfastMaSettings { window: ma.window, lambda: ma.lambda };
        if let Some(problem) = grokfast_ma.problems().into_iter().next() {
            return Err(ConvertError::new("grokfast_ma", format!("{}: {}", problem.0, problem.1)));
        }
        Ok(TrainingSettings {
            lr: wire.lr,
            warmup_steps: wire.warmup_steps,
            eval_every: wire.eval_every,
            checkpoint_every: wire.checkpoint_every,
            grokfast_ema,
            grokfast_ma,
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

impl From<&TransformerSettings> for pb::TransformerSettings {
    fn from(settings: &TransformerSettings) -> Self {
        pb::TransformerSettings { d_model: settings.d_model, n_heads: settings.n_heads, d_mlp: settings.d_mlp }
    }
}

impl TryFrom<pb::TransformerSettings> for TransformerSettings {
    type Error = ConvertError;

    fn try_from(wire: pb::TransformerSettings) -> Result<Self, Self::Error> {
        let settings = TransformerSettings { d_model: wire.d_model, n_heads: wire.n_heads, d_mlp: wire.d_mlp };
        match settings.problems().into_iter().next() {
            Some(problem) => Err(ConvertError::from_problem(problem)),
            None => Ok(settings),
        }
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

    /// Checked with the same rules as a spec (the image-size rule for
    /// three-digit labels is checked against the trial's modulus in
    /// [`TrialLease`]'s conversion).
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
            Some(problem) => Err(ConvertError::from_problem(problem)),
            None => Ok(settings),
        }
    }
}

impl From<&FamilySettings> for pb::lease::Family {
    fn from(settings: &FamilySettings) -> Self {
        match settings {
            FamilySettings::Transformer(settings) => pb::lease::Family::Transformer(settings.into()),
            FamilySettings::Diffusion(settings) => pb::lease::Family::Diffusion(settings.into()),
        }
    }
}

impl TryFrom<pb::lease::Family> for FamilySettings {
    type Error = ConvertError;

    fn try_from(wire: pb::lease::Family) -> Result<Self, Self::Error> {
        Ok(match wire {
            pb::lease::Family::Transformer(settings) => FamilySettings::Transformer(settings.try_into()?),
            pb::lease::Family::Diffusion(settings) => FamilySettings::Diffusion(settings.try_into()?),
        })
    }
}

impl From<&LeaseRef> for pb::LeaseRef {
    fn from(lease: &LeaseRef) -> Self {
        pb::LeaseRef { trial_id: lease.trial_id.to_string(), attempt: lease.attempt, fencing_token: lease.token }
    }
}

impl TryFrom<pb::LeaseRef> for LeaseRef {
    type Error = ConvertError;

    fn try_from(wire: pb::LeaseRef) -> Result<Self, Self::Error> {
        if wire.trial_id.is_empty() || wire.trial_id.len() > MAX_TRIAL_ID {
            return Err(ConvertError::new("lease.trial_id", format!("must have 1 to {MAX_TRIAL_ID} bytes, has {}", wire.trial_id.len())));
        }
        Ok(LeaseRef { trial_id: TrialId::from_raw(wire.trial_id), attempt: wire.attempt, token: wire.fencing_token })
    }
}

/// A lease reference that must be present.
pub fn lease_ref(wire: Option<pb::LeaseRef>) -> Result<LeaseRef, ConvertError> {
    required(wire, "lease")?.try_into()
}

impl From<&TrialLease> for pb::Lease {
    fn from(lease: &TrialLease) -> Self {
        pb::Lease {
            lease: Some((&lease.lease).into()),
            sweep: lease.sweep.clone(),
            params: Some((&lease.params).into()),
            training: Some((&lease.training).into()),
            stop: Some((&lease.stop).into()),
            deadline_ms: lease.deadline_ms,
            family: Some((&lease.family).into()),
        }
    }
}

impl TryFrom<pb::Lease> for TrialLease {
    type Error = ConvertError;

    fn try_from(wire: pb::Lease) -> Result<Self, Self::Error> {
        let params: TrialParams = required(wire.params, "params")?.try_into()?;
        let family: FamilySettings = required(wire.family, "family")?.try_into()?;
        if family.family() != params.family {
            return Err(ConvertError::new(
                "family",
                format!("the settings are the {} family's, the trial is the {} family's", family.family(), params.family),
            ));
        }
        if let Some(problem) = family.problems(params.modulus).into_iter().next() {
            return Err(ConvertError::from_problem(problem));
        }
        Ok(TrialLease {
            lease: lease_ref(wire.lease)?,
            sweep: wire.sweep,
            params,
            training: required(wire.training, "training")?.try_into()?,
            stop: required(wire.stop, "stop")?.try_into()?,
            family,
            deadline_ms: wire.deadline_ms,
        })
    }
}

impl From<&Revocation> for pb::Revocation {
    fn from(revocation: &Revocation) -> Self {
        pb::Revocation { lease: Some((&revocation.lease).into()), reason: revocation.reason.clone() }
    }
}

impl TryFrom<pb::Revocation> for Revocation {
    type Error = ConvertError;

    fn try_from(wire: pb::Revocation) -> Result<Self, Self::Error> {
        Ok(Revocation { lease: lease_ref(wire.lease)?, reason: wire.reason })
    }
}

impl From<&Measure> for pb::Measure {
    fn from(measure: &Measure) -> Self {
        let value = match &measure.value {
            MeasureValue::Scalar(value) => pb::measure::Value::Scalar(*value),
            MeasureValue::Spectrum(values) => pb::measure::Value::Spectrum(pb::Spectrum { values: values.clone() }),
            MeasureValue::Curve(points) => pb::measure::Value::Curve(pb::Curve {
                t: points.iter().map(|point| point.t).collect(),
                values: points.iter().map(|point| point.value).collect(),
            }),
        };
        pb::Measure { name: measure.name.clone(), value: Some(value) }
    }
}

impl TryFrom<pb::Measure> for Measure {
    type Error = ConvertError;

    fn try_from(wire: pb::Measure) -> Result<Self, Self::Error> {
        let value = match required(wire.value, "measure.value")? {
            pb::measure::Value::Scalar(value) => MeasureValue::Scalar(value),
            pb::measure::Value::Spectrum(spectrum) => MeasureValue::Spectrum(spectrum.values),
            pb::measure::Value::Curve(curve) => {
                if curve.t.len() != curve.values.len() {
                    return Err(ConvertError::new(
                        "measure.curve",
                        format!("`{}` has {} times and {} values", wire.name, curve.t.len(), curve.values.len()),
                    ));
                }
                MeasureValue::Curve(curve.t.into_iter().zip(curve.values).map(|(t, value)| CurvePoint { t, value }).collect())
            }
        };
        Ok(Measure { name: wire.name, value })
    }
}

impl From<&StepMeasures> for pb::StepMeasures {
    fn from(step: &StepMeasures) -> Self {
        pb::StepMeasures { step: step.step, wall_time_ms: step.wall_time_ms, measures: step.measures.iter().map(Into::into).collect() }
    }
}

impl TryFrom<pb::StepMeasures> for StepMeasures {
    type Error = ConvertError;

    fn try_from(wire: pb::StepMeasures) -> Result<Self, Self::Error> {
        let mut measures = Vec::with_capacity(wire.measures.len());
        for measure in wire.measures {
            measures.push(measure.try_into()?);
        }
        let step = StepMeasures { step: wire.step, wall_time_ms: wire.wall_time_ms, measures };
        match step.problem() {
            Some(problem) => Err(ConvertError::from_problem(problem)),
            None => Ok(step),
        }
    }
}

impl From<&FinalMetrics> for pb::FinalMetrics {
    fn from(metrics: &FinalMetrics) -> Self {
        pb::FinalMetrics {
            epochs: metrics.epochs,
            train_loss: metrics.train_loss,
            test_loss: metrics.test_loss,
            train_accuracy: metrics.train_accuracy,
            test_accuracy: metrics.test_accuracy,
            grokked_at: metrics.grokked_at,
            wall_seconds: metrics.wall_seconds,
            key_frequencies: metrics.key_frequencies.clone(),
            judge_accuracy: metrics.judge_accuracy,
        }
    }
}

impl TryFrom<pb::FinalMetrics> for FinalMetrics {
    type Error = ConvertError;

    fn try_from(wire: pb::FinalMetrics) -> Result<Self, Self::Error> {
        if wire.epochs < 0 {
            return Err(ConvertError::new("metrics.epochs", format!("{} is negative", wire.epochs)));
        }
        for (field, accuracy) in [("metrics.train_accuracy", wire.train_accuracy), ("metrics.test_accuracy", wire.test_accuracy)] {
            if !(0.0..=1.0).contains(&accuracy) {
                return Err(ConvertError::new(field, format!("{accuracy} is not in [0, 1]")));
            }
        }
        if let Some(judge) = wire.judge_accuracy.filter(|judge| !(0.0..=1.0).contains(judge)) {
            return Err(ConvertError::new("metrics.judge_accuracy", format!("{judge} is not in [0, 1]")));
        }
        Ok(FinalMetrics {
            epochs: wire.epochs,
            train_loss: wire.train_loss,
            test_loss: wire.test_loss,
            train_accuracy: wire.train_accuracy,
            test_accuracy: wire.test_accuracy,
            grokked_at: wire.grokked_at,
            wall_seconds: wire.wall_seconds,
            key_frequencies: wire.key_frequencies,
            judge_accuracy: wire.judge_accuracy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> TrialParams {
        TrialParams {
            family: Family::Transformer,
            modulus: 59,
            data_fraction: 0.35,
            weight_decay: 1.0,
            seed: 3,
            data_seed: 4,
            image_diversity: None,
            lr: Some(3e-3),
            init_scale: 0.5,
            optimizer: OptimizerKind::GrokfastMa,
            loss: Some(LossKind::Stablemax),
        }
    }

    #[test]
    fn params_round_trip_and_bad_values_are_refused() {
        let wire = pb::TrialParams::from(&params());
        assert_eq!(TrialParams::try_from(wire.clone()).expect("valid"), params());
        let bad = pb::TrialParams { data_fraction: 1.5, ..wire.clone() };
        assert_eq!(TrialParams::try_from(bad).expect_err("invalid").field, "data_fraction");
        let bad = pb::TrialParams { family: "gpt".into(), ..wire.clone() };
        assert_eq!(TrialParams::try_from(bad).expect_err("invalid").field, "family");
        // The spec's rule: odd moduli in 3..=1024.
        let bad = pb::TrialParams { modulus: 58, ..wire.clone() };
        assert_eq!(TrialParams::try_from(bad).expect_err("invalid").field, "modulus");
        // The later axes, with the spec's rules.
        for (bad, field) in [
            (pb::TrialParams { lr: Some(-1.0), ..wire.clone() }, "lr"),
            (pb::TrialParams { lr: Some(f64::NAN), ..wire.clone() }, "lr"),
            (pb::TrialParams { init_scale: 0.0, ..wire.clone() }, "init_scale"),
            (pb::TrialParams { optimizer: "sgd".into(), ..wire.clone() }, "optimizer"),
            (pb::TrialParams { loss: Some("mse".into()), ..wire.clone() }, "loss"),
            (pb::TrialParams { family: "diffusion".into(), image_diversity: Some(1), ..wire.clone() }, "loss"),
        ] {
            assert_eq!(TrialParams::try_from(bad).expect_err("invalid").field, field);
        }
        let training = pb::TrainingSettings::from(&TrainingSettings::default());
        assert_eq!(TrainingSettings::try_from(training).expect("valid"), TrainingSettings::default());
        let bad = pb::TrainingSettings { grokfast_ma: Some(pb::GrokfastMaSettings { window: 0, lambda: 5.0 }), ..training };
        assert_eq!(TrainingSettings::try_from(bad).expect_err("invalid").field, "grokfast_ma");
        let bad = pb::TrainingSettings { grokfast_ema: None, ..training };
        assert_eq!(TrainingSettings::try_from(bad).expect_err("invalid").field, "grokfast_ema");
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

    #[test]
    fn a_lease_round_trips_and_its_family_must_match_the_trial() {
        let lease = TrialLease {
            lease: LeaseRef { trial_id: TrialId::from_raw("00ff00ff00ff00ff"), attempt: 2, token: 9 },
            sweep: "s".into(),
            params: params(),
            training: TrainingSettings::default(),
            stop: StopRule::default(),
            family: FamilySettings::Transformer(TransformerSettings { d_model: 32, n_heads: 4, d_mlp: 64 }),
            deadline_ms: 1234,
        };
        let wire = pb::Lease::from(&lease);
        assert_eq!(TrialLease::try_from(wire.clone()).expect("valid"), lease);
        let mismatched = pb::Lease { family: Some(pb::lease::Family::Diffusion((&DiffusionSettings::default()).into())), ..wire.clone() };
        assert_eq!(TrialLease::try_from(mismatched).expect_err("invalid").field, "family");
        let no_family = pb::Lease { family: None, ..wire };
        assert_eq!(TrialLease::try_from(no_family).expect_err("invalid").field, "family");
    }

    #[test]
    fn measures_round_trip_with_their_shapes() {
        let step = StepMeasures {
            step: 7,
            wall_time_ms: 99,
            measures: vec![
                Measure::scalar("train_loss", 0.5),
                Measure::spectrum("W_E", vec![1.0, 0.5, 0.25]),
                Measure::curve("decision_accuracy_test", vec![CurvePoint { t: 1.0, value: 0.2 }, CurvePoint { t: 0.0, value: 0.8 }]),
            ],
        };
        let wire = pb::StepMeasures::from(&step);
        assert_eq!(StepMeasures::try_from(wire.clone()).expect("valid"), step);
        let mut ragged = wire.clone();
        if let Some(pb::measure::Value::Curve(curve)) = ragged.measures[2].value.as_mut() {
            curve.values.pop();
        }
        assert_eq!(StepMeasures::try_from(ragged).expect_err("invalid").field, "measure.curve");
        let negative = pb::StepMeasures { step: -3, ..wire };
        assert_eq!(StepMeasures::try_from(negative).expect_err("invalid").field, "step");
    }

    #[test]
    fn final_metrics_outside_their_ranges_are_refused() {
        let metrics = FinalMetrics { epochs: 10, train_accuracy: 1.0, test_accuracy: 0.5, ..FinalMetrics::default() };
        let wire = pb::FinalMetrics::from(&metrics);
        assert_eq!(FinalMetrics::try_from(wire.clone()).expect("valid"), metrics);
        assert_eq!(FinalMetrics::try_from(pb::FinalMetrics { epochs: -1, ..wire.clone() }).expect_err("x").field, "metrics.epochs");
        let nan = pb::FinalMetrics { test_accuracy: f64::NAN, ..wire.clone() };
        assert_eq!(FinalMetrics::try_from(nan).expect_err("x").field, "metrics.test_accuracy");
        let seven = pb::FinalMetrics { train_accuracy: 7.0, ..wire };
        assert_eq!(FinalMetrics::try_from(seven).expect_err("x").field, "metrics.train_accuracy");
    }
}
