//! The unwind memo gives exactly the stacks a full unwind gives: with
//! `ALLOCTRACE_CHECK_MEMO=1` the preload unwinds again at every memo hit and
//! aborts the program on the first difference.

use std::path::Path;

use traces::Event;

use crate::common::{compile, read, record};

/// Records `script` (run by `sh -c` with the check on) and returns the number
/// of heap events with a stack in its traces.
fn checked(dir: &Path, script: &str) -> usize {
    let cmd = format!("{}=1 exec {script}", alloctrace_abi::ENV_CHECK_MEMO);
    let run = record(dir, &["sh", "-c", &cmd]);
    assert_eq!(run.exit_code, 0, "{script}: a memo hit differed");
    run.traces
        .iter()
        .map(|p| {
            read(p)
                .records
                .iter()
                .filter(|r| {
                    matches!(
                        r.event,
                        Event::Alloc { .. } | Event::Free { .. } | Event::Realloc { .. }
                    ) && r.event.stack() != 0
                })
                .count()
        })
        .sum()
}

#[test]
fn memo_hits_match_full_unwinds_in_c() {
    let d = tempfile::tempdir().expect("tempdir");
    let exe = compile("stacks.c", d.path());
    let n = checked(d.path(), exe.to_str().unwrap());
    assert!(n > 80_000, "{n} heap events with stacks");
}

#[test]
fn memo_hits_match_full_unwinds_in_sqlite3() {
    assert!(
        Path::new("/usr/bin/sqlite3").exists(),
        "install sqlite3 (apt-get install sqlite3)"
    );
    let d = tempfile::tempdir().expect("tempdir");
    let sql = "create table t(a integer, b text); \
        with recursive c(x) as (select 1 union all select x + 1 from c where x < 3000) \
        insert into t select x, printf('row %d', x) from c; \
        create index ti on t(b); \
        select count(*), sum(a), max(length(b)) from t; \
        select b from t where a % 1000 = 0 order by b;";
    let n = checked(d.path(), &format!("/usr/bin/sqlite3 :memory: \"{sql}\""));
    assert!(n > 10_000, "{n} heap events with stacks");
}
