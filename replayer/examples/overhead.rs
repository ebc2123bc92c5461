//! Replay overhead: operations per second of the replay loop against the same
//! calls made by a bare loop (no threads, atomics, waits, timing or touching).
//!
//! `cargo run --release -p replayer --example overhead -- [TRACE]` (default: a
//! synthetic single-thread churn of 2,000,000 events). Single-thread traces only.

use std::time::Instant;

use replayer::backend::libc_malloc::{LibcMalloc, Which};
use replayer::backend::ours::Ours;
use replayer::backend::{Backend, Touch};
use replayer::plan::NO_SLOT;
use replayer::{replay, OpKind, Plan, ReplayOptions};

/// The bare loop: the plan's calls with a plain slot table.
fn raw(plan: &Plan, b: &dyn Backend) -> f64 {
    let mut slots = vec![core::ptr::null_mut::<u8>(); plan.slots as usize];
    let t0 = Instant::now();
    for op in &plan.threads[0] {
        match op.kind {
            OpKind::Free => {
                let p = std::mem::replace(&mut slots[op.slot as usize], core::ptr::null_mut());
                // SAFETY: a live block of `b`, freed once.
                unsafe { b.free(p) };
            }
            OpKind::Realloc => {
                let old = if op.aux == NO_SLOT {
                    core::ptr::null_mut()
                } else {
                    std::mem::replace(&mut slots[op.aux as usize], core::ptr::null_mut())
                };
                // SAFETY: null or a live block of `b`, used once.
                slots[op.slot as usize] = unsafe { b.realloc(old, op.size as usize) };
            }
            k => slots[op.slot as usize] = b.alloc(k, op.size as usize, op.aux as usize),
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    for p in slots.into_iter().filter(|p| !p.is_null()) {
        // SAFETY: leftovers, live blocks of `b`.
        unsafe { b.free(p) };
    }
    plan.ops() as f64 / secs
}

fn replayed(plan: &Plan, b: &dyn Backend, op_timing: bool) -> f64 {
    let opts = ReplayOptions {
        touch: Touch::None,
        op_timing,
        ..Default::default()
    };
    let r = replay(plan, b, &opts, &|_| {});
    r.ops as f64 / (r.wall_ns as f64 / 1e9)
}

/// Makes a fresh backend for one run.
type MakeBackend = fn() -> Box<dyn Backend>;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let plan = match std::env::args().nth(1) {
        Some(p) => Plan::from_trace(p.as_ref())?,
        None => {
            let churn = traces::synthetic::Churn::new(traces::synthetic::ChurnConfig {
                events: 2_000_000,
                ..Default::default()
            });
            Plan::from_records(churn.map(Ok))?
        }
    };
    anyhow::ensure!(plan.threads.len() == 1, "single-thread traces only");
    println!("{} ops", plan.ops());
    println!("backend     raw Mops/s  replay Mops/s  replay+timing Mops/s  (median of 5)");
    let backends: [(&str, MakeBackend); 2] = [
        ("glibc", || Box::new(LibcMalloc::new(Which::Glibc))),
        ("alloctrace", || Box::new(Ours::new().expect("heap"))),
    ];
    for (name, make) in backends {
        let mut r = Vec::new();
        let mut p = Vec::new();
        let mut t = Vec::new();
        for _ in 0..5 {
            r.push(raw(&plan, &*make()));
            p.push(replayed(&plan, &*make(), false));
            t.push(replayed(&plan, &*make(), true));
        }
        println!(
            "{name:<11} {:>10.1}  {:>13.1}  {:>20.1}",
            median(r) / 1e6,
            median(p) / 1e6,
            median(t) / 1e6
        );
    }
    Ok(())
}
