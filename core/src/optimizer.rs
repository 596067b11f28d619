//! The optimiser axis: AdamW alone, or AdamW behind a gradient filter
//! (Grokfast's EMA and moving average, Lee et al. 2024; ⊥Grad, Prieto et
//! al. 2025), and the filters' settings, which a sweep gives once in its
//! `training:` section.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a trial's gradients reach AdamW.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// AdamW on the raw gradient (both papers' recipe).
    #[default]
    Adamw,
    /// Grokfast-EMA: g ← g + λ·EMA_α(g), the EMA started at the first gradient.
    GrokfastEma,
    /// Grokfast-MA: g ← g + λ·mean of the last `window` gradients (this one
    /// included), applied once the window is full.
    GrokfastMa,
    /// ⊥Grad: per parameter tensor, g's component along the weights w is
    /// removed and the rest rescaled to ‖g‖.
    Orthograd,
}

impl OptimizerKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [OptimizerKind; 4] =
        [OptimizerKind::Adamw, OptimizerKind::GrokfastEma, OptimizerKind::GrokfastMa, OptimizerKind::Orthograd];

    /// The name used in YAML, Parquet and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            OptimizerKind::Adamw => "adamw",
            OptimizerKind::GrokfastEma => "grokfast_ema",
            OptimizerKind::GrokfastMa => "grokfast_ma",
            OptimizerKind::Orthograd => "orthograd",
        }
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OptimizerKind {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        OptimizerKind::ALL.into_iter().find(|kind| kind.as_str() == name).ok_or_else(|| {
            let names: Vec<&str> = OptimizerKind::ALL.iter().map(|kind| kind.as_str()).collect();
            format!("unknown optimizer `{name}`, expected one of: {}", names.join(", "))
        })
    }
}

/// Grokfast-EMA's settings (the authors' defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrokfastEmaSettings {
    /// EMA momentum α, in [0, 1) (default 0.98).
    pub alpha: f64,
    /// Amplification λ of the slow component, ≥ 0 (default 2).
    pub lambda: f64,
}

impl Default for GrokfastEmaSettings {
    fn default() -> Self {
        GrokfastEmaSettings { alpha: 0.98, lambda: 2.0 }
    }
}

/// Grokfast-MA's settings (the authors' defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrokfastMaSettings {
    /// Gradients averaged, 1..=1000 (default 100). Each is kept, so the
    /// filter holds `window` copies of the model's parameters.
    pub window: u32,
    /// Amplification λ of the mean, ≥ 0 (default 5).
    pub lambda: f64,
}

impl Default for GrokfastMaSettings {
    fn default() -> Self {
        GrokfastMaSettings { window: 100, lambda: 5.0 }
    }
}

/// The largest Grokfast-MA window (memory: one parameter copy per entry).
pub const MAX_MA_WINDOW: u32 = 1000;

impl GrokfastEmaSettings {
    /// Every problem, as (field, message) pairs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut found = Vec::new();
        if !(self.alpha >= 0.0 && self.alpha < 1.0) {
            found.push(("alpha", format!("{} is not in [0, 1)", self.alpha)));
        }
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            found.push(("lambda", format!("{} must be a finite number ≥ 0", self.lambda)));
        }
        found
    }
}

impl GrokfastMaSettings {
    /// Every problem, as (field, message) pairs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut found = Vec::new();
        if !(1..=MAX_MA_WINDOW).contains(&self.window) {
            found.push(("window", format!("{} is not in [1, {MAX_MA_WINDOW}]", self.window)));
        }
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            found.push(("lambda", format!("{} must be a finite number ≥ 0", self.lambda)));
        }
        found
    }
}

/// The transformer's loss over its logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// Softmax cross-entropy (Nanda et al.).
    #[default]
    Softmax,
    /// StableMax cross-entropy (Prieto et al. 2025): s(x) = x + 1 for x ≥ 0
    /// and 1 / (1 − x) for x < 0 in place of exp, normalised over the classes.
    Stablemax,
}

impl LossKind {
    /// Every kind.
    pub const ALL: [LossKind; 2] = [LossKind::Softmax, LossKind::Stablemax];

    /// The name used in YAML, Parquet and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            LossKind::Softmax => "softmax",
            LossKind::Stablemax => "stablemax",
        }
    }
}

impl fmt::Display for LossKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LossKind {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        LossKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| format!("unknown loss `{name}`, expected one of: softmax, stablemax"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_list_the_known() {
        for kind in OptimizerKind::ALL {
            assert_eq!(kind.as_str().parse::<OptimizerKind>(), Ok(kind));
        }
        for kind in LossKind::ALL {
            assert_eq!(kind.as_str().parse::<LossKind>(), Ok(kind));
        }
        let error = "grokfast".parse::<OptimizerKind>().expect_err("unknown");
        assert!(error.contains("grokfast_ema, grokfast_ma, orthograd"), "{error}");
    }

    #[test]
    fn settings_are_checked() {
        assert!(GrokfastEmaSettings::default().problems().is_empty());
        assert!(GrokfastMaSettings::default().problems().is_empty());
        let fields = |found: Vec<(&'static str, String)>| found.into_iter().map(|(field, _)| field).collect::<Vec<_>>();
        assert_eq!(fields(GrokfastEmaSettings { alpha: 1.0, lambda: -1.0 }.problems()), ["alpha", "lambda"]);
        assert_eq!(fields(GrokfastMaSettings { window: 0, lambda: f64::NAN }.problems()), ["window", "lambda"]);
    }
}
