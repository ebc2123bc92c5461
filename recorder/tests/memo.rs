//! The unwind memo gives exactly the stacks a full unwind gives: with
//! `ALLOCTRACE_CHECK_MEMO=1` the preload unwinds again at every memo hit and
//! aborts the program on the first difference.

use std::collections::{BTreeSet, HashSet};
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

/// The stacks (frame lists) of the allocations of `size` bytes in `trace`.
fn stacks_of_size(trace: &Path, size: u64) -> Vec<Vec<u64>> {
    let t = read(trace);
    t.records
        .iter()
        .filter_map(|r| match r.event {
            Event::Alloc { size: s, .. } if s == size => Some(t.stacks.frames(r.event.stack())),
            _ => None,
        })
        .collect()
}

/// A frame whose DWARF rule framehop cannot cache (CFA = rbp + 32, as in
/// libffi's `_ffi_call_unix64`), met by the pruning check walks with a
/// garbage `rbp`: their failure must not leave framehop's frame-pointer
/// fallback cached for that address, or every later unwind through the
/// frame loses its callers (and a memo hit no longer matches a full unwind).
#[test]
fn pruning_walks_leave_no_fallback_rule_in_the_cache() {
    let d = tempfile::tempdir().expect("tempdir");
    let exe = compile("rbp_cfa.c", d.path());
    let exe = exe.to_str().unwrap();
    let run = record(d.path(), &[exe]);
    assert_eq!(run.exit_code, 0);
    for size in [24, 40, 56] {
        let stacks = stacks_of_size(&run.traces[0], size);
        assert_eq!(stacks.len(), 1000, "allocations of {size} bytes");
        // alloc_via_rbp32, main, then libc's start code: every time.
        assert!(
            stacks.iter().all(|s| s.len() >= 3 && *s == stacks[0]),
            "{size} bytes: {} distinct stacks, depths {:?}",
            stacks.iter().collect::<HashSet<_>>().len(),
            stacks.iter().map(Vec::len).collect::<BTreeSet<_>>()
        );
    }
    checked(d.path(), exe);
}
