//! The file header and trailer: who was traced, when, and how the run ended.

use serde::{Deserialize, Serialize};

/// The clock that [`crate::Record::time`] values come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Clock {
    /// `CLOCK_MONOTONIC`, nanoseconds.
    Monotonic,
    /// Synthetic time made up by a generator or test (nanoseconds by convention).
    Synthetic,
}

/// Bits of [`Header::flags`].
pub mod flags {
    /// Recording started mid-run (`alloctrace attach`): frees of blocks allocated
    /// earlier are expected.
    pub const ATTACHED: u32 = 1;
    /// The process is a forked child of a traced process.
    pub const FORKED: u32 = 2;
    /// The process image was started by `exec` from a traced process.
    pub const EXECED: u32 = 4;
    /// Backtraces were not captured (`--no-backtraces`).
    pub const NO_BACKTRACES: u32 = 8;
}

/// Describes the traced process. Stored postcard-encoded after the magic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Size of a pointer in the traced process, in bytes.
    pub pointer_size: u8,
    /// Whether the traced process was little-endian.
    pub little_endian: bool,
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Command line, `argv[0]` first.
    pub cmdline: Vec<String>,
    /// Path of the executable.
    pub exe: String,
    /// Wall-clock start, nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    /// Reading of [`Header::clock`] at the start; event times are on the same clock.
    pub start_time: u64,
    /// Clock of event times.
    pub clock: Clock,
    /// Page size of the traced machine.
    pub page_size: u32,
    /// See [`flags`].
    pub flags: u32,
    /// The tool and version that wrote the file, e.g. `alloctrace 0.1.0`.
    pub tool: String,
}

impl Header {
    /// A header for a trace made up in memory (tests, generators, benchmarks).
    pub fn synthetic(cmdline: &[&str]) -> Header {
        Header {
            pointer_size: 8,
            little_endian: true,
            pid: 1,
            ppid: 0,
            cmdline: cmdline.iter().map(|s| s.to_string()).collect(),
            exe: cmdline.first().map(|s| s.to_string()).unwrap_or_default(),
            start_unix_ns: 0,
            start_time: 0,
            clock: Clock::Synthetic,
            page_size: 4096,
            flags: 0,
            tool: concat!("alloctrace ", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// How the traced process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
    /// Replaced its image with `exec` (the new image has its own trace).
    Exec,
    /// Unknown (for example the writer was not the process's parent).
    Unknown,
}

impl ExitStatus {
    /// True when blocks still live at the end were not released by a normal
    /// exit: the process was killed or replaced its image with `exec`. Such
    /// blocks are not necessarily leaks.
    pub fn cut_short(self) -> bool {
        matches!(self, ExitStatus::Signal(_) | ExitStatus::Exec)
    }
}

/// The name of Linux signal `n` (`SIGSEGV` for 11), if it has one.
pub fn signal_name(n: i32) -> Option<&'static str> {
    const NAMES: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(n)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .filter(|s| !s.is_empty())
}

/// "exited with code 0", "killed by signal 6 (SIGABRT)", "replaced by exec", "unknown".
impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ExitStatus::Code(c) => write!(f, "exited with code {c}"),
            ExitStatus::Signal(n) => match signal_name(n) {
                Some(name) => write!(f, "killed by signal {n} ({name})"),
                None => write!(f, "killed by signal {n}"),
            },
            ExitStatus::Exec => f.write_str("replaced by exec"),
            ExitStatus::Unknown => f.write_str("unknown"),
        }
    }
}

/// Written last by a writer that finished cleanly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trailer {
    /// Trace clock at the end of recording.
    pub end_time: u64,
    /// How the process ended.
    pub exit: ExitStatus,
    /// Events the recorder could not record (buffers full and no collector).
    pub dropped_events: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_reads_as_a_sentence() {
        assert_eq!(ExitStatus::Code(3).to_string(), "exited with code 3");
        assert_eq!(
            ExitStatus::Signal(6).to_string(),
            "killed by signal 6 (SIGABRT)"
        );
        assert_eq!(ExitStatus::Signal(64).to_string(), "killed by signal 64");
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(-1), None);
        assert_eq!(signal_name(31), Some("SIGSYS"));
        assert!(ExitStatus::Exec.cut_short() && ExitStatus::Signal(9).cut_short());
        assert!(!ExitStatus::Code(1).cut_short() && !ExitStatus::Unknown.cut_short());
    }
}
