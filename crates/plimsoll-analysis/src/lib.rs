//! Pure analysis of memory time series: the online leak detector and the budget level state
//! machine. No I/O, no clocks: callers pass explicit times, so every decision is reproducible.

mod detector;
mod floor;
mod levels;
mod robust;

pub use detector::{
    DetectorConfig, LeakDetector, LeakEvent, LeakEventKind, LeakState, LeakStatus, Reason, Signal,
    SteadyVerdict, Verdict,
};
pub use levels::{Level, LevelChange, LevelConfig, LevelTracker};
pub use robust::theil_sen;

/// One reading of a target, as the detector needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Seconds since an arbitrary origin; non-decreasing from one observation to the next.
    pub t_s: f64,
    /// Resident set size of the whole process tree, in bytes.
    pub rss_bytes: u64,
    /// Heap used right after the last major garbage collection, in bytes, when a runtime
    /// agent reports it (the V8 agent does); `None` for processes without one.
    pub heap_used_after_gc_bytes: Option<u64>,
}
