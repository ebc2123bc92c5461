//! The report `alloctrace record` prints when the program has ended: in full
//! for a few traces, one line per trace for a program that ran many others.

use std::path::{Path, PathBuf};
use std::process::Command;

fn compile(dir: &Path, name: &str, src: &str) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let exe = dir.join(name);
    let st = Command::new("cc")
        .args(["-g", "-O0", "-o"])
        .arg(&exe)
        .arg(&c)
        .status()
        .expect("run cc");
    assert!(st.success());
    exe
}

const LEAKY: &str = r#"
#include <stdlib.h>
int main(void) {
    char *p = malloc(100);
    p[0] = 1;
    return 0;
}
"#;

const DOUBLE_FREE: &str = r#"
#include <stdlib.h>
int main(void) {
    char *volatile p = malloc(24);
    free(p);
    free(p);
    return 0;
}
"#;

/// Records `cmd` in `dir` and returns record's stderr.
fn record(dir: &Path, cmd: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_alloctrace"))
        .current_dir(dir)
        .args(["record", "-o", "run.atrace", "--"])
        .args(cmd)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn one_program_gets_the_full_report() {
    let d = tempfile::tempdir().unwrap();
    let leaky = compile(d.path(), "leaky", LEAKY);
    let err = record(d.path(), &[leaky.to_str().unwrap()]);
    assert!(err.contains("alloctrace: run.atrace\n"), "{err}");
    assert!(
        err.contains("leaked 100 B in 1 blocks from 1 sites; 0 heap errors"),
        "{err}"
    );
    assert!(
        err.contains("largest leak: 100 B from main (leaky.c:4)"),
        "{err}"
    );
    assert!(!err.contains("more traces"), "{err}");
}

#[test]
fn many_processes_get_one_line_each_errors_first() {
    let d = tempfile::tempdir().unwrap();
    compile(d.path(), "leaky", LEAKY);
    compile(d.path(), "dfree", DOUBLE_FREE);
    let err = record(
        d.path(),
        &[
            "sh",
            "-c",
            "./leaky; ./leaky; ./leaky; ./leaky; ./dfree; true",
        ],
    );
    // The shell's own trace in full, then a table of the others.
    assert!(err.contains("alloctrace: run.atrace\n"), "{err}");
    let table: Vec<&str> = err
        .lines()
        .skip_while(|l| !l.contains("more traces, one per process image"))
        .collect();
    assert!(table.len() > 2, "{err}");
    let rows: Vec<Vec<&str>> = table[2..]
        .iter()
        .take_while(|l| !l.trim_start().starts_with("more:") && !l.contains('…'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    // Columns: allocations, peak (2 words), leaked (2 words), blocks,
    // errors, program, trace.
    fn program<'a>(r: &[&'a str]) -> &'a str {
        r[7]
    }
    fn errors(r: &[&str]) -> u64 {
        r[6].parse().unwrap()
    }
    assert_eq!(program(&rows[0]), "dfree", "{err}");
    assert_eq!(errors(&rows[0]), 1, "{err}");
    // Then the busiest first.
    let allocs: Vec<u64> = rows[1..]
        .iter()
        .map(|r| r[0].replace(',', "").parse().unwrap())
        .collect();
    assert!(allocs.windows(2).all(|w| w[0] >= w[1]), "{err}");
    let leaky: Vec<&Vec<&str>> = rows.iter().filter(|r| program(r) == "leaky").collect();
    assert_eq!(leaky.len(), 4, "{err}");
    for r in leaky {
        assert_eq!((r[3], r[4], r[5], errors(r)), ("100", "B", "1", 0), "{err}");
    }
}
