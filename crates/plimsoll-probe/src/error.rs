//! What can go wrong while probing. A process of the tree that exits between two reads is not
//! an error (it is left out of the sample); only the root process going away is.

use std::path::PathBuf;

use crate::units::Pid;

/// Why a probe could not be made or a sample could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The root process does not exist, or exited since the probe was made.
    #[error("no process with pid {0}")]
    ProcessGone(Pid),
    /// The cgroup watched as a target was removed (or lost its memory controller).
    #[error("cgroup '{}' is gone", .0.display())]
    CgroupGone(PathBuf),
    /// The root process exists but this user may not read its files (e.g. `/proc` mounted
    /// with `hidepid`).
    #[error("not allowed to read '{}' of pid {pid}", path.display())]
    PermissionDenied {
        /// The process whose file could not be read.
        pid: Pid,
        /// The file that could not be read.
        path: PathBuf,
    },
    /// Reading a file failed for another reason than its process exiting.
    #[error("cannot read '{}'", path.display())]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A file held something other than what the kernel documents.
    #[error("unexpected content in '{}'", path.display())]
    Parse {
        /// The file that held it.
        path: PathBuf,
        /// What was wrong, quoting the offending text.
        #[source]
        source: ParseError,
    },
    /// This platform has no `/proc`: the probe works on Linux only.
    #[error("memory probing needs Linux (this is {0})")]
    Unsupported(&'static str),
}

/// What was wrong with the text of a kernel file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// A value that should be a non-negative integer is not one.
    #[error("'{0}' is not a number")]
    NotANumber(String),
    /// A value that should be a percentage (0 to 100) is not one.
    #[error("'{0}' is not a percentage")]
    NotAPercentage(String),
    /// A key the file must have is missing.
    #[error("missing key '{0}'")]
    MissingKey(&'static str),
    /// A line does not have the documented shape.
    #[error("malformed line '{0}'")]
    MalformedLine(String),
    /// The file is empty where a value is expected.
    #[error("empty file")]
    Empty,
    /// The `procfs` crate's parser rejected the text; its message says why.
    #[error("{0}")]
    Procfs(String),
}
