//! The LD_PRELOAD library that hooks the malloc family and records events.
