//! `groksweep worker`: lease and train trials until Ctrl-C / SIGTERM.

use anyhow::Context;
use sweep_worker::WorkerConfig;

use crate::args::WorkerArgs;
use crate::signals::shutdown_signal;

/// Host name, for the coordinator's records.
pub(crate) fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|name| name.trim().to_string()))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "worker".to_string())
}

/// Run a worker.
pub(crate) async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let signal = shutdown_signal();
    anyhow::ensure!(args.slots >= 1, "--slots must be at least 1");
    anyhow::ensure!(args.step_threads != Some(0), "--step-threads must be at least 1");
    anyhow::ensure!(args.pack != Some(0), "--pack must be at least 1");
    let exit_when_idle = args
        .exit_when_idle
        .map(|seconds| {
            anyhow::ensure!(seconds.is_finite() && seconds > 0.0, "--exit-when-idle must be a positive number of seconds, got {seconds}");
            Ok(std::time::Duration::from_secs_f64(seconds))
        })
        .transpose()?;
    let config = WorkerConfig {
        coordinator: args.client.coordinator.clone(),
        slots: args.slots,
        step_threads: args.step_threads.unwrap_or_else(|| sweep_worker::family::default_step_threads(args.slots as usize) as u32),
        pack_size: args.pack.unwrap_or_else(sweep_worker::backend::default_pack_size),
        tls_ca_pem: crate::commands::client::read_ca(&args.client)?,
        token: args.client.token,
        name: args.name.unwrap_or_else(host_name),
        cache_dir: args.cache_dir,
        scratch_dir: args.scratch_dir.unwrap_or_else(std::env::temp_dir),
        liveness: sweep_worker::Liveness::default(),
        exit_when_idle,
    };
    if let Some(address) = args.metrics_listen {
        crate::telemetry::serve_metrics(address)?;
    }
    let (stopping, stopping_seen) = tokio::sync::watch::channel(false);
    if let Some(address) = args.health_listen {
        crate::telemetry::serve_worker_health(address, config.liveness.clone(), stopping_seen).await?;
    }
    let shutdown = async move {
        signal.await;
        let _ = stopping.send(true);
    };
    sweep_worker::run(config, shutdown).await.with_context(|| format!("worker for {} failed", args.client.coordinator))
}
