//! Deterministic synthetic workloads, for benchmarks, tests and examples.
//!
//! [`Churn`] models a malloc/free churn program: a working set of live blocks,
//! each step freeing a random live block and allocating a new one, sizes drawn
//! uniformly from a range, addresses handed out by a toy size-class allocator
//! (LIFO free lists per 16-byte chunk class, like glibc's tcache), stacks
//! drawn from a fixed pool of call sites with a Zipf-like skew (a few hot sites
//! make most allocations, as in real programs), and times advancing by a few
//! tens of nanoseconds per event. Nine in ten blocks are freed at the free
//! site paired with their allocation site, the rest at a random one.

use crate::event::{AllocFn, Event, FreeFn, Record, StackId};

/// A small, fast, deterministic PRNG (xorshift64*), so traces are reproducible
/// without a dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeds the generator (0 is replaced by a fixed non-zero seed).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// glibc's bin for a request: chunk size (`size + 8`, at least 32) in 16-byte units.
fn chunk_class(size: u64) -> usize {
    ((size + 8).max(32) as usize).div_ceil(16)
}

/// Parameters of a [`Churn`] stream.
#[derive(Clone, Debug)]
pub struct ChurnConfig {
    /// Total events to produce (allocations and frees).
    pub events: u64,
    /// Live blocks in the working set.
    pub working_set: usize,
    /// Smallest and largest request size.
    pub sizes: (u64, u64),
    /// Distinct allocation sites and distinct free sites.
    pub sites: usize,
    /// Fewest and most frames per stack.
    pub depth: (usize, usize),
    /// Seed.
    pub seed: u64,
}

impl Default for ChurnConfig {
    /// The configuration behind the bytes-per-event figure in BENCHMARKS.md.
    fn default() -> Self {
        ChurnConfig {
            events: 10_000_000,
            working_set: 4096,
            sizes: (8, 512),
            sites: 64,
            depth: (3, 20),
            seed: 1,
        }
    }
}

/// An iterator of churn records; [`Churn::stacks`] lists the stacks it uses.
pub struct Churn {
    cfg: ChurnConfig,
    rng: Rng,
    emitted: u64,
    time: u64,
    live: Vec<(u64, u64, StackId)>,
    free_lists: Vec<Vec<u64>>,
    bump: u64,
    pending_alloc: bool,
    stacks: Vec<Vec<u64>>,
}

impl Churn {
    /// A stream with configuration `cfg`.
    pub fn new(cfg: ChurnConfig) -> Self {
        let mut rng = Rng::new(cfg.seed);
        // Stacks share outer frames (main, a dispatcher) like real programs.
        let stacks = (0..cfg.sites * 2)
            .map(|_| {
                let depth = rng.range(cfg.depth.0 as u64, cfg.depth.1 as u64) as usize;
                let mut frames: Vec<u64> = (0..depth)
                    .map(|_| 0x40_0000 + rng.range(0, 0xf_ffff))
                    .collect();
                let n = frames.len();
                frames[n - 1] = 0x40_1000; // main
                frames
            })
            .collect();
        Churn {
            rng,
            emitted: 0,
            time: 1_000,
            live: Vec::with_capacity(cfg.working_set),
            free_lists: vec![Vec::new(); chunk_class(cfg.sizes.1) + 1],
            bump: 0x5555_0000_0000,
            pending_alloc: true,
            stacks,
            cfg,
        }
    }

    /// Stack `id` (1-based) frames, innermost first, for `Writer::define_stack`.
    pub fn stacks(&self) -> impl Iterator<Item = (StackId, &[u64])> {
        self.stacks
            .iter()
            .enumerate()
            .map(|(i, f)| (i as StackId + 1, &f[..]))
    }

    /// A site number in `1..=sites`, site `k` drawn with weight about `1/k`.
    fn site(&mut self) -> u64 {
        let n = self.cfg.sites as f64;
        // Inverse of the continuous 1/k distribution's CDF: k = n^u.
        let u = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (n.powf(u) as u64).clamp(1, self.cfg.sites as u64)
    }

    fn alloc(&mut self) -> Event {
        let stack = self.site() as StackId;
        let size = self.rng.range(self.cfg.sizes.0, self.cfg.sizes.1);
        let class = chunk_class(size);
        let addr = match self.free_lists[class].pop() {
            Some(a) => a,
            None => {
                let a = self.bump;
                self.bump += class as u64 * 16;
                a
            }
        };
        self.live.push((addr, size, stack));
        Event::Alloc {
            func: AllocFn::Malloc,
            addr,
            size,
            align: 0,
            stack,
        }
    }

    fn free(&mut self) -> Event {
        let i = self.rng.range(0, self.live.len() as u64 - 1) as usize;
        let (addr, size, alloc_stack) = self.live.swap_remove(i);
        self.free_lists[chunk_class(size)].push(addr);
        // Blocks from one allocation site are mostly freed at one site.
        let site = if self.rng.next_u64() % 10 != 0 {
            alloc_stack as u64
        } else {
            self.site()
        };
        let stack = (self.cfg.sites as u64 + site) as StackId;
        Event::Free {
            func: FreeFn::Free,
            addr,
            size: 0,
            align: 0,
            stack,
        }
    }
}

impl Iterator for Churn {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        if self.emitted >= self.cfg.events {
            return None;
        }
        self.emitted += 1;
        // Mostly 20-40 ns apart, now and then a longer pause.
        self.time += if self.rng.next_u64() % 64 == 0 {
            self.rng.range(100, 5000)
        } else {
            self.rng.range(20, 40)
        };
        let event = if self.live.len() < self.cfg.working_set || self.pending_alloc {
            self.pending_alloc = false;
            self.alloc()
        } else {
            self.pending_alloc = true;
            self.free()
        };
        Some(Record {
            time: self.time,
            thread: 1,
            event,
        })
    }
}
