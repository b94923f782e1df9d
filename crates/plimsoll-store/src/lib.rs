//! The supervisor's embedded store: samples with bounded retention and per-minute roll-ups,
//! events, and incidents, in one SQLite file (WAL mode) in the data dir.
//!
//! ```no_run
//! use std::path::Path;
//! use std::time::Duration;
//! use plimsoll_store::{Retention, SampleRow, Store, StoreWriter, Write, WriterConfig};
//!
//! let store = Store::open(Path::new("/var/lib/plimsoll"))?;
//! let writer = StoreWriter::spawn(store, &WriterConfig::recommended(), |error| {
//!     eprintln!("store write failed: {error}");
//! })?;
//! // In the supervisor's loop: never blocks; a full queue drops the write and counts it.
//! let _ = writer.try_send(Write::Samples(vec![SampleRow::new("api", 1_700_000_000_000, 1 << 28)]));
//! // Every minute:
//! let _ = writer.try_send(Write::Compact {
//!     now_unix_ms: 1_700_000_000_000,
//!     retention: Retention::recommended(),
//! });
//! // At shutdown:
//! let (_store, stats) = writer.flush_and_close()?;
//! println!("{} samples written, {} writes dropped", stats.samples_written, stats.dropped);
//! # Ok::<(), plimsoll_store::StoreError>(())
//! ```
//!
//! Design:
//! - **One writer, many readers.** [`Store`] is the read-write connection; it is meant to
//!   live on the writer thread ([`StoreWriter`]). Reports and the HTTP API open their own
//!   [`StoreReader`]s: in WAL mode neither side blocks the other.
//! - **Crash-safe.** Every write is one transaction; with WAL and `synchronous=NORMAL` a
//!   `kill -9` of the supervisor at any moment leaves a file that reopens, passes
//!   `PRAGMA integrity_check` and holds every committed write (a power loss may lose the
//!   last commits, never the file).
//! - **Flat memory.** The writer's queue and batch are bounded, compaction does bounded work
//!   per call, reads are bounded by the caller's `limit`, and SQLite's page cache has its
//!   default bound (2 MB per connection).
//! - **Bounded disk.** [`Store::compact`] under a [`Retention`] keeps raw samples for hours,
//!   per-minute roll-ups for days, events for a month and a fixed number of incidents.
//!   Incidents keep their own copies of the samples and events before them.
//! - **No JSON here.** Event payloads are opaque JSON text from the caller; the binary owns
//!   the wire formats.

mod error;
mod read;
mod retention;
mod rows;
mod schema;
mod store;
mod writer;

pub use crate::error::StoreError;
pub use crate::retention::{CompactStats, Retention};
pub use crate::rows::{EventRow, Incident, IncidentSummary, Point, Resolution, SampleRow};
pub use crate::store::{Store, StoreReader, DB_FILE_NAME};
pub use crate::writer::{
    StoreWriter, Write, WriteDropped, WriterConfig, WriterHandle, WriterStats,
};
