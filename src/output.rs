//! Small helpers shared by the subcommands implemented in this crate.

/// Whether an error is a closed stdout (`alloctrace dump t | head`): that ends
/// the program quietly, like other Unix tools.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(BrokenPipe))
    })
}

/// Prints the reader's end-of-trace warnings (truncation, missing trailer).
pub fn warn_incomplete<R: std::io::Read>(r: &traces::Reader<R>) {
    if let Some(t) = r.truncation() {
        eprintln!("alloctrace: warning: {}: {t}", r.file());
    } else if r.trailer().is_none() {
        eprintln!(
            "alloctrace: warning: {}: trace has no trailer: the recording did not finish cleanly",
            r.file()
        );
    }
}
