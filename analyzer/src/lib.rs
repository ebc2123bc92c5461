//! Offline analyses of alloctrace traces
