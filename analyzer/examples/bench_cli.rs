//! The analyzer's commands, plus `record` through the recorder's library API,
//! as one small binary for `bench/run.sh` (the `alloctrace` binary gets the
//! same commands from `analyzer::cli`; this one needs no other crate).
//!
//! Usage: `bench_cli record OUT -- CMD ARGS…`, `bench_cli summary|leaks|errors|export …`

use std::ffi::OsString;
use std::path::PathBuf;

use analyzer::cli;
use clap::Parser;

#[derive(Parser)]
enum Cmd {
    /// Record CMD into OUT.
    Record {
        /// Trace to write.
        output: PathBuf,
        /// Program and arguments.
        #[arg(last = true, required = true)]
        command: Vec<OsString>,
    },
    /// See `alloctrace summary`.
    Summary(cli::SummaryArgs),
    /// See `alloctrace leaks`.
    Leaks(cli::LeaksArgs),
    /// See `alloctrace errors`.
    Errors(cli::ErrorsArgs),
    /// See `alloctrace export`.
    Export(cli::ExportArgs),
}

fn main() -> anyhow::Result<()> {
    let code = match Cmd::parse() {
        Cmd::Record { output, command } => {
            let opts = recorder::RecordOptions {
                output,
                command,
                max_depth: 64,
                quiet: true,
            };
            let out = recorder::record(&opts)?;
            cli::after_record(&out.traces)?;
            out.exit_code
        }
        Cmd::Summary(a) => cli::summary(&a)?,
        Cmd::Leaks(a) => cli::leaks(&a)?,
        Cmd::Errors(a) => cli::errors(&a)?,
        Cmd::Export(a) => cli::export(&a)?,
    };
    std::process::exit(code)
}
