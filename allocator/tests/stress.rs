//! Randomized stress tests, one per policy (backend, decay, large threshold), plus
//! multi-threaded runs with cross-thread frees on a shared heap and on the global
//! instance with its thread caches. Every block carries a fill pattern checked
//! before it is freed or resized, so two owners of one block would be caught; the
//! invariant checker runs throughout.

use std::sync::mpsc;

use allocator::{global, Backend, Config, Heap};

use crate::util::{fill, global_instance, verify, Rng};

/// The calls a stress run makes: a heap used directly, or the global instance.
trait Api: Sync {
    fn alloc(&self, size: usize, align: usize) -> *mut u8;
    /// # Safety
    /// `p` must be live and ours.
    unsafe fn free(&self, p: *mut u8);
    /// # Safety
    /// `p` must be live and ours.
    unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8;
    /// # Safety
    /// `p` must be live and ours.
    unsafe fn usable(&self, p: *mut u8) -> usize;
    fn check(&self);
}

impl Api for Heap {
    fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        self.malloc_aligned(size, align)
    }
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: forwarded.
        unsafe { Heap::free(self, p) }
    }
    unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { Heap::realloc(self, p, size) }
    }
    unsafe fn usable(&self, p: *mut u8) -> usize {
        // SAFETY: forwarded.
        unsafe { self.usable_size(p) }
    }
    fn check(&self) {
        Heap::check(self).expect("heap invariants");
    }
}

struct Global;

impl Api for Global {
    fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        global::malloc_aligned(size, align)
    }
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: forwarded.
        unsafe { global::free(p) }
    }
    unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { global::realloc(p, size) }
    }
    unsafe fn usable(&self, p: *mut u8) -> usize {
        // SAFETY: forwarded.
        unsafe { global::usable_size(p) }
    }
    fn check(&self) {
        global::heap().check().expect("global heap invariants");
    }
}

/// A live block and what it must contain.
#[derive(Clone, Copy)]
struct Block {
    p: *mut u8,
    size: usize,
    tag: u64,
}

// SAFETY: blocks move between test threads together with their ownership.
unsafe impl Send for Block {}

/// Fills (or checks) the first and last 4 KiB of a block: enough to catch overlap
/// with any neighbour without making big blocks slow.
unsafe fn fill_block(b: Block) {
    let head = b.size.min(4096);
    // SAFETY: the block is ours and `size` bytes long.
    unsafe {
        fill(b.p, head, b.tag);
        let tail = b.size - head;
        fill(
            b.p.add(b.size - tail.min(4096)),
            tail.min(4096),
            b.tag ^ 0x55,
        );
    }
}

unsafe fn verify_block(b: Block) {
    let head = b.size.min(4096);
    // SAFETY: the block is ours and `size` bytes long.
    unsafe {
        verify(b.p, head, b.tag);
        let tail = b.size - head;
        verify(
            b.p.add(b.size - tail.min(4096)),
            tail.min(4096),
            b.tag ^ 0x55,
        );
    }
}

fn random_size(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=69 => rng.below(257) as usize,
        70..=89 => rng.below(8 * 1024) as usize,
        90..=97 => rng.below(140 * 1024) as usize,
        _ => rng.below(600 * 1024) as usize,
    }
}

fn alloc_block(api: &dyn Api, rng: &mut Rng, tag: u64) -> Block {
    let size = random_size(rng);
    let align = if rng.below(5) == 0 {
        1usize << rng.below(17)
    } else {
        16
    };
    let p = api.alloc(size, align);
    assert!(!p.is_null(), "allocation of {size} (align {align}) failed");
    assert_eq!(p as usize % align, 0, "alignment {align} not honoured");
    // SAFETY: `p` is live.
    assert!(unsafe { api.usable(p) } >= size);
    let b = Block { p, size, tag };
    // SAFETY: fresh block of `size` bytes.
    unsafe { fill_block(b) };
    b
}

/// One randomized run: `ops` operations over at most `max_live` blocks. Blocks
/// handed to `outbox` are freed by another thread; blocks from `inbox` are freed here.
fn run(
    api: &dyn Api,
    seed: u64,
    ops: usize,
    max_live: usize,
    outbox: Option<&mpsc::Sender<Block>>,
    inbox: Option<&mpsc::Receiver<Block>>,
) {
    let mut rng = Rng::new(seed);
    let mut live: Vec<Block> = Vec::new();
    for op in 0..ops {
        let tag = seed << 32 | op as u64;
        match rng.below(100) {
            0..=44 if live.len() < max_live => live.push(alloc_block(api, &mut rng, tag)),
            0..=79 if !live.is_empty() => {
                let b = live.swap_remove(rng.below(live.len() as u64) as usize);
                // SAFETY: `b` is live and ours.
                unsafe { verify_block(b) };
                match outbox {
                    Some(tx) if rng.below(10) == 0 => tx.send(b).expect("peer alive"),
                    // SAFETY: as above.
                    _ => unsafe { api.free(b.p) },
                }
            }
            _ if !live.is_empty() => {
                let i = rng.below(live.len() as u64) as usize;
                let b = live[i];
                let size = random_size(&mut rng);
                // SAFETY: `b` is live and ours.
                let q = unsafe { api.realloc(b.p, size) };
                assert!(!q.is_null(), "realloc to {size} failed");
                assert_eq!(q as usize % 16, 0);
                let kept = b.size.min(size).min(4096);
                // SAFETY: realloc keeps the first min(old, new) bytes.
                unsafe { verify(q, kept, b.tag) };
                let nb = Block { p: q, size, tag };
                // SAFETY: `q` is live with `size` bytes.
                unsafe { fill_block(nb) };
                live[i] = nb;
            }
            _ => {}
        }
        if let Some(rx) = inbox {
            for b in rx.try_iter() {
                // SAFETY: ownership was handed to us.
                unsafe {
                    verify_block(b);
                    api.free(b.p);
                }
            }
        }
        if op % 4000 == 0 {
            api.check();
        }
    }
    for b in live {
        // SAFETY: live and ours.
        unsafe {
            verify_block(b);
            api.free(b.p);
        }
    }
}

/// Runs one policy single-threaded and checks the heap ends empty and consistent.
fn stress_policy(config: Config, seed: u64) {
    let heap = Heap::new(config).expect("heap");
    run(&heap, seed, 30_000, 1500, None, None);
    heap.check().expect("invariants after the run");
    let st = heap.stats();
    assert_eq!(st.live_blocks, 0, "every block was freed");
    assert_eq!(st.live_bytes, 0);
    assert_eq!(
        st.large_mapped_bytes, 0,
        "large blocks are unmapped on free"
    );
    assert_eq!(st.allocs, st.frees);
    assert!(
        st.classes
            .iter()
            .all(|c| c.used_blocks == 0 && c.spans == 0),
        "empty spans go back to the pool"
    );
    assert!(st.brk_calls > 0 && st.mmap_calls > 0 && st.munmap_calls > 0);
    let setup = if config.backend == Backend::Reserved {
        2
    } else {
        1
    };
    assert_eq!(
        st.mmap_calls - setup,
        st.munmap_calls,
        "one munmap per large block (arena and map excluded)"
    );
    heap.purge();
    let st = heap.stats();
    assert_eq!(st.idle_bytes, 0, "purge returns every idle span");
    assert!(st.purged_bytes > 0 && st.madvise_calls > 0);
    heap.check().expect("invariants after purge");
}

#[test]
fn stress_reserved_default() {
    stress_policy(Config::RESERVED, 1);
}

#[test]
fn stress_reserved_immediate_decay() {
    stress_policy(
        Config {
            decay_ms: 0,
            ..Config::RESERVED
        },
        2,
    );
}

#[test]
fn stress_reserved_low_large_threshold() {
    stress_policy(
        Config {
            large_threshold: 1024,
            ..Config::RESERVED
        },
        3,
    );
}

/// The real-brk backend shares the program break with the test harness's glibc
/// malloc, so it runs in a child process with a single test thread.
#[test]
fn stress_brk_backend() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "stress::brk_backend_child",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env("ALLOCTRACE_TEST_BRK_CHILD", "1")
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

#[test]
#[ignore = "run by stress_brk_backend in a child process"]
fn brk_backend_child() {
    if std::env::var_os("ALLOCTRACE_TEST_BRK_CHILD").is_none() {
        return;
    }
    stress_policy(
        Config {
            backend: Backend::Brk,
            ..Config::DEFAULT
        },
        4,
    );
}

/// Four threads on one heap, a tenth of their frees done by a neighbour.
#[test]
fn stress_shared_heap_cross_thread() {
    let heap: &'static Heap = Box::leak(Box::new(Heap::new(Config::RESERVED).expect("heap")));
    cross_thread(heap, 4, 8000);
    heap.check().expect("invariants");
    assert_eq!(heap.stats().live_blocks, 0);
}

/// Runs `threads` stress threads, each handing a tenth of its frees to the next one.
/// Threads are joined with `pthread_join`, so their exit hooks have run on return.
fn cross_thread(api: &'static dyn Api, threads: usize, ops: usize) {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads).map(|_| mpsc::channel::<Block>()).unzip();
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(i, rx)| {
            let tx = txs[(i + 1) % threads].clone();
            std::thread::spawn(move || {
                run(api, 100 + i as u64, ops, 600, Some(&tx), Some(&rx));
                drop(tx);
                // Free what the neighbour still sends until it hangs up.
                for b in rx {
                    // SAFETY: ownership was handed to us.
                    unsafe {
                        verify_block(b);
                        api.free(b.p);
                    }
                }
            })
        })
        .collect();
    drop(txs);
    for h in handles {
        h.join().expect("stress thread");
    }
}

/// The global instance with thread caches: cross-thread frees, then thread exit must
/// return every cached block (the key destructor flushes the cache).
#[test]
fn stress_global_threads_and_exit() {
    let _g = global_instance();
    global::flush_thread_cache();
    let before = global::stats();
    cross_thread(&Global, 4, 6000);
    for round in 0..3 {
        let hs: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    run(&Global, 1000 + round * 10 + t, 2000, 300, None, None)
                })
            })
            .collect();
        for h in hs {
            h.join().expect("stress thread");
        }
    }
    global::flush_thread_cache();
    Global.check();
    let after = global::stats();
    let used_before: u64 = before.classes.iter().map(|c| c.used_blocks).sum();
    let used_after: u64 = after.classes.iter().map(|c| c.used_blocks).sum();
    assert_eq!(
        used_after, used_before,
        "exited threads left blocks in their caches"
    );
    assert_eq!(after.live_blocks, before.live_blocks, "live count balances");
    assert!(after.allocs > before.allocs + 20_000);
}
