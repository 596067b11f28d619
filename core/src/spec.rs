//! The sweep spec: the raw YAML shape (serde, `deny_unknown_fields`), the
//! validated [`SweepSpec`], and [`parse_spec`] which turns one into the other
//! while reporting every problem with its file location.

use serde::{Deserialize, Serialize};

use crate::Family;
use crate::diffusion::DiffusionSettings;
use crate::error::{SpecError, SpecProblem};
use crate::family::{FamilySettings, TransformerSettings};
use crate::location::LocationIndex;
use crate::one_or_many::OneOrMany;
use crate::optimizer::{GrokfastEmaSettings, GrokfastMaSettings, LossKind, OptimizerKind};

/// The spec versions this build understands, newest last.
pub const SPEC_VERSIONS: &[u32] = &[1];

/// Fixed training settings of every trial in a sweep, whatever its family
/// (defaults: Nanda et al. 2023).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSettings {
    /// AdamW learning rate (paper: 1e-3); the default of the `lr` axis.
    pub lr: f64,
    /// Linear warm-up length in steps: the lr multiplier is `min(step / warmup_steps, 1)`.
    pub warmup_steps: u32,
    /// Evaluate (and stream measures) every this many epochs; the last epoch is always evaluated.
    pub eval_every: u32,
    /// Save a checkpoint every this many epochs (and always at the last
    /// epoch); 0 saves only the last. The transformer's `*_final_k` measures
    /// are computed over these checkpoints, so this also sets their resolution.
    pub checkpoint_every: u32,
    /// Settings of the `grokfast_ema` optimizer (absent in specs stored by older builds).
    #[serde(default)]
    pub grokfast_ema: GrokfastEmaSettings,
    /// Settings of the `grokfast_ma` optimizer.
    #[serde(default)]
    pub grokfast_ma: GrokfastMaSettings,
}

impl Default for TrainingSettings {
    fn default() -> Self {
        TrainingSettings {
            lr: 1e-3,
            warmup_steps: 10,
            eval_every: 100,
            checkpoint_every: 1000,
            grokfast_ema: GrokfastEmaSettings::default(),
            grokfast_ma: GrokfastMaSettings::default(),
        }
    }
}

/// The `training:` section as written: the shared settings, plus the
/// transformer's sizes in their older place (they now have a `transformer:`
/// section of their own; both spellings are read).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TrainingV1 {
    lr: f64,
    warmup_steps: u32,
    eval_every: u32,
    d_model: Option<u32>,
    n_heads: Option<u32>,
    d_mlp: Option<u32>,
    checkpoint_every: u32,
    grokfast_ema: GrokfastEmaSettings,
    grokfast_ma: GrokfastMaSettings,
}

impl Default for TrainingV1 {
    fn default() -> Self {
        let shared = TrainingSettings::default();
        TrainingV1 {
            lr: shared.lr,
            warmup_steps: shared.warmup_steps,
            eval_every: shared.eval_every,
            d_model: None,
            n_heads: None,
            d_mlp: None,
            checkpoint_every: shared.checkpoint_every,
            grokfast_ema: shared.grokfast_ema,
            grokfast_ma: shared.grokfast_ma,
        }
    }
}

/// When a trial stops training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StopRule {
    /// Hard limit on training epochs (full-batch steps).
    pub max_epochs: u32,
    /// Stop early once test accuracy is at least this for `patience` consecutive evals.
    pub target_test_accuracy: Option<f64>,
    /// Consecutive evals at or above the target needed to stop early.
    pub patience: u32,
}

impl Default for StopRule {
    fn default() -> Self {
        StopRule { max_epochs: 40_000, target_test_accuracy: None, patience: 3 }
    }
}

/// How often a trial may be attempted before it is marked failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts that may fail (crash, lapsed lease, error) before the trial fails.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 3 }
    }
}

/// The grid: every axis as a list of values, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Axes {
    /// Modulus p of the addition (odd, 3..=1024).
    pub modulus: Vec<u32>,
    /// Fraction of the p² pairs used for training, in (0, 1].
    pub data_fraction: Vec<f64>,
    /// AdamW decoupled weight decay, ≥ 0.
    pub weight_decay: Vec<f64>,
    /// Model-initialisation seeds.
    pub seed: Vec<u64>,
    /// Data-split seeds; `None` means each trial uses its model seed.
    pub data_seed: Option<Vec<u64>>,
    /// Images per symbol (diffusion family only; does not multiply other families).
    pub image_diversity: Vec<u32>,
    /// Learning rates; `[training.lr]` when the axis is absent.
    pub lr: Vec<f64>,
    /// Multipliers on every initial weight, in (0, 100]; `[1]` when absent.
    pub init_scale: Vec<f64>,
    /// Optimisers; `[adamw]` when absent.
    pub optimizer: Vec<OptimizerKind>,
    /// Losses of the transformer family (does not multiply other families); `[softmax]` when absent.
    pub loss: Vec<LossKind>,
}

/// A validated sweep: the only way to get one is [`parse_spec`]. Its JSON
/// form (what the coordinator stores) refuses unknown fields, so a form
/// written by an older build is recognised and re-read from its YAML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Sweep name: letters, digits, `-`, `_`, `.`; used in result paths.
    pub name: String,
    /// Free text for people.
    pub description: Option<String>,
    /// Families to run, in the order given.
    pub families: Vec<Family>,
    /// The grid.
    pub axes: Axes,
    /// Fixed training settings.
    pub training: TrainingSettings,
    /// Stop rules.
    pub stop: StopRule,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Sizes of the transformer family (defaults when the sweep has none).
    pub transformer: TransformerSettings,
    /// Settings of the diffusion family (defaults when the sweep has none).
    pub diffusion: DiffusionSettings,
}

impl SweepSpec {
    /// The settings trials of `family` carry.
    pub fn family_settings(&self, family: Family) -> FamilySettings {
        match family {
            Family::Transformer => FamilySettings::Transformer(self.transformer.clone()),
            Family::Diffusion => FamilySettings::Diffusion(self.diffusion.clone()),
        }
    }
}

/// Versioned on-disk form: the `version` field picks the variant.
#[derive(Debug)]
enum VersionedSweepSpec {
    V1(SweepSpecV1),
}

#[derive(Deserialize)]
struct VersionProbe {
    version: Option<serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepSpecV1 {
    #[allow(dead_code)]
    version: u32,
    name: String,
    #[serde(default)]
    description: Option<String>,
    families: OneOrMany<String>,
    axes: AxesV1,
    #[serde(default)]
    training: TrainingV1,
    #[serde(default)]
    stop: StopRule,
    #[serde(default)]
    retry: RetryPolicy,
    #[serde(default)]
    transformer: Option<TransformerSettings>,
    #[serde(default)]
    diffusion: DiffusionSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AxesV1 {
    modulus: OneOrMany<i64>,
    data_fraction: OneOrMany<f64>,
    weight_decay: OneOrMany<f64>,
    seed: OneOrMany<i64>,
    #[serde(default)]
    data_seed: Option<OneOrMany<i64>>,
    #[serde(default)]
    image_diversity: Option<OneOrMany<i64>>,
    #[serde(default)]
    lr: Option<OneOrMany<f64>>,
    #[serde(default)]
    init_scale: Option<OneOrMany<f64>>,
    #[serde(default)]
    optimizer: Option<OneOrMany<String>>,
    #[serde(default)]
    loss: Option<OneOrMany<String>>,
}

/// Collects problems with their locations while a raw spec is validated.
struct Problems<'a> {
    index: &'a LocationIndex,
    found: Vec<SpecProblem>,
}

impl Problems<'_> {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        let location = self.index.locate(&path);
        self.found.push(SpecProblem { location, path, message: message.into() });
    }
}

/// Parse and validate a sweep spec. `source_name` is what errors call the file.
pub fn parse_spec(source_name: &str, yaml: &str) -> Result<SweepSpec, SpecError> {
    let index = LocationIndex::build(yaml);
    let invalid = |problems| SpecError::Invalid { source_name: source_name.to_string(), problems };
    let versioned = read_versioned(yaml, &index).map_err(|problem| invalid(vec![problem]))?;
    let mut problems = Problems { index: &index, found: Vec::new() };
    let spec = match versioned {
        VersionedSweepSpec::V1(raw) => raw.build_and_validate(&mut problems),
    };
    if problems.found.is_empty() {
        Ok(spec)
    } else {
        problems.found.sort_by_key(|problem| (problem.location.line, problem.location.column));
        Err(invalid(problems.found))
    }
}

/// Read a spec file and [`parse_spec`] it.
pub fn load_spec(path: &std::path::Path) -> Result<SweepSpec, SpecError> {
    let source_name = path.display().to_string();
    let yaml =
        std::fs::read_to_string(path).map_err(|error| SpecError::Io { source_name: source_name.clone(), message: error.to_string() })?;
    parse_spec(&source_name, &yaml)
}

fn read_versioned(yaml: &str, index: &LocationIndex) -> Result<VersionedSweepSpec, SpecProblem> {
    let problem = |path: &str, message: String| SpecProblem { location: index.locate(path), path: path.to_string(), message };
    let probe: VersionProbe = serde_yaml::from_str(yaml).map_err(serde_problem)?;
    let supported = format!("supported versions: {SPEC_VERSIONS:?}");
    match probe.version {
        None => Err(problem("", format!("missing field `version` ({supported})"))),
        Some(serde_yaml::Value::Number(number)) if number.as_u64() == Some(1) => {
            let raw = serde_yaml::from_str(yaml).map_err(serde_problem)?;
            Ok(VersionedSweepSpec::V1(raw))
        }
        Some(other) => {
            let shown = serde_yaml::to_string(&other).unwrap_or_default();
            Err(problem("version", format!("unsupported spec version {} ({supported})", shown.trim())))
        }
    }
}

/// Turn a serde_yaml error into a problem: serde_yaml puts the field path
/// first (`axes.seed[1]: invalid type ...`) and the location last.
fn serde_problem(error: serde_yaml::Error) -> SpecProblem {
    let location = match error.location() {
        Some(mark) => crate::Location { line: mark.line(), column: mark.column() },
        None => crate::Location { line: 1, column: 1 },
    };
    let text = strip_positions(&error.to_string());
    let (path, message) = match text.split_once(": ") {
        Some((path, message)) if !path.contains(' ') => (path.to_string(), message.to_string()),
        _ => (String::new(), text),
    };
    SpecProblem { location, path, message }
}

/// Remove every " at line N column M" that serde_yaml writes into its messages:
/// the location is reported once, in front.
fn strip_positions(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(" at line ") {
        out.push_str(&rest[..start]);
        let tail = &rest[start + " at line ".len()..];
        let after_line = tail.trim_start_matches(|c: char| c.is_ascii_digit());
        match after_line.strip_prefix(" column ") {
            Some(column) => rest = column.trim_start_matches(|c: char| c.is_ascii_digit()),
            None => {
                out.push_str(" at line ");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_valid_name(name: &str) -> bool {
    let allowed = |character: char| character.is_ascii_alphanumeric() || matches!(character, '-' | '_' | '.');
    !name.is_empty() && name.len() <= 64 && name.chars().all(allowed) && !name.starts_with('.')
}

impl SweepSpecV1 {
    fn build_and_validate(self, problems: &mut Problems<'_>) -> SweepSpec {
        if !is_valid_name(&self.name) {
            problems.add(
                "name",
                format!("`{}` is not a valid sweep name (1 to 64 letters, digits, `-`, `_` or `.`, not starting with `.`)", self.name),
            );
        }
        let families = validate_families(&self.families, problems);
        let training = validate_training(&self.training, problems);
        let axes = self.axes.build_and_validate(training.lr, problems);
        let transformer = transformer_sizes(&self.training, self.transformer, problems);
        validate_stop(&self.stop, problems);
        if self.retry.max_attempts == 0 {
            problems.add("retry.max_attempts", "must be at least 1");
        }
        if families.contains(&Family::Diffusion) {
            let max_modulus = axes.modulus.iter().copied().max().unwrap_or(0);
            for (field, message) in self.diffusion.problems(max_modulus) {
                problems.add(format!("diffusion.{field}"), message);
            }
        }
        SweepSpec {
            name: self.name,
            description: self.description,
            families,
            axes,
            training,
            stop: self.stop,
            retry: self.retry,
            transformer,
            diffusion: self.diffusion,
        }
    }
}

fn validate_families(raw: &OneOrMany<String>, problems: &mut Problems<'_>) -> Vec<Family> {
    let mut families = Vec::new();
    if raw.0.is_empty() {
        problems.add("families", "must name at least one family");
    }
    for (position, name) in raw.0.iter().enumerate() {
        let path = format!("families[{position}]");
        match name.parse::<Family>() {
            Ok(family) if families.contains(&family) => problems.add(path, format!("`{name}` is listed twice")),
            Ok(family) => families.push(family),
            Err(message) => problems.add(path, message),
        }
    }
    families
}

fn validate_training(training: &TrainingV1, problems: &mut Problems<'_>) -> TrainingSettings {
    if !(training.lr.is_finite() && training.lr > 0.0) {
        problems.add("training.lr", format!("{} must be a positive number", training.lr));
    }
    if training.eval_every == 0 {
        problems.add("training.eval_every", "must be at least 1");
    }
    for (field, message) in training.grokfast_ema.problems() {
        problems.add(format!("training.grokfast_ema.{field}"), message);
    }
    for (field, message) in training.grokfast_ma.problems() {
        problems.add(format!("training.grokfast_ma.{field}"), message);
    }
    TrainingSettings {
        lr: training.lr,
        warmup_steps: training.warmup_steps,
        eval_every: training.eval_every,
        checkpoint_every: training.checkpoint_every,
        grokfast_ema: training.grokfast_ema.clone(),
        grokfast_ma: training.grokfast_ma.clone(),
    }
}

/// The transformer's sizes, from the `transformer:` section or from their
/// older place in `training:` (not both), checked where they were written.
fn transformer_sizes(training: &TrainingV1, section: Option<TransformerSettings>, problems: &mut Problems<'_>) -> TransformerSettings {
    let legacy = [("d_model", training.d_model), ("n_heads", training.n_heads), ("d_mlp", training.d_mlp)];
    let (sizes, prefix) = match section {
        Some(sizes) => {
            for (field, value) in legacy {
                if value.is_some() {
                    problems.add(
                        format!("training.{field}"),
                        "the transformer's sizes are given in `transformer:`; give each in one place only",
                    );
                }
            }
            (sizes, "transformer")
        }
        None => {
            let defaults = TransformerSettings::default();
            let sizes = TransformerSettings {
                d_model: training.d_model.unwrap_or(defaults.d_model),
                n_heads: training.n_heads.unwrap_or(defaults.n_heads),
                d_mlp: training.d_mlp.unwrap_or(defaults.d_mlp),
            };
            (sizes, "training")
        }
    };
    for (field, message) in sizes.problems() {
        problems.add(format!("{prefix}.{field}"), message);
    }
    sizes
}

fn validate_stop(stop: &StopRule, problems: &mut Problems<'_>) {
    if stop.max_epochs == 0 {
        problems.add("stop.max_epochs", "must be at least 1");
    }
    if let Some(target) = stop.target_test_accuracy
        && !(target > 0.0 && target <= 1.0)
    {
        problems.add("stop.target_test_accuracy", format!("{target} is not in (0, 1]"));
    }
    if stop.patience == 0 {
        problems.add("stop.patience", "must be at least 1");
    }
}

/// Check every value of an axis, report duplicates, and convert the valid ones.
fn validate_axis<T: Clone + PartialEq + std::fmt::Display, U>(
    name: &str,
    values: &[T],
    problems: &mut Problems<'_>,
    check: impl Fn(T) -> Result<U, String>,
) -> Vec<U> {
    let path = format!("axes.{name}");
    if values.is_empty() {
        problems.add(path.clone(), "must have at least one value");
    }
    let mut accepted = Vec::with_capacity(values.len());
    for (position, value) in values.iter().enumerate() {
        let item_path = format!("{path}[{position}]");
        if values[..position].contains(value) {
            problems.add(item_path, format!("{value} is listed twice"));
            continue;
        }
        match check(value.clone()) {
            Ok(converted) => accepted.push(converted),
            Err(message) => problems.add(item_path, format!("{value} {message}")),
        }
    }
    accepted
}

/// The spec's rule for a modulus: odd, in 3..=1024 (the message follows the value).
pub fn check_modulus(value: i64) -> Result<u32, String> {
    if !(3..=1024).contains(&value) {
        return Err("is not in [3, 1024]".to_string());
    }
    if value % 2 == 0 {
        return Err("is even; the modulus must be odd (the Fourier basis pairs frequencies 1..(p-1)/2)".to_string());
    }
    Ok(value as u32)
}

fn check_fraction(value: f64) -> Result<f64, String> {
    if value > 0.0 && value <= 1.0 { Ok(value) } else { Err("is not in (0, 1]".to_string()) }
}

fn check_weight_decay(value: f64) -> Result<f64, String> {
    if value.is_finite() && value >= 0.0 { Ok(value) } else { Err("must be a finite number ≥ 0".to_string()) }
}

fn check_seed(value: i64) -> Result<u64, String> {
    u64::try_from(value).map_err(|_| "is negative; seeds are ≥ 0".to_string())
}

fn check_diversity(value: i64) -> Result<u32, String> {
    if (1..=4096).contains(&value) { Ok(value as u32) } else { Err("is not in [1, 4096]".to_string()) }
}

/// The spec's rule for a learning rate (the `lr` axis and `training.lr`): finite and positive.
pub fn check_lr(value: f64) -> Result<f64, String> {
    if value.is_finite() && value > 0.0 { Ok(value) } else { Err("must be a positive number".to_string()) }
}

fn one_of<const N: usize>(names: [&str; N]) -> String {
    format!("is not one of: {}", names.join(", "))
}

/// The largest `init_scale`.
pub const MAX_INIT_SCALE: f64 = 100.0;

/// The spec's rule for an initial-weight multiplier: in (0, 100].
pub fn check_init_scale(value: f64) -> Result<f64, String> {
    if value > 0.0 && value <= MAX_INIT_SCALE { Ok(value) } else { Err(format!("is not in (0, {MAX_INIT_SCALE}]")) }
}

impl AxesV1 {
    fn build_and_validate(self, training_lr: f64, problems: &mut Problems<'_>) -> Axes {
        let modulus = validate_axis("modulus", &self.modulus.0, problems, check_modulus);
        let data_fraction = validate_axis("data_fraction", &self.data_fraction.0, problems, check_fraction);
        for &p in &modulus {
            for (position, &fraction) in data_fraction.iter().enumerate() {
                let train_pairs = crate::split::train_size(p, fraction);
                if train_pairs == 0 {
                    problems.add(format!("axes.data_fraction[{position}]"), format!("{fraction} leaves no training pair at modulus {p}"));
                }
            }
        }
        let weight_decay = validate_axis("weight_decay", &self.weight_decay.0, problems, check_weight_decay);
        let seed = validate_axis("seed", &self.seed.0, problems, check_seed);
        let data_seed = self.data_seed.map(|raw| validate_axis("data_seed", &raw.0, problems, check_seed));
        let image_diversity = match self.image_diversity {
            Some(raw) => validate_axis("image_diversity", &raw.0, problems, check_diversity),
            None => vec![1],
        };
        let lr = match self.lr {
            Some(raw) => validate_axis("lr", &raw.0, problems, check_lr),
            None => vec![training_lr],
        };
        let init_scale = match self.init_scale {
            Some(raw) => validate_axis("init_scale", &raw.0, problems, check_init_scale),
            None => vec![1.0],
        };
        let optimizer = match self.optimizer {
            Some(raw) => validate_axis("optimizer", &raw.0, problems, |name: String| {
                name.parse::<OptimizerKind>().map_err(|_| one_of(OptimizerKind::ALL.map(OptimizerKind::as_str)))
            }),
            None => vec![OptimizerKind::Adamw],
        };
        let loss = match self.loss {
            Some(raw) => validate_axis("loss", &raw.0, problems, |name: String| {
                name.parse::<LossKind>().map_err(|_| one_of(LossKind::ALL.map(LossKind::as_str)))
            }),
            None => vec![LossKind::Softmax],
        };
        Axes { modulus, data_fraction, weight_decay, seed, data_seed, image_diversity, lr, init_scale, optimizer, loss }
    }
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
