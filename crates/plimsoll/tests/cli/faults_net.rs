//! Network and descriptor faults against the real binary: a flood of idle connections to
//! `run`'s HTTP port under a low open-file limit must not stop sampling nor a breach's restart,
//! and `watch` under a limit too low for all its processes keeps working and says what it
//! skipped. The limits are set with `prlimit` (soft and hard, since plimsoll raises soft to
//! hard), so a few hundred connections are enough.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::harness::{event_names, eventually, read_events, Cmd};

const WITHIN: Duration = Duration::from_secs(30);
const INTERVAL_MS: i64 = 200;
const GRACE_MS: i64 = 1000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A Python program that waits for the file `go`, then grows 20 MB/s (touched bytes).
fn grow_on_go(dir: &Path) -> String {
    let script = format!(
        r#"
import os, time
while not os.path.exists({go:?}):
    time.sleep(0.05)
hold = []
while True:
    hold.append(b"x" * (2 * 1024 * 1024))
    time.sleep(0.1)
"#,
        go = dir.join("go").display().to_string(),
    );
    let path = dir.join("grow.py");
    std::fs::write(&path, script).expect("write target");
    path.display().to_string()
}

#[test]
fn an_idle_connection_flood_neither_stops_sampling_nor_a_breach_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let events_path = dir.path().join("events.jsonl");
    let _plimsoll = Cmd::wrapped(&["prlimit", "--nofile=256:256", "--"], "run")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(&data)
        .arg("--events")
        .arg(&events_path)
        .arg("--interval")
        .arg(format!("{INTERVAL_MS}ms"))
        .arg("--grace")
        .arg(format!("{GRACE_MS}ms"))
        .arg("--budget")
        .arg("64MiB")
        .arg("--name")
        .arg("grower")
        .arg("--")
        .arg("python3")
        .arg(grow_on_go(dir.path()))
        .spawn_in(dir.path());
    let addr_file = data.join("run/http.addr");
    let addr: SocketAddr = eventually("the bound address", WITHIN, || {
        let text = std::fs::read_to_string(&addr_file).ok()?;
        text.trim().parse().ok()
    });

    // More idle connections than plimsoll may have descriptors. A connect may wait for a
    // retried SYN (1 s) when the listen backlog is momentarily full.
    let flooded_at = now_ms();
    let mut flood = Vec::new();
    for _ in 0..400 {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(stream) => flood.push(stream),
            Err(_) => break,
        }
    }
    assert!(
        flood.len() >= 300,
        "only {} connections could be made",
        flood.len()
    );
    // One past the cap is closed at once, not left to hold a descriptor.
    let last = flood.last_mut().expect("a connection");
    last.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("read timeout");
    let mut byte = [0_u8; 1];
    match last.read(&mut byte) {
        Ok(0) => {}
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the connection past the cap is still open: {other:?}"),
    }

    std::fs::write(dir.path().join("go"), "go").expect("go");
    let events = eventually("a restart for the breach", WITHIN, || {
        let events = read_events(&events_path);
        event_names(&events)
            .contains(&"restarted".to_owned())
            .then_some(events)
    });
    let time_of = |name: &str| {
        events
            .iter()
            .find(|e| e["event"] == name)
            .and_then(|e| e["t_unix_ms"].as_i64())
            .unwrap_or_else(|| panic!("no {name} event in {events:?}"))
    };
    let breach = time_of("budget-breach");
    let restarted = time_of("restarted");
    assert!(
        restarted - breach <= INTERVAL_MS + GRACE_MS,
        "restarted {} ms after the breach",
        restarted - breach
    );

    // Samples kept coming at the interval all through the flood.
    let store_dir = data.clone();
    let samples = eventually("stored samples up to the breach", WITHIN, || {
        let store = plimsoll_store::StoreReader::open(&store_dir).ok()?;
        let samples = store.samples("grower", flooded_at, 10_000).ok()?;
        samples
            .last()
            .is_some_and(|s| s.t_unix_ms >= breach)
            .then_some(samples)
    });
    let widest_gap = samples
        .windows(2)
        .map(|pair| pair[1].t_unix_ms - pair[0].t_unix_ms)
        .max()
        .unwrap_or(i64::MAX);
    assert!(
        widest_gap <= 4 * INTERVAL_MS,
        "a gap of {widest_gap} ms between samples during the flood"
    );
    let stderr = std::fs::read_to_string(dir.path().join("plimsoll.stderr")).expect("stderr");
    assert!(
        stderr.contains("too many HTTP connections"),
        "no warning about the flood: {stderr}"
    );
    drop(flood);
}

/// `sleep` processes, killed and reaped when dropped.
struct Sleepers(Vec<Child>);

impl Drop for Sleepers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn watch_under_a_low_fd_limit_watches_what_fits_and_names_what_it_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sleepers = Sleepers(Vec::new());
    for _ in 0..200 {
        let child = Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("spawn sleep");
        sleepers.0.push(child);
    }
    let pids: Vec<String> = sleepers.0.iter().map(|c| c.id().to_string()).collect();
    let events_path = dir.path().join("events.jsonl");
    let mut watch = Cmd::wrapped(&["prlimit", "--nofile=64:64", "--"], "watch")
        .arg("--listen")
        .arg("off")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--events")
        .arg(&events_path)
        .arg("--interval")
        .arg("200ms");
    for pid in &pids {
        watch = watch.arg(pid);
    }
    let mut watch = watch.spawn_in(dir.path());
    let stderr_path = dir.path().join("plimsoll.stderr");
    let stderr = eventually("the skipped warning", WITHIN, || {
        let text = std::fs::read_to_string(&stderr_path).ok()?;
        text.contains("out of file descriptors").then_some(text)
    });
    let skipped: usize = stderr
        .split("not watching ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the warning does not say how many were skipped: {stderr}"));
    assert!(
        stderr.contains(&format!("not watching {skipped} of the 200 pids given")),
        "{stderr}"
    );
    assert!(skipped > 0, "all 200 watched under a limit of 64");
    // Every one watched has its `started` event (polled: the events file is written as the
    // first tick's events go out, while this test reads it).
    let started = eventually("a started event for each one watched", WITHIN, || {
        let events = read_events(&events_path);
        let started: Vec<i64> = events
            .iter()
            .filter(|e| e["event"] == "started")
            .filter_map(|e| e["pid"].as_i64())
            .collect();
        (started.len() == 200 - skipped).then_some(started)
    });

    // Sampling still works: a watched process that exits is seen.
    let first = usize::try_from(started[0]).expect("pid");
    let index = pids
        .iter()
        .position(|p| *p == first.to_string())
        .expect("a pid we started");
    let _ = sleepers.0[index].kill();
    let _ = sleepers.0[index].wait();
    eventually("the exit of a watched process", WITHIN, || {
        read_events(&events_path)
            .iter()
            .any(|e| e["event"] == "exited" && e["pid"].as_i64() == Some(started[0]))
            .then_some(())
    });
    watch.signal("TERM");
    assert_eq!(watch.wait_exit(WITHIN), Some(0));
    drop(sleepers);
}
