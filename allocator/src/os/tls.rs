//! One zero-initialised thread-local area for the thread cache, reached without a
//! function call.
//!
//! On x86-64 Linux the area is defined in `.tbss` and addressed with the
//! initial-exec TLS model (`GOTTPOFF` relative to `%fs`), as mimalloc and jemalloc
//! do: a `thread_local!` in a shared library goes through `__tls_get_addr` on every
//! access, which costs about a tenth of a malloc/free pair. A library using this model
//! must be loaded at startup (`LD_PRELOAD`, a link dependency) or fit in glibc's
//! surplus static TLS when `dlopen`ed, which an area this small does. Elsewhere a
//! `const`-initialised `thread_local!` is used.

/// Bytes in the area: the thread cache's 968, rounded up to the area's 64-byte
/// alignment. (Every byte is static TLS, which the dynamic loader allocates with
/// each thread's control block: in the main thread on pages of its own heap, beside
/// the link maps, where this area and the library's link map made `sqlite3` touch
/// one page more than under glibc's malloc at 1472 bytes; 2048 before that.)
pub const SIZE: usize = 1024;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
core::arch::global_asm!(
    ".section .tbss,\"awT\",@nobits",
    ".p2align 6",
    ".globl alloctrace_thread_area",
    ".hidden alloctrace_thread_area",
    ".type alloctrace_thread_area, @object",
    ".size alloctrace_thread_area, {size}",
    "alloctrace_thread_area:",
    ".zero {size}",
    ".text",
    size = const SIZE,
);

/// The calling thread's area: `SIZE` bytes, 64-byte aligned, zero at thread start.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[inline(always)]
pub fn area() -> *mut u8 {
    let p: usize;
    // SAFETY: reads the GOT entry holding the area's offset from the thread pointer
    // and adds the thread pointer (%fs:0); no memory is written.
    unsafe {
        core::arch::asm!(
            "mov {p}, qword ptr [rip + alloctrace_thread_area@GOTTPOFF]",
            "add {p}, qword ptr fs:0",
            p = out(reg) p,
            options(pure, readonly, nostack),
        );
    }
    p as *mut u8
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
#[repr(C, align(64))]
struct Area(core::cell::UnsafeCell<[u8; SIZE]>);

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
std::thread_local! {
    static AREA: Area = const { Area(core::cell::UnsafeCell::new([0; SIZE])) };
}

/// The calling thread's area: `SIZE` bytes, 64-byte aligned, zero at thread start.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
#[inline(always)]
pub fn area() -> *mut u8 {
    AREA.with(|a| a.0.get().cast())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_is_per_thread_aligned_and_zeroed() {
        let a = area() as usize;
        assert_eq!(a % 64, 0);
        // SAFETY: the area is this thread's, SIZE bytes.
        unsafe { *(area().add(8)) = 5 };
        let other = std::thread::spawn(|| {
            // SAFETY: as above, in the new thread.
            (area() as usize, unsafe { *(area().add(8)) })
        })
        .join()
        .unwrap();
        assert_ne!(other.0, a);
        assert_eq!(other.1, 0);
        // SAFETY: as above.
        assert_eq!(unsafe { *(area().add(8)) }, 5);
    }
}
