//! Replays traces against allocators and measures them.
