//! The schema and its migrations. `PRAGMA user_version` holds the number of migrations applied;
//! opening a store for writing applies the missing ones in one immediate transaction, so two
//! processes opening the same new store at once cannot both migrate it.
//!
//! Migrations are append-only: a released one is never edited, a change is a new entry.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::StoreError;

/// The schema, one entry per version: entry `i` takes a store from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[V1];

/// The schema version this build writes and reads.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Version 1. Tables are `STRICT` (a wrong type is an error, not a silent conversion); byte
/// counts are integers; times are milliseconds since the Unix epoch. Targets are interned in
/// `targets` so that a sample row does not repeat the name. Incident evidence is a copy, not a
/// reference, so that retention of the live tables never touches it.
const V1: &str = "
CREATE TABLE targets (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
) STRICT;

CREATE TABLE samples (
    target_id                INTEGER NOT NULL REFERENCES targets(id),
    t_unix_ms                INTEGER NOT NULL,
    rss_bytes                INTEGER NOT NULL,
    pss_bytes                INTEGER,
    uss_bytes                INTEGER,
    swap_bytes               INTEGER,
    heap_used_bytes          INTEGER,
    heap_total_bytes         INTEGER,
    heap_used_after_gc_bytes INTEGER,
    external_bytes           INTEGER,
    cgroup_usage_bytes       INTEGER,
    cgroup_limit_bytes       INTEGER,
    budget_bytes             INTEGER,
    level                    TEXT
) STRICT;
CREATE INDEX samples_by_target_time ON samples (target_id, t_unix_ms);

CREATE TABLE samples_minute (
    target_id                INTEGER NOT NULL REFERENCES targets(id),
    minute_unix_ms           INTEGER NOT NULL,
    samples                  INTEGER NOT NULL,
    rss_min_bytes            INTEGER NOT NULL,
    rss_avg_bytes            INTEGER NOT NULL,
    rss_max_bytes            INTEGER NOT NULL,
    pss_bytes                INTEGER,
    uss_bytes                INTEGER,
    swap_bytes               INTEGER,
    heap_used_bytes          INTEGER,
    heap_total_bytes         INTEGER,
    heap_used_after_gc_bytes INTEGER,
    external_bytes           INTEGER,
    cgroup_usage_bytes       INTEGER,
    cgroup_limit_bytes       INTEGER,
    budget_bytes             INTEGER,
    level                    TEXT,
    PRIMARY KEY (target_id, minute_unix_ms)
) STRICT, WITHOUT ROWID;

CREATE TABLE events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    target_id    INTEGER NOT NULL REFERENCES targets(id),
    t_unix_ms    INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    payload_json TEXT NOT NULL
) STRICT;
CREATE INDEX events_by_time ON events (t_unix_ms);
CREATE INDEX events_by_target_time ON events (target_id, t_unix_ms);

CREATE TABLE incidents (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    target_id     INTEGER NOT NULL REFERENCES targets(id),
    t_unix_ms     INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    snapshot_path TEXT,
    lookback_ms   INTEGER NOT NULL
) STRICT;
CREATE INDEX incidents_by_target ON incidents (target_id, id);

CREATE TABLE incident_samples (
    incident_id              INTEGER NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
    t_unix_ms                INTEGER NOT NULL,
    rss_bytes                INTEGER NOT NULL,
    pss_bytes                INTEGER,
    uss_bytes                INTEGER,
    swap_bytes               INTEGER,
    heap_used_bytes          INTEGER,
    heap_total_bytes         INTEGER,
    heap_used_after_gc_bytes INTEGER,
    external_bytes           INTEGER,
    cgroup_usage_bytes       INTEGER,
    cgroup_limit_bytes       INTEGER,
    budget_bytes             INTEGER,
    level                    TEXT
) STRICT;
CREATE INDEX incident_samples_by_incident ON incident_samples (incident_id, t_unix_ms);

CREATE TABLE incident_events (
    incident_id  INTEGER NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
    event_id     INTEGER NOT NULL,
    t_unix_ms    INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    payload_json TEXT NOT NULL
) STRICT;
CREATE INDEX incident_events_by_incident ON incident_events (incident_id, t_unix_ms);
";

/// The schema version of an open database.
pub(crate) fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Brings the database at `path` to [`VERSION`], or fails without changing it when the file
/// is newer than this build.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let open_error = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(open_error)?;
    // Read inside the write lock: another process may have migrated it meanwhile.
    let found = version(&tx).map_err(open_error)?;
    let Ok(applied) = usize::try_from(found) else {
        return Err(StoreError::SchemaVersion {
            path: path.to_path_buf(),
            found,
            supported: VERSION,
        });
    };
    let Some(missing) = MIGRATIONS.get(applied..) else {
        return Err(StoreError::SchemaVersion {
            path: path.to_path_buf(),
            found,
            supported: VERSION,
        });
    };
    if missing.is_empty() {
        return Ok(());
    }
    for sql in missing {
        tx.execute_batch(sql).map_err(open_error)?;
    }
    tx.pragma_update(None, "user_version", VERSION)
        .map_err(open_error)?;
    tx.commit().map_err(open_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::OPTIONAL_COLUMNS;

    fn columns(conn: &Connection, table: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .expect("prepare");
        let names = stmt
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<Vec<String>, _>>()
            .expect("rows");
        names
    }

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn, Path::new(":memory:")).expect("first");
        migrate(&mut conn, Path::new(":memory:")).expect("second");
        assert_eq!(version(&conn).expect("version"), VERSION);
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_alone() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.pragma_update(None, "user_version", VERSION + 1)
            .expect("set");
        let err = migrate(&mut conn, Path::new("/d/plimsoll.db")).expect_err("newer");
        assert!(
            matches!(err, StoreError::SchemaVersion { found, .. } if found == VERSION + 1),
            "{err:?}"
        );
        assert_eq!(version(&conn).expect("version"), VERSION + 1);
        assert!(columns(&conn, "samples").is_empty());
    }

    #[test]
    fn sample_tables_list_the_optional_columns_in_the_shared_order() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn, Path::new(":memory:")).expect("migrate");
        for (table, skip) in [
            ("samples", 3),
            ("incident_samples", 3),
            ("samples_minute", 6),
        ] {
            let cols = columns(&conn, table);
            assert_eq!(cols[skip..skip + OPTIONAL_COLUMNS.len()], OPTIONAL_COLUMNS);
            assert_eq!(cols[skip + OPTIONAL_COLUMNS.len()], "level", "{table}");
        }
    }
}
