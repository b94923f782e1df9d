//! Faults around the supervisor loop: a Node target whose event loop is blocked with a snapshot
//! pending while its tree breaches, an agent that disconnects mid-snapshot, and a hook and a
//! webhook that never finish. Supervision must go on through each.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::harness::{eventually, read_events, Cmd, Running};
use crate::http::{json, request};

const WITHIN: Duration = Duration::from_secs(30);
const TOKEN: &str = "faults-admin-token";
const INTERVAL: Duration = Duration::from_millis(200);
const GRACE: Duration = Duration::from_secs(2);

/// `plimsoll run` of `command` with HTTP on port 0, the admin token, the events file and the
/// test's interval and grace; returns it with the bound address.
fn serve(dir: &Path, name: &str, budget: &str, command: &[&str]) -> (Running, String) {
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let data = dir.join("data");
    let mut cmd = Cmd::new("run")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--admin-token-file")
        .arg(&token_file)
        .arg("--data-dir")
        .arg(&data)
        .arg("--events")
        .arg(dir.join("events.jsonl"))
        .arg("--interval")
        .arg(format!("{}ms", INTERVAL.as_millis()))
        .arg("--grace")
        .arg(format!("{}s", GRACE.as_secs()))
        .arg("--budget")
        .arg(budget)
        .arg("--name")
        .arg(name)
        .arg("--");
    for word in command {
        cmd = cmd.arg(word);
    }
    let plimsoll = cmd.current_dir(dir).spawn_in(dir);
    let addr_file = data.join("run/http.addr");
    let addr = eventually("the bound address", WITHIN, || {
        let text = std::fs::read_to_string(&addr_file).ok()?;
        text.ends_with('\n').then(|| text.trim().to_owned())
    });
    (plimsoll, addr)
}

/// The first event named `name`, once it is in the events file.
fn first_event(dir: &Path, name: &str) -> serde_json::Value {
    eventually(name, WITHIN, || {
        read_events(&dir.join("events.jsonl"))
            .into_iter()
            .find(|e| e["event"] == name)
    })
}

fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// POSTs an admin action in a thread; joined, it gives status, body and when it answered.
fn post_in_background(addr: &str, path: &str) -> std::thread::JoinHandle<(u16, String, Instant)> {
    let addr = addr.to_owned();
    let path = path.to_owned();
    std::thread::spawn(move || {
        let (status, body) = request(&addr, "POST", &path, Some(TOKEN));
        (status, body, Instant::now())
    })
}

/// A Node app whose event loop blocks for good once `block` exists, with a Python child (in the
/// same tree) that takes 200 MiB at once (a memset) once `grow` exists, having written the time
/// it began to `growing`.
/// Each trigger file is consumed (renamed), so the restarted run neither blocks nor grows.
fn blocking_app(dir: &Path) -> PathBuf {
    let python = "import os, time\n\
        while not os.path.exists('grow'): time.sleep(0.02)\n\
        os.rename('grow', 'growing')\n\
        open('growing', 'w').write(str(int(time.time() * 1000)))\n\
        hold = b'x' * (200 * 1024 * 1024)\n\
        time.sleep(600)\n";
    let script = format!(
        "const fs = require('fs');\n\
         require('child_process').spawn('python3', ['-c', {python:?}], {{ stdio: 'inherit' }});\n\
         setInterval(() => {{\n\
           try {{ fs.renameSync('block', 'blocked'); }} catch (e) {{ return; }}\n\
           for (;;) {{}}\n\
         }}, 20);\n"
    );
    let path = dir.join("app.js");
    std::fs::write(&path, script).expect("write app");
    path
}

#[test]
fn a_breach_is_restarted_in_time_while_a_snapshot_waits_on_a_blocked_event_loop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = blocking_app(dir.path());
    let app = app.to_str().expect("utf-8 path");
    let (mut plimsoll, addr) = serve(dir.path(), "app", "128MiB", &["node", app]);
    // The agent is connected once its heap figures are published.
    eventually("the agent's heap figures in /health", WITHIN, || {
        let (_, body) = request(&addr, "GET", "/health", None);
        json(&body)["targets"][0]["heap_used_bytes"].as_u64()
    });
    std::fs::write(dir.path().join("block"), "").expect("block");
    eventually("the event loop blocked", WITHIN, || {
        dir.path().join("blocked").exists().then_some(())
    });
    let snapshot = post_in_background(&addr, "/api/v1/targets/app/snapshot");
    // The loop logs the action once it has taken it (and handed it to a task).
    eventually("the snapshot pending in the loop", WITHIN, || {
        std::fs::read_to_string(dir.path().join("plimsoll.stderr"))
            .ok()?
            .contains("agent action pending")
            .then_some(())
    });
    std::fs::write(dir.path().join("grow"), "").expect("grow");
    let grown_ms: i64 = eventually("the child growing past the budget", WITHIN, || {
        std::fs::read_to_string(dir.path().join("growing"))
            .ok()?
            .parse()
            .ok()
    });
    let restarted = first_event(dir.path(), "restarted");
    assert_eq!(restarted["reason"], "budget", "{restarted}");
    let breach = first_event(dir.path(), "budget-breach");
    assert!(breach["rss_bytes"].as_u64().expect("rss") >= 128 << 20);
    let took_ms = restarted["t_unix_ms"].as_i64().expect("t") - grown_ms;
    let bound_ms = (INTERVAL + GRACE).as_millis() as i64 + 1500;
    assert!(
        took_ms <= bound_ms,
        "restarted {took_ms} ms after the growth began (bound {bound_ms} ms)"
    );
    eprintln!("measured: growth to restart {took_ms} ms (bound {bound_ms} ms)");
    // The pending snapshot failed with the run that was stopped, not at a timeout.
    let (status, body, answered) = snapshot.join().expect("the snapshot request");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("stopped while"), "{body}");
    let answered_ms = now_unix_ms() - answered.elapsed().as_millis() as i64;
    assert!(
        answered_ms - restarted["t_unix_ms"].as_i64().expect("t") < 2000,
        "the snapshot failed {} ms after the restart",
        answered_ms - restarted["t_unix_ms"].as_i64().expect("t")
    );
    plimsoll.signal("TERM");
    plimsoll.wait_exit(WITHIN);
}

#[test]
fn a_snapshot_fails_at_once_when_the_agent_disconnects_mid_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut plimsoll, addr) = serve(
        dir.path(),
        "app",
        "1GiB",
        &["node", "-e", "setInterval(() => {}, 1000)"],
    );
    eventually("the real agent's heap figures", WITHIN, || {
        let (_, body) = request(&addr, "GET", "/health", None);
        json(&body)["targets"][0]["heap_used_bytes"].as_u64()
    });
    // A fake agent claiming pid 1: the lowest pid, so the snapshot goes to it.
    let socket = std::fs::read_dir(dir.path().join("data/run"))
        .expect("run dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy()
                    .starts_with(&format!("agent-{}-", plimsoll.pid()))
            })
        })
        .expect("the agent socket");
    let mut agent = UnixStream::connect(&socket).expect("connect to the agent socket");
    agent
        .write_all(b"{\"type\":\"hello\",\"pid\":1}\n")
        .expect("hello");
    agent
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let mut reader = BufReader::new(agent.try_clone().expect("clone"));
    // Until the hub knows the fake, a snapshot goes to the real agent: ask until one reaches us.
    let deadline = Instant::now() + WITHIN;
    let (snapshot, command) = loop {
        let snapshot = post_in_background(&addr, "/api/v1/targets/app/snapshot");
        let mut line = String::new();
        if reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            break (snapshot, line);
        }
        let _ = snapshot.join();
        assert!(
            Instant::now() < deadline,
            "no command reached the fake agent"
        );
    };
    assert!(command.contains("\"snapshot\""), "{command}");
    let dropped = Instant::now();
    drop(reader);
    drop(agent);
    let (status, body, answered) = snapshot.join().expect("the snapshot request");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("disconnected before answering"), "{body}");
    let took = answered.duration_since(dropped);
    assert!(
        took < Duration::from_secs(2),
        "failed {took:?} after the drop"
    );
    eprintln!("measured: disconnect to failed reply {took:?}");
    plimsoll.signal("TERM");
    plimsoll.wait_exit(WITHIN);
}

#[test]
fn a_hanging_hook_and_a_silent_webhook_do_not_stop_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A webhook endpoint that accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let webhook = format!("http://{}/events", silent.local_addr().expect("addr"));
    let held = std::thread::spawn(move || {
        let mut connections = Vec::new();
        for stream in silent.incoming().take(4).flatten() {
            connections.push(stream);
        }
        connections.len()
    });
    let started = Instant::now();
    let mut plimsoll = Cmd::new("run")
        .arg("--listen")
        .arg("off")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--events")
        .arg(dir.path().join("events.jsonl"))
        .arg("--on-event")
        .arg("sleep 1000")
        .arg("--webhook")
        .arg(&webhook)
        .arg("--max-restarts")
        .arg("50")
        .arg("--")
        .arg("sh")
        .arg("-c")
        .arg("sleep 0.2; exit 3")
        .spawn_in(dir.path());
    let restarts = eventually("three restarts", WITHIN, || {
        let events = read_events(&dir.path().join("events.jsonl"));
        let restarts: Vec<_> = events
            .into_iter()
            .filter(|e| e["event"] == "restarted")
            .collect();
        (restarts.len() >= 3).then_some(restarts)
    });
    // Crashes after 0.2 s and delays of 0.1, 0.2, 0.4 s: the third restart comes in about a
    // second, not after any hook or webhook timeout.
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "three restarts took {took:?}"
    );
    assert_eq!(restarts[2]["attempt"], 3, "{:?}", restarts[2]);
    eprintln!("measured: three restarts in {took:?}");
    plimsoll.signal("TERM");
    plimsoll.wait_exit(WITHIN);
    drop(held);
}
