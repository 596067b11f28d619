//! `groksweep analyze --llc`: the local learning coefficient at every saved
//! checkpoint of a sweep's transformer trials (their final attempts), written
//! as the `llc` measure of `progress`, with each estimate and its cost shown
//! as it is made.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use sweep_analysis::derived::{DerivedRow, leased_trials, write_derived};
use sweep_worker::llc::LlcSettings;

use crate::args::LlcArgs;

/// The measure name of the estimates.
pub(crate) const LLC: &str = "llc";

/// The sampler's settings from the flags, checked.
pub(crate) fn settings(args: &LlcArgs) -> anyhow::Result<LlcSettings> {
    let settings = LlcSettings {
        chains: args.llc_chains,
        draws: args.llc_draws,
        burn_in: args.llc_burn_in,
        epsilon: args.llc_epsilon,
        gamma: args.llc_gamma,
        nbeta: args.llc_nbeta,
        seed: args.llc_seed,
    };
    if let Some((setting, message)) = settings.problems().into_iter().next() {
        anyhow::bail!("--llc-{}: {message}", setting.replace('_', "-"));
    }
    Ok(settings)
}

/// (step, path) of every checkpoint of one attempt, by step.
fn checkpoints(directory: &Path) -> anyhow::Result<Vec<(i64, PathBuf)>> {
    let entries = match std::fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("failed to list {}", directory.display())),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("failed to list {}", directory.display()))?.path();
        let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some(step) = name.strip_prefix("step-").and_then(|rest| rest.strip_suffix(".safetensors")).and_then(|step| step.parse().ok())
        {
            found.push((step, path));
        }
    }
    found.sort();
    Ok(found)
}

/// Estimate and write the LLC of every checkpoint of the sweep's transformer trials.
pub(crate) async fn run(data_dir: &Path, sweep: &str, args: &LlcArgs) -> anyhow::Result<()> {
    let settings = settings(args)?;
    let context = sweep_analysis::open_results(data_dir, Some(sweep)).await.context("failed to open the results")?;
    let trials: Vec<(String, i32)> = leased_trials(&context, "transformer")
        .await
        .context("failed to read the trials table")?
        .into_iter()
        .filter(|(id, _)| args.llc_trials.as_ref().is_none_or(|only| only.contains(id)))
        .collect();
    anyhow::ensure!(!trials.is_empty(), "sweep `{sweep}` has no transformer trial to estimate the LLC of");
    println!(
        "\nlocal learning coefficient: {} chains × ({} burn-in + {} draws), ε = {}, γ = {}, nβ = {}",
        settings.chains,
        settings.burn_in,
        settings.draws,
        settings.epsilon,
        settings.gamma,
        settings.nbeta.map_or_else(|| "n / ln n".to_string(), |nbeta| nbeta.to_string())
    );
    for (trial_id, attempt) in trials {
        let directory = data_dir.join("results").join(sweep).join("checkpoints").join(&trial_id).join(format!("a{attempt}"));
        let found = checkpoints(&directory)?;
        if found.is_empty() {
            println!("{trial_id}: no checkpoints in {}", directory.display());
            continue;
        }
        let mut rows = Vec::with_capacity(found.len());
        for (step, path) in found {
            let bytes = std::fs::read(&path).with_context(|| format!("failed to read {}", path.display()))?;
            let started = Instant::now();
            let settings = settings.clone();
            let (_, estimate) =
                tokio::task::spawn_blocking(move || sweep_worker::transformer::checkpoint::checkpoint_llc(&bytes, &settings))
                    .await
                    .context("the LLC task failed")?
                    .with_context(|| format!("failed to estimate the LLC of {}", path.display()))?;
            let seconds = started.elapsed().as_secs_f64();
            if !estimate.llc.is_finite() {
                // A chain left the basin (the loss overflowed): nothing to record.
                println!("{trial_id} step {step:>6}: diverged (a chain's loss is not finite; try a smaller --llc-epsilon), {seconds:.1} s");
                continue;
            }
            let spread = estimate.per_chain.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &v| (low.min(v), high.max(v)));
            println!(
                "{trial_id} step {step:>6}: llc {:>10.3} (chains {:.3} .. {:.3}), L_n(w*) {:.3e}, {seconds:.1} s",
                estimate.llc, spread.0, spread.1, estimate.loss_at_start
            );
            let wall_time_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |time| time.as_millis() as i64);
            rows.push(DerivedRow { step, value: estimate.llc, wall_time_ms });
        }
        if rows.is_empty() {
            println!("{trial_id}: no estimate to write (earlier ones, if any, are kept)");
            continue;
        }
        let path = write_derived(data_dir, sweep, &trial_id, attempt, LLC, &rows).context("failed to write the llc rows")?;
        println!("{trial_id}: {} estimates in {}", rows.len(), path.display());
    }
    Ok(())
}
