//! `alloctrace record` arguments and entry point.

use std::path::PathBuf;

pub use crate::RecordOutcome;

/// Run a program and record every heap allocation it makes.
#[derive(clap::Args, Debug)]
pub struct RecordArgs {
    /// Trace file to write (children write `<stem>.<pid>.atrace` beside it).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Record no backtraces (faster, smaller traces).
    #[arg(long)]
    pub no_backtraces: bool,
    /// Deepest backtrace recorded, in frames.
    #[arg(long, default_value_t = 64)]
    pub max_depth: usize,
    /// Skip the short analysis printed after the run (and the `TRACE.analysis`
    /// cache it leaves), e.g. when timing the recording itself.
    #[arg(long)]
    pub no_report: bool,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<std::ffi::OsString>,
}

/// Runs `record`.
pub fn run(args: &RecordArgs) -> anyhow::Result<RecordOutcome> {
    let output = match &args.output {
        Some(o) => o.clone(),
        None => default_output(&args.command),
    };
    let opts = crate::RecordOptions {
        output,
        command: args.command.clone(),
        max_depth: if args.no_backtraces {
            0
        } else {
            args.max_depth.max(1)
        },
        quiet: false,
    };
    crate::record(&opts)
}

/// `<program name>.atrace` in the current directory.
fn default_output(command: &[std::ffi::OsString]) -> PathBuf {
    let name = command
        .first()
        .and_then(|c| std::path::Path::new(c).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "alloctrace".into());
    PathBuf::from(format!("{name}.atrace"))
}
