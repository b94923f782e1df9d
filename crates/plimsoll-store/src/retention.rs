//! Retention: how long each kind of row is kept, and the incremental compaction that applies
//! it. Raw samples older than `raw_for` are rolled up into one row per target and minute and
//! deleted; minute rows older than `minute_for` and events older than `events_for` are
//! deleted; incidents are kept by count. Each call does a bounded amount of work, so that the
//! supervisor can run it every minute without a pause, and catches up over several calls
//! after a long stop.
//!
//! A minute row keeps the least, mean and greatest RSS of its samples (RSS is what budgets
//! and leak verdicts are about: the minimum is the floor, the maximum the peak) and, for
//! every other field, the last value the minute had: the figure a reader would have seen at
//! the end of that minute.

use std::time::Duration;

use rusqlite::{params, OptionalExtension, Transaction};

use crate::error::StoreError;
use crate::read::{optional_from_row, MINUTE_MS, SAMPLE_COLUMNS};
use crate::rows::{duration_ms, from_db, to_db, OPTIONAL_COLUMNS};

/// How long the store keeps what. There is no `Default`: [`Retention::recommended`] says what
/// its figures are and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Raw samples younger than this are kept as taken; older ones become minute rows.
    pub raw_for: Duration,
    /// Minute rows younger than this are kept; older ones are deleted.
    pub minute_for: Duration,
    /// Events younger than this are kept; older ones are deleted (incidents keep their own
    /// copies).
    pub events_for: Duration,
    /// How many incidents are kept, the newest ones.
    pub incidents_kept: u32,
    /// The most rows one [`crate::Store::compact`] call reads, writes or deletes (roughly:
    /// the bound is checked per step). At least 1.
    pub max_rows_per_call: u32,
}

impl Retention {
    /// Full resolution for 6 hours (enough to look at last night's incident at 1 s per
    /// sample: 21,600 rows per target), minutes for 7 days (10,080 rows per target: a week of
    /// trend for slow leaks), events for 30 days, the last 100 incidents, and at most 20,000
    /// rows of work per call (a few tens of milliseconds; at one call a minute, enough for
    /// over 300 targets sampled every second; [`Retention::keeping_up_with`] raises it with
    /// the insert rate).
    pub fn recommended() -> Retention {
        Retention {
            raw_for: Duration::from_secs(6 * 3600),
            minute_for: Duration::from_secs(7 * 24 * 3600),
            events_for: Duration::from_secs(30 * 24 * 3600),
            incidents_kept: 100,
            max_rows_per_call: 20_000,
        }
    }

    /// The same retention with its per-call bound raised to twice `rows_inserted`, the raw
    /// samples written since the previous call (when that is more): a caller that compacts at
    /// a steady pace then rolls up at least as many rows per call as arrive between calls,
    /// whatever the number of targets, and a backlog shrinks by at least as much again. The
    /// work per call stays bounded, by twice what one interval brings.
    pub fn keeping_up_with(mut self, rows_inserted: u64) -> Retention {
        let needed = u32::try_from(rows_inserted.saturating_mul(2)).unwrap_or(u32::MAX);
        self.max_rows_per_call = self.max_rows_per_call.max(needed);
        self
    }

    /// Checks the settings that would make compaction do nothing forever.
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        if self.max_rows_per_call == 0 {
            return Err(StoreError::InvalidRetention(
                "max_rows_per_call '0' (expected at least 1)".into(),
            ));
        }
        Ok(())
    }
}

/// What one compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompactStats {
    /// Raw samples rolled up into minute rows and deleted.
    pub samples_rolled_up: u64,
    /// Minute rows written (new, or merged with what an earlier call rolled up).
    pub minutes_written: u64,
    /// Minute rows deleted.
    pub minutes_deleted: u64,
    /// Events deleted.
    pub events_deleted: u64,
    /// Incidents deleted, with their samples and events.
    pub incidents_deleted: u64,
    /// False when the row bound stopped the call before all was done: call again.
    pub finished: bool,
}

/// The roll-up of the samples of one target and minute.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MinuteRollup {
    minute_unix_ms: i64,
    samples: u64,
    rss_min: u64,
    rss_max: u64,
    rss_sum: u128,
    optional: [Option<u64>; OPTIONAL_COLUMNS.len()],
    level: Option<String>,
}

impl MinuteRollup {
    fn new(minute_unix_ms: i64) -> MinuteRollup {
        MinuteRollup {
            minute_unix_ms,
            samples: 0,
            rss_min: u64::MAX,
            rss_max: 0,
            rss_sum: 0,
            optional: [None; OPTIONAL_COLUMNS.len()],
            level: None,
        }
    }

    /// Folds in one sample; its known fields replace the earlier ones.
    fn add(
        &mut self,
        rss: u64,
        optional: [Option<u64>; OPTIONAL_COLUMNS.len()],
        level: Option<String>,
    ) {
        self.samples += 1;
        self.rss_min = self.rss_min.min(rss);
        self.rss_max = self.rss_max.max(rss);
        self.rss_sum += u128::from(rss);
        for (mine, new) in self.optional.iter_mut().zip(optional) {
            if new.is_some() {
                *mine = new;
            }
        }
        if level.is_some() {
            self.level = level;
        }
    }

    /// Folds this roll-up over an older one of the same minute (an earlier call's).
    fn over(mut self, older: MinuteRollup) -> MinuteRollup {
        self.samples += older.samples;
        self.rss_min = self.rss_min.min(older.rss_min);
        self.rss_max = self.rss_max.max(older.rss_max);
        self.rss_sum += older.rss_sum;
        for (mine, old) in self.optional.iter_mut().zip(older.optional) {
            if mine.is_none() {
                *mine = old;
            }
        }
        if self.level.is_none() {
            self.level = older.level;
        }
        self
    }

    /// The mean RSS, rounded to the nearest byte.
    fn rss_avg(&self) -> u64 {
        let n = u128::from(self.samples.max(1));
        u64::try_from((self.rss_sum + n / 2) / n).unwrap_or(u64::MAX)
    }
}

/// The start of the minute that holds `t`.
fn minute_of(t_unix_ms: i64) -> i64 {
    t_unix_ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

pub(crate) fn compact(
    tx: &Transaction<'_>,
    now_unix_ms: i64,
    retention: &Retention,
) -> rusqlite::Result<CompactStats> {
    let mut stats = CompactStats {
        finished: true,
        ..CompactStats::default()
    };
    let mut budget = u64::from(retention.max_rows_per_call);
    let target_ids = {
        let mut stmt = tx.prepare_cached("SELECT id FROM targets ORDER BY id")?;
        let ids = stmt
            .query_map([], |row| row.get::<_, i64>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        ids
    };

    // Whole minutes only, so that a minute is rolled up once its last sample is in.
    let raw_cutoff = minute_of(now_unix_ms.saturating_sub(duration_ms(retention.raw_for)));
    for &target_id in &target_ids {
        if budget == 0 {
            stats.finished = false;
            break;
        }
        let (rolled, written) = roll_up(tx, target_id, raw_cutoff, budget)?;
        stats.samples_rolled_up += rolled;
        stats.minutes_written += written;
        budget -= rolled.min(budget);
        if budget == 0 {
            stats.finished = false;
        }
    }

    let minute_cutoff = now_unix_ms.saturating_sub(duration_ms(retention.minute_for));
    for &target_id in &target_ids {
        if budget == 0 {
            stats.finished = false;
            break;
        }
        let deleted = u64::try_from(
            tx.prepare_cached(
                "DELETE FROM samples_minute WHERE target_id = ?1 AND minute_unix_ms IN \
                 (SELECT minute_unix_ms FROM samples_minute WHERE target_id = ?1 \
                  AND minute_unix_ms < ?2 ORDER BY minute_unix_ms LIMIT ?3)",
            )?
            .execute(params![target_id, minute_cutoff, to_db(budget)])?,
        )
        .unwrap_or(u64::MAX);
        stats.minutes_deleted += deleted;
        budget -= deleted.min(budget);
    }

    if budget == 0 {
        stats.finished = false;
        return Ok(stats);
    }
    let events_cutoff = now_unix_ms.saturating_sub(duration_ms(retention.events_for));
    let deleted = u64::try_from(
        tx.prepare_cached(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE t_unix_ms < ?1 \
             ORDER BY t_unix_ms LIMIT ?2)",
        )?
        .execute(params![events_cutoff, to_db(budget)])?,
    )
    .unwrap_or(u64::MAX);
    stats.events_deleted = deleted;
    budget -= deleted.min(budget);

    // Oldest incidents first; each costs its rows (deleted by the foreign keys' cascade).
    let count: i64 = tx
        .prepare_cached("SELECT count(*) FROM incidents")?
        .query_row([], |row| row.get(0))?;
    let mut excess = from_db(count).saturating_sub(u64::from(retention.incidents_kept));
    while excess > 0 {
        if budget == 0 {
            stats.finished = false;
            break;
        }
        let Some((id, rows)) = tx
            .prepare_cached(
                "SELECT i.id, 1 \
                 + (SELECT count(*) FROM incident_samples s WHERE s.incident_id = i.id) \
                 + (SELECT count(*) FROM incident_events e WHERE e.incident_id = i.id) \
                 FROM incidents i ORDER BY i.id LIMIT 1",
            )?
            .query_row([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)))
            .optional()?
        else {
            break;
        };
        tx.prepare_cached("DELETE FROM incidents WHERE id = ?1")?
            .execute([id])?;
        stats.incidents_deleted += 1;
        excess -= 1;
        budget -= from_db(rows).min(budget);
    }
    if budget == 0 {
        stats.finished = false;
    }
    Ok(stats)
}

/// Rolls up at most `budget` raw samples of one target taken before `cutoff` (a minute
/// boundary); returns how many samples were rolled up and how many minute rows written.
fn roll_up(
    tx: &Transaction<'_>,
    target_id: i64,
    cutoff: i64,
    budget: u64,
) -> rusqlite::Result<(u64, u64)> {
    // Only row ids and one roll-up per minute are held: 8 bytes a sample, bounded by budget.
    let mut rowids = Vec::new();
    let mut minutes: Vec<MinuteRollup> = Vec::new();
    {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT rowid, {SAMPLE_COLUMNS} FROM samples WHERE target_id = ?1 AND t_unix_ms < ?2 \
             ORDER BY t_unix_ms LIMIT ?3"
        ))?;
        let mut rows = stmt.query(params![target_id, cutoff, to_db(budget)])?;
        while let Some(row) = rows.next()? {
            rowids.push(row.get::<_, i64>(0)?);
            let minute = minute_of(row.get(1)?);
            if minutes.last().is_none_or(|m| m.minute_unix_ms != minute) {
                minutes.push(MinuteRollup::new(minute));
            }
            if let Some(current) = minutes.last_mut() {
                current.add(
                    from_db(row.get(2)?),
                    optional_from_row(row, 3)?,
                    row.get(3 + OPTIONAL_COLUMNS.len())?,
                );
            }
        }
    }
    if rowids.is_empty() {
        return Ok((0, 0));
    }

    let written = minutes.len() as u64;
    let optional_list = OPTIONAL_COLUMNS.join(", ");
    let mut existing = tx.prepare_cached(&format!(
        "SELECT samples, rss_min_bytes, rss_avg_bytes, rss_max_bytes, {optional_list}, level \
         FROM samples_minute WHERE target_id = ?1 AND minute_unix_ms = ?2"
    ))?;
    let mut upsert = tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO samples_minute (target_id, minute_unix_ms, samples, \
         rss_min_bytes, rss_avg_bytes, rss_max_bytes, {optional_list}, level) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
    ))?;
    for rollup in minutes {
        let older = existing
            .query_row(params![target_id, rollup.minute_unix_ms], |row| {
                let samples = from_db(row.get(0)?);
                Ok(MinuteRollup {
                    minute_unix_ms: rollup.minute_unix_ms,
                    samples,
                    rss_min: from_db(row.get(1)?),
                    rss_max: from_db(row.get(3)?),
                    rss_sum: u128::from(from_db(row.get(2)?)) * u128::from(samples),
                    optional: optional_from_row(row, 4)?,
                    level: row.get(4 + OPTIONAL_COLUMNS.len())?,
                })
            })
            .optional()?;
        let m = match older {
            Some(older) => rollup.over(older),
            None => rollup,
        };
        let o = m.optional.map(|v| v.map(to_db));
        upsert.execute(params![
            target_id,
            m.minute_unix_ms,
            to_db(m.samples),
            to_db(m.rss_min),
            to_db(m.rss_avg()),
            to_db(m.rss_max),
            o[0],
            o[1],
            o[2],
            o[3],
            o[4],
            o[5],
            o[6],
            o[7],
            o[8],
            o[9],
            m.level,
        ])?;
    }
    let mut delete = tx.prepare_cached("DELETE FROM samples WHERE rowid = ?1")?;
    for rowid in &rowids {
        delete.execute([rowid])?;
    }
    Ok((rowids.len() as u64, written))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::{Resolution, SampleRow};
    use crate::Store;

    const HOUR_MS: i64 = 3_600_000;
    /// A "now" on a minute boundary, far from the epoch.
    const NOW: i64 = 1_700_000_040_000;

    fn retention() -> Retention {
        Retention {
            raw_for: Duration::from_secs(3600),
            minute_for: Duration::from_secs(24 * 3600),
            events_for: Duration::from_secs(2 * 3600),
            incidents_kept: 2,
            max_rows_per_call: 1_000_000,
        }
    }

    /// One sample every 10 s for `hours` hours before NOW, RSS rising by 1 per sample.
    fn fill(store: &mut Store, target: &str, hours: i64) -> Vec<SampleRow> {
        let start = NOW - hours * HOUR_MS;
        let rows: Vec<SampleRow> = (0..hours * 360)
            .map(|i| {
                let mut s = SampleRow::new(target, start + i * 10_000, 1_000 + i as u64);
                s.heap_used_bytes = (i % 2 == 0).then_some(i as u64);
                s.level = Some(if i % 6 == 5 { "warn" } else { "ok" }.into());
                s
            })
            .collect();
        store.insert_samples(&rows).expect("insert");
        rows
    }

    #[test]
    fn old_raw_samples_become_minutes_with_min_mean_max_and_last_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path()).expect("open");
        fill(&mut store, "api", 3);

        let stats = store.compact(NOW, &retention()).expect("compact");
        assert!(stats.finished);
        assert_eq!(stats.samples_rolled_up, 2 * 360);
        assert_eq!(stats.minutes_written, 2 * 60);

        let raw = store.samples("api", 0, 10_000).expect("raw");
        assert_eq!(raw.len(), 360);
        assert_eq!(raw[0].t_unix_ms, NOW - HOUR_MS);

        let series = store.series("api", 0, 10_000).expect("series");
        assert_eq!(series.len(), 120 + 360);
        let first = &series[0];
        assert_eq!(first.sample.t_unix_ms, NOW - 3 * HOUR_MS);
        // Samples 0..6 of the first minute: RSS 1000..=1005, heap on even ones, level last.
        assert_eq!(
            first.resolution,
            Resolution::Minute {
                samples: 6,
                rss_min_bytes: 1_000,
                rss_max_bytes: 1_005,
            }
        );
        assert_eq!(first.sample.rss_bytes, 1_003); // 1002.5 rounded
        assert_eq!(first.sample.heap_used_bytes, Some(4));
        assert_eq!(first.sample.level.as_deref(), Some("warn"));
        assert_eq!(series[120].resolution, Resolution::Raw);
        assert_eq!(series[120].sample, raw[0]);

        // A second call has nothing left to roll up.
        let again = store.compact(NOW, &retention()).expect("again");
        assert_eq!(again.samples_rolled_up, 0);
        assert!(again.finished);
    }

    #[test]
    fn bounded_calls_converge_to_what_one_call_does() {
        let one = tempfile::tempdir().expect("tempdir");
        let many = tempfile::tempdir().expect("tempdir");
        let mut whole = Store::open(one.path()).expect("open");
        let mut parts = Store::open(many.path()).expect("open");
        for store in [&mut whole, &mut parts] {
            fill(store, "api", 2);
            fill(store, "db", 2);
        }
        whole.compact(NOW, &retention()).expect("whole");

        // 7 rows per call splits minutes across calls: the merge must give the same rows.
        let small = Retention {
            max_rows_per_call: 7,
            ..retention()
        };
        let mut calls = 0;
        loop {
            calls += 1;
            let stats = parts.compact(NOW, &small).expect("part");
            assert!(stats.samples_rolled_up <= 7);
            if stats.finished {
                break;
            }
            assert!(calls < 1_000, "does not converge");
        }
        assert!(calls > 100, "{calls} calls");
        for target in ["api", "db"] {
            assert_eq!(
                whole.series(target, 0, 10_000).expect("whole"),
                parts.series(target, 0, 10_000).expect("parts")
            );
        }
    }

    /// One minute of samples of `targets` targets at 1 Hz, taken in the minute at `minute`.
    fn one_minute(store: &mut Store, targets: usize, minute: i64) -> u64 {
        let rows: Vec<SampleRow> = (0..targets)
            .flat_map(|t| {
                (0..60).map(move |s| SampleRow::new(format!("c{t}"), minute + s * 1_000, 1 << 20))
            })
            .collect();
        store.insert_samples(&rows).expect("insert");
        rows.len() as u64
    }

    #[test]
    fn a_call_a_minute_keeps_up_with_500_targets_at_1_hz_when_scaled_to_the_inserts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path()).expect("open");
        let raw_for = Retention::recommended().raw_for.as_millis() as i64;
        // Minute m's samples are past raw_for at the call one minute after it ends.
        let call_at = |minute: i64| minute + raw_for + 2 * MINUTE_MS;
        let first = minute_of(NOW);
        let inserted = one_minute(&mut store, 500, first);
        assert_eq!(inserted, 30_000);
        // The fixed bound of 20,000 rows a call falls behind: a third of the minute is left.
        let fixed = store
            .compact(call_at(first), &Retention::recommended())
            .expect("fixed");
        assert_eq!(fixed.samples_rolled_up, 20_000);
        assert!(!fixed.finished);
        // Scaled to the rows inserted since the last call, each call rolls up (and deletes)
        // at least that many, and the backlog is gone too.
        for minute in [first + MINUTE_MS, first + 2 * MINUTE_MS] {
            let inserted = one_minute(&mut store, 500, minute);
            let stats = store
                .compact(
                    call_at(minute),
                    &Retention::recommended().keeping_up_with(inserted),
                )
                .expect("scaled");
            assert!(stats.samples_rolled_up >= inserted, "{stats:?}");
            assert!(stats.finished, "{stats:?}");
            let left = store.samples("c499", 0, 1_000).expect("raw");
            assert!(left.is_empty(), "{} raw rows left", left.len());
        }
        // The bound only rises: a quiet minute keeps the recommended one.
        assert_eq!(
            Retention::recommended()
                .keeping_up_with(10)
                .max_rows_per_call,
            20_000
        );
        assert_eq!(
            Retention::recommended()
                .keeping_up_with(u64::MAX)
                .max_rows_per_call,
            u32::MAX
        );
    }

    #[test]
    fn minutes_events_and_extra_incidents_expire_but_incidents_keep_their_evidence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path()).expect("open");
        fill(&mut store, "api", 30);
        let old_event = store
            .insert_event("api", NOW - 3 * HOUR_MS, "started", "{}")
            .expect("old");
        let new_event = store
            .insert_event("api", NOW - HOUR_MS, "leak-suspected", "{}")
            .expect("new");
        let mut ids = Vec::new();
        for hours_ago in [28, 27, 26] {
            let t = NOW - hours_ago * HOUR_MS;
            store
                .insert_event("api", t - 1, "budget-breach", "{}")
                .expect("event");
            ids.push(
                store
                    .record_incident("api", t, "budget-breach", Duration::from_secs(60), None)
                    .expect("incident"),
            );
        }

        let stats = store.compact(NOW, &retention()).expect("compact");
        assert!(stats.finished, "{stats:?}");
        assert_eq!(stats.incidents_deleted, 1);
        assert_eq!(stats.events_deleted, 4);
        // 29 hours rolled up, of which the 6 beyond a day were deleted at once.
        assert_eq!(stats.minutes_written, 29 * 60);
        assert_eq!(stats.minutes_deleted, 6 * 60);

        let series = store.series("api", 0, 100_000).expect("series");
        assert_eq!(series.len(), 23 * 60 + 360);
        assert_eq!(series[0].sample.t_unix_ms, NOW - 24 * HOUR_MS);
        let events = store.events(None, 0, 100).expect("events");
        assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), [new_event]);
        assert!(events.iter().all(|e| e.id != old_event));

        assert!(store.incident(ids[0]).expect("oldest").is_none());
        for &id in &ids[1..] {
            let incident = store.incident(id).expect("read").expect("kept");
            // 60 s of samples every 10 s, their raw rows long rolled up and gone.
            assert_eq!(incident.samples.len(), 6);
            assert_eq!(incident.events.len(), 1);
        }
    }

    #[test]
    fn late_samples_of_a_rolled_up_minute_are_merged_into_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path()).expect("open");
        let minute = NOW - 2 * HOUR_MS;
        store
            .insert_samples(&[SampleRow::new("api", minute + 1_000, 10)])
            .expect("insert");
        store.compact(NOW, &retention()).expect("first");
        let mut late = SampleRow::new("api", minute + 2_000, 30);
        late.level = Some("critical".into());
        store.insert_samples(&[late]).expect("late");
        store.compact(NOW, &retention()).expect("second");

        let series = store.series("api", 0, 10).expect("series");
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].sample.rss_bytes, 20);
        assert_eq!(series[0].sample.level.as_deref(), Some("critical"));
        assert_eq!(
            series[0].resolution,
            Resolution::Minute {
                samples: 2,
                rss_min_bytes: 10,
                rss_max_bytes: 30
            }
        );
    }

    #[test]
    fn a_zero_row_bound_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path()).expect("open");
        let bad = Retention {
            max_rows_per_call: 0,
            ..Retention::recommended()
        };
        let err = store.compact(NOW, &bad).expect_err("zero");
        assert_eq!(
            err.to_string(),
            "invalid retention: max_rows_per_call '0' (expected at least 1)"
        );
    }

    #[test]
    fn minutes_start_on_minute_boundaries_before_the_epoch_too() {
        assert_eq!(minute_of(0), 0);
        assert_eq!(minute_of(59_999), 0);
        assert_eq!(minute_of(60_000), 60_000);
        assert_eq!(minute_of(-1), -60_000);
    }
}
