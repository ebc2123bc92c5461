//! The alloctrace trace format: writer, streaming reader, samples
