//! The two-thread pass (reader thread → batches → pass) against the
//! reference single-thread pass, on damaged traces too; and the analysis
//! cache: reuse, invalidation, a corrupt cache file.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use analyzer::cache::{self, Lookup};
use analyzer::{analyze, analyze_cached, analyze_serial, Analysis};
use serde_json::Value;
use traces::{AllocFn, Event, FreeFn};

use crate::util::Trace;

/// A trace of `n` random heap events over 3 threads and 3,000 addresses,
/// with every kind of error, reallocs, mappings and module loads: many
/// batches of the reader, threads interleaved in short runs.
fn random_trace(n: usize) -> (tempfile::TempDir, PathBuf) {
    let mut t = Trace::new(0);
    let stacks: Vec<_> = (0..40u64).map(|i| t.stack(&[0x1000 + i, 0x2000])).collect();
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    const SLOTS: u64 = 3000;
    let mut live = vec![None::<AllocFn>; SLOTS as usize];
    let addr = |i: u64| 0x10_0000 + i * 0x100;
    let mut thread = 1;
    t.module("/bin/prog", 0x40_0000, 0x40_0000, 0x50_0000);
    for k in 0..n {
        if next() % 8 == 0 {
            thread = 1 + (next() % 3) as u32;
        }
        let base = 0x7e00_0000_0000 + k as u64 * 0x10_0000;
        if k % 5000 == 2500 {
            t.ev(
                thread,
                Event::ModuleLoad(Box::new(traces::Module {
                    path: format!("/lib/lib{k}.so"),
                    base,
                    start: base,
                    end: base + 0x1000,
                    build_id: Vec::new(),
                })),
            );
        }
        if k % 1000 == 500 {
            t.ev(
                thread,
                Event::Mmap {
                    addr: base,
                    len: 0x1000,
                    prot: 3,
                    flags: 0x22,
                    fd: -1,
                    stack: 0,
                },
            );
        }
        let i = next() % SLOTS;
        let stack = stacks[(next() % 40) as usize];
        let ev = match (live[i as usize], next() % 100) {
            (_, 0) => Event::Free {
                func: FreeFn::Free,
                addr: 0xdead_0000 + (next() % 4) * 8, // invalid
                size: 0,
                align: 0,
                stack,
            },
            (Some(_), 1) => Event::Free {
                func: FreeFn::Free,
                addr: addr(i) + 8, // interior
                size: 0,
                align: 0,
                stack,
            },
            (None, 2) => Event::Free {
                func: FreeFn::Free,
                addr: addr(i), // double free (or invalid if never allocated)
                size: 0,
                align: 0,
                stack,
            },
            (None, r) => {
                let func = if r < 60 {
                    AllocFn::Malloc
                } else {
                    AllocFn::NewArray
                };
                live[i as usize] = Some(func);
                Event::Alloc {
                    func,
                    addr: addr(i),
                    size: 1 + next() % 200,
                    align: 0,
                    stack,
                }
            }
            (Some(f), r) if r < 20 && f == AllocFn::Malloc => {
                // realloc: moves to the slot's twin address half the time.
                live[i as usize] = None;
                let j = (i + SLOTS / 2) % SLOTS;
                let new = if live[j as usize].is_none() && r < 10 {
                    live[j as usize] = Some(AllocFn::Malloc);
                    addr(j)
                } else {
                    0
                };
                Event::Realloc {
                    func: AllocFn::Realloc,
                    old_addr: addr(i),
                    new_addr: new,
                    size: if new == 0 { 0 } else { 64 },
                    stack,
                }
            }
            (Some(f), r) => {
                live[i as usize] = None;
                // Mostly the right family; 1 in 50 the wrong one.
                let func = match (f, r % 50 == 0) {
                    (AllocFn::NewArray, false) => FreeFn::DeleteArray,
                    (AllocFn::NewArray, true) => FreeFn::Free,
                    (_, false) => FreeFn::Free,
                    (_, true) => FreeFn::Delete,
                };
                Event::Free {
                    func,
                    addr: addr(i),
                    size: 0,
                    align: 0,
                    stack,
                }
            }
        };
        t.ev(thread, ev);
    }
    t.finish()
}

/// Everything a report can see of an analysis, comparable.
fn view(a: &Analysis) -> Value {
    let ids: Vec<_> = {
        let mut v: Vec<_> = a.stacks.ids().collect();
        v.sort_unstable();
        v
    };
    serde_json::json!({
        "result": serde_json::to_value(&a.result).unwrap(),
        "header": serde_json::to_value(&a.header).unwrap(),
        "trailer": serde_json::to_value(&a.trailer).unwrap(),
        "truncation": a.truncation.as_ref().map(|t| t.to_string()),
        "stacks": ids.iter().map(|&id| (id, a.stacks.frames(id))).collect::<Vec<_>>(),
    })
}

/// Runs `f` on another thread; fails the test if it takes over a minute (a hang).
fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the analysis hung or panicked")
}

#[test]
fn pipeline_matches_the_single_thread_pass() {
    let (_d, p) = random_trace(60_000);
    let a = analyze(&p).unwrap();
    let r = &a.result;
    // The trace exercises what it should: several batches, every error kind.
    assert!(r.totals.records > 3 * traces::EventBatch::CAPACITY as u64);
    assert_eq!(r.threads, 3);
    assert!(r.modules.len() > 5, "{}", r.modules.len());
    assert!(r.totals.mmaps > 0 && r.totals.reallocs > 0);
    for k in analyzer::ErrorKind::ALL {
        if k != analyzer::ErrorKind::ReallocOfFreed {
            assert!(
                r.totals.errors_by_kind.get(&k).is_some_and(|&n| n > 0),
                "{k:?}"
            );
        }
    }
    assert_eq!(view(&a), view(&analyze_serial(&p).unwrap()));
}

#[test]
fn truncated_trace_is_analysed_up_to_the_cut() {
    let (_d, p) = random_trace(60_000);
    let bytes = std::fs::read(&p).unwrap();
    let cut = p.with_extension("cut");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let c = cut.clone();
    let a = within_a_minute(move || analyze(&c).map_err(|e| e.to_string())).unwrap();
    let t = a.truncation.as_ref().expect("truncation reported");
    assert!(t.to_string().contains("truncated"), "{t}");
    assert!(a.trailer.is_none());
    assert!(a.result.totals.records > 10_000);
    assert_eq!(view(&a), view(&analyze_serial(&cut).unwrap()));
}

#[test]
fn reader_thread_error_is_one_line_and_nothing_hangs() {
    let (_d, p) = random_trace(60_000);
    let mut bytes = std::fs::read(&p).unwrap();
    // Damage the middle of the file: a checksum or decoding error there.
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    let bad = p.with_extension("bad");
    std::fs::write(&bad, &bytes).unwrap();
    let b = bad.clone();
    let e = within_a_minute(move || analyze(&b).err().map(|e| format!("{e:#}")))
        .expect("a damaged trace is an error");
    assert!(e.contains("t.bad"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    // The reference pass fails the same way.
    let serial = format!("{:#}", analyze_serial(&bad).err().expect("error"));
    assert_eq!(e, serial);
}

fn fresh(p: &Path) -> Analysis {
    match cache::lookup(p) {
        Lookup::Fresh(a) => *a,
        Lookup::Missing => panic!("no cache"),
        Lookup::Stale => panic!("stale cache"),
        Lookup::Corrupt(e) => panic!("corrupt cache: {e}"),
    }
}

#[test]
fn cache_is_written_by_the_first_command_and_reused() {
    let (_d, p) = random_trace(10_000);
    assert!(matches!(cache::lookup(&p), Lookup::Missing));
    let first = analyze_cached(&p, true).unwrap();
    assert_eq!(view(&fresh(&p)), view(&first));
    // The next command reads the file rather than the trace: doctor the
    // cache and the doctored value comes back.
    let cp = cache::path_for(&p);
    let mut v: Value = serde_json::from_slice(&std::fs::read(&cp).unwrap()).unwrap();
    v["result"]["totals"]["allocations"] = 4242.into();
    std::fs::write(&cp, serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(
        analyze_cached(&p, true).unwrap().result.totals.allocations,
        4242
    );
    // --no-cache neither reads nor writes it.
    let direct = analyze_cached(&p, false).unwrap();
    assert_eq!(view(&direct), view(&first));
    assert_eq!(fresh(&p).result.totals.allocations, 4242);
}

#[test]
fn cache_is_invalidated_when_the_trace_changes() {
    let (d, p) = random_trace(10_000);
    analyze_cached(&p, true).unwrap();
    // Another trace at the same path: different size and mtime.
    let (_d2, other) = random_trace(12_000);
    std::fs::copy(&other, &p).unwrap();
    assert!(matches!(cache::lookup(&p), Lookup::Stale));
    let a = analyze_cached(&p, true).unwrap();
    assert_eq!(view(&a), view(&analyze(&other).unwrap()));
    assert_eq!(view(&fresh(&p)), view(&a));
    // Same size and mtime, but another header (e.g. another process's
    // trace copied with its times preserved): stale too.
    let cp = cache::path_for(&p);
    let mut v: Value = serde_json::from_slice(&std::fs::read(&cp).unwrap()).unwrap();
    v["header"]["pid"] = 999_999.into();
    std::fs::write(&cp, serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(matches!(cache::lookup(&p), Lookup::Stale));
    // Touching the trace (same bytes, new mtime) also invalidates.
    analyze_cached(&p, true).unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    assert!(matches!(cache::lookup(&p), Lookup::Stale));
    drop(d);
}

#[test]
fn corrupt_cache_is_ignored_and_replaced() {
    let (_d, p) = random_trace(10_000);
    let want = view(&analyze(&p).unwrap());
    let cp = cache::path_for(&p);
    for junk in [
        &b"not json"[..],
        b"",
        b"{\"key\": {\"format\": 1",
        b"{\"key\": 3, \"result\": []}",
    ] {
        std::fs::write(&cp, junk).unwrap();
        assert!(
            matches!(cache::lookup(&p), Lookup::Corrupt(_)),
            "{}",
            String::from_utf8_lossy(junk)
        );
        // The command warns (stderr), runs the pass and rewrites the cache.
        assert_eq!(view(&analyze_cached(&p, true).unwrap()), want);
        assert_eq!(view(&fresh(&p)), want);
    }
    // A truncated valid cache: also corrupt, also replaced.
    let text = std::fs::read(&cp).unwrap();
    std::fs::write(&cp, &text[..text.len() / 2]).unwrap();
    assert!(matches!(cache::lookup(&p), Lookup::Corrupt(_)));
    assert_eq!(view(&analyze_cached(&p, true).unwrap()), want);
}
