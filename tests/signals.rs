//! `alloctrace record` outlives the signals that stop the program it records:
//! the trace holds every event up to the program's end, and `record` exits
//! with 128 + the program's signal.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use traces::{Event, ExitStatus, Reader};

/// Allocates 100 blocks of 4242 bytes, says "ready", then waits for a signal.
const WAITER: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(void) {
    for (int i = 0; i < 100; i++) if (!malloc(4242)) return 1;
    puts("ready");
    fflush(stdout);
    for (;;) pause();
}
"#;

fn compile(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("waiter.c");
    std::fs::write(&src, WAITER).unwrap();
    let exe = dir.join("waiter");
    let st = Command::new("cc")
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("run cc");
    assert!(st.success());
    exe
}

/// Starts `cmd` (stdout piped) and reads the first line it prints.
fn spawn_reading_a_line(cmd: &mut Command) -> (std::process::Child, String) {
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

/// Sends SIG`sig` to `record` (`child`), or to its whole process group.
fn send(child: &std::process::Child, sig: &str, to_group: bool) {
    let target = if to_group {
        format!("-{}", child.id())
    } else {
        child.id().to_string()
    };
    let st = Command::new("kill")
        .args([&format!("-{sig}"), "--", &target])
        .status()
        .unwrap();
    assert!(st.success());
}

/// `child`'s exit status, or `None` if it still runs at `deadline`.
fn wait_until(
    child: &mut std::process::Child,
    deadline: std::time::Instant,
) -> Option<std::process::ExitStatus> {
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `alloctrace record --no-report -o OUT -- PROGRAM...` in a process group of
/// its own, its stdout piped, with SIGINT and SIGTERM at their defaults as
/// at a terminal (a test run started in the background by a shell inherits
/// SIGINT ignored, and `record` and the program would rightly keep ignoring
/// it).
fn record_in_own_group(out: &Path, program: &[&std::ffi::OsStr]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_alloctrace"));
    cmd.args(["record", "--no-report", "-o"])
        .arg(out)
        .arg("--")
        .args(program)
        .stdout(Stdio::piped())
        .process_group(0);
    // SAFETY: only signal(2), async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            Ok(())
        });
    }
    cmd
}

/// Records the waiter, sends `sig` with `kill ARGS` once it is ready (`to_group`:
/// to the process group of `record` and the program, as a terminal's Ctrl-C
/// does; else to `record` alone), and returns record's exit code and the
/// trace's allocations of 4242 bytes and exit status.
fn interrupted(sig: &str, to_group: bool) -> (i32, usize, ExitStatus) {
    let d = tempfile::tempdir().unwrap();
    let exe = compile(d.path());
    let out = d.path().join("w.atrace");
    let mut cmd = record_in_own_group(&out, &[exe.as_os_str()]);
    cmd.stderr(Stdio::null());
    let (mut child, line) = spawn_reading_a_line(&mut cmd);
    assert_eq!(line, "ready\n");
    send(&child, sig, to_group);
    // A minute at most: a recording that outlives its signal fails the test
    // instead of hanging it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let Some(status) = wait_until(&mut child, deadline) else {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .status();
        panic!("record still runs a minute after SIG{sig}");
    };
    let code = status.code().expect("record exits, not killed");
    let mut r = Reader::open(&out).expect("a finished trace");
    let allocs = r
        .by_ref()
        .map(|x| x.expect("intact record"))
        .filter(|x| matches!(x.event, Event::Alloc { size: 4242, .. }))
        .count();
    let exit = r.trailer().expect("trailer").exit;
    (code, allocs, exit)
}

#[test]
fn ctrl_c_to_the_group_ends_the_program_not_the_recording() {
    assert_eq!(interrupted("INT", true), (130, 100, ExitStatus::Signal(2)));
}

#[test]
fn sigterm_to_record_is_passed_on_to_the_program() {
    assert_eq!(
        interrupted("TERM", false),
        (143, 100, ExitStatus::Signal(15))
    );
}

/// Records a shell that leaves a `sleep` running in the background (which,
/// as a background job of a script, ignores SIGINT) and ends; once the
/// shell is gone, sends `sig` (to the group or to `record` alone) and
/// returns record's exit code and its messages (which name the processes
/// still running whose traces the collector had started: the sleep's, if it
/// saw the sleep's file before the signal). The sleep is killed after.
fn signal_after_the_program(sig: &str, to_group: bool) -> (i32, String) {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("sh.atrace");
    let program = ["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $$ $!"];
    let program: Vec<&std::ffi::OsStr> = program.iter().map(std::ffi::OsStr::new).collect();
    let mut cmd = record_in_own_group(&out, &program);
    cmd.stderr(Stdio::piped());
    let (mut child, line) = spawn_reading_a_line(&mut cmd);
    let pids: Vec<&str> = line.split_whitespace().collect();
    let (shell, sleeper) = (pids[0].to_string(), pids[1].to_string());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let group = child.id();
    let kill_all = || {
        let _ = Command::new("kill").args(["-KILL", &sleeper]).status();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{group}")])
            .status();
    };
    // The shell has ended once `record` has reaped it.
    while Path::new(&format!("/proc/{shell}")).exists() {
        if std::time::Instant::now() > deadline {
            kill_all();
            panic!("the shell still runs after a minute");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    send(&child, sig, to_group);
    let Some(status) = wait_until(&mut child, deadline) else {
        kill_all();
        panic!("record still waits for the sleep after SIG{sig}");
    };
    let sleeping = Path::new(&format!("/proc/{sleeper}")).exists();
    kill_all();
    assert!(sleeping, "the sleep was not stopped by SIG{sig}");
    let mut msgs = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut msgs).unwrap();
    let root = Reader::open(&out).expect("the shell's trace");
    assert_eq!(root.header().pid.to_string(), shell);
    (status.code().expect("record exits, not killed"), msgs)
}

#[test]
fn sigterm_to_record_after_the_program_ended_stops_waiting_for_what_outlives_it() {
    let (code, msgs) = signal_after_the_program("TERM", false);
    assert_eq!(code, 0, "{msgs}");
}

#[test]
fn ctrl_c_after_the_program_ended_stops_waiting_for_what_outlives_it() {
    let (code, msgs) = signal_after_the_program("INT", true);
    assert_eq!(code, 0, "{msgs}");
}

/// The signal mask and dispositions of `grep` reading its own status, run
/// with SIGINT and SIGTERM at their defaults, SIGQUIT ignored, and SIGHUP
/// and SIGUSR1 blocked; under `record` if `under_record`.
fn signal_state(under_record: bool) -> String {
    let d = tempfile::tempdir().unwrap();
    let mut cmd = if under_record {
        let mut c = Command::new(env!("CARGO_BIN_EXE_alloctrace"));
        c.args(["record", "--no-report", "-o"])
            .arg(d.path().join("g.atrace"))
            .args(["--", "grep"]);
        c
    } else {
        Command::new("grep")
    };
    cmd.args(["-E", "^Sig(Blk|Ign|Cgt)", "/proc/self/status"])
        .stderr(Stdio::null());
    // SAFETY: only signal(2) and sigprocmask(2), async-signal-safe, between
    // fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_IGN);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGHUP);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// `record` blocks the signals it catches while it starts the program (so
/// that the child, until its `exec`, cannot run `record`'s handler and
/// swallow a Ctrl-C): the program must still start with the mask and
/// dispositions `record` was given.
#[test]
fn the_program_starts_with_the_signal_state_record_was_given() {
    let direct = signal_state(false);
    assert!(direct.contains("SigBlk:\t0000000000000201"), "{direct}");
    assert_eq!(signal_state(true), direct);
}
