//! `groksweep coordinator`: serve a coordinator until Ctrl-C / SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sweep_coordinator::{Coordinator, CoordinatorConfig, ServerTls, SystemClock};

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
    anyhow::ensure!(
        args.shutdown_flush_secs.is_finite() && args.shutdown_flush_secs >= 0.0,
        "--shutdown-flush-secs must be a number of seconds ≥ 0, got {}",
        args.shutdown_flush_secs
    );
    config.shutdown_flush_budget = Some(Duration::from_secs_f64(args.shutdown_flush_secs));
    let scheme = if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let read = |path: &std::path::PathBuf, what: &str| {
            std::fs::read(path).with_context(|| format!("failed to read the TLS {what} {}", path.display()))
        };
        let tls = ServerTls { cert_pem: read(cert, "certificate")?, key_pem: read(key, "key")? };
        tls.server_config()
            .map_err(|error| anyhow::anyhow!("invalid TLS certificate {} or key {}: {error}", cert.display(), key.display()))?;
        config.tls = Some(tls);
        "https"
    } else {
        "http"
    };
    if let Some(address) = args.metrics_listen {
        crate::telemetry::serve_metrics(address)?;
        config.state_gauges = true;
    }
    let coordinator = Coordinator::open(config, Arc::new(SystemClock))
        .with_context(|| format!("failed to open the coordinator state in {}", args.data_dir.display()))?;
    let listener = sweep_coordinator::bind(args.listen).with_context(|| format!("failed to listen on {}", args.listen))?;
    let address = listener.local_addr().context("failed to read the bound address")?;
    // From here on SIGTERM means a clean stop, even before the server runs.
    let shutdown = shutdown_signal();
    // Tests and scripts read this line to find a port chosen with :0.
    println!("coordinator listening on {scheme}://{address}");
    sweep_coordinator::run(listener, shutdown, coordinator).await.context("coordinator failed")?;
    Ok(())
}
