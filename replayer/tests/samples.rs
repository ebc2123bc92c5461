//! The sample traces of `traces/samples/` replay to exactly their recorded calls.

use std::collections::HashMap;
use std::path::PathBuf;

use replayer::backend::checking::Checking;
use replayer::backend::Touch;
use replayer::{replay, OpKind, Plan, ReplayOptions};
use traces::{AllocFn, Event};

/// (kind, size, size of the released block) per call, per thread id, as the
/// trace recorded them (the samples have no heap errors or failed calls).
fn recorded(path: &std::path::Path) -> HashMap<u32, Vec<(OpKind, u64, Option<u64>)>> {
    let mut sizes: HashMap<u64, u64> = HashMap::new();
    let mut out: HashMap<u32, Vec<_>> = HashMap::new();
    for r in traces::Reader::open(path).unwrap() {
        let r = r.unwrap();
        let call = match r.event {
            Event::Alloc {
                func, addr, size, ..
            } => {
                sizes.insert(addr, size);
                let kind = match func {
                    AllocFn::Calloc => OpKind::Calloc,
                    AllocFn::AlignedAlloc => OpKind::AlignedAlloc,
                    AllocFn::PosixMemalign => OpKind::PosixMemalign,
                    AllocFn::Memalign => OpKind::Memalign,
                    _ => OpKind::Malloc,
                };
                (kind, size, None)
            }
            Event::Free { addr, .. } => (OpKind::Free, 0, Some(sizes.remove(&addr).unwrap())),
            Event::Realloc {
                old_addr,
                new_addr,
                size,
                ..
            } => {
                let old = (old_addr != 0).then(|| sizes.remove(&old_addr).unwrap());
                if new_addr == 0 {
                    (OpKind::Free, 0, old)
                } else {
                    sizes.insert(new_addr, size);
                    (OpKind::Realloc, size, old)
                }
            }
            _ => continue,
        };
        out.entry(r.thread).or_default().push(call);
    }
    out
}

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../traces/samples")
        .join(name)
}

#[test]
fn samples_replay_exactly_their_recorded_calls() {
    for name in ["python3.atrace", "sqlite3.atrace", "mt.atrace"] {
        let path = sample(name);
        let plan = Plan::from_trace(&path).unwrap();
        assert_eq!(plan.skipped.total(), 0, "{name}");
        let b = Checking::new(0);
        let opts = ReplayOptions {
            touch: Touch::None,
            ..Default::default()
        };
        replay(&plan, &b, &opts, &|_| {});
        let calls = b.calls();
        let mut got: HashMap<u32, Vec<_>> = HashMap::new();
        for c in &calls {
            let Some(t) = c.thread else { continue };
            let released = c.released.map(|s| calls[s as usize].size);
            got.entry(plan.thread_ids[t])
                .or_default()
                .push((c.kind, c.size, released));
        }
        let want = recorded(&path);
        assert_eq!(got.len(), want.len(), "{name}: threads");
        for (tid, w) in &want {
            assert_eq!(&got[tid], w, "{name}: thread {tid}");
        }
    }
}

#[test]
fn the_multithreaded_sample_has_cross_thread_frees() {
    let plan = Plan::from_trace(&sample("mt.atrace")).unwrap();
    assert!(plan.threads.len() >= 7);
    let waits = plan.threads.iter().flatten().filter(|o| o.waits).count();
    assert!(waits > 10_000, "{waits} cross-thread frees");
}
