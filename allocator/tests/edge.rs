//! Edge cases of the C face and of the heap API: alignment for every power of two up
//! to 64 KiB, zero sizes, calloc overflow, huge requests, free(NULL), realloc in
//! place, statistics, the Rust GlobalAlloc face.

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use core::ptr;

use allocator::size_class::{class_of, run_budget};
use allocator::{c_api, global, AllocTrace, Config, Heap};

use crate::util::{fill, global_instance, verify};

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[test]
fn every_alignment_up_to_64k_through_every_entry_point() {
    let _g = global_instance();
    for shift in 0..=16 {
        let align = 1usize << shift;
        for size in [0usize, 1, 24, 1000, 70_000, 200_000] {
            let mut p: *mut c_void = ptr::null_mut();
            // SAFETY: `p` is a valid out-pointer.
            let rc = unsafe { c_api::posix_memalign(&mut p, align.max(8), size) };
            assert_eq!(rc, 0);
            let q = c_api::aligned_alloc(align, size);
            let r = c_api::memalign(align, size);
            for (x, a) in [(p, align.max(8)), (q, align), (r, align)] {
                assert!(!x.is_null());
                assert_eq!(x as usize % a, 0, "align {a} size {size}");
                // SAFETY: live block of at least `size` bytes.
                unsafe {
                    assert!(c_api::malloc_usable_size(x) >= size);
                    fill(x.cast(), size, size as u64);
                }
            }
            // SAFETY: live blocks, each freed once; contents intact until then.
            unsafe {
                for x in [p, q, r] {
                    verify(x.cast(), size, size as u64);
                    c_api::free(x);
                }
            }
        }
    }
    global::heap().check().expect("invariants");
}

#[test]
fn bad_alignments_are_rejected() {
    let _g = global_instance();
    let mut p: *mut c_void = ptr::null_mut();
    // SAFETY: `p` is a valid out-pointer.
    unsafe {
        assert_eq!(c_api::posix_memalign(&mut p, 0, 8), libc_einval());
        assert_eq!(c_api::posix_memalign(&mut p, 24, 8), libc_einval());
        assert_eq!(
            c_api::posix_memalign(&mut p, 4, 8),
            libc_einval(),
            "not a multiple of sizeof(void*)"
        );
    }
    assert!(c_api::aligned_alloc(24, 8).is_null());
    assert_eq!(errno(), libc_einval());
    let m = c_api::memalign(24, 8);
    assert_eq!(m as usize % 32, 0, "memalign rounds 24 up to 32");
    // SAFETY: live block.
    unsafe { c_api::free(m) };
}

fn libc_einval() -> i32 {
    22
}

#[test]
fn zero_sizes_null_and_overflow() {
    let _g = global_instance();
    let a = c_api::malloc(0);
    let b = c_api::malloc(0);
    assert!(
        !a.is_null() && !b.is_null() && a != b,
        "malloc(0) gives unique blocks"
    );
    let c = c_api::calloc(0, 5);
    assert!(!c.is_null());
    // SAFETY: live blocks / null, freed once.
    unsafe {
        c_api::free(a);
        c_api::free(b);
        c_api::free(c);
        c_api::free(ptr::null_mut());
        assert_eq!(c_api::malloc_usable_size(ptr::null_mut()), 0);
    }
    assert!(
        c_api::calloc(usize::MAX / 2 + 1, 2).is_null(),
        "calloc overflow"
    );
    assert_eq!(errno(), 12);
    // SAFETY: null input, overflowing count.
    assert!(unsafe { c_api::reallocarray(ptr::null_mut(), usize::MAX, 3) }.is_null());
    assert_eq!(errno(), 12);
    for huge in [usize::MAX, usize::MAX / 2, 1usize << 62, 1usize << 47] {
        assert!(c_api::malloc(huge).is_null(), "malloc({huge}) must fail");
        assert_eq!(errno(), 12, "ENOMEM for {huge}");
        assert!(c_api::aligned_alloc(4096, huge).is_null());
    }
    // realloc(p, 0) frees and returns null, like glibc.
    let p = c_api::malloc(40);
    // SAFETY: `p` is live; freed by the call.
    assert!(unsafe { c_api::realloc(p, 0) }.is_null());
}

#[test]
fn calloc_zeroes_recycled_memory() {
    let _g = global_instance();
    for size in [16usize, 100, 5000, 100_000, 300_000] {
        let p = c_api::malloc(size);
        // SAFETY: live block of `size` bytes, then freed.
        unsafe {
            ptr::write_bytes(p.cast::<u8>(), 0xAA, size);
            c_api::free(p);
        }
        let q = c_api::calloc(1, size);
        // SAFETY: live block of `size` bytes.
        let bytes = unsafe { core::slice::from_raw_parts(q.cast::<u8>(), size) };
        assert!(bytes.iter().all(|&b| b == 0), "calloc({size}) not zeroed");
        // SAFETY: live block.
        unsafe { c_api::free(q) };
    }
}

#[test]
fn realloc_shrinks_grows_and_keeps_contents() {
    let _g = global_instance();
    let mut p = c_api::malloc(10);
    let mut size = 10usize;
    // SAFETY: `p` stays the live block of `size` bytes through the loop.
    unsafe {
        fill(p.cast(), size, 7);
        for next in [
            100,
            3000,
            50_000,
            150_000,
            1 << 20,
            4 << 20,
            200_000,
            5000,
            20,
            1,
        ] {
            p = c_api::realloc(p, next);
            assert!(!p.is_null());
            verify(p.cast(), size.min(next), 7);
            size = next;
            fill(p.cast(), size, 7);
        }
        c_api::free(p);
    }
}

#[test]
fn realloc_grows_in_place_where_it_can() {
    let heap = Heap::new(Config::RESERVED).expect("heap");
    // SAFETY: every pointer is live when used and freed once.
    unsafe {
        let p = heap.malloc(100);
        assert_eq!(heap.realloc(p, 112), p, "within its 112-byte class");
        heap.free(p);
        let big = heap.malloc(1 << 20);
        fill(big, 1 << 20, 3);
        let before = heap.stats().mremap_calls;
        let grown = heap.realloc(big, 8 << 20);
        assert!(
            heap.stats().mremap_calls > before,
            "large realloc uses mremap"
        );
        verify(grown, 1 << 20, 3);
        let shrunk = heap.realloc(grown, 2 << 20);
        assert_eq!(shrunk, grown, "shrinking a large block stays in place");
        verify(shrunk, 1 << 20, 3);
        heap.free(shrunk);
    }
    heap.check().expect("invariants");
}

#[test]
fn statistics_track_mappings_and_classes() {
    let heap = Heap::new(Config {
        decay_ms: 0,
        ..Config::RESERVED
    })
    .expect("heap");
    let ps: Vec<_> = (0..1000).map(|_| heap.malloc(40)).collect();
    let st = heap.stats();
    let c = st.classes.iter().find(|c| c.block_size == 48).unwrap();
    assert_eq!(c.used_blocks, 1000);
    assert!(c.spans >= 1 && c.capacity_blocks >= 1000);
    assert_eq!(st.live_bytes, 48 * 1000);
    assert_eq!(st.requested_bytes_total, 40 * 1000);
    assert!(st.heap_bytes >= 48 * 1000 && st.mapped_bytes >= st.heap_bytes);
    let big = heap.malloc(1 << 20);
    let st2 = heap.stats();
    assert!(st2.large_mapped_bytes > 1 << 20);
    assert_eq!(st2.mmap_calls, st.mmap_calls + 1);
    // SAFETY: live blocks freed once.
    unsafe {
        heap.free(big);
        for p in ps {
            heap.free(p);
        }
    }
    let st3 = heap.stats();
    assert_eq!(st3.munmap_calls, st.munmap_calls + 1);
    assert_eq!(
        (st3.live_blocks, st3.live_bytes, st3.large_mapped_bytes),
        (0, 0, 0)
    );
    assert!(
        st3.madvise_calls > 0 && st3.idle_bytes == 0,
        "decay 0 purges at once"
    );
    heap.check().expect("invariants");
}

#[test]
fn emptied_spans_beyond_max_dirty_are_purged() {
    for (max_dirty, bounded) in [(64 * 1024, true), (usize::MAX, false)] {
        let heap = Heap::new(Config {
            decay_ms: 3_600_000,
            max_dirty,
            ..Config::RESERVED
        })
        .expect("heap");
        // About five one-chunk spans of the 48-byte class.
        let ps: Vec<_> = (0..6000).map(|_| heap.malloc(48)).collect();
        assert!(ps.iter().all(|p| !p.is_null()));
        // SAFETY: live blocks, freed once.
        unsafe {
            for p in ps {
                heap.free(p);
            }
        }
        let st = heap.stats();
        if bounded {
            assert!(st.idle_bytes <= 64 * 1024, "{st:?}");
            assert!(st.purged_bytes >= 4 * 64 * 1024, "{st:?}");
        } else {
            assert!(st.idle_bytes >= 5 * 64 * 1024, "{st:?}");
            assert_eq!(st.purged_bytes, 0, "the decay has not passed");
        }
        heap.check().expect("invariants");
    }
}

#[test]
fn a_span_emptied_to_its_bottom_gives_back_its_top() {
    let heap = Heap::new(Config {
        max_dirty: usize::MAX,
        ..Config::RESERVED
    })
    .expect("heap");
    // The class's first blocks come from runs in a shared chunk: take them first.
    let runs: Vec<_> = (0..run_budget(class_of(64)))
        .map(|_| heap.malloc(64))
        .collect();
    // One span of the 64-byte class (1022 blocks), handed out bottom up.
    let ps: Vec<_> = (0..1000).map(|_| heap.malloc(64)).collect();
    assert!(ps.windows(2).all(|w| w[1] as usize == w[0] as usize + 64));
    for (i, &p) in ps.iter().enumerate() {
        // SAFETY: live 64-byte blocks.
        unsafe { fill(p, 64, i as u64) };
    }
    let before = heap.stats().madvise_calls;
    // SAFETY: live blocks, freed once, top down.
    unsafe {
        for &p in ps[10..].iter().rev() {
            heap.free(p);
        }
    }
    let st = heap.stats();
    assert!(
        st.madvise_calls > before,
        "the span's top went back: {st:?}"
    );
    heap.check().expect("invariants after trimming");
    for (i, &p) in ps[..10].iter().enumerate() {
        // SAFETY: still live.
        unsafe { verify(p, 64, i as u64) };
    }
    // The trimmed blocks are handed out again, bottom up, and are usable.
    let again: Vec<_> = (0..990).map(|_| heap.malloc(64)).collect();
    let mut all: Vec<usize> = ps[..10].iter().chain(&again).map(|&p| p as usize).collect();
    all.sort_unstable();
    assert!(all.windows(2).all(|w| w[1] >= w[0] + 64), "no block twice");
    for (i, &p) in again.iter().enumerate() {
        // SAFETY: live 64-byte blocks.
        unsafe { fill(p, 64, 1000 + i as u64) };
    }
    heap.check().expect("invariants after reuse");
    // SAFETY: live blocks, freed once.
    unsafe {
        for p in ps[..10].iter().chain(&again).chain(&runs) {
            heap.free(*p);
        }
    }
    heap.check().expect("invariants when empty");
}

#[test]
fn independent_heaps_do_not_share_blocks() {
    let a = Heap::new(Config::RESERVED).expect("heap a");
    let b = Heap::new(Config::RESERVED).expect("heap b");
    let pa = a.malloc(64);
    let pb = b.malloc(64);
    // SAFETY: live blocks freed once, each to its own heap.
    unsafe {
        fill(pa, 64, 1);
        fill(pb, 64, 2);
        verify(pa, 64, 1);
        a.free(pa);
        b.free(pb);
    }
    assert_eq!(a.stats().allocs, 1);
    assert_eq!(b.stats().allocs, 1);
    a.check().expect("a");
    b.check().expect("b");
}

#[test]
fn global_alloc_face_honours_layouts() {
    let _g = global_instance();
    let a = AllocTrace::RESERVED;
    for shift in 0..=16 {
        for size in [1usize, 33, 4096, 200_000] {
            let layout = Layout::from_size_align(size, 1 << shift).unwrap();
            // SAFETY: non-zero-size layouts; blocks freed with their layout.
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                assert_eq!(p as usize % layout.align(), 0);
                fill(p, size, 9);
                let q = a.realloc(p, layout, size * 2);
                assert_eq!(q as usize % layout.align(), 0);
                verify(q, size, 9);
                a.dealloc(q, Layout::from_size_align(size * 2, 1 << shift).unwrap());
                let z = a.alloc_zeroed(layout);
                assert!(core::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                a.dealloc(z, layout);
            }
        }
    }
}

/// Whether the page holding `addr` is resident.
fn resident(addr: usize) -> bool {
    let page = addr & !4095;
    let mut v = 0u8;
    // SAFETY: `page` lies in a mapping of the heap's arena; mincore only reports.
    let r = unsafe { libc::mincore(page as *mut c_void, 4096, &mut v) };
    assert_eq!(r, 0, "mincore");
    v & 1 != 0
}

#[test]
fn free_blocks_of_purged_classes_keep_no_page_and_are_reused() {
    let heap = Heap::new(Config::RESERVED).expect("heap");
    // 12 KiB blocks (three pages each, 128 bytes off page boundaries after the
    // header): a span of them holds five.
    let size = 12 * 1024;
    let ps: Vec<_> = (0..5).map(|_| heap.malloc(size)).collect();
    assert!(ps.windows(2).all(|w| w[1] as usize == w[0] as usize + size));
    for (i, &p) in ps.iter().enumerate() {
        // SAFETY: live blocks of `size` bytes.
        unsafe { fill(p, size, i as u64) };
    }
    let pages = |p: *mut u8| (p as usize..p as usize + size).step_by(4096);
    // SAFETY: live blocks, freed once.
    unsafe { heap.free(ps[1]) };
    heap.check().expect("invariants after a free in the middle");
    // Its two whole pages went back; the edge pages it shares with live blocks stay.
    let inner = (ps[1] as usize).next_multiple_of(4096);
    assert!(!resident(inner) && !resident(inner + 4096));
    assert!(resident(ps[1] as usize) && resident(ps[2] as usize - 1));
    // SAFETY: as above.
    unsafe { heap.free(ps[2]) };
    heap.check().expect("invariants after freeing a neighbour");
    // The page the two free blocks share went back too.
    assert!(!resident(ps[2] as usize));
    assert!(pages(ps[2]).skip(1).all(|a| !resident(a)));
    // The lowest free block is handed out first, whole and usable.
    let q = heap.malloc(size);
    assert_eq!(q, ps[1]);
    // SAFETY: live block of `size` bytes.
    unsafe { fill(q, size, 10) };
    let z = heap.calloc(1, size);
    assert_eq!(z, ps[2]);
    // SAFETY: live block of `size` bytes.
    let bytes = unsafe { core::slice::from_raw_parts(z, size) };
    assert!(bytes.iter().all(|&b| b == 0), "calloc of a purged block");
    heap.check().expect("invariants after reuse");
    for (i, &p) in [ps[0], q, ps[3], ps[4]].iter().enumerate() {
        let tag = [0, 10, 3, 4][i];
        // SAFETY: live blocks.
        unsafe { verify(p, size, tag) };
    }
    // Freeing from the top moves the bump pointer down past free blocks: after
    // freeing 3 then 4 (the top), the next blocks come out in address order again.
    // SAFETY: live blocks, freed once.
    unsafe {
        heap.free(ps[3]);
        heap.free(ps[4]);
    }
    heap.check().expect("invariants after freeing the top");
    assert!(pages(ps[3]).skip(1).all(|a| !resident(a)));
    let r: Vec<_> = (0..2).map(|_| heap.malloc(size)).collect();
    assert_eq!(r, [ps[3], ps[4]]);
    // An emptied span goes to the pool as purged with no `madvise` of its own: its
    // pages went back block by block, the header page with the last block.
    let before = heap.stats();
    // SAFETY: live blocks, freed once.
    unsafe {
        for p in [ps[0], q, z, r[0], r[1]] {
            heap.free(p);
        }
    }
    heap.check().expect("invariants when empty");
    let st = heap.stats();
    let c = st
        .classes
        .iter()
        .find(|c| c.block_size as usize == size)
        .unwrap();
    assert_eq!((c.spans, c.used_blocks), (0, 0));
    assert_eq!(st.idle_bytes, before.idle_bytes);
    assert_eq!(st.purged_bytes, before.purged_bytes + 64 * 1024);
    assert!(
        st.madvise_calls <= before.madvise_calls + 5,
        "one per block at most"
    );
    assert!(ps
        .iter()
        .flat_map(|&p| pages(p).skip(1))
        .all(|a| !resident(a)));
    // The header page too: an idle span keeps no page (its pool list runs through
    // the chunk map).
    assert!(!resident(ps[0] as usize & !(64 * 1024 - 1)));
    let again = heap.malloc(size);
    assert_eq!(again, ps[0]);
    // SAFETY: live block, freed once.
    unsafe { heap.free(again) };
    heap.check().expect("invariants at the end");
}
