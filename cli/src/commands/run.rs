//! `groksweep run`: the embedded mode. A real coordinator on a loopback port and
//! local workers that reach it over gRPC — the same path a cluster uses.

use std::sync::Arc;

use anyhow::Context;
use sweep_coordinator::{Coordinator, CoordinatorConfig, SystemClock};
use sweep_worker::WorkerConfig;
use tokio::sync::watch;

use crate::args::RunArgs;
use crate::commands::client::{follow, submit_spec};
use crate::commands::worker::host_name;
use crate::display;
use crate::signals::shutdown_signal;

/// Run a sweep here, to the end or until Ctrl-C; a second run resumes.
pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    let interrupted = shutdown_signal();
    anyhow::ensure!(args.workers >= 1 && args.slots >= 1, "--workers and --slots must be at least 1");
    anyhow::ensure!(args.pack != Some(0), "--pack must be at least 1");
    anyhow::ensure!(args.step_threads != Some(0), "--step-threads must be at least 1");
    // Validate before anything starts: a bad spec starts nothing.
    let spec = sweep_core::load_spec(&args.spec)?;
    let size = sweep_core::count(&spec);
    anyhow::ensure!(
        size <= u128::from(args.max_trials_per_sweep),
        "sweep `{}` has {size} trials, more than --max-trials-per-sweep {}; split it into smaller sweeps",
        spec.name,
        args.max_trials_per_sweep
    );

    let mut config = CoordinatorConfig::new(&args.data_dir);
    config.on_trials_written = Some(Arc::new(crate::phases_hook::PhasesWriter::new(&args.data_dir)));
    config.roll_interval = std::time::Duration::from_secs(2);
    config.max_trials_per_sweep = args.max_trials_per_sweep;
    let coordinator = Coordinator::open(config, Arc::new(SystemClock))
        .with_context(|| format!("failed to open the state in {}", args.data_dir.display()))?;
    let listener = sweep_coordinator::bind(([127, 0, 0, 1], 0)).context("failed to bind a loopback port")?;
    let address = format!("http://{}", listener.local_addr().context("failed to read the bound address")?);
    let (stop_coordinator, coordinator_stopped) = watch::channel(false);
    let server = tokio::spawn(sweep_coordinator::run(listener, wait_for(coordinator_stopped), coordinator.clone()));

    let mut client = sweep_proto::client::connect_lazy(&address, Default::default())?;
    let submitted = submit_spec(&mut client, &args.spec, &address).await?;

    let (stop_workers, workers_stopped) = watch::channel(false);
    let mut workers = Vec::new();
    for index in 0..args.workers {
        let config = WorkerConfig {
            coordinator: address.clone(),
            slots: args.slots,
            step_threads: args
                .step_threads
                .unwrap_or_else(|| sweep_worker::family::default_step_threads(args.workers.saturating_mul(args.slots) as usize) as u32),
            pack_size: args.pack.unwrap_or_else(sweep_worker::backend::default_pack_size),
            token: None,
            tls_ca_pem: None,
            name: format!("{}-local{index}", host_name()),
            cache_dir: args.data_dir.join("cache"),
            scratch_dir: args.data_dir.join("scratch"),
            liveness: Default::default(),
            exit_when_idle: None,
        };
        workers.push(tokio::spawn(sweep_worker::run(config, wait_for(workers_stopped.clone()))));
    }

    let outcome = tokio::select! {
        status = follow(&mut client, &submitted.sweep, &address) => Some(status),
        _ = interrupted => None,
    };

    let _ = stop_workers.send(true);
    for worker in workers {
        match worker.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("warning: a local worker failed: {error}"),
            Err(error) => eprintln!("warning: a local worker panicked: {error}"),
        }
    }
    let _ = stop_coordinator.send(true);
    server.await.context("the coordinator task panicked")?.context("the coordinator failed")?;

    let results = coordinator.layout().sweep_dir(&spec.name);
    match outcome {
        None => {
            eprintln!("stopped: running trials were given back; finished trials are kept.");
            eprintln!("run the same command again to resume.");
            Ok(())
        }
        Some(status) => {
            let status = status?;
            print!("\n{}", display::trials_table(&status));
            println!("\nresults: {}/{{{}}}", results.display(), result_tables(&results).join(","));
            println!("  pandas: pd.read_parquet(\"{}/progress\")", results.display());
            println!(
                "  sql:    groksweep sql \"SELECT trial_id, MAX(value) AS best_test_acc FROM progress WHERE measure = 'test_accuracy' GROUP BY trial_id\" --data-dir {}",
                args.data_dir.display()
            );
            Ok(())
        }
    }
}

/// The tables (subdirectories) a sweep's results directory holds, sorted:
/// `trials`, `progress`, and `spectra`, `curves` and `checkpoints` where a
/// family wrote them.
fn result_tables(sweep_dir: &std::path::Path) -> Vec<String> {
    let mut tables: Vec<String> = std::fs::read_dir(sweep_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
                .filter_map(|entry| entry.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    if tables.is_empty() {
        tables = vec!["trials".to_owned(), "progress".to_owned()];
    }
    tables.sort();
    tables
}

async fn wait_for(mut signal: watch::Receiver<bool>) {
    let _ = signal.wait_for(|stop| *stop).await;
}
