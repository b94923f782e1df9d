//! Containment under faults: `kill -9` of the supervisor, at rest or in the middle of a restart
//! loop, leaves no process of the target behind, whichever containment it has (its own cgroup
//! v2 or v1, or subreaper + process group), even processes that `setsid`, double-fork, detach
//! or ignore SIGTERM; the store survives intact.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{event_names, eventually, read_events, Cmd, Running};

const WITHIN: Duration = Duration::from_secs(30);

/// Where the hierarchy of `kind` (`cgroup-v2`, or `cgroup-v1`'s memory controller) is mounted.
pub(crate) fn cgroup_mount(kind: &str) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut fields = right.split_whitespace();
        let (fstype, options) = (fields.next()?, fields.nth(1)?);
        let wanted = match kind {
            "cgroup-v2" => fstype == "cgroup2",
            _ => fstype == "cgroup" && options.split(',').any(|o| o == "memory"),
        };
        wanted.then(|| left.split_whitespace().nth(4).map(str::to_owned))?
    })
}

/// Whether a cgroup of `kind` can be made under this process's own, as the keeper would: the
/// tests that force one kind run where the kernel and the sandbox allow it (here: both).
fn contained_here(kind: &str) -> bool {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| match kind {
                "cgroup-v2" => line.strip_prefix("0::").map(str::to_owned),
                _ => line.split_once(":memory:").map(|(_, path)| path.to_owned()),
            })
        });
    let made = cgroup_mount(kind).zip(own).is_some_and(|(mount, own)| {
        let probe = format!("{mount}{own}/plimsoll-test-probe-{}", std::process::id());
        let made = std::fs::create_dir(&probe).is_ok();
        let _ = std::fs::remove_dir(&probe);
        made
    });
    if !made {
        eprintln!(
            "no {kind} cgroup can be made here: this test of that containment does not apply"
        );
    }
    made
}

/// A `sleep` argument unique to this test process and `tag`, to find its processes by.
fn marker(tag: u32) -> String {
    format!("77{tag}{}", std::process::id())
}

/// Live processes whose command line is `sleep MARKER`.
fn marker_pids(marker: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_marker =
            args.len() >= 2 && args[0].ends_with(b"sleep") && args[1] == marker.as_bytes();
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if is_marker && !zombie {
            pids.push(pid);
        }
    }
    pids
}

fn run_in(dir: &Path, containment: &str) -> Cmd {
    Cmd::new("run")
        .env("PLIMSOLL_CONTAINMENT", containment)
        .arg("--listen")
        .arg("off")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--events")
        .arg(dir.join("events.jsonl"))
        .arg("--interval")
        .arg("200ms")
        .arg("--grace")
        .arg("500ms")
}

/// `run_in` of `sh -c SCRIPT`, started with its output in `dir`.
fn run_sh(dir: &Path, containment: &str, script: impl AsRef<std::ffi::OsStr>) -> Running {
    run_in(dir, containment)
        .arg("--")
        .arg("sh")
        .arg("-c")
        .arg(script)
        .spawn_in(dir)
}

/// The containment the `started` events report, once there is one.
fn started_containment(events_path: &Path) -> String {
    eventually("started", WITHIN, || {
        read_events(events_path)
            .into_iter()
            .find(|e| e["event"] == "started")
            .and_then(|e| e["containment"].as_str().map(str::to_owned))
    })
}

/// Polls until none of `markers` has a live process.
fn assert_none_survives(markers: &[String]) {
    eventually("no marker process left", WITHIN, || {
        let left: Vec<u32> = markers.iter().flat_map(|m| marker_pids(m)).collect();
        left.is_empty().then_some(())
    });
}

/// Starts a target that escapes its process group every way it can: a `setsid` child that
/// ignores SIGTERM, a double fork, and (when node is here) a detached Node child; then
/// `kill -9` of the supervisor must leave none of them.
fn kill_9_leaves_no_survivor(containment: &str, tag: u32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let events_path = dir.path().join("events.jsonl");
    let markers: Vec<String> = (0..3).map(|i| marker(tag * 10 + i)).collect();
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let detached = if node {
        format!(
            "node -e \"require('child_process').spawn('sleep', ['{}'], {{detached: true, stdio: 'ignore'}}).unref()\"; ",
            markers[2]
        )
    } else {
        String::new()
    };
    let script = format!(
        "setsid sh -c \"trap '' TERM; exec sleep {}\" & (sleep {} &); {detached}sleep 1000",
        markers[0], markers[1]
    );
    let mut plimsoll = run_sh(dir.path(), containment, &script);
    assert_eq!(started_containment(&events_path), containment);
    let expected = if node { 3 } else { 2 };
    eventually("every marker process running", WITHIN, || {
        (markers
            .iter()
            .filter(|m| !marker_pids(m).is_empty())
            .count()
            == expected)
            .then_some(())
    });
    // The setsid child is in the target's own cgroup, when it has one.
    let pid = marker_pids(&markers[0])[0];
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let own = cgroups.lines().find_map(|line| {
        let (_, path) = line.rsplit_once(':')?;
        let ours = match containment {
            "cgroup-v2" => line.starts_with("0::"),
            "cgroup-v1" => line.contains(":memory:"),
            _ => false,
        };
        let mount = ours.then(|| cgroup_mount(containment))??;
        path.contains("/plimsoll-keeper-")
            .then(|| std::path::PathBuf::from(format!("{mount}{path}")))
    });
    assert_eq!(
        own.is_some(),
        containment != "subreaper+pgroup",
        "{cgroups}"
    );
    plimsoll.signal("KILL");
    plimsoll.wait_exit(WITHIN);
    assert_none_survives(&markers);
    if let Some(own) = own {
        eventually("the target's cgroup removed", WITHIN, || {
            (!own.exists()).then_some(())
        });
    }
}

#[test]
fn kill_9_of_run_leaves_no_survivor_with_a_cgroup_v2() {
    if !contained_here("cgroup-v2") {
        return;
    }
    kill_9_leaves_no_survivor("cgroup-v2", 1);
}

#[test]
fn kill_9_of_run_leaves_no_survivor_with_a_cgroup_v1() {
    if !contained_here("cgroup-v1") {
        return;
    }
    kill_9_leaves_no_survivor("cgroup-v1", 2);
}

#[test]
fn kill_9_of_run_leaves_no_survivor_with_subreaper_and_process_group() {
    kill_9_leaves_no_survivor("subreaper+pgroup", 3);
}

#[test]
fn a_stop_kills_a_setsid_child_that_ignores_sigterm_after_the_grace() {
    if !contained_here("cgroup-v2") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let events_path = dir.path().join("events.jsonl");
    let escaped = marker(41);
    let mut plimsoll = run_in(dir.path(), "cgroup-v2")
        .arg("--")
        .arg("sh")
        .arg("-c")
        .arg(format!(
            "setsid sh -c \"trap '' TERM; exec sleep {escaped}\" & trap '' TERM; while true; do sleep 0.05; done"
        ))
        .spawn_in(dir.path());
    started_containment(&events_path);
    eventually("the setsid child", WITHIN, || {
        (!marker_pids(&escaped).is_empty()).then_some(())
    });
    let asked = Instant::now();
    plimsoll.signal("TERM");
    assert_eq!(plimsoll.wait_exit(WITHIN), Some(128 + 9));
    let took = asked.elapsed();
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(marker_pids(&escaped).is_empty());
    let events = read_events(&events_path);
    let exited = events
        .iter()
        .find(|e| e["event"] == "exited")
        .expect("exited");
    assert_eq!(exited["signal"], 9);
}

#[test]
fn a_crash_leaves_no_setsid_child_behind_for_the_next_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events_path = dir.path().join("events.jsonl");
    let escaped = marker(51);
    let mut plimsoll = run_in(dir.path(), "subreaper+pgroup")
        .arg("--max-restarts")
        .arg("2")
        .arg("--")
        .arg("sh")
        .arg("-c")
        .arg(format!("setsid sleep {escaped} & sleep 0.3; exit 4"))
        .spawn_in(dir.path());
    assert_eq!(plimsoll.wait_exit(WITHIN), Some(4));
    assert_eq!(
        event_names(&read_events(&events_path))
            .iter()
            .filter(|n| *n == "started")
            .count(),
        3
    );
    assert!(marker_pids(&escaped).is_empty());
}

/// A small deterministic generator (xorshift), so the kill moments repeat from run to run.
struct Seeded(u64);

impl Seeded {
    fn next_ms(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

#[test]
fn kill_9_at_seeded_moments_of_a_restart_loop_leaves_no_survivor_and_an_intact_store() {
    if !contained_here("cgroup-v2") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut random = Seeded(0x5eed_1234_abcd_0001);
    for round in 0..4u32 {
        let escaped = marker(60 + round);
        let events_path = dir.path().join("events.jsonl");
        let _ = std::fs::remove_file(&events_path);
        let plimsoll: Running = run_in(dir.path(), "cgroup-v2")
            .arg("--")
            .arg("sh")
            .arg("-c")
            .arg(format!("setsid sleep {escaped} & sleep 0.1; exit 1"))
            .spawn_in(dir.path());
        let mut plimsoll = plimsoll;
        started_containment(&events_path);
        // Somewhere in the first second and a half: a start, a crash, a delay or a stop.
        std::thread::sleep(Duration::from_millis(100 + random.next_ms(1400)));
        plimsoll.signal("KILL");
        plimsoll.wait_exit(WITHIN);
        assert_none_survives(std::slice::from_ref(&escaped));
        let store = plimsoll_store::Store::open(&data).expect("reopen after kill -9");
        assert_eq!(
            store.integrity_problems().expect("integrity_check"),
            Vec::<String>::new(),
            "round {round}"
        );
    }
}

#[test]
fn a_killed_keeper_still_takes_the_targets_cgroup_down_with_it() {
    if !contained_here("cgroup-v2") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let events_path = dir.path().join("events.jsonl");
    let escaped = marker(71);
    let first = dir.path().join("first-run");
    // Only the first run starts the escaping child, so a restart cannot bring it back.
    let script = format!(
        "if [ ! -e '{f}' ]; then touch '{f}'; setsid sleep {escaped} & fi; sleep 1000",
        f = first.display()
    );
    let mut plimsoll = run_sh(dir.path(), "cgroup-v2", &script);
    assert_eq!(started_containment(&events_path), "cgroup-v2");
    let keeper = keeper_once_escaped(&events_path, &escaped);
    std::process::Command::new("kill")
        .arg("-9")
        .arg(keeper.to_string())
        .status()
        .expect("kill");
    // The supervisor sees the run end and kills what is left in the target's cgroup.
    assert_none_survives(std::slice::from_ref(&escaped));
    plimsoll.signal("TERM");
    plimsoll.wait_exit(WITHIN);
}

/// `GET path` over HTTP/1.0 on `addr`; the body.
/// The keeper's pid (the started target's parent), once the target's setsid child `escaped`
/// runs.
fn keeper_once_escaped(events_path: &Path, escaped: &str) -> i32 {
    let target = read_events(events_path)
        .into_iter()
        .find(|e| e["event"] == "started")
        .and_then(|e| e["pid"].as_u64())
        .expect("pid");
    eventually("the setsid child", WITHIN, || {
        (!marker_pids(escaped).is_empty()).then_some(())
    });
    let stat = std::fs::read_to_string(format!("/proc/{target}/stat")).expect("target stat");
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
        .expect("ppid")
}

fn get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("send");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .expect("an HTTP response")
}

#[test]
fn health_and_the_targets_api_say_how_the_target_is_contained() {
    if !contained_here("cgroup-v1") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let _plimsoll = Cmd::new("run")
        .env("PLIMSOLL_CONTAINMENT", "cgroup-v1")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(&data)
        .arg("--interval")
        .arg("200ms")
        .arg("--")
        .arg("sleep")
        .arg(marker(81))
        .spawn_in(dir.path());
    let addr = eventually("the bound address in run/http.addr", WITHIN, || {
        let text = std::fs::read_to_string(data.join("run/http.addr")).ok()?;
        text.ends_with('\n').then(|| text.trim().to_owned())
    });
    let health: serde_json::Value = eventually("a started target in /health", WITHIN, || {
        let health: serde_json::Value = serde_json::from_str(&get(&addr, "/health")).ok()?;
        health["targets"][0]["pid"].is_u64().then_some(health)
    });
    assert_eq!(health["targets"][0]["containment"], "cgroup-v1", "{health}");
    plimsoll_http::contract::check_health(&health).expect("the /health contract");
    let targets: serde_json::Value =
        serde_json::from_str(&get(&addr, "/api/v1/targets")).expect("JSON");
    let target = targets
        .as_array()
        .and_then(|t| t.first())
        .or_else(|| targets["targets"].as_array().and_then(|t| t.first()))
        .expect("a target");
    assert_eq!(target["containment"], "cgroup-v1", "{targets}");
}

#[test]
fn kill_9_of_up_leaves_no_survivor_of_any_app() {
    let dir = tempfile::tempdir().expect("tempdir");
    let markers = [marker(91), marker(92)];
    let config = dir.path().join("plimsoll.toml");
    std::fs::write(
        &config,
        format!(
            "[defaults]\ngrace = \"500ms\"\n\
             [[app]]\nname = \"a\"\ncommand = [\"sh\", \"-c\", \"setsid sleep {} & sleep 1000\"]\n\
             [[app]]\nname = \"b\"\ncommand = [\"sh\", \"-c\", \"(sleep {} &); sleep 1000\"]\n",
            markers[0], markers[1]
        ),
    )
    .expect("config");
    let mut plimsoll = Cmd::new("up")
        .arg("--listen")
        .arg("off")
        .arg("-c")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .spawn_in(dir.path());
    eventually("both apps' escaped children", WITHIN, || {
        markers
            .iter()
            .all(|m| !marker_pids(m).is_empty())
            .then_some(())
    });
    plimsoll.signal("KILL");
    plimsoll.wait_exit(WITHIN);
    assert_none_survives(&markers);
}

#[test]
fn kill_9_of_soak_leaves_no_survivor_of_the_target_nor_the_load_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let markers = [marker(93), marker(94)];
    let mut plimsoll = Cmd::new("soak")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--duration")
        .arg("5m")
        .arg("--load")
        .arg(format!("setsid sleep {} & sleep 1000", markers[1]))
        .arg("--")
        .arg("sh")
        .arg("-c")
        .arg(format!("setsid sleep {} & sleep 1000", markers[0]))
        .spawn_in(dir.path());
    eventually(
        "the target's and the load's escaped children",
        WITHIN,
        || {
            markers
                .iter()
                .all(|m| !marker_pids(m).is_empty())
                .then_some(())
        },
    );
    plimsoll.signal("KILL");
    plimsoll.wait_exit(WITHIN);
    assert_none_survives(&markers);
}

#[test]
fn the_next_start_sweeps_the_cgroup_of_a_keeper_killed_with_its_supervisor() {
    if !contained_here("cgroup-v1") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let events_path = dir.path().join("events.jsonl");
    let escaped = marker(95);
    let mut plimsoll = run_sh(
        dir.path(),
        "cgroup-v1",
        format!("setsid sleep {escaped} & sleep 1000"),
    );
    started_containment(&events_path);
    let keeper = keeper_once_escaped(&events_path, &escaped);
    // Both die at once: the supervisor, stopped, cannot clean up after the keeper.
    let kill = |signal: &str, pid: String| {
        std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid)
            .status()
            .expect("kill");
    };
    kill("STOP", plimsoll.pid().to_string());
    kill("KILL", keeper.to_string());
    kill("KILL", plimsoll.pid().to_string());
    plimsoll.wait_exit(WITHIN);
    // The escaped child lives on in the dead keeper's cgroup…
    assert!(!marker_pids(&escaped).is_empty());
    // …until the next supervisor starts a target under the same parent cgroup.
    let next_dir = tempfile::tempdir().expect("tempdir");
    let mut next = run_in(next_dir.path(), "cgroup-v1")
        .arg("--")
        .arg("true")
        .spawn_in(next_dir.path());
    assert_eq!(next.wait_exit(WITHIN), Some(0));
    assert_none_survives(std::slice::from_ref(&escaped));
}

#[test]
fn check_says_how_a_process_is_contained() {
    for (containment, tag) in [("cgroup-v1", 96), ("subreaper+pgroup", 97)] {
        if containment == "cgroup-v1" && !contained_here(containment) {
            continue;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let events_path = dir.path().join("events.jsonl");
        let _plimsoll = run_sh(
            dir.path(),
            containment,
            format!("sleep {} & wait", marker(tag)),
        );
        started_containment(&events_path);
        // A process below the target: its containment is the target's.
        let pid = eventually("the sleep", WITHIN, || {
            marker_pids(&marker(tag)).first().copied()
        });
        let json = Cmd::new("check")
            .arg(pid.to_string())
            .arg("--json")
            .expect_exit(0)
            .json();
        assert_eq!(json["containment"], containment, "{json}");
        let out = Cmd::new("check").arg(pid.to_string()).expect_exit(0);
        assert!(
            out.stdout.contains(&format!("containment: {containment}")),
            "{}",
            out.stdout
        );
    }
    let own = Cmd::new("check")
        .arg(std::process::id().to_string())
        .arg("--json")
        .expect_exit(0)
        .json();
    assert!(own["containment"].is_null(), "{own}");
}
