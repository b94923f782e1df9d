//! What can go wrong with the store. Every variant that concerns a file names it, so that a
//! message like "'/var/lib/plimsoll/plimsoll.db' is not an SQLite database" says where to look.

use std::path::PathBuf;

/// Why the store could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The data dir could not be created (a path component is a file, no permission, …).
    #[error("cannot create data dir '{}'", path.display())]
    CreateDir {
        /// The data dir.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The database file could not be created in the data dir.
    #[error("cannot create store file '{}'", path.display())]
    CreateFile {
        /// The database file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A reader was opened on a dir that holds no store.
    #[error("no store at '{}'", path.display())]
    Missing {
        /// The database file that does not exist.
        path: PathBuf,
    },
    /// The file exists but is not an SQLite database.
    #[error("'{}' is not an SQLite database", path.display())]
    NotADatabase {
        /// The offending file.
        path: PathBuf,
    },
    /// SQLite could not open the file, or could not set it up (WAL, pragmas).
    #[error("cannot open store '{}'", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The file system refused write-ahead logging (e.g. no shared memory on a network mount),
    /// so readers would block the writer.
    #[error("store '{}' cannot use WAL (journal mode is '{mode}')", path.display())]
    NoWal {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite kept.
        mode: String,
    },
    /// The schema version of the file is not the one this build reads: written by a newer
    /// Plimsoll (for the writer), or not yet migrated by a writer (for a reader).
    #[error(
        "store '{}' has schema version {found}, this build uses {supported}",
        path.display()
    )]
    SchemaVersion {
        /// The database file.
        path: PathBuf,
        /// The version the file has (`PRAGMA user_version`).
        found: i64,
        /// The version this build writes and reads.
        supported: i64,
    },
    /// A target name was empty.
    #[error("empty target name ''")]
    EmptyTargetName,
    /// A retention setting is out of range; the message names it and its value.
    #[error("invalid retention: {0}")]
    InvalidRetention(String),
    /// A query or a write failed.
    #[error("store {op} failed")]
    Sqlite {
        /// What the store was doing, e.g. `insert samples`.
        op: &'static str,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the store writer thread")]
    Spawn(#[source] std::io::Error),
    /// The writer thread is gone: it was closed, or it panicked.
    #[error("the store writer thread is not running")]
    WriterGone,
}

/// Attaches what the store was doing to an SQLite error.
pub(crate) trait Op<T> {
    /// Wraps the error as [`StoreError::Sqlite`] with `op`.
    fn op(self, op: &'static str) -> Result<T, StoreError>;
}

impl<T> Op<T> for Result<T, rusqlite::Error> {
    fn op(self, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite { op, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_quote_the_path_and_have_no_trailing_period() {
        let e = StoreError::NotADatabase {
            path: PathBuf::from("/tmp/x/plimsoll.db"),
        };
        assert_eq!(
            e.to_string(),
            "'/tmp/x/plimsoll.db' is not an SQLite database"
        );
        let e = StoreError::SchemaVersion {
            path: PathBuf::from("/d/plimsoll.db"),
            found: 9,
            supported: 1,
        };
        assert_eq!(
            e.to_string(),
            "store '/d/plimsoll.db' has schema version 9, this build uses 1"
        );
    }
}
