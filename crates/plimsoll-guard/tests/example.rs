//! The example service, run for real: its HTTP answers in the shared shapes (and `/metrics`
//! through promtool), its cache, dedupe set and admin routes at work, a graceful stop that
//! flushes its log buffer, and the same service under `plimsoll run`, which tells it its budget
//! and restarts it when its leak reaches the budget.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use plimsoll_http::contract;
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(30);
const TOKEN: &str = "example-token";

/// `target/debug` (or the profile dir the tests were built in).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/example-HASH → target/debug
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("the profile dir")
        .to_path_buf()
}

fn built(path: PathBuf, how: &str) -> PathBuf {
    assert!(
        path.exists(),
        "'{}' is missing: {how} (scripts/test.sh builds everything)",
        path.display()
    );
    path
}

fn example() -> PathBuf {
    built(
        profile_dir().join("examples/guarded_service"),
        "cargo build -p plimsoll-guard --example guarded_service",
    )
}

/// A child that is killed and reaped if the test ends early.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(mut command: Command) -> Running {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line of stdout matching `want`, up to `WITHIN`.
    fn line(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WITHIN;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no {what} within {WITHIN:?}; stdout so far: {:#?}",
            self.seen
        );
    }

    /// The address of the `listening on http://ADDR` line.
    fn addr(&mut self) -> SocketAddr {
        let line = self.line("listening line", |l| l.starts_with("listening on http://"));
        line.trim_start_matches("listening on http://")
            .parse()
            .expect("an address")
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn wait(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WITHIN;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
        panic!("did not exit within {WITHIN:?}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request; status and body.
fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Waits until `check` gives a value, polling the service.
fn eventually<T>(what: &str, check: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + WITHIN;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "no {what} within {WITHIN:?}");
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

#[test]
fn the_example_serves_the_shared_shapes_and_stops_gracefully() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(example());
    command
        .args(["--listen", "127.0.0.1:0", "--name", "shop"])
        .env("PLIMSOLL_BUDGET_BYTES", (512u64 << 20).to_string())
        .env("PLIMSOLL_ADMIN_TOKEN", TOKEN)
        .env("TMPDIR", dir.path())
        .env(
            "_RJEM_MALLOC_CONF",
            "prof:true,prof_active:true,lg_prof_sample:19",
        );
    let mut service = Running::start(command);
    let addr = service.addr();

    // /health once the first reading is in.
    let health = eventually("a first reading", || {
        let (status, body) = http(addr, "GET", "/health", None);
        let body = json(&body);
        (status == 200 && body["targets"][0]["rss_bytes"].is_u64()).then_some(body)
    });
    contract::check_health(&health).expect("the shared /health shape");
    assert_eq!(health["targets"][0]["name"], "shop");
    assert_eq!(health["targets"][0]["budget_bytes"], 512u64 << 20);

    // The cache, the dedupe set.
    assert_eq!(http(addr, "GET", "/users/7", None).0, 200);
    assert_eq!(http(addr, "GET", "/users/7", None).0, 200);
    let (_, first) = http(addr, "POST", "/events/1", None);
    let (_, again) = http(addr, "POST", "/events/1", None);
    assert_eq!(
        (
            json(&first)["processed"].clone(),
            json(&again)["processed"].clone()
        ),
        (Value::Bool(true), Value::Bool(false))
    );

    // /metrics: the binary's families, the guard's own, and promtool's approval.
    let (status, metrics) = http(addr, "GET", "/metrics", None);
    assert_eq!(status, 200);
    contract::check_metrics(&metrics).expect("the shared /metrics families");
    assert!(
        metrics.contains("plimsoll_cache_hits_total{cache=\"users\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("plimsoll_cache_entries{cache=\"users\"} 1"),
        "{metrics}"
    );
    promtool_accepts(&metrics);

    // Admin: clear-cache empties the registered cache.
    assert_eq!(
        http(addr, "POST", "/api/v1/targets/shop/clear-cache", None).0,
        401
    );
    let (status, cleared) = http(
        addr,
        "POST",
        "/api/v1/targets/shop/clear-cache",
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{cleared}");
    let cleared = json(&cleared);
    contract::check_action_reply(&cleared, "shop", "clear-cache").expect("the shared reply");
    assert_eq!(cleared["result"]["entries"], 1);
    let (_, metrics) = http(addr, "GET", "/metrics", None);
    assert!(
        metrics.contains("plimsoll_cache_entries{cache=\"users\"} 0"),
        "{metrics}"
    );

    allocator_actions(addr, dir.path());

    // SIGTERM: a graceful stop that flushes the buffered log lines, exit 0.
    service.signal("TERM");
    service.line("the flush", |l| l.starts_with("flushed "));
    assert!(
        service.seen.iter().any(|l| l == "POST /events/1 new=false"),
        "the log lines reached stdout: {:#?}",
        service.seen
    );
    assert_eq!(service.wait(), Some(0));
}

/// With the allocator features (`scripts/test.sh` builds with all of them), `gc` purges
/// jemalloc and `snapshot` writes a gzipped pprof profile; without them, both are a 501 that
/// names the feature.
fn allocator_actions(addr: SocketAddr, dir: &std::path::Path) {
    let (status, gc) = http(addr, "POST", "/api/v1/targets/shop/gc", Some(TOKEN));
    let (status_snapshot, snapshot) =
        http(addr, "POST", "/api/v1/targets/shop/snapshot", Some(TOKEN));
    if cfg!(feature = "jemalloc") {
        assert_eq!(status, 200, "{gc}");
        assert!(json(&gc)["result"]["resident_after_bytes"].is_u64(), "{gc}");
        let (_, metrics) = http(addr, "GET", "/metrics", None);
        assert!(
            metrics.contains("plimsoll_alloc_allocated_bytes "),
            "{metrics}"
        );
    } else {
        assert_eq!(status, 501, "{gc}");
        assert!(gc.contains("'jemalloc' feature"), "{gc}");
    }
    if cfg!(feature = "pprof") {
        assert_eq!(status_snapshot, 200, "{snapshot}");
        let path = json(&snapshot)["result"]["path"]
            .as_str()
            .map(PathBuf::from)
            .expect("a path");
        assert!(
            path.starts_with(dir),
            "profiles go to the temp dir: {}",
            path.display()
        );
        let profile = std::fs::read(&path).expect("the profile");
        assert_eq!(profile.get(..2), Some(&[0x1f, 0x8b][..]), "gzipped pprof");
    } else {
        assert_eq!(status_snapshot, 501, "{snapshot}");
    }
}

fn promtool_accepts(metrics: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is missing ({e}): install it (Debian: apt-get install prometheus; .ci/run does)")
        });
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write");
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn under_plimsoll_run_the_example_gets_its_budget_and_is_restarted_at_it() {
    let plimsoll = built(profile_dir().join("plimsoll"), "cargo build -p plimsoll");
    let dir = tempfile::tempdir().expect("tempdir");
    let events = dir.path().join("events.jsonl");
    let mut command = Command::new(plimsoll);
    command
        .args([
            "run",
            "--listen",
            "off",
            "--budget",
            "96MiB",
            "--interval",
            "200ms",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--events")
        .arg(&events)
        .arg("--")
        .arg(example())
        .args(["--listen", "127.0.0.1:0", "--leak-kib-per-s", "16384"]);
    let mut run = Running::start(command);
    let addr = run.addr();
    let (_, health) = http(addr, "GET", "/health", None);
    assert_eq!(
        json(&health)["targets"][0]["budget_bytes"],
        96u64 << 20,
        "{health}"
    );
    // The leak reaches the budget within seconds: a graceful restart, then a second start.
    eventually("a memory restart", || {
        let text = std::fs::read_to_string(&events).ok()?;
        text.lines()
            .any(|l| l.contains("\"event\":\"restarted\""))
            .then_some(())
    });
    run.addr();
    run.signal("TERM");
    run.wait();
}
