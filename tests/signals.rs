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

/// Records the waiter, sends `sig` with `kill ARGS` once it is ready (`to_group`:
/// to the process group of `record` and the program, as a terminal's Ctrl-C
/// does; else to `record` alone), and returns record's exit code and the
/// trace's allocations of 4242 bytes and exit status.
fn interrupted(sig: &str, to_group: bool) -> (i32, usize, ExitStatus) {
    let d = tempfile::tempdir().unwrap();
    let exe = compile(d.path());
    let out = d.path().join("w.atrace");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_alloctrace"));
    cmd.args(["record", "--no-report", "-o"])
        .arg(&out)
        .arg("--")
        .arg(&exe)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    // The default dispositions, as at a terminal: a test run started in the
    // background by a shell inherits SIGINT ignored, and `record` and the
    // program would keep ignoring it (as they should).
    // SAFETY: only signal(2), async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
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
    // A minute at most: a recording that outlives its signal fails the test
    // instead of hanging it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            panic!("record still runs a minute after SIG{sig}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
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
