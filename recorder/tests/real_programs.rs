//! Programs no one here wrote run with identical output under `record`.

use std::path::Path;
use std::process::Command;

use crate::common::{read, record};

/// Runs `script` with `sh -c` untraced and traced; compares stdout files.
fn same_output(name: &str, script: &str) {
    let d = tempfile::tempdir().expect("tempdir");
    let plain = d.path().join("plain.out");
    let traced = d.path().join("traced.out");
    // Each run in its own empty directory: the scripts create files.
    let (plain_dir, traced_dir) = (d.path().join("plain"), d.path().join("traced"));
    std::fs::create_dir(&plain_dir).expect("mkdir");
    std::fs::create_dir(&traced_dir).expect("mkdir");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("( {script} ) > {}", plain.display()))
        .current_dir(&plain_dir)
        .status()
        .expect("sh");
    assert!(st.success(), "{name} untraced");
    let cmd = format!(
        "cd {} && ( {script} ) > {}",
        traced_dir.display(),
        traced.display()
    );
    let run = record(d.path(), &["sh", "-c", &cmd]);
    // Same exit status and same output.
    assert_eq!(run.exit_code, 0, "{name}");
    let a = std::fs::read(&plain).expect("plain output");
    let b = std::fs::read(&traced).expect("traced output");
    assert_eq!(
        String::from_utf8_lossy(&a),
        String::from_utf8_lossy(&b),
        "{name}"
    );
    // Every trace reads back, and the program itself allocated.
    let total: usize = run.traces.iter().map(|p| read(p).records.len()).sum();
    assert!(total > 100, "{name}: {total} records");
}

#[test]
fn python3() {
    same_output("python3", "python3 -c 'import json,collections; print(json.dumps(sorted(collections.Counter(\"abracadabra\").items())))'");
}

#[test]
fn sqlite3() {
    assert!(
        Path::new("/usr/bin/sqlite3").exists(),
        "install sqlite3 (apt-get install sqlite3)"
    );
    same_output("sqlite3", "/usr/bin/sqlite3 :memory: 'create table t(a); insert into t values (1),(2),(3); select sum(a), group_concat(a) from t;'");
}

#[test]
fn git() {
    same_output("git", "git init -q repo && cd repo && echo hi > f && git add f && git -c user.name=t -c user.email=t@t commit -qm m && git log --format=%s && git cat-file -p HEAD:f");
}

#[test]
fn gcc_compiles() {
    same_output("gcc", "printf '#include <stdio.h>\\nint main(void){puts(\"built\");return 0;}\\n' > h.c && gcc -O1 h.c -o h && ./h");
}
