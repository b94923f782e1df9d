//! The one error type of the crate: what is wrong with a snapshot file, and where.

use std::path::PathBuf;

/// Why a heap snapshot could not be read or analysed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read.
    #[error("cannot read '{path}': {source}")]
    Io {
        /// The file being read (empty when reading from a stream).
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file has no content at all.
    #[error("the snapshot is empty (0 bytes)")]
    Empty,
    /// The file ends before the JSON document does.
    #[error("the snapshot is truncated: the file ends at byte {offset} inside '{inside}'")]
    Truncated {
        /// Size of the file in bytes (where it ended).
        offset: u64,
        /// The section being read, e.g. `edges`.
        inside: String,
    },
    /// A byte that the snapshot format does not allow at that place.
    #[error(
        "malformed snapshot at byte {offset} inside '{inside}': expected {expected}, found {found}"
    )]
    Syntax {
        /// Byte offset of the offending character.
        offset: u64,
        /// The section being read, e.g. `nodes`.
        inside: String,
        /// What the format allows there.
        expected: &'static str,
        /// What the file has there, quoted.
        found: String,
    },
    /// The `snapshot.meta` header is missing something or has an unexpected shape.
    #[error("malformed snapshot header: {reason}")]
    Header {
        /// What is wrong with it, quoting the offending value.
        reason: String,
    },
    /// A top-level section the analysis needs is absent.
    #[error("the snapshot has no '{name}' section")]
    MissingSection {
        /// The missing key, e.g. `edges`.
        name: &'static str,
    },
    /// The sections contradict each other (counts, references out of range).
    #[error("inconsistent snapshot: {reason}")]
    Inconsistent {
        /// What does not add up, quoting the values.
        reason: String,
    },
}

impl Error {
    pub(crate) fn header(reason: impl Into<String>) -> Self {
        Error::Header {
            reason: reason.into(),
        }
    }

    pub(crate) fn inconsistent(reason: impl Into<String>) -> Self {
        Error::Inconsistent {
            reason: reason.into(),
        }
    }
}
