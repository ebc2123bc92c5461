//! A thread's first allocation made from inside `pthread_getattr_np`.

use traces::Event;

use crate::common;

#[test]
fn threads_calling_pthread_getattr_np_first_do_not_deadlock() {
    let d = tempfile::tempdir().expect("tempdir");
    let exe = common::compile("getattr.c", d.path());
    let run = common::record(d.path(), &[exe.to_str().unwrap()]);
    // 142 would be SIGALRM: the threads deadlocked.
    assert_eq!(run.exit_code, 0);
    let t = common::read(&run.traces[0]);
    let count = |f: &dyn Fn(&Event) -> bool| t.records.iter().filter(|r| f(&r.event)).count();
    assert_eq!(count(&|e| matches!(e, Event::Alloc { size: 3131, .. })), 40);
    // Each thread's own pthread_getattr_np call reallocates, and is recorded
    // with a stack.
    let reallocs_with_stacks = count(&|e| matches!(e, Event::Realloc { stack, .. } if *stack != 0));
    assert!(reallocs_with_stacks >= 4, "{reallocs_with_stacks}");
}
