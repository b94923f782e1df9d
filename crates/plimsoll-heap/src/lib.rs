//! V8 `.heapsnapshot` parsing and analysis: a streaming parser into columnar arrays, the
//! dominator tree and retained sizes, shortest retainer paths, summaries and diffs.
//!
//! The parser never builds a tree of JSON values: the `nodes`, `edges` and `locations` arrays
//! are scanned number by number straight into typed columns, and `strings` into one byte arena.
//! Only the small `snapshot` header goes through `serde_json`. Memory stays a fraction of the
//! file size.

mod diff;
mod error;
mod graph;
mod parse;
mod snapshot;
mod summary;

pub use diff::{
    diff_three, diff_two, Census, ClassDelta, PathGroup, Suspect, SuspectClass, ThreeWayDiff,
    TwoWayDiff,
};
pub use error::Error;
pub use graph::{Analysis, PathStep};
pub use parse::{parse, parse_file};
pub use snapshot::{Location, NodeIndex, Snapshot};
pub use summary::{summarize, ClassRow, LargeObject, Summary, TypeRow};
#[cfg(test)]
mod testutil;
