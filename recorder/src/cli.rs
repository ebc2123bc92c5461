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
    /// Time resolution of the events a process records while it has a
    /// single thread: `ns`, `us`, `ms`, or a number of ns (`250`, `10us`).
    /// The low digits of times are most of a trace's bytes and do not
    /// compress; the default, `ms`, is heaptrack's (a time every ~10 ms).
    /// Order is kept whatever the resolution (events keep program order);
    /// durations shorter than it read 0. From `ms` on, the program's hooks
    /// read no clock while it has one thread: the collector dates those
    /// events, up to a few ms early. From the moment a second
    /// thread of a process records anything, that process's events keep
    /// nanosecond times, so order across threads stays exact; forked
    /// children and exec'd programs start again with one thread. `ns`
    /// keeps every time.
    #[arg(long, value_name = "RES", default_value = "ms", value_parser = parse_resolution)]
    pub time_resolution: u64,
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
        time_resolution: args.time_resolution,
    };
    crate::record(&opts)
}

/// Parses a time resolution: `ns`, `us` (or `µs`), `ms`, `s`, or a whole
/// number of ns optionally followed by one of those units.
fn parse_resolution(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    let scale = match unit.trim() {
        "" | "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        u => return Err(format!("unknown unit `{u}` (use ns, us, ms or s)")),
    };
    let n = if num.is_empty() {
        if unit.is_empty() {
            return Err("empty resolution".into());
        }
        1
    } else {
        num.parse::<u64>().map_err(|e| e.to_string())?
    };
    match n.checked_mul(scale) {
        Some(0) => Err("the resolution must be at least 1 ns".into()),
        Some(v) => Ok(v),
        None => Err("resolution too large".into()),
    }
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

#[cfg(test)]
mod tests {
    use super::parse_resolution;

    #[test]
    fn resolutions_parse() {
        assert_eq!(parse_resolution("ns"), Ok(1));
        assert_eq!(parse_resolution("us"), Ok(1000));
        assert_eq!(parse_resolution("µs"), Ok(1000));
        assert_eq!(parse_resolution("ms"), Ok(1_000_000));
        assert_eq!(parse_resolution("250"), Ok(250));
        assert_eq!(parse_resolution("10us"), Ok(10_000));
        assert_eq!(parse_resolution("2ms"), Ok(2_000_000));
        assert!(parse_resolution("0").is_err());
        assert!(parse_resolution("").is_err());
        assert!(parse_resolution("3 parsecs").is_err());
        assert!(parse_resolution("99999999999999999999").is_err());
    }
}
