//! Plan building: slots, cross-thread waits, skipped heap errors.

use replayer::plan::NO_SLOT;
use replayer::{OpKind, Plan};
use traces::{AllocFn, Event, Record};

use crate::common::{alloc, free};

fn plan(recs: &[Record]) -> Plan {
    Plan::from_records(recs.iter().cloned().map(Ok)).unwrap()
}

#[test]
fn addresses_become_dense_slots_even_when_reused() {
    // The same address is handed out twice: two blocks, two slots.
    let p = plan(&[
        alloc(1, 7, 0x10, 8),
        free(2, 7, 0x10),
        alloc(3, 7, 0x10, 16),
        free(4, 7, 0x10),
    ]);
    assert_eq!(p.slots, 2);
    let ops = &p.threads[0];
    assert_eq!(
        ops.iter().map(|o| (o.kind, o.slot)).collect::<Vec<_>>(),
        vec![
            (OpKind::Malloc, 0),
            (OpKind::Free, 0),
            (OpKind::Malloc, 1),
            (OpKind::Free, 1)
        ]
    );
    assert!(ops.iter().all(|o| !o.waits), "one thread never waits");
    assert_eq!(p.peak_live_bytes, 16);
}

#[test]
fn free_on_another_thread_waits() {
    let p = plan(&[alloc(1, 1, 0x10, 8), free(2, 2, 0x10)]);
    assert_eq!(p.thread_ids, vec![1, 2]);
    assert!(p.threads[1][0].waits);
}

#[test]
fn heap_errors_are_skipped_and_counted() {
    let p = plan(&[
        alloc(1, 1, 0x10, 8),
        free(2, 1, 0x10),
        free(3, 1, 0x10),   // double free
        free(4, 1, 0x9999), // never allocated
        alloc(5, 1, 0, 8),  // failed allocation
        Record {
            time: 6,
            thread: 1,
            event: Event::Realloc {
                func: AllocFn::Realloc,
                old_addr: 0x10,
                new_addr: 0x20,
                size: 4,
                stack: 0,
            },
        }, // realloc of freed
    ]);
    assert_eq!(p.skipped.double_frees, 2);
    assert_eq!(p.skipped.invalid_frees, 1);
    assert_eq!(p.skipped.failed_allocs, 1);
    assert_eq!(p.ops(), 2);
}

#[test]
fn realloc_forms() {
    let r = |t, old, new, size| Record {
        time: t,
        thread: 1,
        event: Event::Realloc {
            func: AllocFn::Realloc,
            old_addr: old,
            new_addr: new,
            size,
            stack: 0,
        },
    };
    let p = plan(&[
        r(1, 0, 0x10, 8),
        r(2, 0x10, 0x20, 32),
        r(3, 0x20, 0, 0),
        r(4, 0, 0, 8),
    ]);
    let ops = &p.threads[0];
    assert_eq!(
        (ops[0].kind, ops[0].aux),
        (OpKind::Realloc, NO_SLOT),
        "realloc(NULL) acts as malloc"
    );
    assert_eq!(
        (ops[1].kind, ops[1].aux, ops[1].slot),
        (OpKind::Realloc, 0, 1)
    );
    assert_eq!(
        (ops[2].kind, ops[2].slot),
        (OpKind::Free, 1),
        "realloc(p, 0) freed p"
    );
    assert_eq!(ops.len(), 3);
    assert_eq!(p.skipped.failed_allocs, 1);
}

#[test]
fn ops_are_compact() {
    assert!(std::mem::size_of::<replayer::Op>() <= 24);
}
