//! `plimsoll watch`: real processes it does not own, watched by pid and by `--match`; exits,
//! breaches that restart nothing, bad input.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{event_names, eventually, read_events, Cmd};
use crate::http::{json, request};

const WITHIN: Duration = Duration::from_secs(30);

/// Processes a test started, killed and reaped when it ends, passing or failing.
#[derive(Default)]
struct Spawned(Vec<Child>);

impl Spawned {
    /// Starts `program` and returns its pid once its exec is complete (its name and command
    /// line are its own, no longer this test's).
    fn start(&mut self, program: &str, args: &[&str]) -> u32 {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        let pid = child.id();
        self.0.push(child);
        let own = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
        eventually(&format!("{program} started"), WITHIN, || {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            (comm != own && !cmdline.is_empty()).then_some(())
        });
        pid
    }

    /// Kills and reaps the process `pid`.
    fn kill(&mut self, pid: u32) {
        if let Some(child) = self.0.iter_mut().find(|c| c.id() == pid) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Paths {
    events: PathBuf,
    data: PathBuf,
}

fn watch_in(dir: &Path) -> (Cmd, Paths) {
    let paths = Paths {
        events: dir.join("events.jsonl"),
        data: dir.join("data"),
    };
    let cmd = Cmd::new("watch")
        .arg("--listen")
        .arg("off")
        .arg("--data-dir")
        .arg(&paths.data)
        .arg("--events")
        .arg(&paths.events)
        .arg("--interval")
        .arg("200ms");
    (cmd, paths)
}

/// The first event named `name` for `pid`, once it is in the events file.
fn event_for(events: &Path, name: &str, pid: u32) -> serde_json::Value {
    eventually(&format!("{name} of pid {pid}"), WITHIN, || {
        read_events(events)
            .into_iter()
            .find(|e| e["event"] == name && e["pid"] == pid)
    })
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state != "Z")
        })
        .unwrap_or(false)
}

#[test]
fn a_watched_pid_that_exits_is_an_event_and_watch_ends_with_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spawned = Spawned::default();
    let sleep = spawned.start("sleep", &["30"]);
    let (cmd, paths) = watch_in(dir.path());
    let mut plimsoll = cmd.arg(sleep.to_string()).spawn_in(dir.path());
    let started = event_for(&paths.events, "started", sleep);
    assert_eq!(started["target"], format!("sleep-{sleep}"));
    assert_eq!(started["command"], serde_json::json!(["sleep", "30"]));
    eventually("samples in the store", WITHIN, || {
        let store = plimsoll_store::StoreReader::open(&paths.data).ok()?;
        (store.samples(&format!("sleep-{sleep}"), 0, 10).ok()?.len() >= 2).then_some(())
    });

    spawned.kill(sleep);
    let exited = event_for(&paths.events, "exited", sleep);
    assert_eq!(exited["target"], format!("sleep-{sleep}"));
    assert!(exited["code"].is_null() && exited["signal"].is_null());
    assert_eq!(plimsoll.wait_exit(WITHIN), Some(0));
    assert_eq!(
        event_names(&read_events(&paths.events)),
        ["started", "exited"]
    );
}

#[test]
fn watch_stops_on_sigterm_leaving_the_watched_process_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spawned = Spawned::default();
    let sleep = spawned.start("sleep", &["30"]);
    let (cmd, paths) = watch_in(dir.path());
    let mut plimsoll = cmd.arg(sleep.to_string()).spawn_in(dir.path());
    event_for(&paths.events, "started", sleep);
    plimsoll.signal("TERM");
    assert_eq!(plimsoll.wait_exit(WITHIN), Some(0));
    assert!(alive(sleep), "the watched process was left running");
    // Outputs were closed cleanly: the store holds the event too.
    let store = plimsoll_store::StoreReader::open(&paths.data).expect("store");
    let stored = store.events(None, 0, 100).expect("events");
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].kind, "started");
}

#[test]
fn match_picks_up_a_process_started_later_and_records_its_samples() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spawned = Spawned::default();
    // A marker no other process has: this test's own pid.
    let marker = format!("30.{}", std::process::id());
    let (cmd, paths) = watch_in(dir.path());
    let mut plimsoll = cmd
        .arg("--match")
        .arg(format!("^sleep {}$", marker.replace('.', "\\.")))
        .spawn_in(dir.path());
    // Watching has begun before the process starts.
    eventually("watching begun", WITHIN, || {
        std::fs::read_to_string(dir.path().join("plimsoll.stderr"))
            .ok()?
            .contains("watching processes whose command line matches")
            .then_some(())
    });
    let sleep = spawned.start("sh", &["-c", &format!("exec sleep {marker}")]);
    let started = event_for(&paths.events, "started", sleep);
    let name = format!("sleep-{sleep}");
    assert_eq!(started["target"], name);
    assert_eq!(started["command"], serde_json::json!(["sleep", marker]));
    eventually("samples of the match in the store", WITHIN, || {
        let store = plimsoll_store::StoreReader::open(&paths.data).ok()?;
        let samples = store.samples(&name, 0, 10).ok()?;
        (samples.len() >= 2 && samples.iter().all(|s| s.rss_bytes > 0)).then_some(())
    });

    // A match that exits is an event; --match keeps watching for new ones.
    spawned.kill(sleep);
    event_for(&paths.events, "exited", sleep);
    let second = spawned.start("sleep", &[&marker]);
    event_for(&paths.events, "started", second);
    assert!(alive(plimsoll.pid()), "--match keeps watching");

    plimsoll.signal("INT");
    assert_eq!(plimsoll.wait_exit(WITHIN), Some(0));
    let names = event_names(&read_events(&paths.events));
    assert_eq!(names, ["started", "exited", "started"], "only the matches");
}

#[test]
fn a_breach_of_a_watched_process_is_an_event_and_nothing_is_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spawned = Spawned::default();
    // Holds 64 MiB, says so, then waits. (`python3` may be a shim that execs the real one:
    // watching starts once the allocation is done.)
    let ready = dir.path().join("ready");
    let script = format!(
        "import time\nhold = bytearray(64 * 1024 * 1024)\nfor i in range(0, len(hold), 4096): hold[i] = 1\nopen({ready:?}, 'w').write('ready')\ntime.sleep(60)",
        ready = ready.display().to_string()
    );
    let python = spawned.start("python3", &["-c", &script]);
    eventually("python ready", WITHIN, || ready.exists().then_some(()));
    let comm = std::fs::read_to_string(format!("/proc/{python}/comm")).expect("comm");
    let name = format!("{}-{python}", comm.trim_end());
    let (cmd, paths) = watch_in(dir.path());
    let mut plimsoll = cmd
        .arg("--budget")
        .arg("32MiB")
        .arg(python.to_string())
        .spawn_in(dir.path());
    let breach = event_for_kind(&paths.events, "budget-breach");
    assert_eq!(breach["target"], name);
    assert!(breach["rss_bytes"].as_u64().expect("rss") >= 32 << 20);
    assert_eq!(breach["budget_bytes"], 32 << 20);
    // Still running a while later: watch restarts and signals nothing.
    let samples_after = eventually("more samples after the breach", WITHIN, || {
        let store = plimsoll_store::StoreReader::open(&paths.data).ok()?;
        let samples = store.samples(&name, 0, 1000).ok()?;
        (samples.len() >= 10).then_some(samples.len())
    });
    assert!(samples_after >= 10);
    assert!(alive(python), "the watched process must not be killed");
    let names = event_names(&read_events(&paths.events));
    assert!(
        !names.iter().any(|n| n == "exited" || n == "restarted"),
        "{names:?}"
    );
    plimsoll.signal("TERM");
    assert_eq!(plimsoll.wait_exit(WITHIN), Some(0));
    assert!(alive(python), "the watched process must not be killed");
}

#[test]
fn a_watched_process_is_in_health_and_metrics_within_two_intervals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spawned = Spawned::default();
    let ready = dir.path().join("ready");
    let script = format!(
        "import time\nhold = bytearray(48 * 1024 * 1024)\nfor i in range(0, len(hold), 4096): hold[i] = 1\nopen({ready:?}, 'w').write('ready')\ntime.sleep(60)",
        ready = ready.display().to_string()
    );
    let python = spawned.start("python3", &["-c", &script]);
    eventually("python ready", WITHIN, || ready.exists().then_some(()));
    let comm = std::fs::read_to_string(format!("/proc/{python}/comm")).expect("comm");
    let name = format!("{}-{python}", comm.trim_end());
    let data = dir.path().join("data");
    let interval = Duration::from_millis(500);
    let mut plimsoll = Cmd::new("watch")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(&data)
        .arg("--interval")
        .arg("500ms")
        .arg("--budget")
        .arg("32MiB")
        .arg(python.to_string())
        .spawn_in(dir.path());
    let addr_file = data.join("run/http.addr");
    let addr = eventually("the bound address", WITHIN, || {
        let text = std::fs::read_to_string(&addr_file).ok()?;
        text.ends_with('\n').then(|| text.trim().to_owned())
    });
    let listening = std::time::Instant::now();
    let (status, health) = eventually("the watched process's rss in /health", WITHIN, || {
        let (status, body) = request(&addr, "GET", "/health", None);
        let health = json(&body);
        health["targets"][0]["rss_bytes"]
            .as_u64()
            .map(|_| (status, health))
    });
    let took = listening.elapsed();
    assert!(
        took <= interval * 2 + Duration::from_millis(500),
        "rss_bytes appeared after {took:?}"
    );
    let target = &health["targets"][0];
    assert_eq!(target["name"], name);
    assert!(
        target["rss_bytes"].as_u64().expect("rss") >= 48 << 20,
        "{health}"
    );
    assert_eq!(target["owned"], false);
    // 48 MiB against 32 MiB: past the critical mark, so /health says so with 503.
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "critical", "{health}");
    let (_, metrics) = request(&addr, "GET", "/metrics", None);
    assert!(
        metrics.contains(&format!("plimsoll_rss_bytes{{target=\"{name}\"}}")),
        "{metrics}"
    );
    plimsoll.signal("TERM");
    assert_eq!(plimsoll.wait_exit(WITHIN), Some(0));
}

fn event_for_kind(events: &Path, name: &str) -> serde_json::Value {
    eventually(name, WITHIN, || {
        read_events(events).into_iter().find(|e| e["event"] == name)
    })
}

#[test]
fn bad_input_exits_2_naming_the_value_before_anything_starts() {
    let mut exited = Command::new("true").spawn().expect("spawn true");
    exited.wait().expect("reap true");
    let gone = exited.id();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let cases: [(&[&str], String); 4] = [
        (&[&gone.to_string()], format!("no process with pid {gone}")),
        (&["--match", "("], "'('".to_owned()),
        (
            &["--match", "x", "--warn", "90", "--critical", "80"],
            "--warn 90%".to_owned(),
        ),
        (&[], "PID".to_owned()),
    ];
    for (args, expected) in cases {
        let mut cmd = Cmd::new("watch")
            .arg("--listen")
            .arg("off")
            .arg("--data-dir")
            .arg(&data);
        for arg in args {
            cmd = cmd.arg(arg);
        }
        let out = cmd.expect_exit(2);
        assert!(out.stderr.contains(&expected), "{args:?}: {}", out.stderr);
        assert!(!data.exists(), "{args:?}: nothing is written on bad input");
    }
}

#[test]
fn a_process_name_that_is_no_valid_name_is_made_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spawned = Spawned::default();
    // A process names itself: here `../x y`, with a path separator and a space.
    let renamed = spawned.start(
        "python3",
        &[
            "-c",
            "open('/proc/self/comm', 'w').write('../x y')\nimport time\ntime.sleep(30)",
        ],
    );
    eventually("the new process name", WITHIN, || {
        let comm = std::fs::read_to_string(format!("/proc/{renamed}/comm")).ok()?;
        (comm.trim_end() == "../x y").then_some(())
    });
    let (cmd, paths) = watch_in(dir.path());
    let mut plimsoll = cmd.arg(renamed.to_string()).spawn_in(dir.path());
    let started = event_for(&paths.events, "started", renamed);
    let name = format!("-x-y-{renamed}");
    assert_eq!(started["target"], name.as_str());
    eventually("samples in the store under the valid name", WITHIN, || {
        let store = plimsoll_store::StoreReader::open(&paths.data).ok()?;
        (!store.samples(&name, 0, 10).ok()?.is_empty()).then_some(())
    });
    plimsoll.signal("TERM");
    assert_eq!(plimsoll.wait_exit(WITHIN), Some(0));
}
