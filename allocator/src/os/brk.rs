//! The brk arena: where small-block spans come from.
//!
//! Two backends share one interface:
//!
//! * [`Backend::Brk`] grows the real program break with `sbrk`. This is what a
//!   drop-in malloc does. If someone else moved the break since our last growth, the
//!   new memory is not contiguous with ours; the arena then pads to the asked
//!   alignment and carries on from there. The arena never shrinks the break. When
//!   the break cannot grow (a mapping sits right above it, `RLIMIT_DATA`, or a
//!   tool such as valgrind caps it), the arena carries on with anonymous mappings
//!   placed at fixed addresses above its memory, inside `[base, base + limit)`, as
//!   glibc falls back to `mmap`.
//! * [`Backend::Reserved`] reserves a region of address space of its own with
//!   `mmap(PROT_NONE)` and commits it front to back with `mprotect`, emulating a
//!   program break. Use it in a process whose glibc malloc also uses `brk` (the
//!   replayer): two allocators calling `sbrk` under different locks can hand out the
//!   same memory twice.
//!
//! Every address the arena hands out lies in `[base, base + limit)`, so a side table
//! indexed from `base` can cover it.

use super::mmap;

/// Which memory backs the brk arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The real program break (`sbrk`). At most one allocator per process should use it.
    Brk,
    /// A reserved `mmap` region of its own, grown like a program break.
    Reserved,
}

/// A region grown at its end like a program break.
#[derive(Debug)]
pub struct BrkArena {
    backend: Backend,
    /// First address the arena may hand out (aligned).
    base: usize,
    /// End of the memory obtained so far.
    top: usize,
    /// Bytes of address space, from `base`, the arena may grow into.
    limit: usize,
    /// The real break refused to grow once: growth is by fixed mappings from now on.
    break_blocked: bool,
}

impl BrkArena {
    /// Creates an arena whose addresses start at a multiple of `align` (a power of
    /// two, at least the page size) and stay below `base + limit`.
    pub fn new(backend: Backend, limit: usize, align: usize) -> Option<BrkArena> {
        let base = match backend {
            Backend::Reserved => mmap::reserve_aligned(limit, align)?,
            Backend::Brk => {
                let cur = current_break()?;
                (cur.checked_add(align - 1)?) & !(align - 1)
            }
        };
        Some(BrkArena {
            backend,
            base,
            top: base,
            limit,
            break_blocked: false,
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The lowest address the arena can hand out.
    pub fn base(&self) -> usize {
        self.base
    }

    /// The bytes of address space the arena may cover from [`BrkArena::base`].
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Grows the arena by `len` bytes (a multiple of `align`) and returns the start of
    /// the new memory, aligned to `align`. The result equals the previous end unless
    /// someone else moved the real program break in between.
    pub fn grow(&mut self, len: usize, align: usize) -> Option<usize> {
        match self.backend {
            Backend::Reserved => {
                if len > self.limit - (self.top - self.base) {
                    return None;
                }
                let start = self.top;
                // SAFETY: `[start, start + len)` lies inside our own reservation.
                if !unsafe { mmap::commit(start, len) } {
                    return None;
                }
                self.top = start + len;
                Some(start)
            }
            Backend::Brk => {
                if !self.break_blocked {
                    if let Some(start) = self.grow_break(len, align) {
                        return Some(start);
                    }
                    self.break_blocked = true;
                }
                self.grow_mapped(len, align)
            }
        }
    }

    /// Grows by moving the real program break.
    fn grow_break(&mut self, len: usize, align: usize) -> Option<usize> {
        let cur = current_break()?;
        let start = (cur.max(self.base).checked_add(align - 1)?) & !(align - 1);
        let end = start.checked_add(len)?;
        if end - self.base > self.limit {
            return None;
        }
        extend_break(end - cur)?;
        self.top = end;
        Some(start)
    }

    /// Grows by a fixed mapping above the arena's memory, for when the break cannot
    /// move. Something else is mapped where the break would have grown, so it probes
    /// upwards with exponentially growing steps (at most 64 `mmap` calls, however
    /// crowded the address space) and stays inside `[base, base + limit)`.
    fn grow_mapped(&mut self, len: usize, align: usize) -> Option<usize> {
        let from = current_break().unwrap_or(0).max(self.top).max(self.base);
        let mut start = from.checked_add(align - 1)? & !(align - 1);
        let mut step = len.max(align);
        for _ in 0..64 {
            let end = start.checked_add(len)?;
            if end - self.base > self.limit {
                return None;
            }
            if mmap::map_at(start, len) {
                self.top = end;
                return Some(start);
            }
            start = start.checked_add(step)?;
            step = step.checked_mul(2)?;
        }
        None
    }

    /// Releases the arena's memory if that is possible: a reserved region is unmapped
    /// whole; the real break is lowered only if it still ends where we left it.
    /// Pieces mapped after the break stopped growing are not tracked and stay mapped.
    ///
    /// # Safety
    /// No memory handed out by the arena may be used afterwards.
    pub unsafe fn release(&mut self) {
        match self.backend {
            // SAFETY: the whole reservation is ours and the caller promises it is dead.
            Backend::Reserved => unsafe { mmap::unmap(self.base, self.limit) },
            Backend::Brk => {
                if current_break() == Some(self.top) && self.top > self.base {
                    // SAFETY: the break ends at our top, so `[base, top)` is ours alone.
                    unsafe {
                        libc::brk(self.base as *mut libc::c_void);
                    }
                }
            }
        }
        self.top = self.base;
    }
}

/// The current program break.
fn current_break() -> Option<usize> {
    // SAFETY: sbrk(0) only reads the break.
    let p = unsafe { libc::sbrk(0) };
    (p as isize != -1).then_some(p as usize)
}

/// Moves the program break up by `incr` bytes.
fn extend_break(incr: usize) -> Option<usize> {
    let incr = libc::intptr_t::try_from(incr).ok()?;
    // SAFETY: growing the break maps fresh memory above it; nobody holds references
    // to addresses above the old break.
    let p = unsafe { libc::sbrk(incr) };
    (p as isize != -1).then_some(p as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_arena_grows_contiguously() {
        let mut a = BrkArena::new(Backend::Reserved, 1 << 24, 1 << 16).expect("arena");
        assert_eq!(a.base() % (1 << 16), 0);
        let s1 = a.grow(1 << 16, 1 << 16).expect("grow");
        let s2 = a.grow(1 << 17, 1 << 16).expect("grow");
        assert_eq!(s1, a.base());
        assert_eq!(s2, s1 + (1 << 16));
        // SAFETY: both ranges were just committed for us.
        unsafe {
            *((s2 + (1 << 17) - 8) as *mut u64) = 7;
        }
        assert!(a.grow(1 << 24, 1 << 16).is_none(), "limit enforced");
        // SAFETY: nothing from the arena is used afterwards.
        unsafe { a.release() };
    }
}
