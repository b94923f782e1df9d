//! Integration tests of the store as a separate process sees it: a writer killed with SIGKILL
//! in the middle of its writes leaves a store that reopens, passes `PRAGMA integrity_check`
//! and still holds what was committed.
//!
//! The writer is this test binary itself, re-executed with [`CHILD_DIR_ENV`] set: the
//! `crash_child_write_loop` test then writes until it is killed (or, should the parent be gone,
//! until a deadline); without the variable it returns at once.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plimsoll_store::{Retention, SampleRow, Store, StoreReader, DB_FILE_NAME};

/// Tells the re-executed binary to be the writer, and where.
const CHILD_DIR_ENV: &str = "PLIMSOLL_STORE_TEST_CRASH_CHILD_DIR";

/// The child stops by itself after this, so that it never outlives a crashed parent for long.
const CHILD_LIFETIME: Duration = Duration::from_secs(30);

/// How long the parent waits for the child's writes to show.
const WAIT: Duration = Duration::from_secs(20);

const T0: i64 = 1_700_000_000_000;

#[test]
fn crash_child_write_loop() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let mut store = Store::open(Path::new(&dir)).expect("child open");
    // Go on from where an earlier (killed) child stopped.
    let mut t = store
        .events(Some("api"), 0, usize::MAX)
        .expect("events")
        .last()
        .map_or(T0, |e| e.t_unix_ms + 1_000);
    let retention = Retention {
        raw_for: Duration::from_secs(600),
        minute_for: Duration::from_secs(3_600),
        events_for: Duration::from_secs(24 * 3_600),
        incidents_kept: 5,
        max_rows_per_call: 2_000,
    };
    let started = Instant::now();
    let mut round = 0_u64;
    while started.elapsed() < CHILD_LIFETIME {
        round += 1;
        let rows: Vec<SampleRow> = (0..200)
            .map(|i| {
                let mut s = SampleRow::new("api", t + i * 1_000, 100_000_000 + round);
                s.heap_used_bytes = Some(50_000_000);
                s.level = Some("ok".into());
                s
            })
            .collect();
        t += 200_000;
        store.insert_samples(&rows).expect("samples");
        store
            .insert_event("api", t, "tick", &format!(r#"{{"round":{round}}}"#))
            .expect("event");
        if round.is_multiple_of(5) {
            store
                .record_incident("api", t, "crash", Duration::from_secs(60), None)
                .expect("incident");
            store.compact(t, &retention).expect("compact");
        }
    }
}

/// Kills the child on drop, so that a failed assertion leaves no writer behind.
struct Writer(Child);

impl Writer {
    fn start(dir: &Path) -> Writer {
        let exe = std::env::current_exe().expect("current exe");
        let child = Command::new(exe)
            .args([
                "--exact",
                "crash_child_write_loop",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        Writer(child)
    }

    /// SIGKILL, then reap.
    fn kill(mut self) {
        self.0.kill().expect("kill -9");
        self.0.wait().expect("wait");
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How many events a reader sees, 0 while there is no store yet.
fn committed_events(dir: &Path) -> usize {
    StoreReader::open(dir)
        .and_then(|r| r.events(None, 0, usize::MAX))
        .map_or(0, |e| e.len())
}

fn integrity_check(dir: &Path) -> String {
    let conn = rusqlite::Connection::open(dir.join(DB_FILE_NAME)).expect("open raw");
    let fk: Vec<String> = conn
        .prepare("PRAGMA foreign_key_check")
        .expect("prepare")
        .query_map([], |row| row.get::<_, String>(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(fk.is_empty(), "foreign key violations in {fk:?}");
    conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity_check")
}

#[test]
fn kill_9_during_writes_leaves_a_sound_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut seen = 0;
    // Five writers in a row, each killed mid-stream; each one after the first recovers the
    // store the last one left.
    for _ in 0..5 {
        let writer = Writer::start(dir.path());
        let want = seen + 25;
        let deadline = Instant::now() + WAIT;
        loop {
            seen = committed_events(dir.path());
            if seen >= want {
                break;
            }
            assert!(Instant::now() < deadline, "{seen} events after {WAIT:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
        writer.kill();
        // A killed writer leaves its WAL behind (a clean close would have removed it).
        assert!(dir.path().join(format!("{DB_FILE_NAME}-wal")).exists());

        assert_eq!(integrity_check(dir.path()), "ok");
        let store = Store::open(dir.path()).expect("reopen after kill -9");
        assert!(store.integrity_problems().expect("check").is_empty());
        let events = store.events(None, 0, usize::MAX).expect("events");
        assert!(events.len() >= seen, "{} < {seen}", events.len());
        seen = events.len();
        // Samples are committed before their round's event, which comes 1 s after the last.
        let series = store.series("api", 0, usize::MAX).expect("series");
        let last_event = events.last().expect("events").t_unix_ms;
        let last_sample = series.last().expect("samples").sample.t_unix_ms;
        assert!(
            last_sample >= last_event - 1_000,
            "{last_sample} < {last_event}"
        );
        assert!(series
            .windows(2)
            .all(|w| w[0].sample.t_unix_ms <= w[1].sample.t_unix_ms));
        for summary in store.incidents(None, 10).expect("incidents") {
            let incident = store.incident(summary.id).expect("read").expect("exists");
            assert_eq!(incident.samples.len() as u64, summary.sample_count);
        }
    }
}
