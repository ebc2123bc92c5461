//! Drives the block encoder and decoder with adversarial event sequences
//! (up to three threads; allocations from any depth of their class's LIFO
//! of frees, past the class stacks' 16 too; double frees and allocations,
//! unknown addresses, address 0, tiny and huge sizes, most event kinds,
//! blocks cut at random) and prints, per seed, a hash of the encoded blocks
//! and of every observation of decoding damaged copies of them (flipped or
//! overwritten bytes, cuts). Two builds' outputs are diffed to show that a
//! change of the address model encodes and decodes the same (reviewer
//! h10-rev: 985f7fd against 1cbd730, 1500 seeds of 20,000 events and 24 of
//! 150,000, identical). Exits non-zero if a whole block does not decode to
//! its input or a damaged one panics.
//!
//! `cargo run --release -p traces --example addr_model_fuzz -- FIRST COUNT [EVENTS]`

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use traces::codec::{class, AddrModel, BlockDecoder, BlockEncoder};
use traces::synthetic::Rng;
use traces::{AllocFn, Event, EventBatch, FreeFn, Record};

struct Gen {
    rng: Rng,
    live: Vec<(u64, u64)>,
    /// Per class, a LIFO of freed addresses (top last).
    freed: Vec<Vec<u64>>,
    recent: Vec<u64>,
    next: u64,
    last_freed: u64,
    /// Bias: how deep in a class list allocations reach.
    reach: u64,
    /// Few classes (all in one or two) or many.
    classes: u64,
    /// Grow the live set past the live table's cap now and then.
    grow: bool,
}

impl Gen {
    fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let reach = [1, 4, 16, 17, 24, 40][(rng.next_u64() % 6) as usize];
        let classes = [1, 2, 8, 66][(rng.next_u64() % 4) as usize];
        let grow = rng.next_u64() % 5 == 0;
        Gen {
            rng,
            live: Vec::new(),
            freed: vec![Vec::new(); 66],
            recent: Vec::new(),
            next: 0x5555_0000_0000 + seed * 0x1000_0000,
            last_freed: 0,
            reach,
            classes,
            grow,
        }
    }

    fn r(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n
    }

    fn size(&mut self) -> u64 {
        match self.r(40) {
            0 => 0,
            1 => u64::MAX - self.r(3),
            2 => 1 << (20 + self.r(30)),
            3 => 1017 + self.r(5000),
            _ => {
                // A size in one of `classes` classes.
                let c = self.r(self.classes);
                let c = (c * 7 + 1) % 66;
                (c * 16).saturating_sub(23).max(1) + self.r(16)
            }
        }
    }

    fn stack(&mut self) -> u32 {
        match self.r(30) {
            0 => 0,
            1 => u32::MAX,
            2 => u32::MAX - 1,
            3 => 70_000 + self.r(1000) as u32,
            _ => 1 + self.r(12) as u32,
        }
    }

    fn fresh(&mut self) -> u64 {
        match self.r(20) {
            0 => self.next.wrapping_add(self.r(16)),
            1 => self.next.wrapping_sub(self.r(1 << 40) * 16),
            2 => self.rng.next_u64(),
            3 => u64::MAX - self.r(64),
            _ => {
                self.next = self.next.wrapping_add(16 * (1 + self.r(200)));
                self.next
            }
        }
    }

    fn alloc_addr(&mut self, size: u64) -> u64 {
        let c = class(size);
        let a = match self.r(100) {
            0..=59 => {
                let n = self.freed[c].len() as u64;
                if n == 0 {
                    self.fresh()
                } else {
                    // Depth: mostly small, up to `reach`.
                    let d = if self.r(3) == 0 {
                        self.r(self.reach)
                    } else {
                        self.r(3)
                    };
                    if d < n {
                        let i = (n - 1 - d) as usize;
                        self.freed[c].remove(i)
                    } else {
                        self.fresh()
                    }
                }
            }
            60..=66 => self.last_freed,
            67..=70 => {
                if self.live.is_empty() {
                    0
                } else {
                    let i = self.r(self.live.len() as u64) as usize;
                    self.live[i].0
                }
            }
            71..=73 => 0,
            74..=79 => {
                // A recent free of any class (still in its list).
                if self.recent.is_empty() {
                    self.fresh()
                } else {
                    let i = self.r(self.recent.len() as u64) as usize;
                    self.recent[i]
                }
            }
            _ => self.fresh(),
        };
        if a != 0 {
            self.live.push((a, size));
        }
        a
    }

    fn free_addr(&mut self) -> u64 {
        let a = match self.r(100) {
            0..=74 if !self.live.is_empty() => {
                let i = self.r(self.live.len() as u64) as usize;
                let (a, s) = self.live.swap_remove(i);
                self.freed[class(s)].push(a);
                a
            }
            75..=84 if !self.live.is_empty() => {
                let (a, s) = self.live.pop().unwrap_or_default();
                self.freed[class(s)].push(a);
                a
            }
            85..=89 => {
                if self.recent.is_empty() {
                    0
                } else {
                    let i = self.r(self.recent.len() as u64) as usize;
                    self.recent[i]
                }
            }
            90..=93 => self.rng.next_u64() & !15,
            94..=95 => 0,
            _ => self.fresh(),
        };
        self.last_freed = a;
        if a != 0 {
            self.recent.push(a);
            if self.recent.len() > 64 {
                self.recent.remove(0);
            }
        }
        for l in &mut self.freed {
            if l.len() > 64 {
                l.remove(0);
            }
        }
        a
    }

    fn event(&mut self) -> Event {
        let grow = self.grow && self.live.len() < 40_000 && self.r(4) != 0;
        let r = if grow { 0 } else { self.r(100) };
        match r {
            0..=44 => {
                let size = self.size();
                let addr = self.alloc_addr(size);
                Event::Alloc {
                    func: AllocFn::Malloc,
                    addr,
                    size,
                    align: 0,
                    stack: self.stack(),
                }
            }
            45..=89 => Event::Free {
                func: FreeFn::Free,
                addr: self.free_addr(),
                size: 0,
                align: 0,
                stack: self.stack(),
            },
            90..=92 => {
                let func = AllocFn::from_u8([1, 4, 5, 9, 13, 16][self.r(6) as usize]).unwrap();
                let size = self.size();
                let addr = self.alloc_addr(size);
                Event::Alloc {
                    func,
                    addr,
                    size,
                    align: if func.is_aligned() {
                        1 << self.r(20)
                    } else {
                        0
                    },
                    stack: self.stack(),
                }
            }
            93..=95 => {
                let func = FreeFn::from_u8(self.r(13) as u8).unwrap();
                let sized = matches!(
                    func,
                    FreeFn::DeleteSized
                        | FreeFn::DeleteArraySized
                        | FreeFn::DeleteSizedAligned
                        | FreeFn::DeleteArraySizedAligned
                );
                Event::Free {
                    func,
                    addr: self.free_addr(),
                    size: if sized { self.size() } else { 0 },
                    align: if func.is_aligned() {
                        1 << self.r(20)
                    } else {
                        0
                    },
                    stack: self.stack(),
                }
            }
            96..=97 => {
                let old_addr = self.free_addr();
                let size = self.size();
                let new_addr = self.alloc_addr(size);
                Event::Realloc {
                    func: [AllocFn::Realloc, AllocFn::Reallocarray][self.r(2) as usize],
                    old_addr,
                    new_addr,
                    size,
                    stack: self.stack(),
                }
            }
            98 => Event::Mmap {
                addr: self.fresh(),
                len: self.size(),
                stack: self.stack(),
                prot: 3,
                flags: 0x22,
                fd: -1,
            },
            _ => Event::Marker {
                value: self.rng.next_u64(),
                label: "mk".into(),
            },
        }
    }
}

fn records(seed: u64, n: usize) -> Vec<Record> {
    let mut rng = Rng::new(seed ^ 0xabcdef);
    let threads = 1 + rng.next_u64() % 3;
    let mut gens: Vec<Gen> = (0..threads).map(|t| Gen::new(seed * 16 + t)).collect();
    let mut time = rng.next_u64() % 1000;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        time += match rng.next_u64() % 10 {
            0 => 0,
            1 => rng.next_u64() % 100_000,
            _ => rng.next_u64() % 100,
        };
        let t = (rng.next_u64() % threads) as usize;
        let event = gens[t].event();
        out.push(Record {
            time,
            thread: t as u32 + 1,
            event,
        });
    }
    out
}

/// Decodes `block` with a copy of `model` in random steps, returning every
/// observation (or the panic).
fn observe(block: &[u8], model: &mut AddrModel, seed: u64) -> Vec<String> {
    let mut seen = Vec::new();
    let mut dec = match BlockDecoder::new(block.to_vec()) {
        Ok(d) => d,
        Err(e) => {
            seen.push(format!("bad header {e}"));
            return seen;
        }
    };
    let mut rng = Rng::new(seed);
    let mut batch = EventBatch::new();
    for _ in 0..100_000 {
        batch.clear();
        let max = [1, 5, 17, 300, 4096, usize::MAX][(rng.next_u64() % 6) as usize];
        let limit = match (rng.next_u64() % 3, dec.peek_time()) {
            (0, Ok(Some(t))) => t as u128 + (rng.next_u64() % 500) as u128,
            _ => u128::MAX,
        };
        let r = dec.decode_into(model, &mut batch, limit, max);
        seen.push(format!("{r:?} {:?} {}", dec.peek_time(), dec.remaining()));
        seen.extend((0..batch.len()).map(|i| format!("{:?}", batch.record(i))));
        match r {
            Ok(0) if dec.remaining() == 0 => break,
            Err(_) => break,
            _ => {}
        }
    }
    seen
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let first = args.first().copied().unwrap_or(0);
    let count = args.get(1).copied().unwrap_or(10);
    let n = args.get(2).copied().unwrap_or(20_000) as usize;
    let mut failed = false;
    for seed in first..first + count {
        let recs = records(seed, n);
        let mut rng = Rng::new(seed ^ 0x1234);
        let mut encs: Vec<BlockEncoder> = (1..=3).map(BlockEncoder::new).collect();
        // Per thread, its blocks and the records of each.
        let mut blocks: Vec<Vec<(Vec<u8>, Vec<Record>)>> = vec![Vec::new(); 3];
        let mut pending: Vec<Vec<Record>> = vec![Vec::new(); 3];
        let cut = [50, 1000, 5000, 1 << 30][(rng.next_u64() % 4) as usize];
        for r in &recs {
            let t = r.thread as usize - 1;
            encs[t].push(r.time, &r.event);
            pending[t].push(r.clone());
            if rng.next_u64() % cut == 0 {
                encs[t].whole_sizes(rng.next_u64() % 2 == 0);
                let b = encs[t].finish();
                blocks[t].push((b, std::mem::take(&mut pending[t])));
            }
        }
        for t in 0..3 {
            if !pending[t].is_empty() {
                let b = encs[t].finish();
                blocks[t].push((b, std::mem::take(&mut pending[t])));
            }
        }
        let mut enc_hash = DefaultHasher::new();
        let mut dmg_hash = DefaultHasher::new();
        let mut nblocks = 0;
        let mut panics = 0;
        for (t, tb) in blocks.iter().enumerate() {
            let mut model = AddrModel::default();
            for (bi, (block, want)) in tb.iter().enumerate() {
                nblocks += 1;
                block.hash(&mut enc_hash);
                // Damaged copies first, from the model before the block.
                for d in 0..6u64 {
                    let mut damaged = block.clone();
                    if damaged.is_empty() {
                        continue;
                    }
                    let at = (rng.next_u64() % damaged.len() as u64) as usize;
                    match d % 3 {
                        0 => damaged[at] ^= 1 << (rng.next_u64() % 8),
                        1 => {
                            damaged[at] = [0, 1, 2, 3, 17, 18, 0x20, 0x80, 0xff]
                                [(rng.next_u64() % 9) as usize]
                        }
                        _ => damaged.truncate(at),
                    }
                    let mut m = model.clone();
                    let s = rng.next_u64();
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        observe(&damaged, &mut m, s)
                    })) {
                        Ok(seen) => seen.hash(&mut dmg_hash),
                        Err(_) => {
                            panics += 1;
                            eprintln!(
                                "seed {seed} thread {t} block {bi} damage {d} at {at}: PANIC"
                            );
                        }
                    }
                    // The model after a damaged block: a following good
                    // block decoded with it reads the same in both builds.
                    if let Some((next, _)) = tb.get(bi + 1) {
                        observe(next, &mut m, s).hash(&mut dmg_hash);
                    }
                }
                let seen = observe(block, &mut model, rng.next_u64());
                let mut got = Vec::new();
                for line in &seen {
                    if line.starts_with("Record") {
                        got.push(line.clone());
                    } else if line.starts_with("Err") {
                        eprintln!("seed {seed} thread {t} block {bi}: {line}");
                        failed = true;
                    }
                }
                let want: Vec<String> = want.iter().map(|r| format!("{r:?}")).collect();
                if got != want {
                    failed = true;
                    let i = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
                    eprintln!(
                        "seed {seed} thread {t} block {bi}: MISMATCH at {i} of {}/{}:\n got  {:?}\n want {:?}",
                        got.len(),
                        want.len(),
                        got.get(i),
                        want.get(i)
                    );
                }
            }
        }
        if panics > 0 {
            failed = true;
        }
        println!(
            "seed {seed} events {n} blocks {nblocks} enc {:016x} dmg {:016x}",
            enc_hash.finish(),
            dmg_hash.finish()
        );
    }
    if failed {
        std::process::exit(1);
    }
}
