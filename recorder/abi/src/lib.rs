//! Shared-memory layout between the preload library and the collector
