//! `groksweep sql`: DataFusion over the results directory.

use anyhow::Context;

use crate::args::SqlArgs;

/// Run one query and print the result.
pub(crate) async fn run(args: SqlArgs) -> anyhow::Result<()> {
    let context = sweep_analysis::open_results(&args.data_dir, args.sweep.as_deref())
        .await
        .with_context(|| format!("failed to open the results in {}", args.data_dir.display()))?;
    let frame = context.sql(&args.query).await.context("failed to plan the query")?;
    frame.show().await.context("failed to run the query")?;
    Ok(())
}
