//! `groksweep coordinator`: serve a coordinator until Ctrl-C / SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sweep_coordinator::{Coordinator, CoordinatorConfig, SystemClock};

use crate::args::CoordinatorArgs;
use crate::signals::shutdown_signal;

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    anyhow::ensure!(value.is_finite() && value > 0.0, "--{flag} must be a positive number of seconds, got {value}");
    Ok(Duration::from_secs_f64(value))
}

/// Serve until a signal, then drain and flush.
pub(crate) async fn run(args: CoordinatorArgs) -> anyhow::Result<()> {
    let mut config = CoordinatorConfig::new(&args.data_dir);
    config.on_trials_written = Some(Arc::new(crate::phases_hook::PhasesWriter::new(&args.data_dir)));
    config.lease_ttl = seconds(args.lease_ttl_secs, "lease-ttl-secs")?;
    config.heartbeat_interval = seconds(args.heartbeat_secs, "heartbeat-secs")?;
    config.roll_interval = seconds(args.roll_secs, "roll-secs")?;
    config.token = args.token;
    config.max_trials_per_sweep = args.max_trials_per_sweep;
    let coordinator = Coordinator::open(config, Arc::new(SystemClock))
        .with_context(|| format!("failed to open the coordinator state in {}", args.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("failed to listen on {}", args.listen))?;
    let address = listener.local_addr().context("failed to read the bound address")?;
    // Tests and scripts read this line to find a port chosen with :0.
    println!("coordinator listening on http://{address}");
    sweep_coordinator::run(listener, shutdown_signal(), coordinator).await.context("coordinator failed")?;
    Ok(())
}
