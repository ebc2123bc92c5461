//! Typed errors that say where (file, block, byte offset) and what was expected.

use std::fmt;
use std::io;

/// What went wrong reading or writing a trace.
#[derive(Debug)]
pub enum ErrorKind {
    /// An I/O error from the underlying file.
    Io(io::Error),
    /// The file is empty.
    Empty,
    /// The file does not start with the trace magic.
    BadMagic {
        /// The first bytes found.
        found: Vec<u8>,
    },
    /// The file was written by a newer format version than this reader knows.
    UnsupportedVersion {
        /// Version in the file.
        found: u16,
        /// Newest version this reader supports.
        supported: u16,
    },
    /// A block's stored checksum does not match its contents.
    Checksum {
        /// Checksum stored in the block header.
        expected: u32,
        /// Checksum of the bytes read.
        found: u32,
    },
    /// A block is malformed (bad length, unknown type, undecodable payload).
    Corrupt(String),
}

/// An error with the file, block index and byte offset it concerns. Boxed, so
/// that `Result<Record>` stays as small as a record.
#[derive(Debug)]
pub struct Error(Box<Inner>);

#[derive(Debug)]
struct Inner {
    kind: ErrorKind,
    file: String,
    block: Option<u64>,
    offset: Option<u64>,
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn new(
        kind: ErrorKind,
        file: &str,
        block: Option<u64>,
        offset: Option<u64>,
    ) -> Self {
        Error(Box::new(Inner {
            kind,
            file: file.to_string(),
            block,
            offset,
        }))
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }

    /// The trace file's name, as given to the reader.
    pub fn file(&self) -> &str {
        &self.0.file
    }

    /// Index of the block concerned (0 is the header block), when known.
    pub fn block(&self) -> Option<u64> {
        self.0.block
    }

    /// Byte offset in the file of the block or field concerned, when known.
    pub fn offset(&self) -> Option<u64> {
        self.0.offset
    }

    pub(crate) fn io(e: io::Error, file: &str) -> Self {
        Error::new(ErrorKind::Io(e), file, None, None)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0;
        write!(f, "{}", e.file)?;
        if let Some(b) = e.block {
            write!(f, ": block {b}")?;
        }
        if let Some(o) = e.offset {
            write!(f, " at byte {o}")?;
        }
        write!(f, ": ")?;
        match &e.kind {
            ErrorKind::Io(e) => write!(f, "{e}"),
            ErrorKind::Empty => write!(f, "empty file, not an alloctrace trace"),
            ErrorKind::BadMagic { found } => write!(
                f,
                "not an alloctrace trace (expected magic {:?}, found {:?})",
                String::from_utf8_lossy(crate::MAGIC),
                String::from_utf8_lossy(found)
            ),
            ErrorKind::UnsupportedVersion { found, supported } => write!(
                f,
                "trace format version {found} is newer than this alloctrace supports (version {supported}); upgrade alloctrace"
            ),
            ErrorKind::Checksum { expected, found } => write!(
                f,
                "checksum mismatch (stored {expected:#010x}, computed {found:#010x}): the trace is corrupt"
            ),
            ErrorKind::Corrupt(what) => write!(f, "corrupt trace: {what}"),
        }
    }
}

// The I/O error's text is already part of the Display above, so it is not
// repeated as a source (anyhow's `{:#}` would print it twice).
impl std::error::Error for Error {}
