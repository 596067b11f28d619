//! Typed progress measures, as a family computes them and as they travel to
//! the coordinator's Parquet writer: a scalar, a spectrum over frequencies, or
//! a curve over sampling time. The writer sends each shape to its own table
//! (`progress`, `spectra`, `curves`); nothing is encoded in measure names.

use serde::{Deserialize, Serialize};

/// One point of a curve over sampling time t.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Sampling time in [0, 1].
    pub t: f64,
    /// Value at t.
    pub value: f64,
}

/// The shape and values of one measure at one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MeasureValue {
    /// One number (a loss, an accuracy, Σθ²).
    Scalar(f64),
    /// One value per frequency k = 0..=(p−1)/2 (index = k; 0 is the constant term).
    Spectrum(Vec<f64>),
    /// Values at sampling times (a decision curve, the operand-switch results).
    Curve(Vec<CurvePoint>),
}

impl MeasureValue {
    /// The shape's name, as stored.
    pub fn kind(&self) -> MeasureKind {
        match self {
            MeasureValue::Scalar(_) => MeasureKind::Scalar,
            MeasureValue::Spectrum(_) => MeasureKind::Spectrum,
            MeasureValue::Curve(_) => MeasureKind::Curve,
        }
    }
}

/// The shape of a measure, without its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MeasureKind {
    /// `progress` table.
    Scalar,
    /// `spectra` table.
    Spectrum,
    /// `curves` table.
    Curve,
}

impl MeasureKind {
    /// Every kind.
    pub const ALL: [MeasureKind; 3] = [MeasureKind::Scalar, MeasureKind::Spectrum, MeasureKind::Curve];

    /// Name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            MeasureKind::Scalar => "scalar",
            MeasureKind::Spectrum => "spectrum",
            MeasureKind::Curve => "curve",
        }
    }

    /// Parse a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// A named measure. Names are those of `crate::measures` (a measure keeps
/// one shape: `W_E` is always a spectrum, `train_loss` always a scalar).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measure {
    /// Measure name (`progress.measure`, `spectra.matrix` or `curves.curve`).
    pub name: String,
    /// Its value.
    pub value: MeasureValue,
}

impl Measure {
    /// A scalar measure.
    pub fn scalar(name: impl Into<String>, value: f64) -> Self {
        Measure { name: name.into(), value: MeasureValue::Scalar(value) }
    }

    /// A spectrum over frequencies 0..values.len().
    pub fn spectrum(name: impl Into<String>, values: Vec<f64>) -> Self {
        Measure { name: name.into(), value: MeasureValue::Spectrum(values) }
    }

    /// A curve over sampling time.
    pub fn curve(name: impl Into<String>, points: Vec<CurvePoint>) -> Self {
        Measure { name: name.into(), value: MeasureValue::Curve(points) }
    }

    /// The value when this is a scalar.
    pub fn as_scalar(&self) -> Option<f64> {
        match self.value {
            MeasureValue::Scalar(value) => Some(value),
            _ => None,
        }
    }
}

/// Every measure of one trial at one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMeasures {
    /// Training step (epoch).
    pub step: i64,
    /// When the worker computed them, ms since the Unix epoch.
    pub wall_time_ms: i64,
    /// The measures.
    pub measures: Vec<Measure>,
}

/// Longest measure name accepted from the wire.
pub const MAX_MEASURE_NAME: usize = 128;

impl StepMeasures {
    /// The first problem with these measures, as (field, message): an empty or
    /// over-long name, the same name twice, an empty spectrum or curve, or a
    /// curve time outside [0, 1].
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.step < 0 {
            return Some(("step", format!("{} is negative", self.step)));
        }
        for (position, measure) in self.measures.iter().enumerate() {
            if measure.name.is_empty() || measure.name.len() > MAX_MEASURE_NAME {
                return Some(("measure.name", format!("must have 1 to {MAX_MEASURE_NAME} bytes, has {}", measure.name.len())));
            }
            if self.measures[..position].iter().any(|earlier| earlier.name == measure.name) {
                return Some(("measure.name", format!("`{}` appears twice at step {}", measure.name, self.step)));
            }
            match &measure.value {
                MeasureValue::Scalar(_) => {}
                MeasureValue::Spectrum(values) if values.is_empty() => {
                    return Some(("measure.spectrum", format!("`{}` has no values", measure.name)));
                }
                MeasureValue::Spectrum(_) => {}
                MeasureValue::Curve(points) if points.is_empty() => {
                    return Some(("measure.curve", format!("`{}` has no points", measure.name)));
                }
                MeasureValue::Curve(points) => {
                    if let Some(point) = points.iter().find(|point| !(0.0..=1.0).contains(&point.t)) {
                        return Some(("measure.curve.t", format!("`{}` has a point at t = {}, outside [0, 1]", measure.name, point.t)));
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_named() {
        let ok = StepMeasures {
            step: 3,
            wall_time_ms: 0,
            measures: vec![
                Measure::scalar("train_loss", 1.0),
                Measure::spectrum("W_E", vec![1.0, 2.0]),
                Measure::curve("decision_accuracy_test", vec![CurvePoint { t: 1.0, value: 0.1 }, CurvePoint { t: 0.0, value: 0.9 }]),
            ],
        };
        assert_eq!(ok.problem(), None);
        let twice = StepMeasures { measures: vec![Measure::scalar("a", 1.0), Measure::scalar("a", 2.0)], ..ok.clone() };
        assert_eq!(twice.problem().map(|p| p.0), Some("measure.name"));
        let late = StepMeasures { measures: vec![Measure::curve("c", vec![CurvePoint { t: 1.5, value: 0.0 }])], ..ok.clone() };
        assert_eq!(late.problem().map(|p| p.0), Some("measure.curve.t"));
        let empty = StepMeasures { measures: vec![Measure::spectrum("W_E", vec![])], ..ok.clone() };
        assert_eq!(empty.problem().map(|p| p.0), Some("measure.spectrum"));
        assert_eq!(StepMeasures { step: -1, ..ok }.problem().map(|p| p.0), Some("step"));
    }
}
