//! `plimsoll watch --cgroup` and `--containers` on real memory cgroups that the tests make and
//! remove (a fake Docker container: `docker/<64 hex>` with a 64 MiB limit and a leaking Python
//! process in it): figures in /health and /metrics, levels, the kernel's OOM kill, removal; a
//! leak confirmed (on a compressed detector clock) and `near-limit` with its time to the limit,
//! while a flat cgroup beside it stays clear. On a host with no writable memory cgroup the tests fail, saying so.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::faults_containment::cgroup_mount;
use crate::harness::{eventually, read_events, Cmd, Running};
use crate::http::{json, request};

const WITHIN: Duration = Duration::from_secs(20);
const LIMIT: u64 = 64 << 20;

/// A memory cgroup made by the test; whatever runs in it is killed and it is removed at the
/// end, passing or failing.
struct TestCgroup {
    dir: PathBuf,
    /// The hierarchy's mount point.
    top: PathBuf,
    version: &'static str,
}

impl TestCgroup {
    /// `docker/<id>` in the hierarchy of `kind`, limited to 64 MiB without swap; `None` when
    /// that hierarchy is missing or not writable here.
    fn make(kind: &str, id: &str) -> Option<TestCgroup> {
        let top = PathBuf::from(cgroup_mount(kind)?);
        let version = if kind == "cgroup-v2" { "v2" } else { "v1" };
        if version == "v2" {
            // The memory controller must be enabled down to the container's parent.
            let controllers = std::fs::read_to_string(top.join("cgroup.controllers")).ok()?;
            if !controllers.split_whitespace().any(|c| c == "memory") {
                return None;
            }
        }
        let parent = top.join("docker");
        std::fs::create_dir_all(&parent).ok()?;
        if version == "v2" {
            let _ = std::fs::write(parent.join("cgroup.subtree_control"), "+memory");
        }
        let dir = parent.join(id);
        std::fs::create_dir(&dir).ok()?;
        let cgroup = TestCgroup { dir, top, version };
        let limits: &[(&str, String)] = match version {
            "v2" => &[
                ("memory.max", LIMIT.to_string()),
                ("memory.swap.max", "0".to_owned()),
            ],
            _ => &[
                ("memory.limit_in_bytes", LIMIT.to_string()),
                ("memory.swappiness", "0".to_owned()),
            ],
        };
        for (file, value) in limits {
            let path = cgroup.dir.join(file);
            if path.exists() {
                std::fs::write(&path, value)
                    .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            }
        }
        Some(cgroup)
    }

    /// The cgroup's path in its hierarchy.
    fn relative(&self) -> String {
        format!(
            "/{}",
            self.dir.strip_prefix(&self.top).expect("under").display()
        )
    }

    /// Starts `python3 -c CODE` inside the cgroup (it joins before the exec).
    fn run_python(&self, code: &str) -> Child {
        let procs = self.dir.join("cgroup.procs");
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > '{}' && exec python3 -c \"$0\"",
                procs.display()
            ))
            .arg(code)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sh")
    }

    fn remove(&self) -> bool {
        std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.dir.exists() && Instant::now() < deadline {
            let procs = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.split_whitespace() {
                let _ = Command::new("kill").arg("-KILL").arg(pid).status();
            }
            if std::fs::remove_dir(&self.dir).is_err() {
                std::thread::park_timeout(Duration::from_millis(20));
            }
        }
        // The shared `docker` parent stays: another test may be using it; it is empty.
    }
}

/// A random 64-hex container id.
fn container_id() -> String {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let mut x = (seed as u64) ^ (u64::from(std::process::id()) << 32) | 1;
    (0..4)
        .map(|_| {
            // xorshift64*: enough to keep two runs apart.
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            format!("{:016x}", x.wrapping_mul(0x2545_F491_4F6C_DD1D))
        })
        .collect()
}

/// `plimsoll watch ARGS` serving HTTP on a free port, its events in `dir/events.jsonl`.
fn watch(dir: &Path, args: &[&str]) -> (Running, String, PathBuf) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let data = dir.join("data");
    let events = dir.join("events.jsonl");
    let mut cmd = Cmd::new("watch")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(&data)
        .arg("--events")
        .arg(&events)
        .arg("--interval")
        .arg("200ms");
    for arg in args {
        cmd = cmd.arg(arg);
    }
    let running = cmd.spawn_in(dir);
    let addr_file = data.join("run/http.addr");
    let addr = eventually("the bound address", WITHIN, || {
        let text = std::fs::read_to_string(&addr_file).ok()?;
        text.ends_with('\n').then(|| text.trim().to_owned())
    });
    (running, addr, events)
}

/// The first event named `name` of the target `target`, once it is in `events`.
fn event(events: &Path, name: &str, target: &str, within: Duration) -> serde_json::Value {
    eventually(&format!("{name} of {target}"), within, || {
        read_events(events)
            .into_iter()
            .find(|e| e["event"] == name && e["target"] == target)
    })
}

/// The target named `target` in the `/health` of `addr`.
fn health_of(addr: &str, target: &str) -> Option<serde_json::Value> {
    let (_, body) = request(addr, "GET", "/health", None);
    json(&body)["targets"]
        .as_array()?
        .iter()
        .find(|t| t["name"] == target)
        .cloned()
}

/// A leak of 1 MiB every 50 ms (touched, so resident), after a second of quiet.
const LEAK: &str = "import time\ntime.sleep(1)\nhold = []\nwhile True:\n    hold.append(b'x' * (1 << 20))\n    time.sleep(0.05)\n";

#[test]
fn a_leaking_container_is_watched_through_its_oom_kill_and_removal() {
    let mut kinds = 0;
    for kind in ["cgroup-v1", "cgroup-v2"] {
        let id = container_id();
        let Some(cgroup) = TestCgroup::make(kind, &id) else {
            continue;
        };
        kinds += 1;
        leaking_container(&cgroup, &id);
    }
    assert!(
        kinds > 0,
        "no writable memory cgroup here (neither a v1 memory hierarchy nor a v2 one with the \
         memory controller, writable by this user): these tests need one (run as root, or \
         mount one: mount -t cgroup -o memory none /sys/fs/cgroup/memory)"
    );
}

fn leaking_container(cgroup: &TestCgroup, id: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = format!("docker-{}", &id[..12]);
    let relative = cgroup.relative();
    // One watcher is given the cgroup (by its path relative to the hierarchy on v1, absolute
    // on v2) and a budget under the limit, so that its levels rise; the other finds it.
    let given = match cgroup.version {
        "v1" => relative.trim_start_matches('/').to_owned(),
        _ => cgroup.dir.display().to_string(),
    };
    let (mut given_watch, given_addr, given_events) = watch(
        &dir.path().join("given"),
        &["--cgroup", &given, "--budget", "32MiB"],
    );
    let (mut found_watch, found_addr, found_events) =
        watch(&dir.path().join("found"), &["--containers"]);
    let started = event(&given_events, "started", &target, WITHIN);
    assert_eq!(started["cgroup"], relative.as_str());
    let discovered = event(&found_events, "started", &target, WITHIN);
    assert_eq!(discovered["container_id"], id);
    assert_eq!(discovered["runtime"], "docker");

    let mut leaker = cgroup.run_python(LEAK);
    // Levels rise on the working set: past the 32 MiB budget at once (no hold for a breach).
    let breach = event(&given_events, "level-changed", &target, WITHIN);
    assert_eq!(breach["to"], "breach", "{breach}");
    assert!(
        breach["rss_bytes"].as_u64().unwrap_or(0) >= 32 << 20,
        "{breach}"
    );
    let status = leaker.wait().expect("wait for the leaker");
    let killed_at = SystemTime::now();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "the kernel's OOM killer: {status:?}"
    );
    for (events, what) in [(&given_events, "given"), (&found_events, "found")] {
        let oom = event(events, "oom-killed", &target, Duration::from_secs(2));
        assert!(oom["kills"].as_u64() >= Some(1), "{what}: {oom}");
        assert_eq!(oom["limit_bytes"], LIMIT, "{what}: {oom}");
        let late_ms = oom["t_unix_ms"].as_i64().unwrap_or(0)
            - killed_at
                .duration_since(UNIX_EPOCH)
                .expect("clock")
                .as_millis() as i64;
        assert!(
            late_ms <= 2000,
            "{what}: oom-killed {late_ms} ms after the kill"
        );
    }

    // The figures, as /health and /metrics show them; the budget is the limit unless given.
    let given_view = health_of(&given_addr, &target).expect("the cgroup in /health");
    let shown = &given_view["cgroup"];
    assert_eq!(shown["limit_bytes"], LIMIT, "{given_view}");
    assert_eq!(shown["version"], cgroup.version);
    assert_eq!(shown["path"], relative.as_str());
    assert_eq!(shown["container_id"], id);
    assert!(shown["oom_kills"].as_u64() >= Some(1), "{given_view}");
    assert!(
        shown["usage_bytes"].as_u64().is_some() && shown["working_set_bytes"].as_u64().is_some()
    );
    assert_eq!(given_view["budget_bytes"], 32 << 20);
    let found_view = health_of(&found_addr, &target).expect("the container in /health");
    assert_eq!(found_view["budget_bytes"], LIMIT, "{found_view}");
    let (_, metrics) = request(&found_addr, "GET", "/metrics", None);
    let labels = format!("{{target=\"{target}\",container_id=\"{id}\"}}");
    for line in [
        format!("plimsoll_cgroup_limit_bytes{labels} {LIMIT}"),
        format!("plimsoll_budget_bytes{{target=\"{target}\"}} {LIMIT}"),
    ] {
        assert!(metrics.contains(&line), "{line}: {metrics}");
    }
    for family in [
        "plimsoll_cgroup_working_set_bytes",
        "plimsoll_cgroup_usage_bytes",
        "plimsoll_cgroup_oom_kills_total",
    ] {
        assert!(
            metrics.contains(&format!("{family}{labels} ")),
            "{family}: {metrics}"
        );
    }

    // Removed: `exited` in both; the watcher that was given only this cgroup ends with 0.
    assert!(cgroup.remove(), "rmdir {}", cgroup.dir.display());
    for events in [&given_events, &found_events] {
        let exited = event(events, "exited", &target, WITHIN);
        assert_eq!(exited["cgroup"], relative.as_str());
    }
    assert_eq!(given_watch.wait_exit(WITHIN), Some(0));
    // The store kept the events and the samples (working set as rss, usage and limit beside).
    let data = dir.path().join("given").join("data");
    let store = plimsoll_store::StoreReader::open(&data).expect("store");
    let stored: Vec<String> = store
        .events(None, 0, 100)
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    for kind in ["started", "level-changed", "oom-killed", "exited"] {
        assert!(stored.iter().any(|k| k == kind), "{kind}: {stored:?}");
    }
    let samples = store.samples(&target, 0, 1000).expect("samples");
    assert!(
        samples.iter().any(|s| s.cgroup_limit_bytes == Some(LIMIT)),
        "{samples:?}"
    );
    assert!(
        health_of(&found_addr, &target).is_none(),
        "gone from /health"
    );
    found_watch.signal("TERM");
    assert_eq!(found_watch.wait_exit(WITHIN), Some(0));
}

#[test]
fn cgroups_that_are_not_there_are_refused_naming_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = format!("plimsoll-no-such-{}/job", std::process::id());
    let out = Cmd::new("watch")
        .arg("--listen")
        .arg("off")
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--cgroup")
        .arg(&missing)
        .expect_exit(2);
    assert!(
        out.stderr
            .contains(&format!("no memory cgroup '{missing}' under ")),
        "{}",
        out.stderr
    );
    let out = Cmd::new("watch")
        .arg("--listen")
        .arg("off")
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--cgroup")
        .arg("/etc")
        .expect_exit(2);
    assert!(
        out.stderr
            .contains("cgroup '/etc' is not under a memory cgroup hierarchy"),
        "{}",
        out.stderr
    );
    let out = Cmd::new("watch")
        .arg("--listen")
        .arg("off")
        .arg("--containers")
        .arg("--cgroup-root")
        .arg(dir.path().join("nowhere"))
        .expect_exit(2);
    assert!(
        out.stderr
            .contains("no cgroup file system at --cgroup-root"),
        "{}",
        out.stderr
    );
    let out = Cmd::new("watch")
        .arg("--listen")
        .arg("off")
        .arg("--cgroup-root")
        .arg("/sys/fs/cgroup")
        .arg("1")
        .expect_exit(2);
    assert!(
        out.stderr
            .contains("--cgroup-root '/sys/fs/cgroup' needs --cgroup or --containers"),
        "{}",
        out.stderr
    );
    // Nothing was written half-way.
    let written: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
    assert!(written.is_empty(), "{written:?}");
}

/// A leak that waits for the file `go`, grows 1 MiB every 125 ms (touched, so resident) until
/// its cgroup's working set (as the kubelet counts it) is 93 % of the limit, writes `go.full`
/// and holds: past the 90 % mark for good, never to the OOM kill.
fn leak_to_93_percent(cgroup: &TestCgroup, go: &Path) -> String {
    let (usage, inactive) = match cgroup.version {
        "v1" => ("memory.usage_in_bytes", "total_inactive_file"),
        _ => ("memory.current", "inactive_file"),
    };
    format!(
        "import os, time\n\
         d, go = {dir:?}, {go:?}\n\
         def working_set():\n    \
             stat = dict(line.split() for line in open(d + '/memory.stat'))\n    \
             return int(open(d + '/{usage}').read()) - int(stat['{inactive}'])\n\
         open(go + '.ready', 'w').close()\n\
         while not os.path.exists(go):\n    time.sleep(0.02)\n\
         hold = []\n\
         while working_set() < 0.93 * {LIMIT}:\n    \
             hold.append(b'x' * (1 << 20))\n    time.sleep(0.125)\n\
         open(go + '.full', 'w').close()\n\
         while True:\n    time.sleep(1)\n",
        dir = cgroup.dir.display().to_string(),
        go = go.display().to_string(),
    )
}

#[test]
fn a_leaking_cgroup_is_confirmed_and_near_limit_and_a_flat_one_beside_it_is_not() {
    let (leaky_id, flat_id) = (container_id(), container_id());
    let make =
        |id: &str| TestCgroup::make("cgroup-v1", id).or_else(|| TestCgroup::make("cgroup-v2", id));
    let (Some(leaky), Some(flat)) = (make(&leaky_id), make(&flat_id)) else {
        panic!(
            "no writable memory cgroup here (v1 memory hierarchy or v2 with the memory \
             controller): this test needs one (run as root, or mount one: \
             mount -t cgroup -o memory none /sys/fs/cgroup/memory)"
        );
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let go = dir.path().join("go");
    let flat_ready = dir.path().join("flat.ready");
    // Both processes are up and settled before the watch begins: their start is no ramp.
    let leaker = leaky.run_python(&leak_to_93_percent(&leaky, &go));
    let flat_process = flat.run_python(&format!(
        "import time\nopen({:?}, 'w').close()\nwhile True:\n    time.sleep(1)\n",
        flat_ready.display().to_string()
    ));
    eventually("both processes up", WITHIN, || {
        (go.with_extension("ready").exists() && flat_ready.exists()).then_some(())
    });
    let (leaky_name, flat_name) = (
        format!("docker-{}", &leaky_id[..12]),
        format!("docker-{}", &flat_id[..12]),
    );
    // The detector's windows 200 times shorter: a ramp is suspected after 0.9 s and confirmed
    // after 3.6 s; the leak's ramp lasts about 6 s.
    let (mut watcher, addr, events) = watch(
        &dir.path().join("watch"),
        &[
            "--cgroup",
            &leaky.dir.display().to_string(),
            "--cgroup",
            &flat.dir.display().to_string(),
            "--time-scale",
            "0.005",
        ],
    );
    eventually("both cgroups sampled in /health", WITHIN, || {
        let sampled = |name: &str| {
            health_of(&addr, name)
                .is_some_and(|t| t["cgroup"]["working_set_bytes"].as_u64() > Some(0))
        };
        (sampled(&leaky_name) && sampled(&flat_name)).then_some(())
    });
    std::fs::write(&go, "").expect("go");

    let suspected = event(&events, "leak-suspected", &leaky_name, WITHIN);
    assert!(
        suspected["growth_bytes_per_s"].as_f64() > Some(0.0),
        "{suspected}"
    );
    let confirmed = event(&events, "leak-confirmed", &leaky_name, WITHIN);
    assert!(confirmed["t_unix_ms"].as_i64() >= suspected["t_unix_ms"].as_i64());
    let near = event(&events, "near-limit", &leaky_name, WITHIN);
    assert_eq!(near["limit_bytes"], LIMIT, "{near}");
    assert!(
        near["working_set_bytes"].as_u64() >= Some(LIMIT * 9 / 10),
        "{near}"
    );
    // 1 MiB per 125 ms, with at most ~10 % of the limit left: a few seconds at most.
    let left = near["time_to_limit_s"]
        .as_f64()
        .expect("a time to the limit");
    assert!(left > 0.0 && left < 10.0, "{near}");
    eventually("the leak held at 93 %", WITHIN, || {
        go.with_extension("full").exists().then_some(())
    });
    let shown = health_of(&addr, &leaky_name).expect("leaky in /health");
    assert_eq!(shown["leak"]["state"], "confirmed", "{shown}");
    assert_eq!(shown["leak"]["verdict"], "leak", "{shown}");
    // The flat cgroup beside it: sampled all along, never suspected.
    let flat_shown = health_of(&addr, &flat_name).expect("flat in /health");
    assert!(
        !matches!(
            flat_shown["leak"]["state"].as_str(),
            Some("suspected" | "confirmed")
        ),
        "{flat_shown}"
    );
    let flat_events: Vec<String> = read_events(&events)
        .into_iter()
        .filter(|e| e["target"] == flat_name.as_str())
        .filter_map(|e| e["event"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(flat_events, ["started"], "{flat_events:?}");
    watcher.signal("TERM");
    assert_eq!(watcher.wait_exit(WITHIN), Some(0));
    for mut process in [leaker, flat_process] {
        let _ = process.kill();
        let _ = process.wait();
    }
}
