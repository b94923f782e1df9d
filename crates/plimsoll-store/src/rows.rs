//! The rows the store takes and gives back: samples, events and incidents, as plain data.
//!
//! Byte counts are `u64` here and SQLite integers (`i64`) on disk: a value above `i64::MAX`
//! is saved as `i64::MAX` (no process has 8 EiB), and a negative number read back (only a
//! file edited by hand has one) reads as 0.

use std::time::Duration;

/// One reading of one target. Every byte count is summed over the target's process tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRow {
    /// The target's name.
    pub target: String,
    /// When the sample was taken, milliseconds since the Unix epoch.
    pub t_unix_ms: i64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// Proportional set size, bytes, when `smaps_rollup` was read.
    pub pss_bytes: Option<u64>,
    /// Unique set size, bytes, when `smaps_rollup` was read.
    pub uss_bytes: Option<u64>,
    /// Swapped-out memory, bytes.
    pub swap_bytes: Option<u64>,
    /// Runtime heap in use, bytes (V8 `usedHeapSize`, …).
    pub heap_used_bytes: Option<u64>,
    /// Runtime heap reserved, bytes.
    pub heap_total_bytes: Option<u64>,
    /// Runtime heap in use right after the last major GC, bytes.
    pub heap_used_after_gc_bytes: Option<u64>,
    /// Memory the runtime holds outside its heap (V8 `external`), bytes.
    pub external_bytes: Option<u64>,
    /// Usage of the target's cgroup, bytes.
    pub cgroup_usage_bytes: Option<u64>,
    /// Limit of the target's cgroup, bytes.
    pub cgroup_limit_bytes: Option<u64>,
    /// The budget in force at this sample, bytes.
    pub budget_bytes: Option<u64>,
    /// The budget level at this sample, as the supervisor names it (`ok`, `warn`, …).
    pub level: Option<String>,
}

impl SampleRow {
    /// A sample with only RSS known.
    pub fn new(target: impl Into<String>, t_unix_ms: i64, rss_bytes: u64) -> SampleRow {
        SampleRow {
            target: target.into(),
            t_unix_ms,
            rss_bytes,
            pss_bytes: None,
            uss_bytes: None,
            swap_bytes: None,
            heap_used_bytes: None,
            heap_total_bytes: None,
            heap_used_after_gc_bytes: None,
            external_bytes: None,
            cgroup_usage_bytes: None,
            cgroup_limit_bytes: None,
            budget_bytes: None,
            level: None,
        }
    }

    /// The optional byte counts in the order of [`OPTIONAL_COLUMNS`].
    pub(crate) fn optional_bytes(&self) -> [Option<u64>; OPTIONAL_COLUMNS.len()] {
        [
            self.pss_bytes,
            self.uss_bytes,
            self.swap_bytes,
            self.heap_used_bytes,
            self.heap_total_bytes,
            self.heap_used_after_gc_bytes,
            self.external_bytes,
            self.cgroup_usage_bytes,
            self.cgroup_limit_bytes,
            self.budget_bytes,
        ]
    }

    /// A sample from its RSS and the optional byte counts in the order of
    /// [`OPTIONAL_COLUMNS`].
    pub(crate) fn from_parts(
        target: String,
        t_unix_ms: i64,
        rss_bytes: u64,
        optional: [Option<u64>; OPTIONAL_COLUMNS.len()],
        level: Option<String>,
    ) -> SampleRow {
        let [pss_bytes, uss_bytes, swap_bytes, heap_used_bytes, heap_total_bytes, heap_used_after_gc_bytes, external_bytes, cgroup_usage_bytes, cgroup_limit_bytes, budget_bytes] =
            optional;
        SampleRow {
            target,
            t_unix_ms,
            rss_bytes,
            pss_bytes,
            uss_bytes,
            swap_bytes,
            heap_used_bytes,
            heap_total_bytes,
            heap_used_after_gc_bytes,
            external_bytes,
            cgroup_usage_bytes,
            cgroup_limit_bytes,
            budget_bytes,
            level,
        }
    }
}

/// The optional byte-count columns, in the order every table and every query uses.
pub(crate) const OPTIONAL_COLUMNS: [&str; 10] = [
    "pss_bytes",
    "uss_bytes",
    "swap_bytes",
    "heap_used_bytes",
    "heap_total_bytes",
    "heap_used_after_gc_bytes",
    "external_bytes",
    "cgroup_usage_bytes",
    "cgroup_limit_bytes",
    "budget_bytes",
];

/// How fine a point of a series is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// A sample as it was taken.
    Raw,
    /// The roll-up of the raw samples of one minute. The point's `t_unix_ms` is the start of
    /// the minute, its `rss_bytes` their mean, and every other field the last value (in the
    /// order the samples were rolled up) that the minute had.
    Minute {
        /// How many raw samples were rolled into this point.
        samples: u64,
        /// The least RSS of the minute, bytes.
        rss_min_bytes: u64,
        /// The greatest RSS of the minute, bytes.
        rss_max_bytes: u64,
    },
}

/// One point of a target's history: a raw sample, or a per-minute roll-up of older ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    /// The sample, or the roll-up written as a sample (see [`Resolution::Minute`]).
    pub sample: SampleRow,
    /// Which of the two it is.
    pub resolution: Resolution,
}

/// Something that happened to a target, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// The store's id of the event; ids only grow.
    pub id: i64,
    /// The target's name.
    pub target: String,
    /// When it happened, milliseconds since the Unix epoch.
    pub t_unix_ms: i64,
    /// The event's kind, e.g. `level-changed`.
    pub kind: String,
    /// The event as JSON, exactly as the caller gave it.
    pub payload_json: String,
}

/// An incident without its evidence: what lists show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentSummary {
    /// The store's id of the incident; ids only grow.
    pub id: i64,
    /// The target's name.
    pub target: String,
    /// When it happened (the restart), milliseconds since the Unix epoch.
    pub t_unix_ms: i64,
    /// Why, e.g. `budget-breach` or `crash`.
    pub reason: String,
    /// The heap snapshot written for it, when there is one.
    pub snapshot_path: Option<String>,
    /// How far back before `t_unix_ms` the evidence reaches.
    pub lookback: Duration,
    /// How many samples it keeps.
    pub sample_count: u64,
    /// How many events it keeps.
    pub event_count: u64,
}

/// What is kept of a restart: the last minutes of samples and the events before it, copied
/// out of the live tables so that retention never deletes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// The store's id of the incident.
    pub id: i64,
    /// The target's name.
    pub target: String,
    /// When it happened (the restart), milliseconds since the Unix epoch.
    pub t_unix_ms: i64,
    /// Why, e.g. `budget-breach` or `crash`.
    pub reason: String,
    /// The heap snapshot written for it, when there is one.
    pub snapshot_path: Option<String>,
    /// How far back before `t_unix_ms` the evidence reaches.
    pub lookback: Duration,
    /// The target's raw samples in `(t_unix_ms - lookback, t_unix_ms]`, oldest first.
    pub samples: Vec<SampleRow>,
    /// The target's events in the same window, oldest first.
    pub events: Vec<EventRow>,
}

/// A byte count as SQLite keeps it: saturated at `i64::MAX`.
pub(crate) fn to_db(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// A byte count read back from SQLite; a negative value reads as 0.
pub(crate) fn from_db(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A duration in whole milliseconds, saturated at `i64::MAX`.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_saturate_on_the_way_in_and_floor_at_zero_on_the_way_out() {
        assert_eq!(to_db(0), 0);
        assert_eq!(to_db(1 << 40), 1 << 40);
        assert_eq!(to_db(u64::MAX), i64::MAX);
        assert_eq!(from_db(i64::MAX), i64::MAX as u64);
        assert_eq!(from_db(-5), 0);
    }

    #[test]
    fn optional_parts_round_trip_in_column_order() {
        let mut s = SampleRow::new("api", 7, 100);
        s.pss_bytes = Some(1);
        s.external_bytes = Some(7);
        s.budget_bytes = Some(10);
        s.level = Some("warn".into());
        let back = SampleRow::from_parts(
            s.target.clone(),
            s.t_unix_ms,
            s.rss_bytes,
            s.optional_bytes(),
            s.level.clone(),
        );
        assert_eq!(back, s);
        assert_eq!(OPTIONAL_COLUMNS[6], "external_bytes");
        assert_eq!(s.optional_bytes()[6], Some(7));
    }

    #[test]
    fn durations_in_milliseconds_saturate() {
        assert_eq!(duration_ms(Duration::from_secs(2)), 2000);
        assert_eq!(duration_ms(Duration::MAX), i64::MAX);
    }
}
