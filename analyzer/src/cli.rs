//! Arguments and entry points of the analysis subcommands.

use std::path::PathBuf;

/// Overview of a trace: counts, bytes, peak, leaks, top sites.
#[derive(clap::Args, Debug)]
pub struct SummaryArgs {
    /// The trace to analyse.
    pub trace: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `summary`; returns the process exit code.
pub fn summary(_args: &SummaryArgs) -> anyhow::Result<i32> {
    anyhow::bail!("summary is not implemented yet")
}

/// Prints a short report after `record` (called by the binary).
pub fn after_record(_traces: &[PathBuf]) -> anyhow::Result<()> {
    Ok(())
}
