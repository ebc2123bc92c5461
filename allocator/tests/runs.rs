//! Runs: the first blocks of a class come from a chunk shared with other classes
//! (`size_class::RUN_BYTES`). Exclusive ownership, alignment, usable sizes,
//! realloc into and out of runs, reuse, cross-thread frees, and a shared chunk
//! made of a span that served a class before.

use std::sync::mpsc;

use allocator::size_class::{class_of, class_size, run_budget, NUM_CLASSES, RUN_BYTES};
use allocator::{global, Config, Heap};

use crate::util::{fill, global_instance, verify, Rng};

/// The classes with runs, smallest first.
fn run_classes() -> Vec<usize> {
    (0..NUM_CLASSES).filter(|&c| run_budget(c) > 0).collect()
}

#[test]
fn sparse_classes_share_one_chunk() {
    let heap = Heap::new(Config::RESERVED).expect("heap");
    let classes = run_classes();
    assert!(classes.len() >= 20 && class_size(*classes.last().unwrap()) == RUN_BYTES);
    // One block of each class: all in the same 64 KiB chunk, each filled whole.
    let ps: Vec<_> = classes
        .iter()
        .map(|&c| heap.malloc(class_size(c)))
        .collect();
    let chunk = ps[0] as usize >> 16;
    for (i, (&p, &c)) in ps.iter().zip(&classes).enumerate() {
        assert_eq!(
            p as usize >> 16,
            chunk,
            "class {c} is not in the shared chunk"
        );
        assert_eq!(p as usize % 16, 0);
        // SAFETY: live block of the class's size.
        unsafe {
            assert_eq!(heap.usable_size(p), class_size(c));
            fill(p, class_size(c), i as u64);
        }
    }
    heap.check().expect("invariants");
    let st = heap.stats();
    for &c in &classes {
        assert_eq!(st.classes[c].run_blocks, 1, "class {c}");
        assert_eq!((st.classes[c].spans, st.classes[c].used_blocks), (0, 1));
    }
    for (i, (&p, &c)) in ps.iter().zip(&classes).enumerate() {
        // SAFETY: live, filled above; freed once.
        unsafe {
            verify(p, class_size(c), i as u64);
            heap.free(p);
        }
    }
    heap.check().expect("invariants when empty");
    // A freed run block is the class's next block.
    let again = heap.malloc(class_size(classes[3]));
    assert_eq!(again, ps[3]);
    // SAFETY: live block, freed once.
    unsafe { heap.free(again) };
}

#[test]
fn run_and_span_blocks_are_exclusive_under_random_use() {
    let heap = Heap::new(Config::RESERVED).expect("heap");
    let mut rng = Rng::new(7);
    let mut live: Vec<(*mut u8, usize, u64)> = Vec::new();
    for step in 0..20_000u64 {
        if !live.is_empty() && rng.below(100) < 45 {
            let (p, len, tag) = live.swap_remove(rng.below(live.len() as u64) as usize);
            // SAFETY: live block filled with `tag`; freed once.
            unsafe {
                verify(p, len, tag);
                heap.free(p);
            }
        } else {
            // Mostly sizes with runs, a block budget's worth of each many times over.
            let max = if rng.below(10) == 0 { 20_000 } else { 4096 };
            let len = 1 + rng.below(max) as usize;
            let p = heap.malloc(len);
            assert!(!p.is_null());
            // SAFETY: a fresh block of at least `len` bytes.
            unsafe { fill(p, len, step) };
            live.push((p, len, step));
        }
        if step % 2000 == 0 {
            heap.check().expect("invariants");
        }
    }
    let st = heap.stats();
    for c in run_classes() {
        let runs = st.classes[c].run_blocks as usize;
        assert!(runs > 0 && runs <= run_budget(c), "class {c}: {runs}");
    }
    assert!(run_classes().iter().any(|&c| st.classes[c].spans > 0));
    for (p, len, tag) in live {
        // SAFETY: as above.
        unsafe {
            verify(p, len, tag);
            heap.free(p);
        }
    }
    heap.check().expect("invariants when empty");
    assert_eq!(heap.stats().live_blocks, 0);
}

#[test]
fn aligned_blocks_from_runs() {
    let heap = Heap::new(Config::RESERVED).expect("heap");
    let mut ps = Vec::new();
    for align in [32, 64, 128, 256, 1024] {
        for size in [1, 24, 100, 500, 1000] {
            let p = heap.malloc_aligned(size, align);
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0, "size {size} align {align}");
            // SAFETY: a live block.
            let usable = unsafe { heap.usable_size(p) };
            assert!(usable >= size);
            // SAFETY: `usable` bytes are ours.
            unsafe { fill(p, usable, (size * align) as u64) };
            ps.push((p, usable, (size * align) as u64));
        }
    }
    heap.check().expect("invariants");
    assert!(heap.stats().classes.iter().any(|c| c.run_blocks > 0));
    for (p, usable, tag) in ps {
        // SAFETY: live blocks, freed once.
        unsafe {
            verify(p, usable, tag);
            heap.free(p);
        }
    }
    heap.check().expect("invariants when empty");
}

#[test]
fn realloc_into_and_out_of_runs() {
    let heap = Heap::new(Config::RESERVED).expect("heap");
    // A run block grows out of its run (to a span block, then a large one) and
    // shrinks back into one: contents follow.
    let mut p = heap.malloc(100);
    // SAFETY: live blocks throughout; each realloc's result replaces `p`.
    unsafe {
        fill(p, 100, 1);
        for (size, kept) in [
            (3000, 100),
            (5000, 100),
            (300_000, 100),
            (700, 100),
            (24, 24),
        ] {
            p = heap.realloc(p, size);
            assert!(!p.is_null());
            verify(p, kept, 1);
            if size >= 100 {
                fill(p.add(100), size - 100, 2);
            }
            heap.check().expect("invariants");
        }
        heap.free(p);
    }
    heap.check().expect("invariants when empty");
}

#[test]
fn a_span_reused_as_the_shared_chunk_loses_its_class_tag() {
    let heap = Heap::new(Config::RESERVED).expect("heap");
    // A 12 KiB block's span (one chunk, tagged for its class) goes back to the pool
    // empty; the first run is carved from the next chunk the pool hands out.
    let big = heap.malloc(12 * 1024);
    // SAFETY: live block, freed once.
    unsafe { heap.free(big) };
    let p = heap.malloc(16);
    assert_eq!(p as usize >> 16, big as usize >> 16, "the chunk was reused");
    heap.check().expect("the shared chunk has no class tag");
    // SAFETY: live block, freed once.
    unsafe { heap.free(p) };
    heap.check().expect("invariants when empty");
}

#[test]
fn a_dirty_chunk_reused_as_the_shared_chunk_maps_its_first_runs() {
    // Emptied spans stay resident: the shared chunk is made of one that held
    // 5000-byte blocks full of 0xff, over the run table too.
    let heap = Heap::new(Config {
        max_dirty: 1 << 20,
        decay_ms: 1 << 30,
        ..Config::RESERVED
    })
    .expect("heap");
    let blocks: Vec<_> = (0..4).map(|_| heap.malloc(5000)).collect();
    for &p in &blocks {
        // SAFETY: live blocks of 5000 bytes, freed once.
        unsafe {
            std::ptr::write_bytes(p, 0xff, 5000);
            heap.free(p);
        }
    }
    // The first runs start inside a granule that begins in the table: their
    // blocks are found from it (the checker looks every run block up).
    let small: Vec<_> = (0..40).map(|i| heap.malloc(16 + 16 * (i % 5))).collect();
    assert_eq!(
        small[0] as usize >> 16,
        blocks[0] as usize >> 16,
        "the chunk was reused"
    );
    heap.check().expect("runs of a reused dirty chunk");
    for &p in &small {
        // SAFETY: live blocks, freed once.
        unsafe { heap.free(p) };
    }
    heap.check().expect("invariants when empty");
}

#[test]
fn a_freed_run_block_is_lent_to_a_smaller_class() {
    let heap = Heap::new(Config::RESERVED).expect("heap");
    let (small, large) = (class_of(1000), class_of(1536));
    assert!(class_size(large) <= 2 * class_size(small));
    let p = heap.malloc(1536);
    // SAFETY: live block of 1536 bytes; freed once.
    unsafe {
        fill(p, 1536, 7);
        heap.free(p);
    }
    // A class more than twice smaller carves its own run.
    let tiny = heap.malloc(500);
    assert_ne!(tiny, p);
    // The 1024-byte class has no run block yet: it takes the free 1536-byte one.
    let q = heap.malloc(1000);
    assert_eq!(q, p);
    // SAFETY: live block.
    assert_eq!(unsafe { heap.usable_size(q) }, 1536);
    let st = heap.stats();
    assert_eq!(
        st.classes[small].run_blocks, 0,
        "no run carved for the borrower"
    );
    assert_eq!(
        (st.classes[large].used_blocks, st.classes[small].used_blocks),
        (1, 0)
    );
    heap.check().expect("invariants with a lent block");
    // SAFETY: live blocks, freed once.
    unsafe {
        fill(q, 1536, 8);
        heap.free(q);
        heap.free(tiny);
    }
    // Back with its lender: the lender's next block.
    let again = heap.malloc(1536);
    assert_eq!(again, p);
    // SAFETY: live block, freed once.
    unsafe { heap.free(again) };
    heap.check().expect("invariants");
    let st = heap.stats();
    assert_eq!((st.live_blocks, st.live_bytes), (0, 0));
}

#[test]
fn a_class_borrows_at_most_255_times() {
    let heap = Heap::new(Config::RESERVED).expect("heap");
    let p = heap.malloc(1536);
    // SAFETY: live block, freed once.
    unsafe { heap.free(p) };
    // A 1000-byte buffer allocated and freed in a loop borrows the free 1536-byte
    // block each time (without a cache, the free puts it straight back)...
    for _ in 0..255 {
        let q = heap.malloc(1000);
        assert_eq!(q, p);
        // SAFETY: live block, freed once.
        unsafe { heap.free(q) };
    }
    // ...255 times; then its class takes a block of its own.
    let q = heap.malloc(1000);
    assert_ne!(q, p);
    // SAFETY: live block.
    assert_eq!(unsafe { heap.usable_size(q) }, 1024);
    // SAFETY: live block, freed once.
    unsafe { heap.free(q) };
    heap.check().expect("invariants");
    assert_eq!(heap.stats().live_blocks, 0);
}

/// Threads allocating every run class at once, each freeing the others' blocks, so
/// blocks freed by one class are lent to smaller ones while their lenders refill
/// and flush: class locks nest (a borrower holds its own while it takes a
/// lender's), and no block may be handed out twice.
#[test]
fn run_blocks_lent_across_classes_under_threads() {
    let heap = std::sync::Arc::new(Heap::new(Config::RESERVED).expect("heap"));
    let classes = run_classes();
    let (tx, rx) = mpsc::channel::<Vec<(usize, usize, u64)>>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let mut threads = Vec::new();
    for t in 0..4u64 {
        let (heap, classes, tx, rx) = (heap.clone(), classes.clone(), tx.clone(), rx.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng::new(t + 1);
            let mut lent = 0;
            for round in 0..300u64 {
                let batch: Vec<_> = (0..24)
                    .map(|i| {
                        let c = classes[rng.below(classes.len() as u64) as usize];
                        let len = class_size(c) - (rng.below(16) as usize).min(class_size(c) - 1);
                        let p = heap.malloc(len);
                        assert!(!p.is_null());
                        // SAFETY: live block of at least `len` bytes.
                        if unsafe { heap.usable_size(p) } > class_size(class_of(len)) {
                            lent += 1;
                        }
                        let tag = t << 40 | round << 8 | i;
                        // SAFETY: a fresh block of `len` bytes.
                        unsafe { fill(p, len, tag) };
                        (p as usize, len, tag)
                    })
                    .collect();
                tx.send(batch).unwrap();
                // Free somebody's batch (often another thread's).
                let other = rx.lock().unwrap().try_recv();
                if let Ok(batch) = other {
                    for (p, len, tag) in batch {
                        // SAFETY: live blocks filled with `tag`, freed once.
                        unsafe {
                            verify(p as *const u8, len, tag);
                            heap.free(p as *mut u8);
                        }
                    }
                }
            }
            lent
        }));
    }
    drop(tx);
    let lent: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    for batch in rx.lock().unwrap().iter() {
        for (p, len, tag) in batch {
            // SAFETY: as above.
            unsafe {
                verify(p as *const u8, len, tag);
                heap.free(p as *mut u8);
            }
        }
    }
    heap.check()
        .expect("invariants after lending under threads");
    let st = heap.stats();
    assert_eq!((st.live_blocks, st.live_bytes), (0, 0));
    assert!(lent > 0, "no block was lent");
}

#[test]
fn run_blocks_freed_by_another_thread() {
    let _g = global_instance();
    let (tx, rx) = mpsc::channel::<Vec<(usize, usize)>>();
    let consumer = std::thread::spawn(move || {
        for batch in rx {
            for (p, len) in batch {
                // SAFETY: live blocks handed over by the producer, filled with
                // `len`; freed once, here.
                unsafe {
                    verify(p as *const u8, len, len as u64);
                    global::free(p as *mut u8);
                }
            }
        }
        global::flush_thread_cache();
    });
    let producer = std::thread::spawn(move || {
        for round in 0..50 {
            let batch: Vec<_> = run_classes()
                .into_iter()
                .map(|c| {
                    let len = class_size(c) - round % 16;
                    let p = global::malloc(len);
                    assert!(!p.is_null());
                    // SAFETY: a fresh block of `len` bytes.
                    unsafe { fill(p, len, len as u64) };
                    (p as usize, len)
                })
                .collect();
            tx.send(batch).unwrap();
        }
        global::flush_thread_cache();
    });
    producer.join().unwrap();
    consumer.join().unwrap();
    let st = global::stats();
    // The blocks came from runs: most classes have runs of their own. Not
    // every one: a class may have been served by borrowing a larger class's
    // free run block (lending), depending on what the tests that ran before
    // in this process left in the global instance (CI saw class 5 without).
    let classes = run_classes();
    let without: Vec<_> = classes
        .iter()
        .filter(|&&c| st.classes[c].run_blocks == 0)
        .collect();
    assert!(
        without.len() * 4 <= classes.len(),
        "classes without runs: {without:?} of {classes:?}"
    );
    assert_eq!(class_of(RUN_BYTES), *run_classes().last().unwrap());
    global::heap()
        .check()
        .expect("invariants after cross-thread frees");
}

/// Lending through the global instance's thread caches, in a fresh process (a
/// class borrows while it has no run of its own: the test process's instance is
/// past that): see [`lending_global_child`].
#[test]
fn lending_through_the_global_instance() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "runs::lending_global_child",
            "--include-ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env("ALLOCTRACE_TEST_LENDING_CHILD", "1")
        .output()
        .expect("run child");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("1 passed"),
        "child did not run the test: {text}"
    );
}

/// Waves of threads take blocks of every run class from the global instance in a
/// random order, grow the lent ones to their usable size with `realloc` (in
/// place), and free half of them on the next thread; their caches are flushed by
/// the thread-exit hook. One thread of each wave forks while the others lend: the
/// child takes and frees blocks of every run class (a lock the fork handlers left
/// held would hang it: it is alarmed after 20 s). In the end nothing is live,
/// every class's count is back to zero and the invariants hold.
#[test]
#[ignore = "run by lending_through_the_global_instance in a child process"]
fn lending_global_child() {
    if std::env::var_os("ALLOCTRACE_TEST_LENDING_CHILD").is_none() {
        return;
    }
    global::set_backend(allocator::Backend::Reserved);
    let classes = run_classes();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..4)
        .map(|_| mpsc::channel::<Vec<(usize, usize, u64)>>())
        .unzip();
    let rxs: Vec<_> = rxs
        .into_iter()
        .map(|r| std::sync::Arc::new(std::sync::Mutex::new(r)))
        .collect();
    let mut lent = 0;
    for wave in 0..4u64 {
        let threads: Vec<_> = (0..4usize)
            .map(|t| {
                let classes = classes.clone();
                let (tx, rx) = (txs[(t + 1) % 4].clone(), rxs[t].clone());
                std::thread::spawn(move || {
                    let mut rng = Rng::new((wave << 8 | t as u64) + 1);
                    let mut lent = 0;
                    for round in 0..100u64 {
                        let mut mine = Vec::new();
                        let mut theirs = Vec::new();
                        for i in 0..16u64 {
                            let c = classes[rng.below(classes.len() as u64) as usize];
                            let low = if c == 0 { 1 } else { class_size(c - 1) + 1 };
                            let mut len =
                                low + rng.below((class_size(c) - low + 1) as u64) as usize;
                            let mut p = global::malloc(len);
                            assert!(!p.is_null());
                            // SAFETY: a live block of the global instance.
                            let usable = unsafe { global::usable_size(p) };
                            assert!(usable >= len);
                            if usable > class_size(c) {
                                lent += 1;
                                // SAFETY: as above; `p` is not used if it moved.
                                let q = unsafe { global::realloc(p, usable) };
                                assert_eq!(q, p, "a lent block grows in place to its size");
                                (p, len) = (q, usable);
                            }
                            let tag = wave << 32 | (t as u64) << 24 | round << 8 | i;
                            // SAFETY: `len` bytes of a live block.
                            unsafe { fill(p, len, tag) };
                            if rng.below(2) == 0 {
                                mine.push((p as usize, len, tag));
                            } else {
                                theirs.push((p as usize, len, tag));
                            }
                        }
                        let _ = tx.send(theirs);
                        let got: Vec<_> = rx.lock().unwrap().try_iter().collect();
                        for (p, len, tag) in mine.into_iter().chain(got.into_iter().flatten()) {
                            // SAFETY: live blocks filled with `tag`, freed once.
                            unsafe {
                                verify(p as *const u8, len, tag);
                                global::free(p as *mut u8);
                            }
                        }
                        if t == 0 && round == 50 {
                            fork_and_allocate();
                        }
                    }
                    lent
                })
            })
            .collect();
        lent += threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum::<usize>();
    }
    drop(txs);
    for rx in rxs {
        for (p, len, tag) in rx.lock().unwrap().try_iter().flatten() {
            // SAFETY: as above.
            unsafe {
                verify(p as *const u8, len, tag);
                global::free(p as *mut u8);
            }
        }
    }
    let st = global::stats();
    global::heap().check().expect("invariants");
    assert_eq!((st.live_blocks, st.live_bytes), (0, 0), "{st:?}");
    assert!(st.classes.iter().all(|c| c.used_blocks == 0), "{st:?}");
    println!("lent {lent}");
    assert!(lent > 0, "no block was lent");
}

/// Forks; the child takes, grows and frees blocks of every run class through the
/// global instance and exits, alarmed after 20 s. Asserts it exited with 0.
fn fork_and_allocate() {
    // SAFETY: the child only uses the allocator and async-signal-safe calls.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // SAFETY: as above.
        unsafe { libc::alarm(20) };
        for round in 0..3 {
            let ps: Vec<_> = (0..200)
                .map(|i| {
                    let p = global::malloc(1 + (i * 15 + round) % RUN_BYTES);
                    // SAFETY: a live block, grown to twice its size (or null).
                    let q = unsafe { global::realloc(p, 2 + 2 * ((i * 15 + round) % RUN_BYTES)) };
                    if p.is_null() || q.is_null() {
                        // SAFETY: leaving the child.
                        unsafe { libc::_exit(2) };
                    }
                    q
                })
                .collect();
            for p in ps {
                // SAFETY: live blocks, freed once.
                unsafe { global::free(p) };
            }
        }
        // SAFETY: leaving the child without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waiting for our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "fork child: status {status:#x}"
    );
}
