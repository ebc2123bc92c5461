//! `alloctrace`: record every heap allocation of a program, then explain it.
//!
//! This file only parses arguments and dispatches; each subcommand lives in
//! its crate (`recorder`, `analyzer`, `replayer`) or in a `cmd_*.rs` here.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd_dump;
mod cmd_info;
mod output;

#[derive(Parser, Debug)]
#[command(name = "alloctrace", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a program and record every heap allocation it makes.
    Record(recorder::cli::RecordArgs),
    /// Show a trace's header, event counts, threads, time span and integrity.
    Info(cmd_info::InfoArgs),
    /// Print every event of a trace, one per line.
    Dump(cmd_dump::DumpArgs),
    /// Summarise a trace: allocations, bytes, peak, leaks, top sites.
    Summary(analyzer::cli::SummaryArgs),
    /// List blocks never freed, grouped by allocation stack.
    Leaks(analyzer::cli::LeaksArgs),
    /// List heap errors: double, invalid, interior and mismatched frees.
    Errors(analyzer::cli::ErrorsArgs),
    /// Write the allocation table and stacks as Parquet.
    Export(analyzer::cli::ExportArgs),
    /// Replay traces against allocators and compare them.
    Replay(replayer::cli::ReplayArgs),
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Record(a) => {
            let outcome = recorder::cli::run(&a)?;
            if !a.no_report {
                analyzer::cli::after_record(&outcome.traces)?;
            }
            Ok(outcome.exit_code)
        }
        Command::Info(a) => cmd_info::run(&a),
        Command::Dump(a) => cmd_dump::run(&a),
        Command::Summary(a) => analyzer::cli::summary(&a),
        Command::Leaks(a) => analyzer::cli::leaks(&a),
        Command::Errors(a) => analyzer::cli::errors(&a),
        Command::Export(a) => analyzer::cli::export(&a),
        Command::Replay(a) => replayer::cli::replay(&a),
    }
}

fn main() -> ExitCode {
    // A replay driver process (`replay --allocator LIB.so`) is this binary
    // re-executed with an environment marker: it replays and exits here.
    replayer::cli::driver_main_if_requested();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            if output::is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(std::io::stderr(), "alloctrace: {e:#}");
            ExitCode::from(2)
        }
    }
}
