//! Cache hints for the hot loops of the decoder and the analyzer's pass:
//! the crate's one `unsafe` block.

/// Starts loading the cache line at `p`, so that a load of it a few dozen
/// instructions later does not wait for memory. Any address may be named,
/// also one outside every allocation: a prefetch has no architectural
/// effect and never faults. A no-op on other architectures than x86-64.
#[allow(unsafe_code)]
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` (SSE, part of every x86-64 CPU) only hints the
    // cache: it reads nothing the program sees and cannot fault, whatever
    // the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
