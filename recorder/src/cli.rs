//! `alloctrace record` arguments and entry point.

use std::path::PathBuf;

/// Run a program and record every heap allocation it makes.
#[derive(clap::Args, Debug)]
pub struct RecordArgs {
    /// Trace file to write (children write `<stem>.<pid>.atrace` beside it).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<std::ffi::OsString>,
}

/// What a finished recording produced.
#[derive(Debug)]
pub struct RecordOutcome {
    /// Every trace written, the root process's first.
    pub traces: Vec<PathBuf>,
    /// The exit code `alloctrace` should exit with (the program's, or 128+signal).
    pub exit_code: i32,
}

/// Runs `record`.
pub fn run(_args: &RecordArgs) -> anyhow::Result<RecordOutcome> {
    anyhow::bail!("record is not implemented yet")
}
