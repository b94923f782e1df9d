//! Opening the store, and its writes. [`Store`] is the one read-write connection (the
//! supervisor's, usually owned by the writer thread); [`StoreReader`] is a read-only one for
//! reports and the HTTP API, which in WAL mode never blocks the writer nor is blocked by it.

use std::collections::HashMap;
use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction};

use crate::error::{Op, StoreError};
use crate::read;
use crate::retention::{self, CompactStats, Retention};
use crate::rows::{duration_ms, to_db, EventRow, Incident, IncidentSummary, Point, SampleRow};
use crate::schema;

/// The name of the database file in the data dir (SQLite adds `-wal` and `-shm` beside it).
pub const DB_FILE_NAME: &str = "plimsoll.db";

/// How long a connection waits for another one's lock before it gives up. In WAL mode only
/// two writers (or a checkpoint) contend, so this is reached only when something is stuck.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The WAL is truncated back to this size after a checkpoint, so that one burst does not
/// leave a large file behind.
const JOURNAL_SIZE_LIMIT_BYTES: i64 = 32 * 1024 * 1024;

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 32;

/// Target ids remembered by the writer; past this the cache starts over, so that a supervisor
/// watching ever new targets keeps a flat memory.
const MAX_CACHED_TARGETS: usize = 1024;

/// The read-write store. Methods take `&mut self` for writes: one writer per store at a time
/// (a second process gets [`StoreError::Sqlite`] after the busy timeout, never a corrupt file).
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Target name → id; only holds ids of committed rows (cleared when a write fails).
    target_ids: HashMap<String, i64>,
}

/// A read-only connection to a store that a [`Store`] created (possibly in another process).
#[derive(Debug)]
pub struct StoreReader {
    conn: Connection,
    path: PathBuf,
}

/// The read methods, the same on the writer's [`Store`] and on a [`StoreReader`]: each reads
/// through `self.conn` with the queries in `read.rs`.
macro_rules! read_methods {
    () => {
        /// Runs SQLite's `PRAGMA integrity_check` and returns what it found wrong: an empty list
        /// for a sound file.
        pub fn integrity_problems(&self) -> Result<Vec<String>, StoreError> {
            read::integrity_problems(&self.conn)
        }

        /// The names of all targets the store has seen, sorted.
        pub fn targets(&self) -> Result<Vec<String>, StoreError> {
            read::targets(&self.conn)
        }

        /// Up to `limit` raw samples of `target` taken at or after `since_unix_ms`, oldest first
        /// (page on by passing the last one's time + 1).
        pub fn samples(
            &self,
            target: &str,
            since_unix_ms: i64,
            limit: usize,
        ) -> Result<Vec<SampleRow>, StoreError> {
            read::samples(&self.conn, target, since_unix_ms, limit)
        }

        /// Up to `limit` points of `target`'s history from `since_unix_ms` on, oldest first:
        /// per-minute roll-ups for the time before the oldest raw sample, raw samples after it.
        pub fn series(
            &self,
            target: &str,
            since_unix_ms: i64,
            limit: usize,
        ) -> Result<Vec<Point>, StoreError> {
            read::series(&self.conn, target, since_unix_ms, limit)
        }

        /// Up to `limit` events at or after `since_unix_ms`, of one target or of all, oldest first.
        pub fn events(
            &self,
            target: Option<&str>,
            since_unix_ms: i64,
            limit: usize,
        ) -> Result<Vec<EventRow>, StoreError> {
            read::events(&self.conn, target, since_unix_ms, limit)
        }

        /// The newest `limit` incidents, of one target or of all, newest first, without evidence.
        pub fn incidents(
            &self,
            target: Option<&str>,
            limit: usize,
        ) -> Result<Vec<IncidentSummary>, StoreError> {
            read::incidents(&self.conn, target, limit)
        }

        /// One incident with its samples and events, or `None` when there is no such id (or it
        /// was deleted by retention).
        pub fn incident(&self, id: i64) -> Result<Option<Incident>, StoreError> {
            read::incident(&self.conn, id)
        }
    };
}

impl Store {
    /// Opens the store in `dir`, creating the dir (mode 0700) and the database (mode 0600)
    /// when they do not exist, turning on WAL and applying missing migrations.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        let path = dir.join(DB_FILE_NAME);
        // Create the file first so that it gets our mode; SQLite gives -wal and -shm the same.
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|source| StoreError::CreateFile {
                path: path.clone(),
                source,
            })?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn =
            Connection::open_with_flags(&path, flags).map_err(|e| open_error(&path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| open_error(&path, e))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
            .map_err(|e| open_error(&path, e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NoWal { path, mode });
        }
        // NORMAL in WAL mode: a commit survives the process being killed (it is in the OS's
        // page cache); only a power loss can roll back the last commits, never corrupt.
        for (pragma, value) in [
            ("synchronous", "NORMAL"),
            ("foreign_keys", "ON"),
            ("journal_size_limit", &JOURNAL_SIZE_LIMIT_BYTES.to_string()),
        ] {
            conn.pragma_update(None, pragma, value)
                .map_err(|e| open_error(&path, e))?;
        }
        schema::migrate(&mut conn, &path)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Store {
            conn,
            path,
            target_ids: HashMap::new(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends samples in one transaction. Samples may come in any order and for any
    /// targets; a sample older than what was already rolled up is folded in at the next
    /// [`Store::compact`].
    pub fn insert_samples(&mut self, samples: &[SampleRow]) -> Result<(), StoreError> {
        if samples.iter().any(|s| s.target.is_empty()) {
            return Err(StoreError::EmptyTargetName);
        }
        self.write("insert samples", |tx, ids| {
            let mut stmt = tx.prepare_cached(INSERT_SAMPLE)?;
            for s in samples {
                let target_id = target_id(tx, ids, &s.target)?;
                let o = s.optional_bytes().map(|v| v.map(to_db));
                stmt.execute(params![
                    target_id,
                    s.t_unix_ms,
                    to_db(s.rss_bytes),
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
                    s.level,
                ])?;
            }
            Ok(())
        })
    }

    /// Appends an event and returns its id. `payload_json` is stored as given (the store does
    /// not parse it).
    pub fn insert_event(
        &mut self,
        target: &str,
        t_unix_ms: i64,
        kind: &str,
        payload_json: &str,
    ) -> Result<i64, StoreError> {
        if target.is_empty() {
            return Err(StoreError::EmptyTargetName);
        }
        self.write("insert event", |tx, ids| {
            let target_id = target_id(tx, ids, target)?;
            tx.prepare_cached(
                "INSERT INTO events (target_id, t_unix_ms, kind, payload_json) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![target_id, t_unix_ms, kind, payload_json])?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// Records an incident of `target` at `t_unix_ms` and returns its id: copies the target's
    /// raw samples and events of `(t_unix_ms - lookback, t_unix_ms]` into the incident, where
    /// sample and event retention cannot reach them. The lookback should stay within
    /// [`Retention::raw_for`]: older samples are only left as roll-ups, which are not copied.
    pub fn record_incident(
        &mut self,
        target: &str,
        t_unix_ms: i64,
        reason: &str,
        lookback: Duration,
        snapshot_path: Option<&str>,
    ) -> Result<i64, StoreError> {
        if target.is_empty() {
            return Err(StoreError::EmptyTargetName);
        }
        let lookback_ms = duration_ms(lookback);
        let from = t_unix_ms.saturating_sub(lookback_ms);
        self.write("record incident", |tx, ids| {
            let target_id = target_id(tx, ids, target)?;
            tx.prepare_cached(
                "INSERT INTO incidents (target_id, t_unix_ms, reason, snapshot_path, lookback_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                target_id,
                t_unix_ms,
                reason,
                snapshot_path,
                lookback_ms
            ])?;
            let id = tx.last_insert_rowid();
            tx.prepare_cached(COPY_INCIDENT_SAMPLES)?
                .execute(params![id, target_id, from, t_unix_ms])?;
            tx.prepare_cached(
                "INSERT INTO incident_events (incident_id, event_id, t_unix_ms, kind, payload_json) \
                 SELECT ?1, id, t_unix_ms, kind, payload_json FROM events \
                 WHERE target_id = ?2 AND t_unix_ms > ?3 AND t_unix_ms <= ?4 \
                 ORDER BY t_unix_ms, id",
            )?
            .execute(params![id, target_id, from, t_unix_ms])?;
            Ok(id)
        })
    }

    /// Applies `retention` as of `now_unix_ms`, doing at most
    /// [`Retention::max_rows_per_call`] rows of work in one transaction: rolls raw samples
    /// older than `raw_for` (whole minutes) into per-minute rows and deletes them, deletes
    /// minute rows older than `minute_for`, events older than `events_for`, and the oldest
    /// incidents beyond `incidents_kept`. Call it every minute or so; when
    /// [`CompactStats::finished`] is false there was more to do, and the next call goes on.
    /// Deletes the leak history: every `leak-*` event (the copies kept in incidents stay, as
    /// evidence). Returns how many events went.
    pub fn clear_leak_history(&mut self) -> Result<u64, StoreError> {
        self.write("clear leak history", |tx, _| {
            tx.execute("DELETE FROM events WHERE kind LIKE 'leak-%'", [])
                .map(|n| n as u64)
        })
    }

    pub fn compact(
        &mut self,
        now_unix_ms: i64,
        retention: &Retention,
    ) -> Result<CompactStats, StoreError> {
        retention.validate()?;
        self.write("compact", |tx, _| {
            retention::compact(tx, now_unix_ms, retention)
        })
    }

    read_methods!();

    /// Runs `f` in one immediate transaction and commits. When anything fails the
    /// transaction rolls back and the target id cache is dropped, since it may hold ids the
    /// rollback took back.
    fn write<T>(
        &mut self,
        op: &'static str,
        f: impl FnOnce(&Transaction<'_>, &mut HashMap<String, i64>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let value = f(&tx, &mut self.target_ids)?;
            tx.commit()?;
            Ok(value)
        })();
        if result.is_err() {
            self.target_ids.clear();
        }
        result.op(op)
    }
}

impl StoreReader {
    /// Opens the store in `dir` read-only. It must exist and have this build's schema
    /// version: readers never create nor migrate.
    pub fn open(dir: &Path) -> Result<StoreReader, StoreError> {
        let path = dir.join(DB_FILE_NAME);
        if !path.try_exists().unwrap_or(false) {
            return Err(StoreError::Missing { path });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(|e| open_error(&path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| open_error(&path, e))?;
        let found = schema::version(&conn).map_err(|e| open_error(&path, e))?;
        if found != schema::VERSION {
            return Err(StoreError::SchemaVersion {
                path,
                found,
                supported: schema::VERSION,
            });
        }
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(StoreReader { conn, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    read_methods!();
}

const INSERT_SAMPLE: &str = "INSERT INTO samples (target_id, t_unix_ms, rss_bytes, \
     pss_bytes, uss_bytes, swap_bytes, heap_used_bytes, heap_total_bytes, \
     heap_used_after_gc_bytes, external_bytes, cgroup_usage_bytes, cgroup_limit_bytes, \
     budget_bytes, level) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

const COPY_INCIDENT_SAMPLES: &str = "INSERT INTO incident_samples (incident_id, t_unix_ms, \
     rss_bytes, pss_bytes, uss_bytes, swap_bytes, heap_used_bytes, heap_total_bytes, \
     heap_used_after_gc_bytes, external_bytes, cgroup_usage_bytes, cgroup_limit_bytes, \
     budget_bytes, level) \
     SELECT ?1, t_unix_ms, rss_bytes, pss_bytes, uss_bytes, swap_bytes, heap_used_bytes, \
     heap_total_bytes, heap_used_after_gc_bytes, external_bytes, cgroup_usage_bytes, \
     cgroup_limit_bytes, budget_bytes, level FROM samples \
     WHERE target_id = ?2 AND t_unix_ms > ?3 AND t_unix_ms <= ?4 ORDER BY t_unix_ms";

/// The id of target `name`, interning it on first use.
fn target_id(
    tx: &Transaction<'_>,
    cache: &mut HashMap<String, i64>,
    name: &str,
) -> rusqlite::Result<i64> {
    if let Some(&id) = cache.get(name) {
        return Ok(id);
    }
    let found = tx
        .prepare_cached("SELECT id FROM targets WHERE name = ?1")?
        .query_row([name], |row| row.get(0))
        .optional()?;
    let id = match found {
        Some(id) => id,
        None => {
            tx.prepare_cached("INSERT INTO targets (name) VALUES (?1)")?
                .execute([name])?;
            tx.last_insert_rowid()
        }
    };
    if cache.len() >= MAX_CACHED_TARGETS {
        cache.clear();
    }
    cache.insert(name.to_owned(), id);
    Ok(id)
}

/// Tells "this is not a database" apart from other failures to open.
fn open_error(path: &Path, source: rusqlite::Error) -> StoreError {
    if source.sqlite_error_code() == Some(ErrorCode::NotADatabase) {
        StoreError::NotADatabase {
            path: path.to_path_buf(),
        }
    } else {
        StoreError::Open {
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::rows::from_db;

    fn full_sample(target: &str, t: i64, rss: u64) -> SampleRow {
        SampleRow {
            target: target.to_owned(),
            t_unix_ms: t,
            rss_bytes: rss,
            pss_bytes: Some(rss - 10),
            uss_bytes: Some(rss - 20),
            swap_bytes: Some(0),
            heap_used_bytes: Some(rss / 2),
            heap_total_bytes: Some(rss / 2 + 5),
            heap_used_after_gc_bytes: Some(rss / 3),
            external_bytes: Some(7),
            cgroup_usage_bytes: Some(rss + 100),
            cgroup_limit_bytes: Some(u64::MAX),
            budget_bytes: Some(1 << 30),
            level: Some("ok".into()),
        }
    }

    #[test]
    fn samples_round_trip_with_every_field_and_saturate_huge_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path()).expect("open");
        let rows = vec![
            full_sample("api", 1_000, 5_000),
            SampleRow::new("api", 2_000, 6_000),
            full_sample("worker", 1_500, 9_000),
        ];
        store.insert_samples(&rows).expect("insert");

        let api = store.samples("api", 0, 100).expect("read");
        assert_eq!(api, vec![as_stored(rows[0].clone()), rows[1].clone()]);
        assert_eq!(api[0].cgroup_limit_bytes, Some(i64::MAX as u64));
        assert_eq!(store.samples("api", 1_001, 100).expect("since").len(), 1);
        assert_eq!(store.samples("api", 0, 1).expect("limit").len(), 1);
        assert!(store.samples("nobody", 0, 100).expect("unknown").is_empty());
        assert_eq!(store.targets().expect("targets"), ["api", "worker"]);
    }

    #[test]
    fn events_round_trip_and_filter_by_target_and_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path()).expect("open");
        let a = store
            .insert_event("api", 10, "started", r#"{"pid":1}"#)
            .expect("a");
        let b = store
            .insert_event("db", 20, "exited", r#"{"code":0}"#)
            .expect("b");
        let c = store
            .insert_event("api", 30, "level-changed", "{}")
            .expect("c");
        assert!(a < b && b < c);

        let all = store.events(None, 0, 10).expect("all");
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), [a, b, c]);
        assert_eq!(
            all[1],
            EventRow {
                id: b,
                target: "db".into(),
                t_unix_ms: 20,
                kind: "exited".into(),
                payload_json: r#"{"code":0}"#.into(),
            }
        );
        let api = store.events(Some("api"), 15, 10).expect("api");
        assert_eq!(api.iter().map(|e| e.id).collect::<Vec<_>>(), [c]);
        assert_eq!(store.events(None, 0, 2).expect("limit").len(), 2);
    }

    #[test]
    fn an_incident_copies_only_its_targets_window() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path()).expect("open");
        let rows: Vec<SampleRow> = (0..10)
            .flat_map(|i| {
                [
                    full_sample("api", i * 1_000, 1_000 + i as u64),
                    SampleRow::new("db", i * 1_000, 1),
                ]
            })
            .collect();
        store.insert_samples(&rows).expect("samples");
        store.insert_event("api", 2_000, "old", "{}").expect("old");
        let inside = store
            .insert_event("api", 8_500, "budget-breach", r#"{"rss_bytes":1}"#)
            .expect("inside");
        store.insert_event("db", 8_600, "other", "{}").expect("db");

        let id = store
            .record_incident(
                "api",
                9_000,
                "budget-breach",
                Duration::from_secs(3),
                Some("/d/heap-1.heapsnapshot"),
            )
            .expect("incident");
        // Written after the incident: not part of it.
        store
            .insert_samples(&[SampleRow::new("api", 9_500, 1)])
            .expect("later");

        let incident = store.incident(id).expect("read").expect("exists");
        assert_eq!(incident.target, "api");
        assert_eq!(incident.reason, "budget-breach");
        assert_eq!(
            incident.snapshot_path.as_deref(),
            Some("/d/heap-1.heapsnapshot")
        );
        assert_eq!(incident.lookback, Duration::from_secs(3));
        let times: Vec<i64> = incident.samples.iter().map(|s| s.t_unix_ms).collect();
        assert_eq!(times, [7_000, 8_000, 9_000]);
        assert_eq!(
            incident.samples[0],
            as_stored(full_sample("api", 7_000, 1_007))
        );
        assert_eq!(
            incident.events.iter().map(|e| e.id).collect::<Vec<_>>(),
            [inside]
        );

        let list = store.incidents(None, 10).expect("list");
        assert_eq!(list.len(), 1);
        assert_eq!((list[0].sample_count, list[0].event_count), (3, 1));
        assert!(store.incidents(Some("db"), 10).expect("db").is_empty());
        assert!(store.incident(id + 1).expect("missing").is_none());
    }

    /// The sample as stored: `u64::MAX` comes back as `i64::MAX`.
    fn as_stored(mut s: SampleRow) -> SampleRow {
        s.cgroup_limit_bytes = s.cgroup_limit_bytes.map(|v| from_db(to_db(v)));
        s
    }

    #[test]
    fn opening_twice_keeps_data_and_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut store = Store::open(dir.path()).expect("open");
            store
                .insert_samples(&[SampleRow::new("api", 1, 2)])
                .expect("insert");
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.samples("api", 0, 10).expect("read").len(), 1);
        assert_eq!(
            schema::version(&store.conn).expect("version"),
            schema::VERSION
        );
    }

    #[test]
    fn the_dir_and_the_file_are_private() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("a/b");
        let store = Store::open(&dir).expect("open");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(store.path()), 0o600);
        assert_eq!(mode(&dir.join("plimsoll.db-wal")), 0o600);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DB_FILE_NAME);
        std::fs::write(&path, "this is not SQLite\n".repeat(300)).expect("write");
        let err = Store::open(dir.path()).expect_err("not a db");
        assert!(
            matches!(&err, StoreError::NotADatabase { path: p } if *p == path),
            "{err:?}"
        );
        assert!(err.to_string().contains(&*path.to_string_lossy()));
        let err = StoreReader::open(dir.path()).expect_err("reader too");
        assert!(matches!(err, StoreError::NotADatabase { .. }), "{err:?}");
    }

    #[test]
    fn a_data_dir_under_a_file_is_a_create_dir_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("file");
        std::fs::write(&file, "x").expect("write");
        let err = Store::open(&file.join("data")).expect_err("under a file");
        assert!(
            matches!(&err, StoreError::CreateDir { path, .. } if *path == file.join("data")),
            "{err:?}"
        );
    }

    #[test]
    fn a_reader_needs_an_existing_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = StoreReader::open(dir.path()).expect_err("missing");
        assert!(matches!(err, StoreError::Missing { .. }), "{err:?}");
        assert!(
            !dir.path().join(DB_FILE_NAME).exists(),
            "a reader creates nothing"
        );
    }

    #[test]
    fn a_reader_sees_commits_while_the_writer_holds_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path()).expect("open");
        store
            .insert_samples(&[SampleRow::new("api", 1, 2)])
            .expect("insert");
        let reader = StoreReader::open(dir.path()).expect("reader");
        assert_eq!(reader.samples("api", 0, 10).expect("read").len(), 1);
        store
            .insert_samples(&[SampleRow::new("api", 2, 3)])
            .expect("insert more");
        assert_eq!(reader.samples("api", 0, 10).expect("read").len(), 2);
        assert!(reader.integrity_problems().expect("check").is_empty());
    }

    #[test]
    fn empty_target_names_are_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path()).expect("open");
        let err = store
            .insert_samples(&[SampleRow::new("api", 1, 2), SampleRow::new("", 1, 2)])
            .expect_err("empty");
        assert!(matches!(err, StoreError::EmptyTargetName));
        assert!(store.targets().expect("targets").is_empty());
        assert!(store.insert_event("", 1, "x", "{}").is_err());
    }

    #[test]
    fn a_failed_write_rolls_back_and_forgets_uncommitted_target_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path()).expect("open");
        let err = store
            .write("test", |tx, ids| {
                target_id(tx, ids, "ghost")?;
                Err::<(), _>(rusqlite::Error::QueryReturnedNoRows)
            })
            .expect_err("fails");
        assert!(matches!(err, StoreError::Sqlite { op: "test", .. }));
        assert!(store.target_ids.is_empty());
        store
            .insert_samples(&[SampleRow::new("ghost", 1, 2)])
            .expect("insert");
        assert_eq!(store.samples("ghost", 0, 10).expect("read").len(), 1);
    }
}
