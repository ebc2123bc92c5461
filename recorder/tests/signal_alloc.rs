//! A signal handler that allocates, interrupting the program (and at times
//! the recorder's own hook) on the same thread.
//!
//! Until the recorder's own memory came from mappings of its own, this
//! program aborted in 2 of 3 traced runs ("malloc assertion failure in
//! sysmalloc"): the handler's `malloc` re-entered glibc's allocator in the
//! middle of the hook's allocation of the thread's unwinder. Six runs.

use std::collections::HashSet;

use traces::Event;

use crate::common;

#[test]
fn a_signal_handler_that_allocates_neither_breaks_the_program_nor_the_trace() {
    let d = tempfile::tempdir().expect("tempdir");
    let exe = common::compile("signal_alloc.c", d.path());
    for _ in 0..6 {
        one_run(d.path(), &exe);
    }
}

fn one_run(dir: &std::path::Path, exe: &std::path::Path) {
    let d = tempfile::tempdir_in(dir).expect("tempdir");
    let out = d.path().join("handled");
    let run = common::record(d.path(), &[exe.to_str().unwrap(), out.to_str().unwrap()]);
    assert_eq!(
        run.exit_code, 0,
        "134: the program aborted; 143: the watchdog's SIGTERM (it hung)"
    );
    let handled: usize = std::fs::read_to_string(&out)
        .expect("the program's count")
        .trim()
        .parse()
        .expect("a number");
    let t = common::read(&run.traces[0]);
    let (mut main_allocs, mut main_frees) = (0, 0);
    let (mut main_live, mut handler_live) = (HashSet::new(), HashSet::new());
    let (mut handler_allocs, mut handler_frees) = (0, 0);
    for r in &t.records {
        match r.event {
            Event::Alloc { addr, size, .. } if (16..80).contains(&size) => {
                main_allocs += 1;
                main_live.insert(addr);
            }
            Event::Alloc {
                addr, size: 4000, ..
            } => {
                handler_allocs += 1;
                handler_live.insert(addr);
            }
            Event::Free { addr, .. } if main_live.remove(&addr) => main_frees += 1,
            Event::Free { addr, .. } if handler_live.remove(&addr) => handler_frees += 1,
            _ => {}
        }
    }
    // Every event of the main loop is in the trace.
    assert_eq!((main_allocs, main_frees), (300_000, 300_000));
    // Handler pairs: recorded whole (none half), at most one per run.
    assert_eq!(handler_allocs, handler_frees);
    assert!(handler_live.is_empty());
    assert!(handler_allocs <= handled, "{handler_allocs} > {handled}");
    // The timer ran the handler (about 20 per ms of the loop's run).
    assert!(handled > 0);
}
