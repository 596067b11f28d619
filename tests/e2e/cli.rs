//! The binary as people use it: `plan` on every shipped sweep, `run` end to
//! end and resumed, and a bad spec that starts nothing.

use std::process::Command;

use crate::fixture::{fixture_spec, groksweep, repo_root};

#[test]
fn every_shipped_sweep_validates_and_plans() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo_root().join("sweeps")).expect("sweeps/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let spec = sweep_core::load_spec(&path).unwrap_or_else(|error| panic!("{error}"));
        let trials = sweep_core::expand(&spec);
        assert!(!trials.is_empty(), "{} has no trials", path.display());
        let output = groksweep(&["plan", path.to_str().expect("utf-8")]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains(&format!("{} trials", trials.len())), "{stdout}");
        checked += 1;
    }
    assert!(checked >= 3, "expected quickstart, nanda-2023 and a grid in sweeps/");
}

#[test]
fn invalid_spec_is_reported_with_its_location_and_starts_nothing() {
    let directory = tempfile::tempdir().expect("tempdir");
    let spec = directory.path().join("bad.yaml");
    std::fs::write(
        &spec,
        "version: 1\nname: bad\nfamilies: transformer\naxes:\n  modulus: 11\n  data_fraction: [0.5, 1.4]\n  weight_decay: 1\n  seed: 0\n",
    )
    .expect("write");
    let data_dir = directory.path().join("data");
    let output = groksweep(&["run", spec.to_str().expect("utf-8"), "--data-dir", data_dir.to_str().expect("utf-8")]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.yaml:6:24: axes.data_fraction[1]: 1.4 is not in (0, 1]"), "{stderr}");
    assert!(!data_dir.exists(), "nothing may be created for an invalid spec");

    // A grid too large is refused from its size, by `plan` and by `run`, before anything is built.
    let list = |values: Vec<String>| format!("[{}]", values.join(", "));
    let huge = directory.path().join("huge.yaml");
    let text = format!(
        "version: 1\nname: huge\nfamilies: transformer\naxes:\n  modulus: {}\n  data_fraction: 0.5\n  weight_decay: {}\n  seed: {}\n",
        list((0..50).map(|k| (2 * k + 101).to_string()).collect()),
        list((0..200).map(|k| k.to_string()).collect()),
        list((0..200).map(|k| k.to_string()).collect()),
    );
    std::fs::write(&huge, text).expect("write");
    let huge = huge.to_str().expect("utf-8");
    for arguments in [vec!["plan", huge], vec!["run", huge, "--data-dir", data_dir.to_str().expect("utf-8")]] {
        let output = groksweep(&arguments);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains("has 2000000 trials, more than"), "{arguments:?}: {stderr}");
    }
    assert!(!data_dir.exists(), "nothing may be created for a sweep over the limit");
}

#[test]
fn run_finishes_the_sweep_and_a_second_run_resumes_without_retraining() {
    let directory = tempfile::tempdir().expect("tempdir");
    let data_dir = directory.path().join("data");
    let data = data_dir.to_str().expect("utf-8");
    let spec = fixture_spec("tiny.yaml");
    let spec = spec.to_str().expect("utf-8");
    let first = groksweep(&["run", spec, "--data-dir", data, "--slots", "2"]);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&first.stderr));
    assert!(stdout.contains("4 trials (4 new, 0 already done)"), "{stdout}");
    assert!(stdout.contains("grokked at"), "summary table missing: {stdout}");
    assert!(stdout.contains("pd.read_parquet"), "{stdout}");
    let second = groksweep(&["run", spec, "--data-dir", data]);
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{stdout}");
    assert!(stdout.contains("4 trials (0 new, 4 already done)"), "{stdout}");

    let query = groksweep(&["sql", "SELECT COUNT(*) AS n FROM trials WHERE status = 'done'", "--data-dir", data]);
    let stdout = String::from_utf8_lossy(&query.stdout);
    assert!(query.status.success(), "{}", String::from_utf8_lossy(&query.stderr));
    assert!(stdout.contains("| 4 "), "{stdout}");

    // Progress and spectra files live one directory down, per trial: every row must be seen.
    // 4 trials × (7 evals × 24 measures + 3 checkpoints × 2 final-K losses); 4 × 7 × 3 spectra × 6 frequencies.
    for (query, expected) in [
        ("SELECT COUNT(*) AS n FROM progress", "| 696 "),
        ("SELECT COUNT(*) AS n FROM spectra", "| 504 "),
        (
            "SELECT (SELECT COUNT(*) FROM key_frequencies) = \
                    (SELECT CAST(SUM(value) AS BIGINT) FROM progress WHERE measure = 'key_frequency_count') AS agree",
            "| true ",
        ),
    ] {
        let output = groksweep(&["sql", query, "--data-dir", data]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{query}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains(expected), "{query}: {stdout}");
    }

    // The phases table: written by the run's coordinator, rewritten by `analyze`.
    let phases = groksweep(&["sql", "SELECT COUNT(*) AS n FROM phases WHERE status = 'done'", "--data-dir", data]);
    assert!(String::from_utf8_lossy(&phases.stdout).contains("| 4 "), "{}", String::from_utf8_lossy(&phases.stdout));
    let analyze = groksweep(&["analyze", "tiny", "--data-dir", data, "--class-gap", "20"]);
    let stdout = String::from_utf8_lossy(&analyze.stdout);
    assert!(analyze.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&analyze.stderr));
    assert!(stdout.contains("phase diagram") && stdout.contains("data_fraction"), "{stdout}");
    assert!(stdout.contains("results/tiny/phases/phases.parquet"), "{stdout}");
    let settings = groksweep(&["sql", "SELECT DISTINCT settings FROM phases", "--data-dir", data]);
    assert!(String::from_utf8_lossy(&settings.stdout).contains("\"class_gap\":20"), "{}", String::from_utf8_lossy(&settings.stdout));
    // The LLC at every checkpoint (0, 30, 60) of two trials, as `llc` rows of `progress`.
    let trials = groksweep(&["sql", "SELECT trial_id FROM trials ORDER BY trial_id LIMIT 2", "--data-dir", data]);
    let ids: Vec<String> = String::from_utf8_lossy(&trials.stdout)
        .lines()
        .filter_map(|line| line.trim_matches(|c| c == '|' || c == ' ').parse::<String>().ok())
        .filter(|cell| cell.len() == 16 && cell.chars().all(|c| c.is_ascii_hexdigit()))
        .collect();
    assert_eq!(ids.len(), 2, "{}", String::from_utf8_lossy(&trials.stdout));
    let llc = groksweep(&[
        "analyze",
        "tiny",
        "--data-dir",
        data,
        "--llc",
        "--llc-chains",
        "2",
        "--llc-draws",
        "5",
        "--llc-trials",
        &ids.join(","),
    ]);
    let stdout = String::from_utf8_lossy(&llc.stdout);
    assert!(llc.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&llc.stderr));
    assert!(stdout.contains("local learning coefficient: 2 chains × (0 burn-in + 5 draws)"), "{stdout}");
    let rows = groksweep(&[
        "sql",
        "SELECT COUNT(*) AS n, COUNT(DISTINCT trial_id) AS t, MIN(step) AS first, MAX(step) AS last FROM progress WHERE measure = 'llc'",
        "--data-dir",
        data,
    ]);
    let text = String::from_utf8_lossy(&rows.stdout);
    assert!(text.contains("| 6 | 2 | 0     | 60   |"), "{text}");
    // A step size far too large: every chain leaves the basin, nothing is written over the estimates above.
    let first = ids[0].as_str();
    let diverged = groksweep(&[
        "analyze",
        "tiny",
        "--data-dir",
        data,
        "--llc",
        "--llc-chains",
        "1",
        "--llc-draws",
        "20",
        "--llc-epsilon",
        "100",
        "--llc-trials",
        first,
    ]);
    let stdout = String::from_utf8_lossy(&diverged.stdout);
    assert!(diverged.status.success() && stdout.contains("diverged") && stdout.contains("earlier ones, if any, are kept"), "{stdout}");
    let kept = groksweep(&["sql", "SELECT COUNT(*) AS n FROM progress WHERE measure = 'llc'", "--data-dir", data]);
    assert!(String::from_utf8_lossy(&kept.stdout).contains("| 6 "), "{}", String::from_utf8_lossy(&kept.stdout));
    let bad = groksweep(&["analyze", "tiny", "--data-dir", data, "--llc", "--llc-epsilon", "0"]);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--llc-epsilon: 0 must be a positive number"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let refused = groksweep(&["analyze", "tiny", "--data-dir", data, "--rows", "colour"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--rows must be one of modulus, data_fraction"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let report_path = directory.path().join("report.html");
    let report =
        groksweep(&["report", "tiny", "--data-dir", data, "--out", report_path.to_str().expect("utf-8"), "--where", "data_fraction > 0.6"]);
    let stdout = String::from_utf8_lossy(&report.stdout);
    assert!(report.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&report.stderr));
    assert!(stdout.contains("2 trials drawn"), "the filter keeps the 2 trials at fraction 0.8: {stdout}");
    let html = std::fs::read_to_string(&report_path).expect("the report is written");
    let figures = html.matches("<figure class=\"figure\"").count();
    assert!(html.contains(&format!("<meta name=\"groksweep-figures\" content=\"{figures}\">")), "the page counts its figures");
    // Per trial: loss, accuracy, restricted/excluded, Gini, Σθ², W_E spectrum (key frequencies only once some exist).
    assert!(figures >= 2 * 6, "{figures} figures");
    for fetching in ["<script", "<link", "src=", "href=\"http", "url("] {
        assert!(!html.contains(fetching), "self-contained, nothing fetched: found `{fetching}`");
    }
    let png_dir = directory.path().join("figures");
    let out = report_path.to_str().expect("utf-8");
    let pngs = groksweep(&["report", "tiny", "--data-dir", data, "--out", out, "--limit", "1", "--png", png_dir.to_str().expect("utf-8")]);
    assert!(pngs.status.success(), "{}", String::from_utf8_lossy(&pngs.stderr));
    let written: Vec<_> = std::fs::read_dir(&png_dir).expect("png dir").map(|entry| entry.expect("entry").path()).collect();
    assert!(written.len() >= 6, "{written:?}");
    for path in &written {
        let bytes = std::fs::read(path).expect("png");
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 2_000, "{} is a drawn PNG", path.display());
    }
    let unknown_trial =
        groksweep(&["report", "tiny", "--data-dir", data, "--out", report_path.to_str().expect("utf-8"), "--trials", "nope"]);
    assert!(
        String::from_utf8_lossy(&unknown_trial.stderr).contains("has no trial `nope`"),
        "{}",
        String::from_utf8_lossy(&unknown_trial.stderr)
    );
    let unknown = groksweep(&["analyze", "nope", "--data-dir", data]);
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no results for sweep `nope`"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
}

#[test]
fn glyphs_writes_a_contact_sheet_and_refuses_unreadable_labels() {
    let directory = tempfile::tempdir().expect("tempdir");
    let sheet = directory.path().join("sheet.png");
    let output = groksweep(&["glyphs", "--modulus", "23", "--per-class", "8", "--scale", "1", "--out", sheet.to_str().expect("utf-8")]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // A PNG of 8 × 23 cells of 28 px with a 1-px gutter: width 8·29 + 1, height 23·29 + 1.
    let bytes = std::fs::read(&sheet).expect("sheet written");
    assert_eq!(&bytes[1..4], b"PNG");
    let (width, height) =
        (u32::from_be_bytes(bytes[16..20].try_into().expect("4 bytes")), u32::from_be_bytes(bytes[20..24].try_into().expect("4 bytes")));
    assert_eq!((width, height), (8 * 29 + 1, 23 * 29 + 1));
    let output = groksweep(&["glyphs", "--modulus", "113", "--out", sheet.to_str().expect("utf-8")]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("image size of at least 32"));
}

/// Start a coordinator with `log_args` before the subcommand, let it log its
/// start-up lines into a pipe, SIGTERM it and return its stderr.
fn coordinator_log(log_args: &[&str]) -> String {
    let directory = tempfile::tempdir().expect("tempdir");
    let data_dir = directory.path().to_str().expect("utf-8").to_string();
    let mut args: Vec<&str> = log_args.to_vec();
    args.extend(["coordinator", "--listen", "127.0.0.1:0", "--data-dir", &data_dir]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_groksweep"))
        .args(&args)
        .env("RUST_LOG", "info")
        .env_remove("GROKSWEEP_LOG_FORMAT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("groksweep starts");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().expect("stdout")), &mut line).expect("address line");
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    // SAFETY: kill(2) on our own, not yet reaped child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let output = child.wait_with_output().expect("exits");
    assert!(output.status.success());
    String::from_utf8(output.stderr).expect("utf-8 logs")
}

#[test]
fn logs_are_plain_text_off_a_terminal_and_json_lines_on_request() {
    let text = coordinator_log(&[]);
    assert!(text.contains("coordinator serving"), "{text}");
    assert!(!text.contains('\u{1b}'), "ANSI escapes in a piped log: {text:?}");

    let json = coordinator_log(&["--log-format", "json"]);
    let lines: Vec<serde_json::Value> =
        json.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"))).collect();
    let serving = lines.iter().find(|line| line["message"] == "coordinator serving").unwrap_or_else(|| panic!("{json}"));
    assert_eq!(serving["level"], "INFO");
    assert!(serving["address"].as_str().is_some_and(|address| address.contains("127.0.0.1")), "{serving}");
    assert!(serving["data_dir"].is_string(), "{serving}");
}
