//! The loaded modules (`dl_iterate_phdr`): their address ranges, build ids
//! and unwind sections, for the unwinder and for `ModuleLoad` records.
//!
//! The list is global behind a try-lock: a thread that finds it taken simply
//! keeps its current view (it never waits, so it cannot deadlock with the
//! loader's lock).

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use alloctrace_abi as abi;

use crate::thread::ThreadState;

/// One loaded module.
#[derive(Clone)]
pub struct ModInfo {
    /// Path (the executable's path for the main program).
    pub path: Vec<u8>,
    /// Load bias.
    pub base: u64,
    /// Lowest mapped address.
    pub start: u64,
    /// One past the highest mapped address.
    pub end: u64,
    /// GNU build id.
    pub build_id: Vec<u8>,
    /// `.eh_frame_hdr` runtime address range.
    pub eh_frame_hdr: Option<(u64, u64)>,
    /// `.eh_frame` runtime address range (to the end of its segment).
    pub eh_frame: Option<(u64, u64)>,
    /// Executable segment runtime address range.
    pub text: Option<(u64, u64)>,
}

struct List {
    mods: Vec<ModInfo>,
    emitted: Vec<u64>,
}

static LOCK: AtomicBool = AtomicBool::new(false);
static mut LIST: List = List {
    mods: Vec::new(),
    emitted: Vec::new(),
};
/// Bumped whenever the list changes.
pub static GENERATION: AtomicU64 = AtomicU64::new(0);
static ADDS_SUBS: AtomicU64 = AtomicU64::new(u64::MAX);
static NEED_EMIT: AtomicBool = AtomicBool::new(true);

fn with_list<R>(f: impl FnOnce(&mut List) -> R) -> Option<R> {
    if LOCK
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return None;
    }
    // SAFETY: LOCK gives exclusive access to LIST.
    let r = f(unsafe { &mut *core::ptr::addr_of_mut!(LIST) });
    LOCK.store(false, Ordering::Release);
    Some(r)
}

/// After fork: the child's new trace needs every module again.
pub fn forget_emitted() {
    with_list(|l| l.emitted.clear());
    NEED_EMIT.store(true, Ordering::Release);
}

/// `dl_iterate_phdr`'s (adds, subs) counters, cheaply (stops after one module).
fn adds_subs() -> u64 {
    unsafe extern "C" fn cb(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> i32 {
        // SAFETY: `info` is valid during the callback; `data` is our u64.
        unsafe { *data.cast::<u64>() = ((*info).dlpi_adds << 32) ^ (*info).dlpi_subs };
        1
    }
    let mut v: u64 = 0;
    // SAFETY: callback matches the expected signature; `v` outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(cb), (&mut v as *mut u64).cast()) };
    v
}

/// Rescans if the loader's counters changed; emits new loads and unloads into
/// `ts`'s stream. Cheap enough to call on every unwinder cache miss.
pub fn refresh(ts: &mut ThreadState) {
    let v = adds_subs();
    if v != ADDS_SUBS.load(Ordering::Relaxed) {
        let done = with_list(|l| {
            l.mods = scan();
            ADDS_SUBS.store(v, Ordering::Relaxed);
            GENERATION.fetch_add(1, Ordering::Release);
        });
        if done.is_some() {
            NEED_EMIT.store(true, Ordering::Release);
        }
    }
    emit_if_needed(ts);
}

/// Emits `ModuleLoad`/`ModuleUnload` records for changes not yet emitted.
pub fn emit_if_needed(ts: &mut ThreadState) {
    if !NEED_EMIT.load(Ordering::Acquire) {
        return;
    }
    if ADDS_SUBS.load(Ordering::Relaxed) == u64::MAX {
        let v = adds_subs();
        with_list(|l| {
            l.mods = scan();
            ADDS_SUBS.store(v, Ordering::Relaxed);
            GENERATION.fetch_add(1, Ordering::Release);
        });
    }
    with_list(|l| {
        NEED_EMIT.store(false, Ordering::Relaxed);
        let mut i = 0;
        while i < l.emitted.len() {
            let base = l.emitted[i];
            if l.mods.iter().any(|m| m.base == base) {
                i += 1;
            } else {
                ts.write(abi::KIND_MODULE_UNLOAD, 0, 0, &[base], &[], true);
                l.emitted.swap_remove(i);
            }
        }
        for m in &l.mods {
            if l.emitted.contains(&m.base) {
                continue;
            }
            let mut bytes = Vec::with_capacity(m.build_id.len() + m.path.len());
            bytes.extend_from_slice(&m.build_id);
            bytes.extend_from_slice(&m.path);
            let lens = m.build_id.len() as u64 | (m.path.len() as u64) << 32;
            ts.write(
                abi::KIND_MODULE_LOAD,
                0,
                0,
                &[m.base, m.start, m.end, lens],
                &bytes,
                true,
            );
            l.emitted.push(m.base);
        }
    });
}

/// A copy of the current list, with its generation.
pub fn snapshot() -> Option<(u64, Vec<ModInfo>)> {
    with_list(|l| (GENERATION.load(Ordering::Acquire), l.mods.clone()))
}

fn scan() -> Vec<ModInfo> {
    unsafe extern "C" fn cb(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> i32 {
        // SAFETY: valid during the callback; `data` is our Vec.
        let (info, out) = unsafe { (&*info, &mut *data.cast::<Vec<ModInfo>>()) };
        // SAFETY: the loader guarantees the phdr array and name are valid.
        if let Some(m) = unsafe { describe(info) } {
            out.push(m);
        }
        0
    }
    let mut out: Vec<ModInfo> = Vec::new();
    // SAFETY: callback signature matches; `out` outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(cb), (&mut out as *mut Vec<ModInfo>).cast()) };
    out
}

/// # Safety
/// `info` must come from `dl_iterate_phdr` (valid phdrs, mapped segments).
unsafe fn describe(info: &libc::dl_phdr_info) -> Option<ModInfo> {
    let bias = info.dlpi_addr;
    // SAFETY: dlpi_phdr points to dlpi_phnum headers.
    let phdrs = unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    let mut start = u64::MAX;
    let mut end = 0u64;
    let mut text = None;
    let mut hdr = None;
    let mut build_id = Vec::new();
    for ph in phdrs {
        match ph.p_type {
            libc::PT_LOAD => {
                let s = bias.wrapping_add(ph.p_vaddr);
                start = start.min(s);
                end = end.max(s + ph.p_memsz);
                if ph.p_flags & libc::PF_X != 0 && text.is_none() {
                    text = Some((s, s + ph.p_memsz));
                }
            }
            libc::PT_GNU_EH_FRAME => {
                let s = bias.wrapping_add(ph.p_vaddr);
                hdr = Some((s, s + ph.p_memsz));
            }
            libc::PT_NOTE if build_id.is_empty() => {
                let s = bias.wrapping_add(ph.p_vaddr);
                // SAFETY: the note segment is mapped (it lies in a PT_LOAD).
                build_id = unsafe { find_build_id(s, ph.p_memsz) };
            }
            _ => {}
        }
    }
    if start >= end {
        return None;
    }
    let eh_frame = hdr.and_then(|(h, _)| {
        // SAFETY: the header segment is mapped; we read its first 8 bytes.
        let enc = unsafe { *((h + 1) as *const u8) };
        if enc != 0x1b {
            return None; // only DW_EH_PE_pcrel | DW_EH_PE_sdata4, what linkers emit
        }
        // SAFETY: as above.
        let rel = unsafe { core::ptr::read_unaligned((h + 4) as *const i32) };
        let f = (h + 4).wrapping_add(rel as i64 as u64);
        // The section ends at or before the end of its segment.
        let seg_end = phdrs
            .iter()
            .filter(|ph| ph.p_type == libc::PT_LOAD)
            .map(|ph| {
                (
                    bias.wrapping_add(ph.p_vaddr),
                    bias.wrapping_add(ph.p_vaddr + ph.p_memsz),
                )
            })
            .find(|&(s, e)| f >= s && f < e)
            .map(|(_, e)| e)?;
        Some((f, seg_end))
    });
    // SAFETY: dlpi_name is a valid NUL-terminated string (maybe empty).
    let name = unsafe { core::ffi::CStr::from_ptr(info.dlpi_name) }.to_bytes();
    let path = if name.is_empty() {
        let mut buf = [0u8; 4096];
        // SAFETY: valid buffer and NUL-terminated path.
        let r = unsafe {
            libc::readlink(
                c"/proc/self/exe".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        buf[..r.max(0) as usize].to_vec()
    } else {
        name.to_vec()
    };
    Some(ModInfo {
        path,
        base: bias,
        start,
        end,
        build_id,
        eh_frame_hdr: hdr,
        eh_frame,
        text,
    })
}

/// # Safety
/// `[addr, addr + len)` must be mapped.
unsafe fn find_build_id(addr: u64, len: u64) -> Vec<u8> {
    let mut at = addr;
    let end = addr + len;
    while at + 12 <= end {
        // SAFETY: within the mapped note segment.
        let (namesz, descsz, ty) = unsafe {
            let p = at as *const u32;
            (
                p.read_unaligned() as u64,
                p.add(1).read_unaligned() as u64,
                p.add(2).read_unaligned(),
            )
        };
        let name_at = at + 12;
        let desc_at = name_at + ((namesz + 3) & !3);
        let next = desc_at + ((descsz + 3) & !3);
        if next > end {
            break;
        }
        if ty == 3 && namesz == 4 {
            // SAFETY: within the segment (checked above).
            let name = unsafe { core::slice::from_raw_parts(name_at as *const u8, 4) };
            if name == b"GNU\0" {
                // SAFETY: as above.
                return unsafe {
                    core::slice::from_raw_parts(desc_at as *const u8, descsz as usize)
                }
                .to_vec();
            }
        }
        at = next;
    }
    Vec::new()
}
