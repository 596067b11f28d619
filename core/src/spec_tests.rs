//! Spec parsing: valid documents, and malformed ones with their exact error
//! location and message.

use super::*;

const VALID: &str = "\
version: 1
name: demo
families: transformer
axes:
  modulus: [7, 11]
  data_fraction: [0.3, 0.5, 0.9]
  weight_decay: 1.0
  seed: [0, 1]
training:
  lr: 3e-3
  eval_every: 10
stop:
  max_epochs: 500
";

/// Replace line `line` (1-based) of VALID, or append when `line` is past the end.
fn with_line(line: usize, replacement: &str) -> String {
    let mut lines: Vec<&str> = VALID.lines().collect();
    if line <= lines.len() {
        lines[line - 1] = replacement;
    } else {
        lines.push(replacement);
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

fn error_of(text: &str) -> String {
    match parse_spec("x.yaml", text) {
        Ok(spec) => panic!("expected an error, got {spec:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn valid_spec_has_defaults_and_values() {
    let spec = parse_spec("x.yaml", VALID).expect("valid");
    assert_eq!(spec.name, "demo");
    assert_eq!(spec.families, vec![Family::Transformer]);
    assert_eq!(spec.axes.modulus, vec![7, 11]);
    assert_eq!(spec.axes.weight_decay, vec![1.0]);
    assert_eq!(spec.training.lr, 3e-3);
    assert_eq!(spec.transformer.d_model, 128);
    assert_eq!(spec.stop.max_epochs, 500);
    assert_eq!(spec.retry.max_attempts, 3);
}

#[test]
fn malformed_specs_report_exact_location_and_message() {
    let cases: Vec<(String, &str)> = vec![
        (with_line(6, "  data_fraction: [0.3, 0.5, 1.4]"), "x.yaml:6:29: axes.data_fraction[2]: 1.4 is not in (0, 1]"),
        (with_line(6, "  data_fraction: 0"), "x.yaml:6:18: axes.data_fraction[0]: 0 is not in (0, 1]"),
        (
            with_line(5, "  modulus: [7, 12]"),
            "x.yaml:5:16: axes.modulus[1]: 12 is even; the modulus must be odd (the Fourier basis pairs frequencies 1..(p-1)/2)",
        ),
        (with_line(5, "  modulus: 1"), "x.yaml:5:12: axes.modulus[0]: 1 is not in [3, 1024]"),
        (with_line(5, "  modulus: []"), "x.yaml:5:12: axes.modulus: must have at least one value"),
        (with_line(7, "  weight_decay: -0.5"), "x.yaml:7:17: axes.weight_decay[0]: -0.5 must be a finite number ≥ 0"),
        (with_line(8, "  seed: [0, -1]"), "x.yaml:8:13: axes.seed[1]: -1 is negative; seeds are ≥ 0"),
        (with_line(8, "  seed: [3, 4, 3]"), "x.yaml:8:16: axes.seed[2]: 3 is listed twice"),
        (
            with_line(3, "families: diffusion\ndiffusion: {patch_size: 5}"),
            "x.yaml:4:25: diffusion.patch_size: 5 does not divide image_size 28",
        ),
        (
            with_line(3, "families: diffusion\ndiffusion: {image_sise: 32}"),
            "x.yaml:4:13: diffusion: unknown field `image_sise`, expected one of `operand_input`, `image_size`, `patch_size`, `d_model`, `n_heads`, `d_ffn`, `glyph_seed`, `augmentation`, `sample_steps`, `samples_per_pair`, `t_min`, `decision_points`, `critical_tolerance`, `switch_times`, `fourier_t`, `judge_images_per_class`, `judge_min_accuracy`",
        ),
        (with_line(3, "families: [transformer, transformer]"), "x.yaml:3:25: families[1]: `transformer` is listed twice"),
        (with_line(3, "families: [gpt]"), "x.yaml:3:12: families[0]: unknown family `gpt`, expected one of: transformer, diffusion"),
        (with_line(10, "  lr: 0"), "x.yaml:10:7: training.lr: 0 must be a positive number"),
        (with_line(11, "  n_heads: 3"), "x.yaml:11:12: training.n_heads: 3 does not divide d_model 128"),
        (with_line(11, "  eval_every: 0"), "x.yaml:11:15: training.eval_every: must be at least 1"),
        (with_line(13, "  max_epochs: 0"), "x.yaml:13:15: stop.max_epochs: must be at least 1"),
        (with_line(14, "  target_test_accuracy: 1.5"), "x.yaml:14:25: stop.target_test_accuracy: 1.5 is not in (0, 1]"),
        (with_line(14, "retry: {max_attempts: 0}"), "x.yaml:14:23: retry.max_attempts: must be at least 1"),
        (
            with_line(2, "name: bad name!"),
            "x.yaml:2:7: name: `bad name!` is not a valid sweep name (1 to 64 letters, digits, `-`, `_` or `.`, not starting with `.`)",
        ),
        (with_line(1, "version: 2"), "x.yaml:1:10: version: unsupported spec version 2 (supported versions: [1])"),
        (with_line(1, "# no version"), "x.yaml:1:1: missing field `version` (supported versions: [1])"),
        (
            with_line(14, "nam: typo"),
            "x.yaml:14:1: unknown field `nam`, expected one of `version`, `name`, `description`, `families`, `axes`, `training`, `stop`, `retry`, `transformer`, `diffusion`",
        ),
        (
            with_line(8, "  seeds: [0]"),
            "x.yaml:8:3: axes: unknown field `seeds`, expected one of `modulus`, `data_fraction`, `weight_decay`, `seed`, `data_seed`, `image_diversity`, `lr`, `init_scale`, `optimizer`, `loss`",
        ),
        (
            with_line(11, "  learning_rate: 0.1"),
            "x.yaml:11:3: training: unknown field `learning_rate`, expected one of `lr`, `warmup_steps`, `eval_every`, `d_model`, `n_heads`, `d_mlp`, `checkpoint_every`, `grokfast_ema`, `grokfast_ma`",
        ),
        (with_line(11, "transformer: {n_heads: 5}"), "x.yaml:11:24: transformer.n_heads: 5 does not divide d_model 128"),
        (
            with_line(11, "  d_mlp: 64\ntransformer: {d_mlp: 32}"),
            "x.yaml:11:10: training.d_mlp: the transformer's sizes are given in `transformer:`; give each in one place only",
        ),
        (with_line(5, "  modulus: [7, eleven]"), "x.yaml:5:16: axes.modulus[1]: invalid type: string \"eleven\", expected i64"),
        (with_line(8, "  # seed removed"), "x.yaml:5:3: axes: missing field `seed`"),
        (
            with_line(6, "  data_fraction: [0.3, 0.001]"),
            "x.yaml:6:24: axes.data_fraction[1]: 0.001 leaves no training pair at modulus 7\nx.yaml:6:24: axes.data_fraction[1]: 0.001 leaves no training pair at modulus 11",
        ),
        (with_line(8, "  seed: [0, 1]\n  image_diversity: 0"), "x.yaml:9:20: axes.image_diversity[0]: 0 is not in [1, 4096]"),
        (with_line(8, "  seed: 0\n  lr: [1e-3, 0]"), "x.yaml:9:14: axes.lr[1]: 0 must be a positive number"),
        (with_line(8, "  seed: 0\n  lr: [1e-3, 0.001]"), "x.yaml:9:14: axes.lr[1]: 0.001 is listed twice"),
        (with_line(8, "  seed: 0\n  init_scale: [1, 200]"), "x.yaml:9:19: axes.init_scale[1]: 200 is not in (0, 100]"),
        (with_line(8, "  seed: 0\n  init_scale: -1"), "x.yaml:9:15: axes.init_scale[0]: -1 is not in (0, 100]"),
        (
            with_line(8, "  seed: 0\n  optimizer: [adamw, grokfast]"),
            "x.yaml:9:22: axes.optimizer[1]: grokfast is not one of: adamw, grokfast_ema, grokfast_ma, orthograd",
        ),
        (with_line(8, "  seed: 0\n  loss: [softmax, softmax]"), "x.yaml:9:19: axes.loss[1]: softmax is listed twice"),
        (with_line(8, "  seed: 0\n  loss: sparsemax"), "x.yaml:9:9: axes.loss[0]: sparsemax is not one of: softmax, stablemax"),
        (with_line(11, "  grokfast_ema: {alpha: 1.5}"), "x.yaml:11:25: training.grokfast_ema.alpha: 1.5 is not in [0, 1)"),
        (with_line(11, "  grokfast_ma: {window: 0, lambda: 5}"), "x.yaml:11:25: training.grokfast_ma.window: 0 is not in [1, 1000]"),
        (
            with_line(11, "  grokfast_ema: {beta: 0.9}"),
            "x.yaml:11:18: training.grokfast_ema: unknown field `beta`, expected `alpha` or `lambda`",
        ),
        (with_line(4, "axes: [1, 2"), "x.yaml:5:10: did not find expected ',' or ']', while parsing a flow sequence"),
    ];
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for (text, expected) in &cases {
        let got = error_of(text);
        if got != *expected {
            failures.push(format!("expected: {expected}\n     got: {got}\n    text:\n{text}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = with_line(6, "  data_fraction: [1.4, 2]").replace("  lr: 3e-3", "  lr: -1");
    let error = parse_spec("x.yaml", &text).expect_err("invalid");
    let lines: Vec<String> = error.to_string().lines().map(str::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "x.yaml:6:19: axes.data_fraction[0]: 1.4 is not in (0, 1]".to_string(),
            "x.yaml:6:24: axes.data_fraction[1]: 2 is not in (0, 1]".to_string(),
            "x.yaml:10:7: training.lr: -1 must be a positive number".to_string(),
        ]
    );
    assert_eq!(error.problems().len(), 3);
}

#[test]
fn transformer_sizes_are_read_from_either_place() {
    let legacy = parse_spec("x.yaml", &with_line(11, "  d_model: 64\n  n_heads: 2")).expect("valid");
    assert_eq!(legacy.transformer, TransformerSettings { d_model: 64, n_heads: 2, d_mlp: 512 });
    let section = parse_spec("x.yaml", &with_line(14, "transformer: {d_model: 64, n_heads: 2}")).expect("valid");
    assert_eq!(section.transformer, legacy.transformer);
    assert_eq!(section.family_settings(Family::Transformer), FamilySettings::Transformer(legacy.transformer.clone()));
}

#[test]
fn stored_json_round_trips_and_an_older_form_is_refused() {
    let spec = parse_spec("x.yaml", VALID).expect("valid");
    let json = serde_json::to_string(&spec).expect("serialises");
    assert_eq!(serde_json::from_str::<SweepSpec>(&json).expect("reads back"), spec);
    // The form stored before family settings had their own sections: sizes in `training`.
    let older = json.replace("\"checkpoint_every\":1000", "\"d_model\":128,\"n_heads\":4,\"d_mlp\":512,\"checkpoint_every\":1000");
    assert_ne!(older, json);
    assert!(serde_json::from_str::<SweepSpec>(&older).is_err(), "an older stored form must be recognised, not misread");
}

#[test]
fn the_readme_spec_reference_is_a_valid_spec() {
    let readme = include_str!("../../README.md");
    let section = &readme[readme.find("## Sweep spec").expect("the README has a spec section")..];
    let start = section.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let block = &section[start..start + section[start..].find("```").expect("the block ends")];
    let spec = parse_spec("README.md", block).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(spec.axes.optimizer, vec![OptimizerKind::Adamw, OptimizerKind::GrokfastEma]);
    assert_eq!(spec.axes.loss, vec![LossKind::Softmax, LossKind::Stablemax]);
    assert_eq!(spec.axes.init_scale, vec![0.5, 1.0, 2.0]);
    assert_eq!(spec.training.grokfast_ma, crate::GrokfastMaSettings::default());
}
