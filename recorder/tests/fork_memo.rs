//! Forks and the unwind memo: a child forked from a thread whose memo is
//! warm records its own events with the same stacks; a child with
//! backtraces off records stack 0; a child without recording records nothing.

use std::collections::HashMap;

use traces::Event;

use crate::common::{compile, read, record};

#[test]
fn forks_from_a_warm_memo_and_children_with_depth_0_or_no_recording() {
    let d = tempfile::tempdir().expect("tempdir");
    let exe = compile("fork_memo.c", d.path());
    let run = record(d.path(), &[exe.to_str().unwrap()]);
    assert_eq!(run.exit_code, 0);
    let mut site: Option<Vec<u64>> = None;
    let mut by_size: HashMap<u64, usize> = HashMap::new();
    for p in &run.traces {
        let t = read(p);
        for r in &t.records {
            let Event::Alloc { size, stack, .. } = r.event else {
                continue;
            };
            if !(7002..=7005).contains(&size) {
                continue;
            }
            *by_size.entry(size).or_default() += 1;
            if size == 7003 {
                assert_eq!(stack, 0, "{p:?}: backtraces were off");
                continue;
            }
            let frames = t.stacks.frames(stack);
            assert!(
                !frames.is_empty(),
                "{p:?}: size {size}: stack {stack} undefined"
            );
            if size == 7002 {
                // The same three innermost frames in parent and child.
                let top: Vec<u64> = frames.iter().take(3).copied().collect();
                match &site {
                    None => site = Some(top),
                    Some(s) => assert_eq!(s, &top, "{p:?}"),
                }
            }
        }
    }
    // The thread's two calls in the parent and one in the child.
    assert_eq!(by_size.get(&7002), Some(&6000));
    assert_eq!(by_size.get(&7003), Some(&2000));
    assert_eq!(by_size.get(&7004), None, "the unrecorded child recorded");
    assert_eq!(by_size.get(&7005), Some(&10));
}
