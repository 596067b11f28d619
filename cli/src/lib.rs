//! The `groksweep` command-line tool.
//!
//! - [`args`]: the clap command line.
//! - `commands`: one module per subcommand (`run`, `coordinator`, `worker`, `submit`, `status`, `plan`, `sql`, `analyze`, `report`, `glyphs`).
//! - `display`: tables, progress bars and the end-of-run summary.
//! - [`phases_hook`]: writes the `phases` table as trials finish (the coordinator's observer).
//! - `signals`: Ctrl-C / SIGTERM as a future.
//! - `telemetry`: the Prometheus endpoint and the worker's health service.

pub mod args;
mod commands;
mod display;
pub mod phases_hook;
mod signals;
mod telemetry;

use std::io::IsTerminal;

use args::{Command, LogFormat};
use tracing_subscriber::EnvFilter;

/// Start tracing on stderr. `run` and the client commands log warnings only so
/// that progress bars stay readable; servers log at info. `RUST_LOG` overrides.
/// Text lines carry ANSI colours only when stderr is a terminal, so
/// `groksweep worker 2> file` writes plain text.
pub fn init_tracing(command: &Command, format: LogFormat) {
    let default_level = match command {
        Command::Coordinator(_) | Command::Worker(_) => "info",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second initialisation (tests that call this twice) keeps the first.
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).with_span_list(true).try_init(),
    };
}

/// Run one subcommand.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => commands::run::run(args).await,
        Command::Coordinator(args) => commands::coordinator::run(args).await,
        Command::Submit(args) => commands::client::submit(args).await,
        Command::Worker(args) => commands::worker::run(args).await,
        Command::Status(args) => commands::client::status(args).await,
        Command::Cancel(args) => commands::client::cancel(args).await,
        Command::Plan(args) => commands::plan::run(args),
        Command::Sql(args) => commands::sql::run(args).await,
        Command::Analyze(args) => commands::analyze::run(args).await,
        Command::Report(args) => commands::analyze::report(args).await,
        Command::Glyphs(args) => commands::glyphs::run(args),
    }
}
