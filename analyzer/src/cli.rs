//! Arguments and entry points of the analysis subcommands. Each entry point
//! takes its `clap::Args` struct and returns the process exit code.

use std::io::Write;
use std::path::PathBuf;

use crate::analysis::analyze_cached_warm;
use crate::suppressions::Suppressions;
use crate::symbols::Symbols;
use crate::{cmd_errors, cmd_export, cmd_leaks, cmd_summary, report_json};

/// Options shared by the commands that report leaks.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SuppressionArgs {
    /// More leak suppressions, in LeakSanitizer's `leak:PATTERN` format (repeatable).
    #[arg(long = "suppressions", value_name = "FILE")]
    pub suppressions: Vec<PathBuf>,
    /// Do not apply the default suppressions (C library buffers: stdio, locale, loader).
    #[arg(long)]
    pub no_default_suppressions: bool,
}

impl SuppressionArgs {
    fn load(&self) -> anyhow::Result<Suppressions> {
        Suppressions::load(!self.no_default_suppressions, &self.suppressions)
    }
}

/// Overview of a trace: counts, bytes, peak, leaks, top sites.
#[derive(clap::Args, Debug)]
pub struct SummaryArgs {
    /// The trace to analyse.
    pub trace: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Ignore and don't write the analysis cache (`TRACE.analysis`).
    #[arg(long)]
    pub no_cache: bool,
    /// Sites listed in each "top" table.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Leak suppressions.
    #[command(flatten)]
    pub suppress: SuppressionArgs,
}

/// Runs `summary`; returns the process exit code.
pub fn summary(args: &SummaryArgs) -> anyhow::Result<i32> {
    let sup = args.suppress.load()?;
    let (a, warmup) = analyze_cached_warm(&args.trace, !args.no_cache, true)?;
    a.warn_incomplete();
    let mut syms = Symbols::warmed(&a.result.modules, warmup);
    let leaks = cmd_leaks::leak_report(&a, &mut syms, &sup)?;
    let s = cmd_summary::summary_report(&a, &mut syms, &leaks, args.top)?;
    if args.json {
        report_json::print(&s)?;
    } else {
        cmd_summary::print_table(&mut std::io::stdout().lock(), &s)?;
    }
    Ok(0)
}

/// Blocks never freed, grouped by allocation stack, most bytes first.
#[derive(clap::Args, Debug)]
pub struct LeaksArgs {
    /// The trace to analyse.
    pub trace: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Ignore and don't write the analysis cache (`TRACE.analysis`).
    #[arg(long)]
    pub no_cache: bool,
    /// Groups shown in the table (0: all; JSON always has all).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Exit with this code when leaks are found (default: 0).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub error_exitcode: i32,
    /// Leak suppressions.
    #[command(flatten)]
    pub suppress: SuppressionArgs,
}

/// Runs `leaks`; returns the process exit code.
pub fn leaks(args: &LeaksArgs) -> anyhow::Result<i32> {
    let sup = args.suppress.load()?;
    let (a, warmup) = analyze_cached_warm(&args.trace, !args.no_cache, false)?;
    a.warn_incomplete();
    let mut syms = Symbols::warmed(&a.result.modules, warmup);
    let r = cmd_leaks::leak_report(&a, &mut syms, &sup)?;
    if args.json {
        report_json::print(&r)?;
    } else {
        cmd_leaks::print_table(&mut std::io::stdout().lock(), &r, args.limit)?;
    }
    Ok(if r.leaks.is_empty() {
        0
    } else {
        args.error_exitcode
    })
}

/// Heap errors: double, invalid, interior and mismatched frees, realloc of freed memory.
#[derive(clap::Args, Debug)]
pub struct ErrorsArgs {
    /// The trace to analyse.
    pub trace: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Ignore and don't write the analysis cache (`TRACE.analysis`).
    #[arg(long)]
    pub no_cache: bool,
    /// Exit with this code when errors are found (default: 0).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub error_exitcode: i32,
}

/// Runs `errors`; returns the process exit code.
pub fn errors(args: &ErrorsArgs) -> anyhow::Result<i32> {
    let (a, warmup) = analyze_cached_warm(&args.trace, !args.no_cache, false)?;
    a.warn_incomplete();
    let mut syms = Symbols::warmed(&a.result.modules, warmup);
    let r = cmd_errors::error_report(&a, &mut syms);
    if args.json {
        report_json::print(&r)?;
    } else {
        cmd_errors::print_table(&mut std::io::stdout().lock(), &r)?;
    }
    Ok(if r.total == 0 { 0 } else { args.error_exitcode })
}

/// Writes the allocation table and the stack table for other engines.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The trace to export.
    pub trace: PathBuf,
    /// Write `allocations.parquet` and `stacks.parquet` into this directory.
    #[arg(long, value_name = "DIR")]
    pub parquet: PathBuf,
}

/// Runs `export`; returns the process exit code.
pub fn export(args: &ExportArgs) -> anyhow::Result<i32> {
    let e = cmd_export::export_parquet(&args.trace, &args.parquet, true)?;
    writeln!(
        std::io::stdout().lock(),
        "Wrote {} ({} allocations) and {} ({} frames).",
        e.allocations.display(),
        e.allocation_rows,
        e.stacks.display(),
        e.stack_rows
    )?;
    Ok(0)
}

/// Prints a short report after `record` (called by the binary). Never fails
/// the recording: a trace that cannot be analysed gets a warning instead.
pub fn after_record(traces: &[PathBuf]) -> anyhow::Result<()> {
    crate::after_record::report_all(traces);
    Ok(())
}
