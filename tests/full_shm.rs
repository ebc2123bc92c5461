//! A recording directory with no room left must not crash the program: the
//! recorder's shared file is sparse, and a page first written on a full
//! tmpfs is a SIGBUS. The recorder backs each part before using it and
//! drops (and counts) the events it has no room for.

use std::process::Command;

const PROGRAM: &str = r#"
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    void *p[64];
    for (int r = 0; r < 2000; r++) {
        for (int i = 0; i < 64; i++) p[i] = malloc(16 + i);
        for (int i = 0; i < 64; i++) free(p[i]);
    }
    puts("done");
    return 0;
}
"#;

/// Runs `record_args` of `alloctrace` in a private mount namespace whose
/// /dev/shm is a 300 KiB tmpfs: room for the shared file's 256 KiB header,
/// not for one 64 KiB chunk of events. `None` (after saying so) when no namespace
/// can be made (not root).
fn record_with_full_dev_shm(record_args: &str) -> Option<std::process::Output> {
    let script = format!(
        "mount -t tmpfs -o size=300k tmpfs /dev/shm || exit 77; exec {} record {record_args}",
        env!("CARGO_BIN_EXE_alloctrace"),
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(77) || (!out.status.success() && err.contains("unshare")) {
        eprintln!("skipped: needs a private mount namespace (root): {err}");
        return None;
    }
    Some(out)
}

#[test]
fn a_full_dev_shm_drops_events_instead_of_killing_the_program() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("churn.c");
    std::fs::write(&src, PROGRAM).unwrap();
    let exe = d.path().join("churn");
    assert!(Command::new("cc")
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap()
        .success());
    let trace = d.path().join("t.atrace");
    let Some(out) =
        record_with_full_dev_shm(&format!("-o {} -- {}", trace.display(), exe.display()))
    else {
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    // The program ran to its end (not 135, SIGBUS).
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n");
    let mut r = traces::Reader::open(&trace).expect("trace");
    r.by_ref().for_each(|x| drop(x.expect("record")));
    let dropped = r.trailer().expect("trailer").dropped_events;
    assert!(dropped >= 256_000, "{dropped}");
    assert!(err.contains("events were lost while recording"), "{err}");
}

/// A process file the collector finds after it was sized and before its
/// header was backed (or while a writer that found no room removes it) is
/// all holes: on a full tmpfs, the collector's first read of it through a
/// mapping was a SIGBUS, which ended `record`. Here the program leaves such
/// a file (sized, never written) in the recording directory for a second,
/// with /dev/shm full.
#[test]
fn an_unbacked_process_file_on_a_full_dev_shm_does_not_kill_the_recorder() {
    let d = tempfile::tempdir().unwrap();
    let trace = d.path().join("t.atrace");
    // 1 GiB: more than any layout's file size, all holes.
    let program = "dd if=/dev/zero of=/dev/shm/fill bs=4k 2>/dev/null; \
        truncate -s 1G \"$ALLOCTRACE_DIR\"/999999.0.proc; sleep 1; \
        rm \"$ALLOCTRACE_DIR\"/999999.0.proc; echo done";
    let Some(out) = record_with_full_dev_shm(&format!(
        "--no-report -o {} -- sh -c '{program}'",
        trace.display()
    )) else {
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    // `record` ran to the program's end (not 135, SIGBUS).
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n");
}
