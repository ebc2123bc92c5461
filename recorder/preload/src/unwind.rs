//! Backtraces: framehop DWARF/eh_frame unwinding of the current thread's own
//! stack, from unwind sections read in mapped memory, with two caches:
//!
//! - framehop's rule cache (per thread);
//! - a memo of whole unwinds: unwinding is a pure function of the starting
//!   registers, the module set and the stack words it reads, so a memo entry
//!   keyed by `(ip, sp, bp)` stores every `(address, value)` the unwind read
//!   and its stack id; when all those words are unchanged the result is the
//!   same, exactly, and costs a few dozen loads instead of an unwind. (That
//!   needs framehop's rule cache to hold rules from the modules' data alone:
//!   the vendored copy does not cache a fallback chosen because of a frame's
//!   registers or stack words, see `vendor/README.md`.)
//!
//! Most words an unwind reads are saved registers (on x86-64 only `rbp`
//! matters to the unwinder) that no later frame uses: optimised code keeps
//! data in `rbp`. When a check walk in which every word other than a return
//! address reads as garbage (and so does the starting `rbp`) gives the same
//! frames and ends the same way, the result depends on the return addresses
//! alone and the entry keeps only those (about half the words). A garbage
//! `rbp` that a rule uses sends the walk outside the stack, so it ends with
//! an error naming a garbage address, which no real walk ends with.

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{
    ExplicitModuleSectionInfo, FrameAddress, MustNotAllocateDuringUnwind, Unwinder as _,
};

use alloctrace_abi as abi;

use crate::modules;
use crate::process::Process;
use crate::stacks;
use crate::thread::ThreadState;

/// Highest depth cap accepted.
pub const MAX_DEPTH: usize = 256;
const MEMO_ENTRIES: usize = 128;
const MEMO_WAYS: usize = 4;
const MEMO_SETS: usize = MEMO_ENTRIES / MEMO_WAYS;
const MAX_READS: usize = 128;
/// Frames a walk may step through: the depth cap plus skipped frames.
const MAX_STEPS: usize = MAX_DEPTH + 32;
/// What a check walk's pruned words and starting `rbp` read as (`value ^
/// GARBAGE`): far outside any stack, so a rule that uses such an `rbp` ends
/// the walk with an error naming an address no real walk reads.
const GARBAGE: u64 = 0x5a3c_9600_0000_0008;

/// How a walk ended: by the depth cap, at the end of the stack, or with an
/// error (compared between a walk and its check walk).
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Cap,
    Done,
    Failed(framehop::Error),
}

/// What a walk does with the stack words it reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Records them (and the return addresses met) for a memo entry.
    Record,
    /// Reads them as they are.
    Check,
    /// Reads words not marked `keep` (and not read by the recorded walk:
    /// as they are) as garbage.
    Prune,
}

type Fh = UnwinderX86_64<&'static [u8], MustNotAllocateDuringUnwind>;

/// Four of a memo entry's stack words: offsets from `sp` and the values
/// read there (16-byte aligned, so a check compares two at a time).
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Group {
    offs: [u32; 4],
    vals: [u64; 4],
}

/// A memo entry; `repr(C)` and the alignment keep the fields a probe reads
/// (key, id, count) in the entry's first cache line, next to its first
/// words.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct MemoEntry {
    sp: u64,
    /// Module generation, stack epoch and start address the entry belongs
    /// to (see [`tag`]).
    tag: u64,
    bp: u64,
    id: u32,
    /// Bytes of `groups` in use (whole groups, at most all of them: set by
    /// `unwind` alone); the last group is filled up with copies of the
    /// entry's first word.
    used: u16,
    uses_bp: bool,
    /// Pruning was tried for this key and stack and the walk depended on
    /// other words than return addresses: not tried again (it depends on
    /// the frames' unwind rules, the same each time).
    unprunable: bool,
    /// The hash of the frames (checked by [`verify`]).
    hash: u64,
    /// The stack words read, in the order read (the words of the frames
    /// nearest `sp` first).
    groups: [Group; MAX_READS / 4],
}

impl MemoEntry {
    /// Whether every stack word the entry's unwind read still holds its value.
    ///
    /// Branch-free over the whole entry: a probe whose key matches almost
    /// always hits (sqlite3: 1,012,624 hits of 1,017,943 words checks), so
    /// an early exit would only cost a test per group. Two words per SSE2
    /// operation: 3 instructions a word instead of 5.5.
    #[inline(always)]
    fn unchanged(&self, sp: u64) -> bool {
        use core::arch::x86_64::{
            __m128i, _mm_castpd_si128, _mm_castsi128_pd, _mm_cmpeq_epi8, _mm_load_si128,
            _mm_loadh_pd, _mm_loadl_epi64, _mm_movemask_epi8, _mm_or_si128, _mm_setzero_si128,
            _mm_xor_si128,
        };
        // Entries are made with at least one group (see `unwind`), at
        // most all of them; the first group is checked whatever `used`.
        let at = |o: u32| (sp + o as u64) as *const u64;
        // SAFETY: SSE2 is part of x86-64. Every offset was read from this
        // thread's stack within [sp, top) by the unwind that made the entry;
        // same sp, so still mapped (8-byte loads, any alignment). `vals` is
        // 16-byte aligned (`Group`'s layout). `g` stays within the first
        // `max(used, 48)` bytes of `groups`, all of them at most (`used` is
        // only set by `unwind`, to whole groups of at most MAX_READS words;
        // 0 in an entry never made).
        unsafe {
            let mut acc = _mm_setzero_si128();
            let mut g = self.groups.as_ptr();
            let end = g.cast::<u8>().add(self.used as usize).cast::<Group>();
            loop {
                let lo = _mm_castsi128_pd(_mm_loadl_epi64(at((*g).offs[0]).cast::<__m128i>()));
                let a = _mm_castpd_si128(_mm_loadh_pd(lo, at((*g).offs[1]).cast::<f64>()));
                let lo = _mm_castsi128_pd(_mm_loadl_epi64(at((*g).offs[2]).cast::<__m128i>()));
                let b = _mm_castpd_si128(_mm_loadh_pd(lo, at((*g).offs[3]).cast::<f64>()));
                let va = _mm_load_si128((*g).vals.as_ptr().cast::<__m128i>());
                let vb = _mm_load_si128((*g).vals.as_ptr().add(2).cast::<__m128i>());
                acc = _mm_or_si128(
                    acc,
                    _mm_or_si128(_mm_xor_si128(a, va), _mm_xor_si128(b, vb)),
                );
                g = g.add(1);
                if g >= end {
                    break;
                }
            }
            _mm_movemask_epi8(_mm_cmpeq_epi8(acc, _mm_setzero_si128())) == 0xffff
        }
    }
}

/// A memo entry's tag: module generation `gen`, stack epoch `epoch` and the
/// unwind's start address `ip` (the place in the hook where [`capture`] was
/// inlined: entries of different hooks with the same `sp` differ).
#[inline(always)]
fn tag(gen: u64, epoch: u64, ip: u64) -> u64 {
    gen ^ epoch << 40 ^ ip
}

/// The memo, as a thread's hot state holds it.
type Memo = [[MemoEntry; MEMO_WAYS]; MEMO_SETS];

/// What a memo hit reads, kept in the thread state: no `Unwinder`
/// indirection, and the stack epoch's part of the tag precomputed.
#[derive(Clone, Copy)]
pub struct Hot {
    /// The unwinder's memo; null until the unwinder exists, and while every
    /// hit is checked ([`Process::check_memo`]): [`capture`] then goes to
    /// [`miss`].
    memo: *const Memo,
    /// `tag(0, stack_epoch, 0)`.
    tag_base: u64,
}

impl Hot {
    /// No memo.
    pub const NONE: Hot = Hot {
        memo: core::ptr::null(),
        tag_base: 0,
    };
}

/// Derives `ts.hot` from its unwinder (after one is made, or its stack
/// epoch changed).
pub fn refresh_hot(ts: &mut ThreadState, p: &Process) {
    ts.hot = match ts.unwinder.as_deref() {
        Some(u) if !p.check_memo && p.max_depth > 0 => Hot {
            memo: u.memo.as_ptr(),
            tag_base: tag(0, u.stack_epoch, 0),
        },
        _ => Hot::NONE,
    };
}

/// One thread's unwinder and caches.
pub struct Unwinder {
    fh: Fh,
    cache: CacheX86_64<MustNotAllocateDuringUnwind>,
    gen: u64,
    stack_epoch: u64,
    own: (u64, u64),
    stack_top: u64,
    /// Never replaced: [`Hot::memo`] points into it. A raw pointer (freed
    /// by `Drop`), not a `Box`: every access, the hook's inline probe
    /// included, derives from this one pointer, so a write through the
    /// unwinder never invalidates the hot state's copy.
    memo: core::ptr::NonNull<Memo>,
    frames: [u64; MAX_DEPTH],
    frames2: [u64; MAX_DEPTH],
    reads: [(u64, u64); MAX_READS],
    /// Which recorded reads a pruned entry keeps (return addresses).
    keep: [bool; MAX_READS],
    /// Return addresses met by the recorded walk (also the skipped frames').
    ras: [u64; MAX_STEPS + 1],
    nras: usize,
    /// Reads made by the recorded walk.
    nrec: usize,
    victim: usize,
}

impl Drop for Unwinder {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe {
            std::alloc::dealloc(
                self.memo.as_ptr().cast(),
                core::alloc::Layout::new::<Memo>(),
            )
        };
    }
}

impl Unwinder {
    /// The ways of memo set `set`.
    fn ways(&self, set: usize) -> &[MemoEntry; MEMO_WAYS] {
        // SAFETY: the memo lives as long as `self`; writes to it go through
        // `&mut self` (in `unwind`), so none happens while this is borrowed.
        unsafe { &(*self.memo.as_ptr())[set] }
    }

    /// A new unwinder (`None` if its memo could not be allocated).
    fn new() -> Option<Box<Unwinder>> {
        // On the heap: the memo is 200 KB, more than a small thread stack
        // may hold. A fixed-size array: no bounds check per probe. A mapping of
        // its own, zero-filled (see `alloc`): pages a thread never probes stay untouched,
        // so a thousand threads that record a few stacks each do not cost
        // 200 MB.
        let layout = core::alloc::Layout::new::<Memo>();
        // SAFETY: the layout is not zero-sized.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<Memo>();
        // `raw` is a zeroed block of `Memo`'s layout from the global
        // allocator, which `Drop` frees with the same layout. All-zero bytes
        // are a valid `MemoEntry` (integers, a `false` bool, arrays of
        // integers), and an empty one: `sp` 0, which no call has.
        let memo = core::ptr::NonNull::new(raw)?;
        Some(Box::new(Unwinder {
            fh: Fh::new(),
            cache: CacheX86_64::new_in(),
            gen: u64::MAX,
            stack_epoch: 1,
            own: (0, 0),
            stack_top: stack_top(),
            memo,
            frames: [0; MAX_DEPTH],
            frames2: [0; MAX_DEPTH],
            reads: [(0, 0); MAX_READS],
            keep: [false; MAX_READS],
            ras: [0; MAX_STEPS + 1],
            nras: 0,
            nrec: 0,
            victim: 0,
        }))
    }

    /// Invalidates memoised stack ids (after fork the stack table restarts).
    pub fn forget_stacks(&mut self) {
        self.stack_epoch += 1;
        self.stack_top = stack_top();
    }

    fn rebuild(&mut self) {
        let Some((gen, mods)) = modules::snapshot() else {
            return;
        };
        let mut fh = Fh::new();
        let me = miss as *const () as usize as u64;
        for m in &mods {
            if me >= m.start && me < m.end {
                self.own = (m.start, m.end);
            }
            let bias = m.base;
            // SAFETY: the ranges lie in segments mapped by the loader while the
            // module stays loaded (unloads are noticed at the next rescan).
            let slice = |r: Option<(u64, u64)>| {
                r.map(|(s, e)| {
                    // SAFETY: mapped module segment, see above.
                    unsafe { core::slice::from_raw_parts(s as *const u8, (e - s) as usize) }
                })
            };
            let svma = |r: Option<(u64, u64)>| r.map(|(s, e)| s - bias..e - bias);
            let info = ExplicitModuleSectionInfo {
                base_svma: 0,
                text_svma: svma(m.text),
                text: slice(m.text),
                eh_frame_svma: svma(m.eh_frame),
                eh_frame: slice(m.eh_frame),
                eh_frame_hdr_svma: svma(m.eh_frame_hdr),
                eh_frame_hdr: slice(m.eh_frame_hdr),
                ..Default::default()
            };
            let name = String::from_utf8_lossy(&m.path).into_owned();
            fh.add_module(framehop::Module::new(name, m.start..m.end, bias, info));
        }
        self.fh = fh;
        self.cache = CacheX86_64::new_in();
        self.gen = gen;
    }
}

/// This thread's stack top (highest address + 1): noted when the thread
/// started (threads created through our `pthread_create`), else asked for.
fn stack_top() -> u64 {
    match crate::guard::stack_top() {
        0 => pthread_stack_top(),
        top => top,
    }
}

/// This thread's stack top from `__libc_stack_end` (main thread) or
/// `pthread_getattr_np`, which takes the thread's lock: not to be called
/// from a hook that `pthread_getattr_np` may have called.
pub fn pthread_stack_top() -> u64 {
    if crate::sys::gettid() == crate::sys::getpid() {
        extern "C" {
            static __libc_stack_end: *const core::ffi::c_void;
        }
        // SAFETY: glibc's variable, set at startup.
        return unsafe { __libc_stack_end } as u64;
    }
    // `pthread_getattr_np` allocates with glibc's malloc: with signals
    // blocked, no handler's `malloc` can re-enter glibc's allocator meanwhile
    // (once per thread, two system calls).
    // SAFETY: sets are initialised before use; the old mask is restored.
    let old = unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    };
    // SAFETY: attr is initialised by pthread_getattr_np before use and destroyed after.
    let top = unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            0
        } else {
            let mut addr: *mut libc::c_void = core::ptr::null_mut();
            let mut size: usize = 0;
            libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
            libc::pthread_attr_destroy(&mut attr);
            addr as u64 + size as u64
        }
    };
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut()) };
    top
}

/// The memo set of stack pointer `sp`.
#[inline(always)]
fn memo_set(sp: u64) -> usize {
    const _: () = assert!(MEMO_SETS == 32);
    (sp.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 59) as usize
}

/// The stack id of the current call stack (0 if none), sending its frames
/// first when it is new.
///
/// Inlined into each hook: the registers are the hook's own, read inside
/// its body, where its frame is complete (the unwind information describes
/// every instruction), and the memo check runs in the hook's frame (a
/// separate function cost a call and six register saves and restores per
/// event, and its return address was one more word to check). A miss
/// unwinds out of line from those registers: the walk reads only the hook's
/// frame (its return address and saved registers, written by its prologue)
/// and its callers', which the call to [`miss`] leaves as they are. Only the
/// first entry whose key matches is checked inline, so each hook holds one
/// small copy of the check: with every way's check inlined (4 copies per
/// hook), sqlite3's simulated I1 misses rose from 17.7 M to 27.3 M.
#[inline(always)]
pub fn capture(ts: &mut ThreadState) -> u32 {
    let (ip, sp, bp): (u64, u64, u64);
    // SAFETY: reads registers only.
    unsafe {
        core::arch::asm!("lea {ip}, [rip]", "mov {sp}, rsp", "mov {bp}, rbp",
            ip = out(reg) ip, sp = out(reg) sp, bp = out(reg) bp,
            options(nomem, nostack, preserves_flags));
    }
    let hot = ts.hot;
    if !hot.memo.is_null() {
        let gen = modules::GENERATION.load(core::sync::atomic::Ordering::Acquire);
        // Optimised code often keeps data in rbp, so entries ignore it unless
        // the unwind depended on it (checked once, when the entry is made).
        // An empty entry has sp 0, which no call has. Only the first entry
        // whose key matches is checked here (one copy of the check loop per
        // hook: the code stays small); others, rarely candidates, by `miss`.
        let tag = gen ^ hot.tag_base ^ ip;
        // SAFETY: `hot.memo` points into this thread's unwinder's memo,
        // which lives as long as the thread state and is never replaced
        // (see `refresh_hot`); only this thread (holding the guard) uses it.
        let set = unsafe { &(*hot.memo)[memo_set(sp)] };
        let first = set
            .iter()
            .find(|e| e.sp == sp && e.tag == tag && (!e.uses_bp || e.bp == bp));
        if let Some(e) = first {
            if e.unchanged(sp) {
                return e.id;
            }
        }
    } else if ts.no_backtraces {
        return 0;
    }
    miss(ts, ip, sp, bp)
}

/// No entry whose key matches holds, or one does that is not the first
/// whose key matches (or memo hits are checked): every entry of the set is
/// checked, then the stack is unwound. (Its process is the thread
/// state's: the hook keeps no register for it.)
#[cold]
#[inline(never)]
fn miss(ts: &mut ThreadState, ip: u64, sp: u64, bp: u64) -> u32 {
    let p = ts.process();
    if p.max_depth == 0 {
        return 0;
    }
    let gen = modules::GENERATION.load(core::sync::atomic::Ordering::Acquire);
    if let Some(u) = ts.unwinder.as_deref() {
        let tag = tag(gen, u.stack_epoch, ip);
        let set = memo_set(sp);
        for e in u.ways(set) {
            if e.sp == sp && e.tag == tag && (!e.uses_bp || e.bp == bp) && e.unchanged(sp) {
                if p.check_memo {
                    let (id, hash) = (e.id, e.hash);
                    return verify(ts, p, ip, sp, bp, id, hash);
                }
                return e.id;
            }
        }
    }
    unwind(ts, p, ip, sp, bp)
}

/// A memo hit with [`Process::check_memo`] on: unwinds anyway (from the
/// same registers, as [`unwind`] does) and aborts the program when the stack
/// found differs from the memo entry's (`hash`, that of the frames of stack
/// `id`).
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn verify(ts: &mut ThreadState, p: &Process, ip: u64, sp: u64, bp: u64, id: u32, hash: u64) -> u32 {
    let Some(u) = ts.unwinder.as_mut() else {
        return id;
    };
    let max = p.max_depth.min(MAX_DEPTH);
    let (n, _, _, _) = u.walk(ip, sp, bp, max, Mode::Check);
    if n == 0 || stacks::hash(&u.frames2[..n]) != hash {
        let msg = b"alloctrace: an unwind memo hit differs from a full unwind\n";
        // SAFETY: write(2) of a static buffer, then abort: both async-signal-safe.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::abort();
        }
    }
    id
}

/// A memo miss: unwinds from the registers [`capture`] read in the hook
/// and makes an entry.
#[cold]
fn unwind(ts: &mut ThreadState, p: &Process, ip: u64, sp: u64, bp: u64) -> u32 {
    if ts.unwinder.is_none() {
        ts.unwinder = Unwinder::new();
        refresh_hot(ts, p);
    }
    let epoch = ts.unwinder.as_ref().map_or(0, |u| u.stack_epoch);
    let set = memo_set(sp);
    // Miss: make sure the module list is current, then unwind.
    modules::refresh(ts);
    let Some(u) = ts.unwinder.as_mut() else {
        return 0;
    };
    if u.gen != modules::GENERATION.load(core::sync::atomic::Ordering::Acquire) {
        u.rebuild();
    }
    if sp >= u.stack_top {
        return 0;
    }
    let max = p.max_depth.min(MAX_DEPTH);
    let (n, nreads, overflow, end) = u.walk(ip, sp, bp, max, Mode::Record);
    if n == 0 {
        return 0;
    }
    let h = stacks::hash(&u.frames[..n]);
    let (id, known) = stacks::intern(h, || p.next_stack_id());
    if !overflow {
        let tag_now = tag(u.gen, epoch, ip);
        // Pruning costs up to three more walks. It pays only where calls
        // recur with the same key (`sp` and hook) and the same frames, and
        // other data in their frames: an entry for this key and this stack
        // is already in the set, and did not hold. A key met for the first
        // time, or with other frames than its entries' (most misses of a
        // deep, varied program such as cc1plus: 2.1 check walks per miss,
        // 12.5 G of its 31 G instructions, when any entry of the key
        // counted), gets an entry that keeps every word it read, and `rbp`.
        // Nor when such an entry says pruning failed for it before (cc1plus:
        // 1.04 M check walks for 1.27 M misses, none of them made an entry
        // that hit).
        let mut recurring = false;
        let mut unprunable = false;
        for e in u.ways(set) {
            if e.sp == sp && e.tag == tag_now && e.hash == h {
                recurring = true;
                unprunable |= e.unprunable;
            }
        }
        let (uses_bp, pruned) = if recurring && !unprunable {
            u.dependencies(n, end, ip, sp, bp, max, nreads)
        } else {
            (true, false)
        };
        let unprunable = recurring && !pruned;
        // A way in turn, not that entry's: the call sites of one function
        // share a key (`sp` is the same at each) and need ways of their own
        // (replacing by key made churn's two sites evict each other).
        u.victim = u.victim.wrapping_add(1);
        let way = u.victim % MEMO_WAYS;
        // SAFETY: the memo lives as long as `u`, which is borrowed mutably
        // here; no other reference into it is alive (the hot state's copy is
        // a raw pointer, read only by this thread's hooks, not during this).
        let e = unsafe { &mut (*u.memo.as_ptr())[set][way] };
        e.sp = sp;
        e.bp = bp;
        e.uses_bp = uses_bp;
        e.unprunable = unprunable;
        e.tag = tag_now;
        e.id = id;
        e.hash = h;
        let mut m = 0;
        for (k, &(a, v)) in u.reads[..nreads].iter().enumerate() {
            if pruned && !u.keep[k] {
                continue;
            }
            // `walk` reads only within [sp, top) and flags offsets >= 4 GiB
            // as overflow, and at most MAX_READS words.
            let g = &mut e.groups[m / 4];
            g.offs[m % 4] = (a - sp) as u32;
            g.vals[m % 4] = v;
            m += 1;
        }
        // The last group's unused places check the first word again.
        let (o, v) = (e.groups[0].offs[0], e.groups[0].vals[0]);
        while m % 4 != 0 {
            let g = &mut e.groups[m / 4];
            g.offs[m % 4] = o;
            g.vals[m % 4] = v;
            m += 1;
        }
        const _: () = assert!(MAX_READS / 4 * core::mem::size_of::<Group>() <= u16::MAX as usize);
        e.used = (m / 4 * core::mem::size_of::<Group>()) as u16;
        if m == 0 {
            // No word to check (a walk that found frames read their return
            // addresses, so this does not happen): no entry, as `unchanged`
            // checks at least one group.
            e.sp = 0;
        }
    }
    if !known {
        let mut buf = [0u64; MAX_DEPTH];
        buf[..n].copy_from_slice(&u.frames[..n]);
        ts.write(abi::KIND_STACK, 0, id, &buf[..n], &[], false);
    }
    id
}

impl Unwinder {
    /// Marks in `keep` the first `nreads` recorded reads whose value is a
    /// return address met by the recorded walk: sorts those addresses once,
    /// then one binary search per read (a linear scan per read cost up to
    /// 128 x 96 comparisons on deep stacks).
    fn mark_return_addresses(&mut self, nreads: usize) {
        let ras = &mut self.ras[..self.nras];
        ras.sort_unstable();
        for k in 0..nreads {
            self.keep[k] = ras.binary_search(&self.reads[k].1).is_ok();
        }
    }

    /// Which words the recorded walk's result (`n` frames, ended by `end`)
    /// depends on: `(uses_bp, pruned)`. Return addresses always; `rbp` (at
    /// the start and as restored from the stack) only when a check walk with
    /// garbage in its place differs; the other words only when a walk
    /// without them (`pruned` false) differs.
    #[allow(clippy::too_many_arguments)]
    fn dependencies(
        &mut self,
        n: usize,
        end: End,
        ip: u64,
        sp: u64,
        bp: u64,
        max: usize,
        nreads: usize,
    ) -> (bool, bool) {
        self.mark_return_addresses(nreads);
        if self.same_as(n, end, ip, sp, bp ^ GARBAGE, max, Mode::Prune) {
            (false, true)
        } else if self.same_as(n, end, ip, sp, bp, max, Mode::Prune) {
            (true, true)
        } else {
            let bp_free = self.same_as(n, end, ip, sp, bp ^ GARBAGE, max, Mode::Check);
            (!bp_free, false)
        }
    }

    /// Whether a check walk (`mode`, from `bp`) gives the recorded walk's
    /// `n` frames and ends as it did (`end`).
    #[allow(clippy::too_many_arguments)]
    fn same_as(
        &mut self,
        n: usize,
        end: End,
        ip: u64,
        sp: u64,
        bp: u64,
        max: usize,
        mode: Mode,
    ) -> bool {
        let (n2, _, _, end2) = self.walk(ip, sp, bp, max, mode);
        n2 == n && end2 == end && self.frames2[..n] == self.frames[..n]
    }

    /// Walks the stack from `(ip, sp, bp)` into `frames` (recording) or
    /// `frames2` (checking); returns (frames, stack words read, whether reads
    /// overflowed, how the walk ended).
    fn walk(
        &mut self,
        ip: u64,
        sp: u64,
        bp: u64,
        max: usize,
        mode: Mode,
    ) -> (usize, usize, bool, End) {
        let top = self.stack_top;
        let own = self.own;
        let Unwinder {
            fh,
            cache,
            reads,
            keep,
            nrec,
            ras,
            nras,
            frames,
            frames2,
            ..
        } = self;
        let record = mode == Mode::Record;
        let out = if record { frames } else { frames2 };
        let recorded = if record { 0 } else { *nrec };
        let mut nreads = 0usize;
        let mut overflow = false;
        let mut cursor = 0usize;
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            if addr < sp || addr.saturating_add(8) > top || addr % 8 != 0 {
                return Err(());
            }
            // SAFETY: `addr` is an aligned word inside this thread's stack [sp, top).
            let v = unsafe { core::ptr::read_volatile(addr as *const u64) };
            match mode {
                Mode::Check => {}
                Mode::Prune => {
                    // A word the recorded walk read and the entry would not
                    // keep. A check walk reads mostly the recorded words in
                    // the recorded order: the next one is tried first.
                    let mut seen = false;
                    let next = cursor.min(recorded);
                    let order = (next..recorded).chain(0..next);
                    for k in order {
                        if reads[k].0 == addr {
                            cursor = k + 1;
                            if keep[k] {
                                return Ok(v);
                            }
                            seen = true;
                            // Every recorded read of `addr` has the same
                            // keep mark (it depends on the value alone).
                            break;
                        }
                    }
                    if seen {
                        return Ok(v ^ GARBAGE);
                    }
                }
                Mode::Record => {
                    if nreads < MAX_READS && addr - sp <= u32::MAX as u64 {
                        reads[nreads] = (addr, v);
                        nreads += 1;
                    } else {
                        overflow = true;
                    }
                }
            }
            Ok(v)
        };
        let regs = UnwindRegsX86_64::new(ip, sp, bp);
        let mut it = fh.iter_frames(ip, regs, cache, &mut read_stack);
        let mut n = 0;
        let mut steps = 0;
        let mut met = 0;
        let end = loop {
            let f = match it.next() {
                Ok(Some(f)) => f,
                Ok(None) => break End::Done,
                Err(e) => break End::Failed(e),
            };
            steps += 1;
            if steps > MAX_STEPS.min(max + 32) {
                break End::Cap;
            }
            if let FrameAddress::ReturnAddress(r) = f {
                if record && met < ras.len() {
                    ras[met] = r.get();
                    met += 1;
                }
            }
            let a = f.address_for_lookup();
            if n == 0 && a >= own.0 && a < own.1 {
                continue; // the recorder's own frames
            }
            if n >= max {
                break End::Cap;
            }
            out[n] = match f {
                FrameAddress::InstructionPointer(ip) => ip,
                FrameAddress::ReturnAddress(r) => r.get() - 1,
            };
            n += 1;
        };
        if record {
            *nras = met;
            *nrec = nreads;
        }
        (n, nreads, overflow, end)
    }
}
