//! `groksweep plan`: validate a spec and list its trials.

use anyhow::Context;

use crate::args::PlanArgs;
use crate::display;

/// Print the trials a spec expands to.
pub(crate) fn run(args: PlanArgs) -> anyhow::Result<()> {
    let spec = sweep_core::load_spec(&args.spec)?;
    let size = sweep_core::count(&spec);
    let limit = sweep_coordinator::DEFAULT_MAX_TRIALS_PER_SWEEP;
    anyhow::ensure!(
        size <= u128::from(limit),
        "sweep `{}` has {size} trials, more than a coordinator takes by default ({limit}, --max-trials-per-sweep); split it into smaller sweeps",
        spec.name
    );
    let trials = sweep_core::expand(&spec);
    if args.json {
        let json = serde_json::json!({ "sweep": spec, "trials": trials });
        println!("{}", serde_json::to_string_pretty(&json).context("failed to encode the plan")?);
        return Ok(());
    }
    println!("sweep `{}`: {} trials, {} epochs at most each", spec.name, trials.len(), spec.stop.max_epochs);
    let rows: Vec<Vec<String>> = trials
        .iter()
        .map(|trial| {
            let p = &trial.params;
            vec![
                trial.id.to_string(),
                p.family.to_string(),
                p.modulus.to_string(),
                p.data_fraction.to_string(),
                p.weight_decay.to_string(),
                p.seed.to_string(),
                p.data_seed.to_string(),
                p.image_diversity.map_or_else(|| "—".to_string(), |n| n.to_string()),
            ]
        })
        .collect();
    let recipes = trials.iter().map(|trial| display::recipe(&(&trial.params).into())).collect();
    let (headers, rows) = display::with_recipes(&["trial", "family", "p", "fraction", "wd", "seed", "data seed", "N"], rows, recipes, 7);
    print!("{}", display::table(&headers, &rows));
    Ok(())
}
