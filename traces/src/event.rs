//! The events a trace holds, as the reader yields them and the writer takes them.
//!
//! Kinds are append-only: a retired kind keeps its number with a comment, and a
//! new kind gets a new number (see `FORMAT.md`, "Opcodes").

use serde::{Deserialize, Serialize};

/// Identifies an interned call stack. `0` means "no stack recorded".
pub type StackId = u32;

/// Kernel thread id (`gettid()`) of the thread an event happened on.
pub type ThreadId = u32;

/// The function a block was allocated with. Numbering is part of the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum AllocFn {
    /// `malloc`
    Malloc = 0,
    /// `calloc`
    Calloc = 1,
    /// `realloc` (only in [`Event::Realloc`])
    Realloc = 2,
    /// `reallocarray` (only in [`Event::Realloc`])
    Reallocarray = 3,
    /// `posix_memalign`
    PosixMemalign = 4,
    /// `aligned_alloc`
    AlignedAlloc = 5,
    /// `memalign`
    Memalign = 6,
    /// `valloc`
    Valloc = 7,
    /// `pvalloc`
    Pvalloc = 8,
    /// `operator new(size_t)`
    New = 9,
    /// `operator new[](size_t)`
    NewArray = 10,
    /// `operator new(size_t, const std::nothrow_t&)`
    NewNothrow = 11,
    /// `operator new[](size_t, const std::nothrow_t&)`
    NewArrayNothrow = 12,
    /// `operator new(size_t, std::align_val_t)`
    NewAligned = 13,
    /// `operator new[](size_t, std::align_val_t)`
    NewArrayAligned = 14,
    /// `operator new(size_t, std::align_val_t, const std::nothrow_t&)`
    NewAlignedNothrow = 15,
    /// `operator new[](size_t, std::align_val_t, const std::nothrow_t&)`
    NewArrayAlignedNothrow = 16,
}

/// The function a block was released with. Numbering is part of the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum FreeFn {
    /// `free`
    Free = 0,
    /// `operator delete(void*)`
    Delete = 1,
    /// `operator delete[](void*)`
    DeleteArray = 2,
    /// `operator delete(void*, size_t)`
    DeleteSized = 3,
    /// `operator delete[](void*, size_t)`
    DeleteArraySized = 4,
    /// `operator delete(void*, std::align_val_t)`
    DeleteAligned = 5,
    /// `operator delete[](void*, std::align_val_t)`
    DeleteArrayAligned = 6,
    /// `operator delete(void*, size_t, std::align_val_t)`
    DeleteSizedAligned = 7,
    /// `operator delete[](void*, size_t, std::align_val_t)`
    DeleteArraySizedAligned = 8,
    /// `operator delete(void*, const std::nothrow_t&)`
    DeleteNothrow = 9,
    /// `operator delete[](void*, const std::nothrow_t&)`
    DeleteArrayNothrow = 10,
    /// `operator delete(void*, std::align_val_t, const std::nothrow_t&)`
    DeleteAlignedNothrow = 11,
    /// `operator delete[](void*, std::align_val_t, const std::nothrow_t&)`
    DeleteArrayAlignedNothrow = 12,
}

/// Families of allocation functions whose blocks must be released by the same family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Family {
    /// malloc, calloc, realloc, the memalign family: released with `free`/`realloc`.
    C,
    /// `operator new` (all scalar forms): released with `operator delete`.
    New,
    /// `operator new[]` (all array forms): released with `operator delete[]`.
    NewArray,
}

macro_rules! numbered {
    ($ty:ident { $($name:ident = $n:expr),* $(,)? }) => {
        impl $ty {
            /// Every variant, in numbering order.
            pub const ALL: &'static [$ty] = &[$($ty::$name),*];
            /// The variant with this number, if any.
            pub fn from_u8(n: u8) -> Option<$ty> {
                match n { $($n => Some($ty::$name),)* _ => None }
            }
        }
    };
}

numbered!(AllocFn {
    Malloc = 0, Calloc = 1, Realloc = 2, Reallocarray = 3, PosixMemalign = 4,
    AlignedAlloc = 5, Memalign = 6, Valloc = 7, Pvalloc = 8, New = 9, NewArray = 10,
    NewNothrow = 11, NewArrayNothrow = 12, NewAligned = 13, NewArrayAligned = 14,
    NewAlignedNothrow = 15, NewArrayAlignedNothrow = 16,
});

numbered!(FreeFn {
    Free = 0, Delete = 1, DeleteArray = 2, DeleteSized = 3, DeleteArraySized = 4,
    DeleteAligned = 5, DeleteArrayAligned = 6, DeleteSizedAligned = 7,
    DeleteArraySizedAligned = 8, DeleteNothrow = 9, DeleteArrayNothrow = 10,
    DeleteAlignedNothrow = 11, DeleteArrayAlignedNothrow = 12,
});

impl AllocFn {
    /// The family whose release functions match this allocation function.
    pub fn family(self) -> Family {
        use AllocFn::*;
        match self {
            New | NewNothrow | NewAligned | NewAlignedNothrow => Family::New,
            NewArray | NewArrayNothrow | NewArrayAligned | NewArrayAlignedNothrow => {
                Family::NewArray
            }
            _ => Family::C,
        }
    }

    /// Whether the allocation was made with an explicit alignment argument.
    pub fn is_aligned(self) -> bool {
        use AllocFn::*;
        matches!(
            self,
            PosixMemalign
                | AlignedAlloc
                | Memalign
                | NewAligned
                | NewArrayAligned
                | NewAlignedNothrow
                | NewArrayAlignedNothrow
        )
    }

    /// The C or C++ spelling used in reports, e.g. `malloc` or `operator new[]`.
    pub fn name(self) -> &'static str {
        use AllocFn::*;
        match self {
            Malloc => "malloc",
            Calloc => "calloc",
            Realloc => "realloc",
            Reallocarray => "reallocarray",
            PosixMemalign => "posix_memalign",
            AlignedAlloc => "aligned_alloc",
            Memalign => "memalign",
            Valloc => "valloc",
            Pvalloc => "pvalloc",
            New => "operator new",
            NewArray => "operator new[]",
            NewNothrow => "operator new(nothrow)",
            NewArrayNothrow => "operator new[](nothrow)",
            NewAligned => "operator new(align)",
            NewArrayAligned => "operator new[](align)",
            NewAlignedNothrow => "operator new(align, nothrow)",
            NewArrayAlignedNothrow => "operator new[](align, nothrow)",
        }
    }
}

impl FreeFn {
    /// The family of allocation functions this release function matches.
    pub fn family(self) -> Family {
        use FreeFn::*;
        match self {
            Free => Family::C,
            Delete | DeleteSized | DeleteAligned | DeleteSizedAligned | DeleteNothrow
            | DeleteAlignedNothrow => Family::New,
            _ => Family::NewArray,
        }
    }

    /// Whether the release function takes an alignment argument.
    pub fn is_aligned(self) -> bool {
        use FreeFn::*;
        matches!(
            self,
            DeleteAligned
                | DeleteArrayAligned
                | DeleteSizedAligned
                | DeleteArraySizedAligned
                | DeleteAlignedNothrow
                | DeleteArrayAlignedNothrow
        )
    }

    /// The C or C++ spelling used in reports, e.g. `free` or `operator delete[]`.
    pub fn name(self) -> &'static str {
        use FreeFn::*;
        match self {
            Free => "free",
            Delete => "operator delete",
            DeleteArray => "operator delete[]",
            DeleteSized => "operator delete(sized)",
            DeleteArraySized => "operator delete[](sized)",
            DeleteAligned => "operator delete(align)",
            DeleteArrayAligned => "operator delete[](align)",
            DeleteSizedAligned => "operator delete(sized, align)",
            DeleteArraySizedAligned => "operator delete[](sized, align)",
            DeleteNothrow => "operator delete(nothrow)",
            DeleteArrayNothrow => "operator delete[](nothrow)",
            DeleteAlignedNothrow => "operator delete(align, nothrow)",
            DeleteArrayAlignedNothrow => "operator delete[](align, nothrow)",
        }
    }
}

/// A loaded module (executable or shared object), for offline symbolization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    /// Path as the dynamic loader saw it (empty for the main program is resolved
    /// by the recorder to the executable's path).
    pub path: String,
    /// Load bias: runtime address minus the ELF virtual address of the same byte.
    pub base: u64,
    /// Lowest runtime address covered by the module's `PT_LOAD` segments.
    pub start: u64,
    /// One past the highest runtime address covered by its `PT_LOAD` segments.
    pub end: u64,
    /// GNU build id (`NT_GNU_BUILD_ID`), empty when the module has none.
    pub build_id: Vec<u8>,
}

/// One thing that happened in the traced process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A block was allocated. `addr == 0` records a failed allocation.
    Alloc {
        /// Function used.
        func: AllocFn,
        /// Returned address (0: the allocation failed).
        addr: u64,
        /// Requested size in bytes (for calloc: `nmemb * size`).
        size: u64,
        /// Requested alignment, 0 when the function takes none.
        align: u64,
        /// Allocation stack.
        stack: StackId,
    },
    /// A block was released. Recorded before the real release runs.
    Free {
        /// Function used.
        func: FreeFn,
        /// Address passed (never 0: `free(NULL)` is not recorded).
        addr: u64,
        /// Size passed to a sized delete, otherwise 0.
        size: u64,
        /// Alignment passed to an aligned delete, otherwise 0.
        align: u64,
        /// Release stack.
        stack: StackId,
    },
    /// `realloc` or `reallocarray` as one event.
    Realloc {
        /// `AllocFn::Realloc` or `AllocFn::Reallocarray`.
        func: AllocFn,
        /// Pointer passed in (0: acted as malloc).
        old_addr: u64,
        /// Pointer returned (0: failed, or `size == 0` freed the block).
        new_addr: u64,
        /// Requested new size (for reallocarray: `nmemb * size`).
        size: u64,
        /// Stack of the call.
        stack: StackId,
    },
    /// `mmap` returned `addr` for `len` bytes (anonymous or file mapping).
    Mmap {
        /// Mapped address (`MAP_FAILED` is not recorded).
        addr: u64,
        /// Length in bytes.
        len: u64,
        /// `prot` argument.
        prot: u32,
        /// `flags` argument.
        flags: u32,
        /// `fd` argument (-1 for anonymous mappings).
        fd: i32,
        /// Stack of the call.
        stack: StackId,
    },
    /// `munmap(addr, len)` succeeded.
    Munmap {
        /// Address.
        addr: u64,
        /// Length in bytes.
        len: u64,
        /// Stack of the call.
        stack: StackId,
    },
    /// `mremap` moved or resized a mapping.
    Mremap {
        /// Old address.
        old_addr: u64,
        /// Old length.
        old_len: u64,
        /// New address.
        new_addr: u64,
        /// New length.
        new_len: u64,
        /// Stack of the call.
        stack: StackId,
    },
    /// The program break moved (`brk` or `sbrk`): from `old_break` to `new_break`.
    Brk {
        /// Break before the call.
        old_break: u64,
        /// Break after the call.
        new_break: u64,
        /// Stack of the call.
        stack: StackId,
    },
    /// A thread started (its first event, or `pthread_create` observed).
    ThreadStart {
        /// The creating thread, 0 when unknown.
        parent: ThreadId,
    },
    /// A thread exited.
    ThreadExit,
    /// The process forked; the child writes its own trace.
    Fork {
        /// Child process id.
        child_pid: u32,
    },
    /// The process is about to `exec` a new image (traced into its own file).
    Exec {
        /// Path passed to exec.
        path: String,
    },
    /// A module was loaded (or was present when recording started). Boxed:
    /// rare, and large enough to double the size of every other event.
    ModuleLoad(Box<Module>),
    /// The module whose load bias is `base` was unloaded.
    ModuleUnload {
        /// Load bias of the unloaded module.
        base: u64,
    },
    /// A user marker.
    Marker {
        /// Free-form value.
        value: u64,
        /// Label.
        label: String,
    },
}

/// An event with when and where it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Nanoseconds on the trace clock (see [`crate::Header::clock`]).
    pub time: u64,
    /// Thread the event happened on.
    pub thread: ThreadId,
    /// What happened.
    pub event: Event,
}

impl Event {
    /// The stack id of the event, 0 when it carries none.
    pub fn stack(&self) -> StackId {
        match self {
            Event::Alloc { stack, .. }
            | Event::Free { stack, .. }
            | Event::Realloc { stack, .. }
            | Event::Mmap { stack, .. }
            | Event::Munmap { stack, .. }
            | Event::Mremap { stack, .. }
            | Event::Brk { stack, .. } => *stack,
            _ => 0,
        }
    }

    /// A short lower-case name of the kind, as used in `dump` and `info`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Event::Alloc { .. } => "alloc",
            Event::Free { .. } => "free",
            Event::Realloc { .. } => "realloc",
            Event::Mmap { .. } => "mmap",
            Event::Munmap { .. } => "munmap",
            Event::Mremap { .. } => "mremap",
            Event::Brk { .. } => "brk",
            Event::ThreadStart { .. } => "thread-start",
            Event::ThreadExit => "thread-exit",
            Event::Fork { .. } => "fork",
            Event::Exec { .. } => "exec",
            Event::ModuleLoad(_) => "module-load",
            Event::ModuleUnload { .. } => "module-unload",
            Event::Marker { .. } => "marker",
        }
    }
}
