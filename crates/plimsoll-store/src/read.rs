//! The queries, shared by the writer's connection and the read-only ones. Every list is
//! bounded by a caller's `limit`, so a reader's memory is what it asked for.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row};

use crate::error::{Op, StoreError};
use crate::rows::{
    from_db, EventRow, Incident, IncidentSummary, Point, Resolution, SampleRow, OPTIONAL_COLUMNS,
};

/// The columns of a sample after its target, in the order [`sample_from_row`] reads them.
pub(crate) const SAMPLE_COLUMNS: &str = "t_unix_ms, rss_bytes, pss_bytes, uss_bytes, \
     swap_bytes, heap_used_bytes, heap_total_bytes, heap_used_after_gc_bytes, external_bytes, \
     cgroup_usage_bytes, cgroup_limit_bytes, budget_bytes, level";

/// The length of a roll-up bucket.
pub(crate) const MINUTE_MS: i64 = 60_000;

/// A `LIMIT` value.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The optional byte counts in [`OPTIONAL_COLUMNS`] order, from column `at` on.
pub(crate) fn optional_from_row(
    row: &Row<'_>,
    at: usize,
) -> rusqlite::Result<[Option<u64>; OPTIONAL_COLUMNS.len()]> {
    let mut optional = [None; OPTIONAL_COLUMNS.len()];
    for (i, slot) in optional.iter_mut().enumerate() {
        *slot = row.get::<_, Option<i64>>(at + i)?.map(from_db);
    }
    Ok(optional)
}

/// A sample from the [`SAMPLE_COLUMNS`] starting at column `at`.
pub(crate) fn sample_from_row(
    target: &str,
    row: &Row<'_>,
    at: usize,
) -> rusqlite::Result<SampleRow> {
    Ok(SampleRow::from_parts(
        target.to_owned(),
        row.get(at)?,
        from_db(row.get(at + 1)?),
        optional_from_row(row, at + 2)?,
        row.get(at + 2 + OPTIONAL_COLUMNS.len())?,
    ))
}

fn target_id(conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT id FROM targets WHERE name = ?1")?
        .query_row([name], |row| row.get(0))
        .optional()
}

pub(crate) fn integrity_problems(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let lines = (|| {
        let mut stmt = conn.prepare("PRAGMA integrity_check")?;
        let lines = stmt
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(lines)
    })()
    .op("integrity check")?;
    Ok(lines.into_iter().filter(|line| line != "ok").collect())
}

pub(crate) fn targets(conn: &Connection) -> Result<Vec<String>, StoreError> {
    (|| {
        let mut stmt = conn.prepare_cached("SELECT name FROM targets ORDER BY name")?;
        let names = stmt
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(names)
    })()
    .op("read targets")
}

pub(crate) fn samples(
    conn: &Connection,
    target: &str,
    since_unix_ms: i64,
    limit: usize,
) -> Result<Vec<SampleRow>, StoreError> {
    (|| {
        let Some(target_id) = target_id(conn, target)? else {
            return Ok(Vec::new());
        };
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SAMPLE_COLUMNS} FROM samples WHERE target_id = ?1 AND t_unix_ms >= ?2 \
             ORDER BY t_unix_ms LIMIT ?3"
        ))?;
        let rows = stmt
            .query_map((target_id, since_unix_ms, sql_limit(limit)), |row| {
                sample_from_row(target, row, 0)
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    })()
    .op("read samples")
}

pub(crate) fn series(
    conn: &Connection,
    target: &str,
    since_unix_ms: i64,
    limit: usize,
) -> Result<Vec<Point>, StoreError> {
    (|| {
        let Some(target_id) = target_id(conn, target)? else {
            return Ok(Vec::new());
        };
        let first_raw: Option<i64> = conn
            .prepare_cached("SELECT min(t_unix_ms) FROM samples WHERE target_id = ?1")?
            .query_row([target_id], |row| row.get(0))?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT minute_unix_ms, samples, rss_min_bytes, rss_avg_bytes, rss_max_bytes, {}, \
             level FROM samples_minute WHERE target_id = ?1 AND minute_unix_ms > ?2 \
             AND minute_unix_ms < ?3 ORDER BY minute_unix_ms LIMIT ?4",
            OPTIONAL_COLUMNS.join(", ")
        ))?;
        let mut points = stmt
            .query_map(
                (
                    target_id,
                    // The minute that holds `since` counts.
                    since_unix_ms.saturating_sub(MINUTE_MS),
                    first_raw.unwrap_or(i64::MAX),
                    sql_limit(limit),
                ),
                |row| {
                    let sample = SampleRow::from_parts(
                        target.to_owned(),
                        row.get(0)?,
                        from_db(row.get(3)?),
                        optional_from_row(row, 5)?,
                        row.get(5 + OPTIONAL_COLUMNS.len())?,
                    );
                    let resolution = Resolution::Minute {
                        samples: from_db(row.get(1)?),
                        rss_min_bytes: from_db(row.get(2)?),
                        rss_max_bytes: from_db(row.get(4)?),
                    };
                    Ok(Point { sample, resolution })
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let left = limit.saturating_sub(points.len());
        if left > 0 {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {SAMPLE_COLUMNS} FROM samples WHERE target_id = ?1 AND t_unix_ms >= ?2 \
                 ORDER BY t_unix_ms LIMIT ?3"
            ))?;
            let raw = stmt.query_map((target_id, since_unix_ms, sql_limit(left)), |row| {
                Ok(Point {
                    sample: sample_from_row(target, row, 0)?,
                    resolution: Resolution::Raw,
                })
            })?;
            for point in raw {
                points.push(point?);
            }
        }
        Ok(points)
    })()
    .op("read series")
}

pub(crate) fn events(
    conn: &Connection,
    target: Option<&str>,
    since_unix_ms: i64,
    limit: usize,
) -> Result<Vec<EventRow>, StoreError> {
    let event = |row: &Row<'_>| {
        Ok(EventRow {
            id: row.get(0)?,
            target: row.get(1)?,
            t_unix_ms: row.get(2)?,
            kind: row.get(3)?,
            payload_json: row.get(4)?,
        })
    };
    (|| match target {
        Some(name) => {
            let Some(target_id) = target_id(conn, name)? else {
                return Ok(Vec::new());
            };
            let mut stmt = conn.prepare_cached(
                "SELECT id, ?1, t_unix_ms, kind, payload_json FROM events \
                 WHERE target_id = ?2 AND t_unix_ms >= ?3 ORDER BY t_unix_ms, id LIMIT ?4",
            )?;
            let rows = stmt
                .query_map((name, target_id, since_unix_ms, sql_limit(limit)), event)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        }
        None => {
            let mut stmt = conn.prepare_cached(
                "SELECT e.id, t.name, e.t_unix_ms, e.kind, e.payload_json \
                 FROM events e JOIN targets t ON t.id = e.target_id \
                 WHERE e.t_unix_ms >= ?1 ORDER BY e.t_unix_ms, e.id LIMIT ?2",
            )?;
            let rows = stmt
                .query_map((since_unix_ms, sql_limit(limit)), event)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        }
    })()
    .op("read events")
}

const INCIDENT_SUMMARY: &str = "SELECT i.id, t.name, i.t_unix_ms, i.reason, i.snapshot_path, \
     i.lookback_ms, \
     (SELECT count(*) FROM incident_samples s WHERE s.incident_id = i.id), \
     (SELECT count(*) FROM incident_events e WHERE e.incident_id = i.id) \
     FROM incidents i JOIN targets t ON t.id = i.target_id";

fn incident_summary(row: &Row<'_>) -> rusqlite::Result<IncidentSummary> {
    Ok(IncidentSummary {
        id: row.get(0)?,
        target: row.get(1)?,
        t_unix_ms: row.get(2)?,
        reason: row.get(3)?,
        snapshot_path: row.get(4)?,
        lookback: Duration::from_millis(from_db(row.get(5)?)),
        sample_count: from_db(row.get(6)?),
        event_count: from_db(row.get(7)?),
    })
}

pub(crate) fn incidents(
    conn: &Connection,
    target: Option<&str>,
    limit: usize,
) -> Result<Vec<IncidentSummary>, StoreError> {
    (|| {
        let mut stmt = conn.prepare_cached(&format!(
            "{INCIDENT_SUMMARY} WHERE ?1 IS NULL OR t.name = ?1 ORDER BY i.id DESC LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map((target, sql_limit(limit)), incident_summary)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    })()
    .op("read incidents")
}

pub(crate) fn incident(conn: &Connection, id: i64) -> Result<Option<Incident>, StoreError> {
    (|| {
        let Some(summary) = conn
            .prepare_cached(&format!("{INCIDENT_SUMMARY} WHERE i.id = ?1"))?
            .query_row([id], incident_summary)
            .optional()?
        else {
            return Ok(None);
        };
        let target = summary.target.as_str();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SAMPLE_COLUMNS} FROM incident_samples WHERE incident_id = ?1 \
             ORDER BY t_unix_ms"
        ))?;
        let samples = stmt
            .query_map([id], |row| sample_from_row(target, row, 0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut stmt = conn.prepare_cached(
            "SELECT event_id, t_unix_ms, kind, payload_json FROM incident_events \
             WHERE incident_id = ?1 ORDER BY t_unix_ms, event_id",
        )?;
        let events = stmt
            .query_map([id], |row| {
                Ok(EventRow {
                    id: row.get(0)?,
                    target: target.to_owned(),
                    t_unix_ms: row.get(1)?,
                    kind: row.get(2)?,
                    payload_json: row.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Some(Incident {
            id: summary.id,
            target: summary.target,
            t_unix_ms: summary.t_unix_ms,
            reason: summary.reason,
            snapshot_path: summary.snapshot_path,
            lookback: summary.lookback,
            samples,
            events,
        }))
    })()
    .op("read incident")
}
