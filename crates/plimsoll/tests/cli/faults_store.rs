//! A full disk under the store: `plimsoll run` whose data dir starts refusing writes in the
//! middle of a run. Samples keep reaching `/health`, events keep reaching the `--events` file,
//! each failure is logged with SQLite's cause and counted, a crashed target is restarted (the
//! keeper's start handshake needs no disk), and nothing panics.
//!
//! As root, the data dir is a small tmpfs in a private mount namespace (`unshare -m`, gone with
//! the process) that the test fills to the last byte: a real ENOSPC. Elsewhere, the file-size
//! limit of the running supervisor is lowered (`prlimit --fsize`, SIGXFSZ ignored), so the
//! store's files cannot grow any more: the same failing writes without privileges.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{eventually, read_events, Cmd, Running};
use crate::http::request;

const WITHIN: Duration = Duration::from_secs(20);

/// A target that grows by 1 MiB every 100 ms (so its RSS moves) and crashes after 3 s (so new
/// events come: exited, restarted).
const TARGET: &str = "import time\nhold = []\nfor _ in range(30):\n    \
                      hold.append(bytearray(1 << 20))\n    time.sleep(0.1)\nraise SystemExit(1)\n";

/// How the store is made to fail.
enum Fault {
    /// A tmpfs over the data dir, in the supervisor's own mount namespace.
    Tmpfs,
    /// A file-size limit set on the running supervisor.
    FileSizeLimit,
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}

/// Whether `unshare -m` with a tmpfs mount works here.
fn tmpfs_works(dir: &Path) -> bool {
    let probe = dir.join("probe");
    std::fs::create_dir_all(&probe).expect("mkdir");
    is_root()
        && Command::new("unshare")
            .arg("-m")
            .arg("mount")
            .arg("-t")
            .arg("tmpfs")
            .arg("-o")
            .arg("size=1m")
            .arg("tmpfs")
            .arg(&probe)
            .status()
            .is_ok_and(|s| s.success())
}

/// `plimsoll run` with the data dir at `data`, under `fault`'s set-up.
fn start(dir: &Path, data: &Path, fault: &Fault) -> Running {
    std::fs::create_dir_all(data).expect("data dir");
    let script = dir.join("target.py");
    std::fs::write(&script, TARGET).expect("target");
    let plimsoll = env!("CARGO_BIN_EXE_plimsoll");
    let prelude = match fault {
        Fault::Tmpfs => format!(
            "mount -t tmpfs -o size=16m tmpfs '{}' && exec \"$0\" \"$@\"",
            data.display()
        ),
        // Ignored signals stay ignored across exec: a write past the limit is EFBIG, not death.
        Fault::FileSizeLimit => "trap '' XFSZ; exec \"$0\" \"$@\"".to_owned(),
    };
    let shell = match fault {
        Fault::Tmpfs => Cmd::program("unshare").arg("-m").arg("sh"),
        Fault::FileSizeLimit => Cmd::program("sh"),
    };
    shell
        .arg("-c")
        .arg(prelude)
        .arg(plimsoll)
        .arg("run")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(data)
        .arg("--events")
        .arg(dir.join("events.jsonl"))
        .arg("--interval")
        .arg("100ms")
        .arg("--name")
        .arg("grower")
        .arg("--")
        .arg("python3")
        .arg(&script)
        .spawn_in(dir)
}

/// The data dir as the supervisor sees it (its own mount namespace, for the tmpfs).
fn seen_by(plimsoll: &Running, data: &Path, fault: &Fault) -> PathBuf {
    match fault {
        Fault::Tmpfs => Path::new(&format!("/proc/{}/root", plimsoll.pid()))
            .join(data.strip_prefix("/").expect("absolute")),
        Fault::FileSizeLimit => data.to_owned(),
    }
}

/// Makes every further growth of the store fail.
fn fill(plimsoll: &Running, data: &Path, fault: &Fault) {
    match fault {
        Fault::Tmpfs => {
            let mut filler = std::fs::File::create(data.join("filler")).expect("create the filler");
            let chunk = vec![0u8; 64 * 1024];
            let error = loop {
                if let Err(error) = filler.write_all(&chunk) {
                    break error;
                }
            };
            assert_eq!(error.raw_os_error(), Some(28), "ENOSPC: {error}");
        }
        Fault::FileSizeLimit => {
            let limit = 64 * 1024;
            let status = Command::new("prlimit")
                .arg("--pid")
                .arg(plimsoll.pid().to_string())
                .arg(format!("--fsize={limit}:{limit}"))
                .status()
                .expect("prlimit (util-linux)");
            assert!(status.success(), "prlimit failed");
        }
    }
}

fn health(addr: &str) -> Option<serde_json::Value> {
    let (status, body) = request(addr, "GET", "/health", None);
    (status == 200 || status == 503)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

fn rss_of(health: &serde_json::Value) -> Option<u64> {
    health["targets"][0]["rss_bytes"].as_u64()
}

#[test]
fn a_full_disk_under_the_store_stops_neither_samples_nor_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let fault = if tmpfs_works(dir.path()) {
        Fault::Tmpfs
    } else {
        Fault::FileSizeLimit
    };
    let mut plimsoll = start(dir.path(), &data, &fault);
    let seen = seen_by(&plimsoll, &data, &fault);
    let addr = eventually("the bound address", WITHIN, || {
        let text = std::fs::read_to_string(seen.join("run/http.addr")).ok()?;
        text.ends_with('\n').then(|| text.trim().to_owned())
    });
    let events = dir.path().join("events.jsonl");
    eventually("a sampled target", WITHIN, || {
        health(&addr).and_then(|h| rss_of(&h))
    });
    // Some rows reach the store before the disk fills.
    eventually("the store's WAL", WITHIN, || {
        std::fs::metadata(seen.join("plimsoll.db-wal"))
            .ok()
            .filter(|m| m.len() > 0)
    });
    let events_before = read_events(&events).len();
    fill(&plimsoll, &seen, &fault);
    let filled = Instant::now();
    let stderr = dir.path().join("plimsoll.stderr");
    let log = eventually("a logged store failure", WITHIN, || {
        let log = std::fs::read_to_string(&stderr).ok()?;
        log.contains("store write failed").then_some(log)
    });
    // The cause is SQLite's own words, and the failure is counted.
    let line = log
        .lines()
        .find(|l| l.contains("store write failed"))
        .expect("the line");
    assert!(
        line.contains("database or disk is full") || line.contains("disk I/O error"),
        "{line}"
    );
    assert!(line.contains("failures=1"), "{line}");
    // Samples keep flowing to /health: the growing target's RSS keeps moving.
    let mut seen_rss = std::collections::BTreeSet::new();
    eventually("fresh samples on /health after the failure", WITHIN, || {
        seen_rss.insert(health(&addr).and_then(|h| rss_of(&h))?);
        (seen_rss.len() >= 3).then_some(())
    });
    // Events keep flowing to the events file: the target's crash, and its restart, which
    // needs no disk: a `started` event with a fresh pid after the crash.
    let after = eventually("a restart after the crash on the full disk", WITHIN, || {
        let fresh = &read_events(&events)[events_before..];
        let crashed = fresh.iter().position(|e| e["event"] == "exited")?;
        fresh[crashed..]
            .iter()
            .any(|e| e["event"] == "started" && e["pid"].as_u64().is_some())
            .then(|| fresh.to_vec())
    });
    let names: Vec<&str> = after.iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(names.contains(&"restarted"), "{names:?}");
    assert!(!names.contains(&"gave-up"), "{names:?}");
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    let failures = log.matches("store write failed").count();
    assert!(failures >= 2, "failures keep being logged: {log}");
    assert!(!log.contains("panicked"), "{log}");
    plimsoll.signal("TERM");
    plimsoll.wait_exit(WITHIN);
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
    eprintln!(
        "fault {}: {failures} failures logged within {:?} of the fill",
        match fault {
            Fault::Tmpfs => "tmpfs",
            Fault::FileSizeLimit => "prlimit",
        },
        filled.elapsed()
    );
}
