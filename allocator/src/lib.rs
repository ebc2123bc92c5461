//! A size-class allocator on brk and mmap
