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
