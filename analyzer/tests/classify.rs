//! Every classification of the streaming pass, on synthetic traces: exact
//! kinds, addresses, sizes and stacks.

use analyzer::{analyze, ErrorKind};
use traces::{flags, AllocFn, Event, FreeFn};

use crate::util::Trace;

#[test]
fn correct_program_has_no_errors_and_no_leaks() {
    let mut t = Trace::new(0);
    let s = t.stack(&[0x10, 0x20]);
    t.alloc(AllocFn::Malloc, 0x1000, 16, s);
    t.alloc(AllocFn::Calloc, 0x2000, 32, s);
    t.alloc(AllocFn::New, 0x3000, 8, s);
    t.alloc(AllocFn::NewArray, 0x4000, 80, s);
    t.alloc(AllocFn::NewAligned, 0x5000, 64, s);
    t.alloc(AllocFn::PosixMemalign, 0x6000, 64, s);
    t.realloc(0x1000, 0x7000, 100, s); // moves
    t.free(FreeFn::Free, 0x2000, s);
    t.free(FreeFn::DeleteSized, 0x3000, s);
    t.free(FreeFn::DeleteArray, 0x4000, s);
    t.free(FreeFn::DeleteAligned, 0x5000, s);
    t.free(FreeFn::Free, 0x6000, s);
    t.realloc(0x7000, 0, 0, s); // realloc(p, 0) frees
                                // The address is reused: a new, separate allocation.
    t.alloc(AllocFn::Malloc, 0x2000, 24, s);
    t.free(FreeFn::Free, 0x2000, s);
    let (_d, p) = t.finish();
    let a = analyze(&p).unwrap();
    let r = &a.result;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(r.live.is_empty());
    // 6 allocations, the moving realloc, the reuse.
    assert_eq!(r.totals.allocations, 8);
    assert_eq!(r.totals.frees, 8);
    assert_eq!(r.totals.reallocs, 2);
    assert_eq!(
        r.totals.bytes_allocated,
        16 + 32 + 8 + 80 + 64 + 64 + 100 + 24
    );
    // Peak: everything but 0x1000 (realloc'ed) live together after the move.
    assert_eq!(r.totals.peak_live_bytes, 32 + 8 + 80 + 64 + 64 + 100);
}

#[test]
fn double_free_names_all_three_stacks() {
    let mut t = Trace::new(0);
    let (sa, s1, s2) = (t.stack(&[0xa1]), t.stack(&[0xb1]), t.stack(&[0xc1]));
    t.alloc(AllocFn::Malloc, 0x1000, 40, sa);
    t.free(FreeFn::Free, 0x1000, s1);
    t.free(FreeFn::Free, 0x1000, s2);
    let (_d, p) = t.finish();
    let r = analyze(&p).unwrap().result;
    assert_eq!(r.errors.len(), 1);
    let e = &r.errors[0];
    assert_eq!(e.kind, ErrorKind::DoubleFree);
    assert_eq!((e.address, e.size), (0x1000, 40));
    assert_eq!(e.alloc_stack, Some(sa));
    assert_eq!(e.first_free_stack, Some(s1));
    assert_eq!(e.stack, s2);
    assert_eq!(r.totals.frees, 1);
}

#[test]
fn invalid_free_of_never_allocated_addresses() {
    let mut t = Trace::new(0);
    let s = t.stack(&[0x1]);
    t.free(FreeFn::Free, 0x7ffc_0000_1000, s); // a stack address
    t.free(FreeFn::Delete, 0x55_0000, s); // a global
    let (_d, p) = t.finish();
    let r = analyze(&p).unwrap().result;
    let kinds: Vec<_> = r
        .errors
        .iter()
        .map(|e| (e.kind, e.address, e.size))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (ErrorKind::InvalidFree, 0x7ffc_0000_1000, 0),
            (ErrorKind::InvalidFree, 0x55_0000, 0)
        ]
    );
    assert_eq!(r.errors[0].stack, s);
    assert_eq!(r.errors[0].alloc_stack, None);
}

#[test]
fn interior_free_names_the_block_and_offset() {
    let mut t = Trace::new(0);
    let (sa, sf) = (t.stack(&[0xa]), t.stack(&[0xf]));
    t.alloc(AllocFn::Malloc, 0x1000, 64, sa);
    t.alloc(AllocFn::Malloc, 0x2000, 64, sa);
    t.free(FreeFn::Free, 0x2010, sf);
    let (_d, p) = t.finish();
    let r = analyze(&p).unwrap().result;
    assert_eq!(r.errors.len(), 1);
    let e = &r.errors[0];
    assert_eq!(e.kind, ErrorKind::InteriorFree);
    assert_eq!(
        (e.address, e.size, e.block),
        (0x2010, 64, Some((0x2000, 0x10)))
    );
    assert_eq!((e.alloc_stack, e.stack), (Some(sa), sf));
    // The block stays live (the real free would have aborted).
    assert_eq!(r.live.len(), 2);
}

#[test]
fn mismatched_families() {
    let cases = [
        (AllocFn::NewArray, FreeFn::Free),
        (AllocFn::NewArray, FreeFn::Delete),
        (AllocFn::Malloc, FreeFn::Delete),
        (AllocFn::New, FreeFn::DeleteArray),
        (AllocFn::NewAligned, FreeFn::Delete),
        (AllocFn::New, FreeFn::DeleteAligned),
    ];
    let mut t = Trace::new(0);
    let (sa, sf) = (t.stack(&[0xa]), t.stack(&[0xf]));
    for (i, (af, ff)) in cases.iter().enumerate() {
        let addr = 0x1000 * (i as u64 + 1);
        t.alloc(*af, addr, 8 * (i as u64 + 1), sa);
        t.free(*ff, addr, sf);
    }
    let (_d, p) = t.finish();
    let r = analyze(&p).unwrap().result;
    assert_eq!(r.errors.len(), cases.len());
    for (i, (e, (af, ff))) in r.errors.iter().zip(cases).enumerate() {
        assert_eq!(e.kind, ErrorKind::MismatchedFree);
        assert_eq!(
            (e.address, e.size),
            (0x1000 * (i as u64 + 1), 8 * (i as u64 + 1))
        );
        assert_eq!(e.alloc_func, Some(af));
        assert_eq!(e.free_func.as_deref(), Some(ff.name()));
        assert_eq!((e.alloc_stack, e.stack), (Some(sa), sf));
    }
    // A mismatched release still ends the block: nothing leaks.
    assert!(r.live.is_empty());
    // It is not a valid release.
    assert_eq!(r.totals.frees, 0);
}

#[test]
fn valid_releases_exclude_mismatched_ones_and_lost_frees() {
    let mut t = Trace::new(0);
    let s = t.stack(&[0x1]);
    t.alloc(AllocFn::NewArray, 0x1000, 8, s);
    t.free(FreeFn::Free, 0x1000, s); // mismatched
    t.alloc(AllocFn::Malloc, 0x2000, 8, s);
    t.alloc(AllocFn::Malloc, 0x2000, 16, s); // 0x2000's free was lost
    t.free(FreeFn::Free, 0x2000, s); // valid
    t.alloc(AllocFn::New, 0x3000, 8, s);
    t.realloc(0x3000, 0x4000, 32, s); // mismatched (new by realloc)
    t.realloc(0x4000, 0x5000, 64, s); // valid
    t.alloc(AllocFn::Malloc, 0x6000, 8, s); // leaked
    let (_d, p) = t.finish();
    let r = analyze(&p).unwrap().result;
    assert_eq!(r.totals.errors_by_kind[&ErrorKind::MismatchedFree], 2);
    assert_eq!(r.totals.overlapping_allocs, 1);
    assert_eq!(r.totals.allocations, 7);
    assert_eq!(r.totals.frees, 2);
    assert_eq!(r.live.len(), 2);
}

#[test]
fn realloc_of_freed_pointer() {
    let mut t = Trace::new(0);
    let (sa, sf, sr) = (t.stack(&[0xa]), t.stack(&[0xf]), t.stack(&[0xe]));
    t.alloc(AllocFn::Malloc, 0x1000, 32, sa);
    t.free(FreeFn::Free, 0x1000, sf);
    t.realloc(0x1000, 0x3000, 64, sr);
    let (_d, p) = t.finish();
    let r = analyze(&p).unwrap().result;
    assert_eq!(r.errors.len(), 1);
    let e = &r.errors[0];
    assert_eq!(e.kind, ErrorKind::ReallocOfFreed);
    assert_eq!((e.address, e.size), (0x1000, 32));
    assert_eq!(
        (e.alloc_stack, e.first_free_stack, e.stack),
        (Some(sa), Some(sf), sr)
    );
}

#[test]
fn realloc_edge_cases() {
    let mut t = Trace::new(0);
    let s = t.stack(&[0x1]);
    t.realloc(0, 0x1000, 10, s); // acts as malloc
    t.realloc(0x1000, 0, 1 << 40, s); // fails: block stays live
    t.realloc(0x1000, 0x1000, 20, s); // grows in place
    let (_d, p) = t.finish();
    let r = analyze(&p).unwrap().result;
    assert!(r.errors.is_empty());
    assert_eq!(r.totals.failed, 1);
    assert_eq!(r.live.len(), 1);
    assert_eq!(r.live[0].1.size, 20);
    assert_eq!(r.totals.allocations, 2);
}

#[test]
fn attached_trace_counts_frees_from_before_attach() {
    let mut t = Trace::new(flags::ATTACHED);
    let s = t.stack(&[0x1]);
    t.free(FreeFn::Free, 0x9000, s);
    t.free(FreeFn::Delete, 0xa000, s);
    let (_d, p) = t.finish();
    let r = analyze(&p).unwrap().result;
    assert!(r.errors.is_empty());
    assert_eq!(r.totals.unknown_before_attach, 2);
}

#[test]
fn forked_child_counts_frees_of_inherited_blocks() {
    let mut t = Trace::new(flags::FORKED);
    let s = t.stack(&[0x1]);
    t.free(FreeFn::Free, 0x9000, s);
    let (_d, p) = t.finish();
    let r = analyze(&p).unwrap().result;
    assert!(r.errors.is_empty());
    assert_eq!(r.totals.unknown_before_attach, 1);
}

#[test]
fn attached_trace_still_sees_double_frees_after_attach() {
    let mut t = Trace::new(flags::ATTACHED);
    let (s1, s2) = (t.stack(&[0x1]), t.stack(&[0x2]));
    t.free(FreeFn::Free, 0x9000, s1);
    t.free(FreeFn::Free, 0x9000, s2);
    let (_d, p) = t.finish();
    let r = analyze(&p).unwrap().result;
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].kind, ErrorKind::DoubleFree);
    assert_eq!(r.errors[0].alloc_stack, None);
    assert_eq!(r.errors[0].first_free_stack, Some(s1));
}

#[test]
fn temporary_allocations_and_peak() {
    let mut t = Trace::new(0);
    let (s1, s2) = (t.stack(&[0x1]), t.stack(&[0x2]));
    t.alloc(AllocFn::Malloc, 0x1000, 100, s1);
    t.free(FreeFn::Free, 0x1000, s1); // temporary
    t.alloc(AllocFn::Malloc, 0x2000, 300, s2);
    let peak_time = t.time + 10;
    t.alloc(AllocFn::Malloc, 0x3000, 50, s1);
    t.free(FreeFn::Free, 0x2000, s2); // not temporary: 0x3000 came between
    t.free(FreeFn::Free, 0x3000, s1); // temporary: no alloc since 0x3000's
    let (_d, p) = t.finish();
    let r = analyze(&p).unwrap().result;
    assert_eq!(r.totals.peak_live_bytes, 350);
    assert_eq!(r.totals.peak_time, peak_time);
    assert_eq!(r.totals.temporary, 2);
    let peak: Vec<_> = r.peak_sites.clone();
    assert_eq!(peak, vec![(s2, 300), (s1, 50)]);
}

#[test]
fn leaks_are_the_blocks_live_at_the_end() {
    let mut t = Trace::new(0);
    let (s1, s2) = (t.stack(&[0x1]), t.stack(&[0x2]));
    for i in 0..3 {
        t.alloc(AllocFn::Malloc, 0x1000 + i * 0x100, 10, s1);
    }
    t.alloc(AllocFn::New, 0x9000, 100, s2);
    t.alloc(AllocFn::Malloc, 0xa000, 5, s2);
    t.free(FreeFn::Free, 0xa000, s2);
    let (_d, p) = t.finish();
    let r = analyze(&p).unwrap().result;
    let groups = analyzer::table::leak_groups(&r.live).unwrap();
    assert_eq!(groups, vec![(s2, 1, 100), (s1, 3, 30)]);
}

#[test]
fn temporary_allocations_of_many_interleaved_threads() {
    // 20 threads (more than the pass finds by a scan), each allocating two
    // blocks and freeing its last one (temporary) while the others run.
    let mut t = Trace::new(0);
    let s = t.stack(&[0x1]);
    let alloc = |addr| Event::Alloc {
        func: AllocFn::Malloc,
        addr,
        size: 16,
        align: 0,
        stack: s,
    };
    let free = |addr| Event::Free {
        func: FreeFn::Free,
        addr,
        size: 0,
        align: 0,
        stack: s,
    };
    for round in 0..2u64 {
        for th in 1..=20u64 {
            t.ev(th as u32, alloc(0x10_0000 * th + 0x100 * round));
        }
    }
    for th in 1..=20u64 {
        t.ev(th as u32, free(0x10_0000 * th + 0x100)); // its last: temporary
        t.ev(th as u32, free(0x10_0000 * th)); // not its last
    }
    let (_d, p) = t.finish();
    let r = analyze(&p).unwrap().result;
    assert_eq!(r.threads, 20);
    assert_eq!(r.totals.temporary, 20);
    assert_eq!(r.totals.frees, 40);
}
