//! Client subcommands: `submit`, `status`, `cancel`, and the watch loop that
//! `run` shares.

use anyhow::Context;
use sweep_proto::client::{Client, ConnectOptions, connect_lazy, unreachable_reason};
use sweep_proto::pb;
use tokio_stream::StreamExt;

use crate::args::{CancelArgs, ClientArgs, StatusArgs, SubmitArgs};
use crate::display::{self, Progress};

pub(crate) fn connect(args: &ClientArgs) -> anyhow::Result<Client> {
    let ca = read_ca(args)?;
    Ok(connect_lazy(&args.coordinator, ConnectOptions { token: args.token.as_deref(), tls_ca_pem: ca.as_deref() })?)
}

/// The `--tls-ca` file's contents, if one was given.
pub(crate) fn read_ca(args: &ClientArgs) -> anyhow::Result<Option<Vec<u8>>> {
    args.tls_ca
        .as_ref()
        .map(|path| std::fs::read(path).with_context(|| format!("failed to read the TLS CA certificate {}", path.display())))
        .transpose()
}

/// Turn a gRPC status into an error a person can act on.
pub(crate) fn explain(status: tonic::Status, action: &str, coordinator: &str) -> anyhow::Error {
    match status.code() {
        tonic::Code::Unavailable => {
            anyhow::anyhow!(
                "failed to {action}: the coordinator at {coordinator} is not reachable ({})",
                unreachable_reason(&status, coordinator)
            )
        }
        // A transport failure that is not a plain refusal to connect (an
        // HTTP/2 error from a TLS port, say): its cause is in the sources.
        _ if std::error::Error::source(&status).is_some() => {
            anyhow::anyhow!("failed to {action}: {}", unreachable_reason(&status, coordinator))
        }
        _ => anyhow::anyhow!("failed to {action}: {}", status.message()),
    }
}

/// Read, validate locally and submit a spec.
pub(crate) async fn submit_spec(
    client: &mut Client,
    spec_path: &std::path::Path,
    coordinator: &str,
) -> anyhow::Result<pb::SubmitSweepResponse> {
    let yaml = std::fs::read_to_string(spec_path).with_context(|| format!("failed to read {}", spec_path.display()))?;
    let source_name = spec_path.display().to_string();
    sweep_core::parse_spec(&source_name, &yaml)?;
    let request = pb::SubmitSweepRequest { spec_yaml: yaml, source_name };
    let response = client.submit_sweep(request).await.map_err(|status| explain(status, "submit the sweep", coordinator))?;
    let response = response.into_inner();
    println!(
        "sweep `{}`: {} trials ({} new, {} already done)",
        response.sweep, response.trials_total, response.trials_added, response.trials_done
    );
    Ok(response)
}

/// Follow a sweep with progress bars until it is finished; returns the last snapshot.
pub(crate) async fn follow(client: &mut Client, sweep: &str, coordinator: &str) -> anyhow::Result<pb::SweepStatus> {
    let request = pb::GetSweepRequest { sweep: sweep.to_string() };
    let mut stream = client.watch_sweep(request).await.map_err(|status| explain(status, "watch the sweep", coordinator))?.into_inner();
    let mut progress = Progress::new();
    let mut last: Option<pb::SweepStatus> = None;
    while let Some(snapshot) = stream.next().await {
        let snapshot = snapshot.map_err(|status| explain(status, "watch the sweep", coordinator))?;
        if last.is_none() {
            progress.skip_finished(&snapshot);
        }
        progress.update(&snapshot);
        last = Some(snapshot);
    }
    progress.finish();
    last.context("the coordinator ended the watch without a snapshot")
}

/// `groksweep submit`.
pub(crate) async fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    let mut client = connect(&args.client)?;
    let response = submit_spec(&mut client, &args.spec, &args.client.coordinator).await?;
    if args.watch {
        let status = follow(&mut client, &response.sweep, &args.client.coordinator).await?;
        print!("{}", display::trials_table(&status));
    }
    Ok(())
}

fn status_json(status: &pb::SweepStatus) -> serde_json::Value {
    let summary = status.summary.clone().unwrap_or_default();
    let trials: Vec<serde_json::Value> = status
        .trials
        .iter()
        .map(|trial| {
            let p = trial.params.clone().unwrap_or_default();
            serde_json::json!({
                "trial_id": trial.trial_id, "family": p.family, "modulus": p.modulus, "data_fraction": p.data_fraction,
                "weight_decay": p.weight_decay, "seed": p.seed, "data_seed": p.data_seed, "status": trial.status,
                "attempt": trial.attempt, "failures": trial.failures, "worker": trial.worker, "epoch": trial.epoch,
                "train_accuracy": trial.train_accuracy, "test_accuracy": trial.test_accuracy, "grokked_at": trial.grokked_at,
                "wall_seconds": trial.wall_seconds, "error": trial.error,
            })
        })
        .collect();
    serde_json::json!({
        "sweep": summary.name, "total": summary.total, "done": summary.done, "running": summary.running,
        "queued": summary.queued, "failed": summary.failed, "cancelled": summary.cancelled,
        "finished": status.finished, "trials": trials,
    })
}

/// `groksweep status`.
pub(crate) async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let coordinator = args.client.coordinator.clone();
    let mut client = connect(&args.client)?;
    let Some(sweep) = args.sweep else {
        loop {
            let sweeps = client
                .list_sweeps(pb::ListSweepsRequest {})
                .await
                .map_err(|s| explain(s, "list sweeps", &coordinator))?
                .into_inner()
                .sweeps;
            if args.json {
                let json: Vec<_> = sweeps
                    .iter()
                    .map(|s| serde_json::json!({"sweep": s.name, "total": s.total, "done": s.done, "running": s.running, "queued": s.queued, "failed": s.failed, "cancelled": s.cancelled}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&json)?);
            } else if sweeps.is_empty() {
                println!("no sweeps yet");
            } else {
                for summary in &sweeps {
                    println!("{}", display::summary_line(summary));
                }
            }
            let unfinished = sweeps.iter().any(|s| s.queued + s.running > 0);
            if !args.watch || !unfinished {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            println!();
        }
    };
    let status = if args.watch && !args.json {
        follow(&mut client, &sweep, &coordinator).await?
    } else {
        let request = pb::GetSweepRequest { sweep: sweep.clone() };
        client.get_sweep(request).await.map_err(|s| explain(s, "get the sweep", &coordinator))?.into_inner()
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status_json(&status))?);
    } else {
        if let Some(summary) = &status.summary {
            println!("{}", display::summary_line(summary));
        }
        print!("{}", display::trials_table(&status));
    }
    Ok(())
}

/// `groksweep cancel`.
pub(crate) async fn cancel(args: CancelArgs) -> anyhow::Result<()> {
    let mut client = connect(&args.client)?;
    let request = pb::CancelSweepRequest { sweep: args.sweep.clone() };
    let response = client.cancel_sweep(request).await.map_err(|s| explain(s, "cancel the sweep", &args.client.coordinator))?;
    println!("sweep `{}`: {} trials cancelled", args.sweep, response.into_inner().cancelled);
    Ok(())
}
