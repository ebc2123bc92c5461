//! Replay driver processes: a run of a malloc library given by path must happen
//! in a process started with `LD_PRELOAD=library`, and a clean RSS figure for
//! glibc or our allocator can also be had from a fresh process (`--isolate`).
//!
//! The driver is this same binary, started with [`DRIVER_ENV`] set: its `main`
//! calls [`driver_main_if_requested`] first thing, which reads a [`Request`] as
//! JSON on stdin, builds the plan, replays, and writes the [`RunResult`] as JSON
//! on stdout. [`DRIVER_EXE_ENV`] names another driver executable (tests use the
//! `driver` example of this crate).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::backend::libc_malloc::{LibcMalloc, Which};
use crate::backend::ours::Ours;
use crate::backend::Backend;
use crate::driver::{replay, ReplayOptions, RunResult};
use crate::plan::Plan;

/// Set (to `1`) in a driver process's environment.
pub const DRIVER_ENV: &str = "ALLOCTRACE_REPLAY_DRIVER";
/// Overrides the driver executable (default: the current executable).
pub const DRIVER_EXE_ENV: &str = "ALLOCTRACE_REPLAY_DRIVER_EXE";

/// Which allocator a driver process replays against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DriverBackend {
    /// Our allocator ([`Ours`]).
    Ours,
    /// The process's malloc, which is glibc.
    Glibc,
    /// The process's malloc, which is a library under `LD_PRELOAD`.
    Preloaded,
}

/// What a driver process is asked to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    /// Trace to replay.
    pub trace: PathBuf,
    /// Allocator.
    pub backend: DriverBackend,
    /// How to replay.
    pub options: ReplayOptions,
}

/// If this process was started as a replay driver, runs the request on stdin,
/// writes the result on stdout and exits (code 0, or 2 with the error on stderr).
/// Otherwise returns at once. Call it first thing in `main`.
pub fn driver_main_if_requested() {
    if std::env::var_os(DRIVER_ENV).is_none() {
        return;
    }
    let code = match serve() {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "alloctrace replay driver: {e:#}");
            2
        }
    };
    std::process::exit(code);
}

fn serve() -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let req: Request = serde_json::from_str(&input).context("parsing the driver request")?;
    let plan = Plan::from_trace(&req.trace)?;
    let result = match req.backend {
        DriverBackend::Ours => run_with(&plan, &Ours::new()?, &req.options),
        DriverBackend::Glibc => run_with(&plan, &LibcMalloc::new(Which::Glibc), &req.options),
        DriverBackend::Preloaded => {
            run_with(&plan, &LibcMalloc::new(Which::Preloaded), &req.options)
        }
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &result)?;
    out.flush()?;
    Ok(())
}

fn run_with(plan: &Plan, b: &dyn Backend, opts: &ReplayOptions) -> RunResult {
    replay(plan, b, opts, &|_| {})
}

/// The driver executable: [`DRIVER_EXE_ENV`] or the current executable.
pub fn driver_exe() -> anyhow::Result<PathBuf> {
    match std::env::var_os(DRIVER_EXE_ENV) {
        Some(p) => Ok(PathBuf::from(p)),
        None => std::env::current_exe().context("finding the current executable"),
    }
}

/// Runs `req` in a driver process, with `preload` under `LD_PRELOAD`; with
/// `strace_log`, under `strace -f` writing that log.
pub fn spawn(
    req: &Request,
    preload: Option<&Path>,
    strace_log: Option<&Path>,
) -> anyhow::Result<RunResult> {
    let exe = driver_exe()?;
    let mut cmd = match strace_log {
        Some(log) => {
            let mut c = Command::new("strace");
            c.args([
                "-f",
                "-qq",
                "-e",
                "trace=brk,mmap,munmap,madvise,getppid",
                "-o",
            ])
            .arg(log);
            if let Some(lib) = preload {
                c.arg("-E").arg(format!("LD_PRELOAD={}", lib.display()));
            }
            c.arg(&exe);
            c
        }
        None => {
            let mut c = Command::new(&exe);
            if let Some(lib) = preload {
                c.env("LD_PRELOAD", lib);
            }
            c
        }
    };
    cmd.env(DRIVER_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting replay driver {}", exe.display()))?;
    let body = serde_json::to_vec(req)?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    // A driver that dies early closes its stdin; its stderr says why.
    let _ = stdin.write_all(&body);
    drop(stdin);
    let out = child.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!(
            "replay driver {} failed ({}): {}",
            exe.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "replay driver {} did not answer with a result (is `replayer::cli::driver_main_if_requested` called first in its main?); stderr: {}",
            exe.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

/// Counts `brk`, `mmap`, `munmap` and `madvise` calls between the two `getppid`
/// markers of an `strace -f` log.
pub fn count_strace_log(log: &str) -> Option<crate::backend::OsCalls> {
    let mut c = crate::backend::OsCalls::default();
    let mut inside = false;
    let mut seen_end = false;
    for line in log.lines() {
        // "PID name(args...) = result", possibly "<unfinished ...>"; resumed
        // halves start with "<... name resumed>" and are not counted again.
        let call = line
            .split_once(' ')
            .map_or(line, |(_, rest)| rest)
            .trim_start();
        let name = call.split('(').next().unwrap_or("");
        if name == "getppid" {
            if inside {
                seen_end = true;
                break;
            }
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        match name {
            "brk" => c.brk += 1,
            "mmap" => c.mmap += 1,
            "munmap" => c.munmap += 1,
            "madvise" => c.madvise += 1,
            _ => {}
        }
    }
    seen_end.then_some(c)
}
