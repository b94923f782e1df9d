//! Node.js targets under `plimsoll run`: the agent preloaded through NODE_OPTIONS, the heap cap
//! from the budget, heap figures in the store, and `plimsoll snapshot`.

use std::path::Path;
use std::time::Duration;

use crate::harness::{eventually, read_events, Cmd};

const WITHIN: Duration = Duration::from_secs(30);

/// `plimsoll run` of a node program that writes what it saw of its options to `seen.json`.
fn run_node(dir: &Path, budget: &str, user_options: &str) -> crate::harness::Running {
    run_node_as(dir, &dir.join("data"), "app", budget, user_options)
}

/// The same with the data dir at `data` and the target called `name`.
fn run_node_as(
    dir: &Path,
    data: &Path,
    name: &str,
    budget: &str,
    user_options: &str,
) -> crate::harness::Running {
    let script = dir.join("app.js");
    std::fs::write(
        &script,
        "require('fs').writeFileSync('seen.json', JSON.stringify({ options: process.env.NODE_OPTIONS, \
         limit: require('v8').getHeapStatistics().heap_size_limit, \
         agent: Boolean(process.env.PLIMSOLL_AGENT_SOCKET) }));\n\
         global.kept = [];\n\
         setInterval(() => global.kept.push('x'.repeat(1000)), 20);\n",
    )
    .expect("write app");
    Cmd::new("run")
        .arg("--data-dir")
        .arg(data)
        .arg("--listen")
        .arg("off")
        .arg("--events")
        .arg(dir.join("events.jsonl"))
        .arg("--interval")
        .arg("200ms")
        .arg("--budget")
        .arg(budget)
        .arg("--name")
        .arg(name)
        .env("NODE_OPTIONS", user_options)
        .arg("--")
        .arg("node")
        .arg(&script)
        .current_dir(dir)
        .spawn_in(dir)
}

fn seen(dir: &Path) -> serde_json::Value {
    eventually("the app's report", WITHIN, || {
        let text = std::fs::read_to_string(dir.join("seen.json")).ok()?;
        serde_json::from_str(&text).ok()
    })
}

#[test]
fn the_agent_is_preloaded_the_heap_is_capped_and_the_users_options_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut plimsoll = run_node(dir.path(), "512MiB", "--enable-source-maps");
    let seen = seen(dir.path());
    let options = seen["options"].as_str().expect("NODE_OPTIONS");
    assert!(options.contains("--require="), "{options}");
    assert!(options.contains("--max-old-space-size=358"), "{options}");
    assert!(options.ends_with("--enable-source-maps"), "{options}");
    assert_eq!(seen["agent"], true);
    // V8's limit follows the cap: 358 MiB of old space plus the young generation.
    let limit = seen["limit"].as_u64().expect("limit") >> 20;
    assert!((358..450).contains(&limit), "heap limit {limit} MiB");
    // Heap figures from the agent reach the store.
    let store_dir = dir.path().join("data");
    eventually("heap figures in the store", WITHIN, || {
        let store = plimsoll_store::StoreReader::open(&store_dir).ok()?;
        store
            .samples("app", 0, 1000)
            .ok()?
            .iter()
            .find_map(|s| s.heap_used_bytes)
    });
    plimsoll.signal("TERM");
    plimsoll.wait_exit(WITHIN);
}

#[test]
fn the_agent_socket_fits_a_long_data_dir_and_a_64_character_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A data dir of 70 bytes and the longest name: `run/agent-PID-NAME.sock` would be about
    // 160 bytes, past the 108 a unix socket path may have.
    let base = dir.path().to_string_lossy().len() + 1;
    let data = dir.path().join("d".repeat(70 - base));
    let name = "n".repeat(64);
    let mut plimsoll = run_node_as(dir.path(), &data, &name, "512MiB", "");
    assert_eq!(seen(dir.path())["agent"], true);
    eventually("heap figures from the agent in the store", WITHIN, || {
        let store = plimsoll_store::StoreReader::open(&data).ok()?;
        store
            .samples(&name, 0, 1000)
            .ok()?
            .iter()
            .find_map(|s| s.heap_used_bytes)
    });
    let sockets: Vec<_> = std::fs::read_dir(data.join("run"))
        .expect("run dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("agent-"))
        })
        .collect();
    assert_eq!(sockets.len(), 1, "{sockets:?}");
    assert!(sockets[0].as_os_str().len() < 108, "{sockets:?}");
    plimsoll.signal("TERM");
    plimsoll.wait_exit(WITHIN);
}

#[test]
fn a_users_heap_cap_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut plimsoll = run_node(dir.path(), "1GiB", "--max-old-space-size=200");
    let seen = seen(dir.path());
    let options = seen["options"].as_str().expect("NODE_OPTIONS");
    assert!(!options.contains("--max-old-space-size=716"), "{options}");
    let limit = seen["limit"].as_u64().expect("limit") >> 20;
    assert!((200..300).contains(&limit), "heap limit {limit} MiB");
    plimsoll.signal("TERM");
    plimsoll.wait_exit(WITHIN);
}

#[test]
fn plimsoll_snapshot_writes_a_heap_snapshot_of_a_running_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut plimsoll = run_node(dir.path(), "512MiB", "");
    seen(dir.path());
    let data = dir.path().join("data");
    // The agent connects shortly after the start; until then the snapshot fails clearly.
    let out = eventually("a snapshot", WITHIN, || {
        let out = Cmd::new("snapshot")
            .arg("app")
            .arg("--data-dir")
            .arg(&data)
            .arg("--json")
            .try_exit(0)?;
        Some(out)
    });
    let result = out.json();
    let path = result["path"].as_str().expect("path").to_owned();
    assert!(result["bytes"].as_u64().expect("bytes") > 100_000);
    plimsoll_heap::parse_file(Path::new(&path)).expect("a valid heap snapshot");
    let events = eventually("snapshot-written", WITHIN, || {
        let events = read_events(&dir.path().join("events.jsonl"));
        events
            .iter()
            .any(|e| e["event"] == "snapshot-written")
            .then_some(events)
    });
    let written = events
        .iter()
        .find(|e| e["event"] == "snapshot-written")
        .expect("event");
    assert_eq!(written["path"].as_str(), Some(path.as_str()));
    // An unknown target is a clear error.
    let out = Cmd::new("snapshot")
        .arg("nope")
        .arg("--data-dir")
        .arg(&data)
        .expect_exit(2);
    assert!(out.stderr.contains("'nope'"), "{}", out.stderr);
    plimsoll.signal("TERM");
    plimsoll.wait_exit(WITHIN);
}

#[test]
fn a_confirmed_leak_is_investigated_with_heap_snapshots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("leak.js");
    std::fs::write(
        &script,
        "class LeakyRecord { constructor(n) { this.values = Array.from({ length: 1000 }, (_, i) => i * n + 0.5); } }\n\
         global.leakyRecords = [];\n\
         let n = 0;\n\
         setInterval(() => global.leakyRecords.push(new LeakyRecord(n++)), 20);\n\
         // A GC-heavy app: major collections every half second, so that the heap after GC moves\n\
         // within the compressed windows of the test.\n\
         require('v8').setFlagsFromString('--expose-gc');\n\
         const gc = require('vm').runInNewContext('gc');\n\
         setInterval(() => gc(), 500);\n",
    )
    .expect("write app");
    let events_path = dir.path().join("events.jsonl");
    // Windows compressed 20 times: a 12-minute ramp becomes 36 s, a minute between snapshots 3 s.
    let mut plimsoll = Cmd::new("run")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg("off")
        .arg("--events")
        .arg(&events_path)
        .arg("--interval")
        .arg("100ms")
        .arg("--time-scale")
        .arg("0.05")
        .arg("--budget")
        .arg("1GiB")
        .arg("--name")
        .arg("leaky")
        .arg("--")
        .arg("node")
        .arg(&script)
        .spawn_in(dir.path());
    let events = eventually("leak-suspects", Duration::from_secs(150), || {
        let events = read_events(&events_path);
        events
            .iter()
            .any(|e| e["event"] == "leak-suspects")
            .then_some(events)
    });
    plimsoll.signal("TERM");
    plimsoll.wait_exit(WITHIN);
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    let confirmed = names
        .iter()
        .position(|n| *n == "leak-confirmed")
        .expect("confirmed first");
    let investigated = names
        .iter()
        .position(|n| *n == "leak-suspects")
        .expect("suspects");
    assert!(confirmed < investigated, "{names:?}");
    let found = &events[investigated];
    let classes: Vec<&str> = found["suspects"]["by_class"]
        .as_array()
        .expect("by_class")
        .iter()
        .filter_map(|c| c["class"].as_str())
        .collect();
    assert!(classes.contains(&"LeakyRecord"), "{classes:?}");
    let paths = found["suspects"]["by_class"].to_string();
    assert!(paths.contains("leakyRecords"), "{paths}");
    // The last snapshot is kept as the incident's evidence; the first two are gone.
    let snapshot = found["snapshot"].as_str().expect("snapshot");
    assert!(Path::new(snapshot).exists());
    let kept = std::fs::read_dir(dir.path().join("data/snapshots"))
        .expect("snapshots")
        .count();
    assert_eq!(kept, 1);
    let store = plimsoll_store::StoreReader::open(&dir.path().join("data")).expect("store");
    let incidents = store.incidents(Some("leaky"), 10).expect("incidents");
    assert!(incidents
        .iter()
        .any(|i| i.reason == "leak-investigation" && i.snapshot_path.as_deref() == Some(snapshot)));
}
