//! Backtraces: framehop DWARF/eh_frame unwinding of the current thread's own
//! stack, from unwind sections read in mapped memory, with two caches:
//!
//! - framehop's rule cache (per thread);
//! - a memo of whole unwinds: unwinding is a pure function of the starting
//!   registers, the module set and the stack words it reads, so a memo entry
//!   keyed by `(ip, sp, bp)` stores every `(address, value)` the unwind read
//!   and its stack id; when all those words are unchanged the result is the
//!   same, exactly, and costs a few dozen loads instead of an unwind.

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
const MAX_READS: usize = 128;

type Fh = UnwinderX86_64<&'static [u8], MustNotAllocateDuringUnwind>;

#[derive(Clone, Copy)]
struct MemoEntry {
    ip: u64,
    sp: u64,
    bp: u64,
    gen: u64,
    id: u32,
    nreads: u16,
    uses_bp: bool,
    /// Stack words read, as offsets from `sp` and values (two arrays, so
    /// the check is a tight loop of independent loads).
    offs: [u32; MAX_READS],
    vals: [u64; MAX_READS],
}

impl MemoEntry {
    /// Whether every stack word the entry's unwind read still holds its value.
    #[inline(always)]
    fn unchanged(&self, sp: u64) -> bool {
        let n = (self.nreads as usize).min(MAX_READS);
        let (offs, vals) = (&self.offs[..n], &self.vals[..n]);
        // SAFETY: every offset was read from this thread's stack within
        // [sp, top) by the unwind that made the entry; same sp, so still mapped.
        let word = |i: usize| unsafe {
            core::ptr::read_volatile((sp + offs[i] as u64) as *const u64) ^ vals[i]
        };
        // Four words at a time, stopping at the first group that differs
        // (entries with the same registers but another stack usually differ
        // in their first words).
        let mut i = 0;
        while i + 4 <= n {
            if word(i) | word(i + 1) | word(i + 2) | word(i + 3) != 0 {
                return false;
            }
            i += 4;
        }
        let mut rest = 0;
        while i < n {
            rest |= word(i);
            i += 1;
        }
        rest == 0
    }
}

/// One thread's unwinder and caches.
pub struct Unwinder {
    fh: Fh,
    cache: CacheX86_64<MustNotAllocateDuringUnwind>,
    gen: u64,
    stack_epoch: u64,
    own: (u64, u64),
    stack_top: u64,
    memo: Box<[MemoEntry]>,
    frames: [u64; MAX_DEPTH],
    frames2: [u64; MAX_DEPTH],
    reads: [(u64, u64); MAX_READS],
    victim: usize,
}

impl Unwinder {
    fn new() -> Box<Unwinder> {
        Box::new(Unwinder {
            fh: Fh::new(),
            cache: CacheX86_64::new_in(),
            gen: u64::MAX,
            stack_epoch: 1,
            own: (0, 0),
            stack_top: stack_top(),
            memo: vec![
                MemoEntry {
                    ip: 0,
                    sp: 0,
                    bp: 0,
                    gen: 0,
                    id: 0,
                    nreads: 0,
                    uses_bp: true,
                    offs: [0; MAX_READS],
                    vals: [0; MAX_READS],
                };
                MEMO_ENTRIES
            ]
            .into_boxed_slice(),
            frames: [0; MAX_DEPTH],
            frames2: [0; MAX_DEPTH],
            reads: [(0, 0); MAX_READS],
            victim: 0,
        })
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
        let me = capture_and_unwind as *const () as usize as u64;
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

/// This thread's stack top (highest address + 1).
fn stack_top() -> u64 {
    if crate::sys::gettid() == crate::sys::getpid() {
        extern "C" {
            static __libc_stack_end: *const core::ffi::c_void;
        }
        // SAFETY: glibc's variable, set at startup.
        return unsafe { __libc_stack_end } as u64;
    }
    // SAFETY: attr is initialised by pthread_getattr_np before use and destroyed after.
    unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return 0;
        }
        let mut addr: *mut libc::c_void = core::ptr::null_mut();
        let mut size: usize = 0;
        libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        addr as u64 + size as u64
    }
}

/// The stack id of the current call stack (0 if none), sending its frames
/// first when it is new.
#[inline(never)]
pub fn capture(ts: &mut ThreadState, p: &Process) -> u32 {
    if p.max_depth == 0 {
        return 0;
    }
    capture_and_unwind(ts, p)
}

#[inline(never)]
fn capture_and_unwind(ts: &mut ThreadState, p: &Process) -> u32 {
    let (ip, sp, bp): (u64, u64, u64);
    // SAFETY: reads registers only.
    unsafe {
        core::arch::asm!("lea {ip}, [rip]", "mov {sp}, rsp", "mov {bp}, rbp",
            ip = out(reg) ip, sp = out(reg) sp, bp = out(reg) bp,
            options(nomem, nostack, preserves_flags));
    }
    if ts.unwinder.is_none() {
        ts.unwinder = Some(Unwinder::new());
    }
    let epoch = ts.unwinder.as_ref().map_or(0, |u| u.stack_epoch);
    let gen = modules::GENERATION.load(core::sync::atomic::Ordering::Acquire);
    // Optimised code often keeps data in rbp, so entries ignore it unless
    // the unwind depended on it (checked once, when the entry is made).
    let set = (sp.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % (MEMO_ENTRIES / MEMO_WAYS)
        * MEMO_WAYS;
    if let Some(u) = ts.unwinder.as_ref() {
        for e in &u.memo[set..set + MEMO_WAYS] {
            if e.id != 0
                && e.ip == ip
                && e.sp == sp
                && (!e.uses_bp || e.bp == bp)
                && e.gen == (gen ^ epoch << 40)
            {
                let same = e.unchanged(sp);
                if same {
                    return e.id;
                }
            }
        }
    }
    // Miss: make sure the module list is current, then unwind.
    modules::refresh(ts, p);
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
    let (n, nreads, overflow) = u.walk(ip, sp, bp, max, false);
    if n == 0 {
        return 0;
    }
    // Would the same walk give the same frames without rbp?
    let (n2, _, _) = u.walk(ip, sp, 0, max, true);
    let uses_bp = n2 != n || u.frames2[..n] != u.frames[..n];
    let h = stacks::hash(&u.frames[..n]);
    let (id, known) = stacks::intern(h, || p.next_stack_id());
    if !overflow {
        u.victim = u.victim.wrapping_add(1);
        let e = &mut u.memo[set + u.victim % MEMO_WAYS];
        e.ip = ip;
        e.sp = sp;
        e.bp = bp;
        e.uses_bp = uses_bp;
        e.gen = u.gen ^ epoch << 40;
        e.id = id;
        e.nreads = nreads as u16;
        for (k, &(a, v)) in u.reads[..nreads].iter().enumerate() {
            // `walk` reads only within [sp, top) and flags offsets >= 4 GiB as overflow.
            e.offs[k] = (a - sp) as u32;
            e.vals[k] = v;
        }
    }
    if !known {
        let mut buf = [0u64; MAX_DEPTH];
        buf[..n].copy_from_slice(&u.frames[..n]);
        ts.write(p, abi::KIND_STACK, 0, id, &buf[..n], &[], false);
    }
    id
}

impl Unwinder {
    /// Walks the stack from `(ip, sp, bp)` into `frames` (or `frames2` for the
    /// check walk); returns (frames, stack words read, whether reads overflowed).
    fn walk(
        &mut self,
        ip: u64,
        sp: u64,
        bp: u64,
        max: usize,
        second: bool,
    ) -> (usize, usize, bool) {
        let top = self.stack_top;
        let own = self.own;
        let Unwinder {
            fh,
            cache,
            reads,
            frames,
            frames2,
            ..
        } = self;
        let out = if second { frames2 } else { frames };
        let mut nreads = 0usize;
        let mut overflow = false;
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            if addr < sp || addr.saturating_add(8) > top || addr % 8 != 0 {
                return Err(());
            }
            // SAFETY: `addr` is an aligned word inside this thread's stack [sp, top).
            let v = unsafe { core::ptr::read_volatile(addr as *const u64) };
            if second {
                return Ok(v);
            }
            if nreads < MAX_READS && addr - sp <= u32::MAX as u64 {
                reads[nreads] = (addr, v);
                nreads += 1;
            } else {
                overflow = true;
            }
            Ok(v)
        };
        let regs = UnwindRegsX86_64::new(ip, sp, bp);
        let mut it = fh.iter_frames(ip, regs, cache, &mut read_stack);
        let mut n = 0;
        let mut steps = 0;
        while let Ok(Some(f)) = it.next() {
            steps += 1;
            if steps > max + 32 {
                break;
            }
            let a = f.address_for_lookup();
            if n == 0 && a >= own.0 && a < own.1 {
                continue; // the recorder's own frames
            }
            if n >= max {
                break;
            }
            out[n] = match f {
                FrameAddress::InstructionPointer(ip) => ip,
                FrameAddress::ReturnAddress(r) => r.get() - 1,
            };
            n += 1;
        }
        (n, nreads, overflow)
    }
}
