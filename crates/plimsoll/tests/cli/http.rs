//! The HTTP server on a real socket: `plimsoll run --listen 127.0.0.1:0` against a small leaking
//! Python program; the address from `DATA_DIR/run/http.addr`; `/metrics` and the alert rules
//! through promtool; the dashboard in headless Chromium.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::chromium::{body_data, chromium, run_bounded};
use crate::harness::{eventually, Cmd, Running};

const WITHIN: Duration = Duration::from_secs(30);
const TOKEN: &str = "test-admin-token";

/// A Python program whose memory grows 2 MB/s until it is stopped.
fn leaking_program(dir: &Path) -> PathBuf {
    let path = dir.join("leak.py");
    std::fs::write(
        &path,
        "import time\nhold = []\nwhile True:\n    hold.append(bytearray(200 * 1024))\n    time.sleep(0.1)\n",
    )
    .expect("write program");
    path
}

/// `plimsoll run` of the leaking program, serving HTTP on a free port with an admin token.
fn serve_leaker(dir: &Path) -> (Running, String) {
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let data = dir.join("data");
    let plimsoll = Cmd::new("run")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--admin-token-file")
        .arg(&token_file)
        .arg("--data-dir")
        .arg(&data)
        .arg("--interval")
        .arg("200ms")
        .arg("--budget")
        .arg("1GiB")
        .arg("--name")
        .arg("leaker")
        .arg("--")
        .arg("python3")
        .arg(leaking_program(dir))
        .spawn_in(dir);
    let addr_file = data.join("run/http.addr");
    let addr = eventually("the bound address in run/http.addr", WITHIN, || {
        let text = std::fs::read_to_string(&addr_file).ok()?;
        text.ends_with('\n').then(|| text.trim().to_owned())
    });
    (plimsoll, addr)
}

/// One HTTP/1.1 request (connection closed after it); status and body.
pub(crate) fn request(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    request_with_body(addr, method, path, token, "")
}

/// One HTTP/1.1 request with a JSON `body`; status and body.
pub(crate) fn request_with_body(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

pub(crate) fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// promtool, or a failure that says how to get it.
fn promtool() -> Command {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "promtool is missing: install it (Debian: apt-get install prometheus; .ci/run does)"
    );
    Command::new("promtool")
}

#[test]
fn a_live_run_serves_health_metrics_the_api_and_admin_actions_on_port_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut plimsoll, addr) = serve_leaker(dir.path());
    let health = eventually("/health with a sampled target", WITHIN, || {
        let (status, body) = request(&addr, "GET", "/health", None);
        let health = json(&body);
        (status == 200
            && health["targets"][0]["rss_bytes"]
                .as_u64()
                .is_some_and(|b| b > 0))
        .then_some(health)
    });
    assert_eq!(health["status"], "ok");
    assert_eq!(health["targets"][0]["name"], "leaker");
    assert_eq!(health["targets"][0]["budget_bytes"], 1u64 << 30);

    let (status, metrics) = request(&addr, "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("plimsoll_rss_bytes{target=\"leaker\"}"),
        "{metrics}"
    );
    let mut check = promtool()
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("feed promtool");
    let out = check.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let samples = eventually("stored samples", WITHIN, || {
        let (_, body) = request(&addr, "GET", "/api/v1/targets/leaker/samples?since=0", None);
        let samples = json(&body)["samples"].as_array()?.clone();
        (!samples.is_empty()).then_some(samples)
    });
    assert!(samples[0]["rss_bytes"].as_u64().is_some());
    let (status, body) = request(
        &addr,
        "GET",
        "/api/v1/targets/leaker/samples?since=soon",
        None,
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = request(&addr, "GET", "/api/v1/events", None);
    assert_eq!(status, 200);
    assert_eq!(json(&body)["events"][0]["event"], "started");

    // Admin: the token from the file, answered by the supervisor's own loop.
    let (status, _) = request(&addr, "POST", "/api/v1/targets/leaker/leak-check", None);
    assert_eq!(status, 401);
    let (status, body) = request(
        &addr,
        "POST",
        "/api/v1/targets/leaker/leak-check",
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    assert!(json(&body)["result"]["verdict"].is_string(), "{body}");
    let (status, body) = request(&addr, "POST", "/api/v1/targets/leaker/gc", Some(TOKEN));
    assert_eq!(status, 501, "{body}");
    let (status, body) = request(&addr, "POST", "/api/v1/targets/leaker/restart", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    eventually("one restart in /health", WITHIN, || {
        let (_, body) = request(&addr, "GET", "/health", None);
        (json(&body)["targets"][0]["restarts"] == 1).then_some(())
    });

    plimsoll.signal("TERM");
    plimsoll.wait_exit(WITHIN);
    let log = std::fs::read_to_string(dir.path().join("plimsoll.stderr")).expect("log");
    assert!(
        log.contains(&format!("listening on http://{addr}")),
        "{log}"
    );
}

#[test]
fn thresholds_leak_check_and_restart_through_the_real_loop_show_in_health_and_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut plimsoll, addr) = serve_leaker(dir.path());
    eventually("a sampled target", WITHIN, || {
        let (_, body) = request(&addr, "GET", "/health", None);
        json(&body)["targets"][0]["rss_bytes"].as_u64()
    });
    let path = "/api/v1/targets/leaker/thresholds";
    let (status, body) = request_with_body(
        &addr,
        "PUT",
        path,
        Some(TOKEN),
        r#"{"warn": 40, "critical": 60}"#,
    );
    assert_eq!(status, 200, "{body}");
    // Published at once: /health and /metrics read the new marks, not the ones of the start.
    let (_, body) = request(&addr, "GET", "/health", None);
    let target = &json(&body)["targets"][0];
    assert_eq!(target["warn_percent"], 40.0, "{body}");
    assert_eq!(target["critical_percent"], 60.0, "{body}");
    let (_, metrics) = request(&addr, "GET", "/metrics", None);
    assert!(
        metrics.contains("plimsoll_level_warn_ratio{target=\"leaker\"} 0.4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("plimsoll_level_critical_ratio{target=\"leaker\"} 0.6"),
        "{metrics}"
    );
    // The next PUT starts from the published marks: changing only `critical` keeps warn 40.
    let (status, body) = request_with_body(&addr, "PUT", path, Some(TOKEN), r#"{"critical": 80}"#);
    assert_eq!(status, 200, "{body}");
    let (_, body) = request(&addr, "GET", "/health", None);
    let target = &json(&body)["targets"][0];
    assert_eq!(target["warn_percent"], 40.0, "{body}");
    assert_eq!(target["critical_percent"], 80.0, "{body}");
    let first_pid = target["pid"].as_u64().expect("pid");
    // Leak-check and restart, answered by the same real loop; the marks survive the restart.
    let (status, body) = request(
        &addr,
        "POST",
        "/api/v1/targets/leaker/leak-check",
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    assert!(json(&body)["result"]["verdict"].is_string(), "{body}");
    let (status, body) = request(&addr, "POST", "/api/v1/targets/leaker/restart", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    let target = eventually("the restarted run sampled", WITHIN, || {
        let (_, body) = request(&addr, "GET", "/health", None);
        let target = json(&body)["targets"][0].clone();
        (target["restarts"] == 1 && target["pid"].as_u64() != Some(first_pid)).then_some(target)
    });
    assert_eq!(target["critical_percent"], 80.0, "{target}");
    plimsoll.signal("TERM");
    plimsoll.wait_exit(WITHIN);
}

#[test]
fn a_taken_port_fails_fast_with_exit_2_before_the_target_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let marker = dir.path().join("started");
    let out = Cmd::new("run")
        .arg("--listen")
        .arg(&addr)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--")
        .arg("touch")
        .arg(&marker)
        .expect_exit(2);
    assert!(
        out.stderr.contains(&format!("cannot listen on {addr}")),
        "{}",
        out.stderr
    );
    assert!(!marker.exists(), "the target must not start");
    let out = Cmd::new("run")
        .arg("--listen")
        .arg("example.com:80")
        .arg("--")
        .arg("true")
        .expect_exit(2);
    assert!(out.stderr.contains("'example.com:80'"), "{}", out.stderr);
}

#[test]
fn promtool_accepts_the_shipped_alert_rules_and_scrape_config() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus");
    for (what, file) in [("rules", "alerts.yml"), ("config", "prometheus.yml")] {
        let out = promtool()
            .args(["check", what])
            .arg(deploy.join(file))
            .output()
            .expect("promtool");
        assert!(
            out.status.success(),
            "promtool check {what} {file}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_dashboard_draws_the_live_target_in_headless_chromium() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_plimsoll, addr) = serve_leaker(dir.path());
    eventually("stored samples", WITHIN, || {
        let (_, body) = request(&addr, "GET", "/api/v1/targets/leaker/samples?since=0", None);
        (json(&body)["samples"].as_array()?.len() >= 3).then_some(())
    });
    let url = format!("http://{addr}/?interval_ms=500");
    let mut dump = chromium();
    dump.arg(format!(
        "--user-data-dir={}",
        dir.path().join("profile-dom").display()
    ))
    .arg("--virtual-time-budget=8000")
    .arg("--dump-dom")
    .arg(&url);
    let dom = run_bounded(dump, Duration::from_secs(60));
    let points: u64 = body_data(&dom, "points")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no data-points on the body: {dom}"));
    assert!(points > 0, "the chart drew no points: {dom}");
    assert_eq!(body_data(&dom, "errors"), Some("[]"), "JS errors: {dom}");
    assert_eq!(body_data(&dom, "targets"), Some("leaker"), "{dom}");
    assert!(dom.contains("data-target=\"leaker\""), "{dom}");
    assert!(dom.contains("class=\"uplot"), "no uPlot chart: {dom}");

    // The screenshot is kept as an artifact under target/.
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifact dir");
    let screenshot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut shot = chromium();
    shot.arg(format!(
        "--user-data-dir={}",
        dir.path().join("profile-shot").display()
    ))
    .arg("--virtual-time-budget=8000")
    .arg("--window-size=1200,900")
    .arg(format!("--screenshot={}", screenshot.display()))
    .arg(&url);
    run_bounded(shot, Duration::from_secs(60));
    let size = std::fs::metadata(&screenshot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "no screenshot at {}", screenshot.display());
}

#[test]
fn a_read_token_guards_reads_and_a_non_loopback_listen_is_warned_about() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("read-token");
    std::fs::write(&token_file, "read-secret\n").expect("token file");
    let data = dir.path().join("data");
    let mut plimsoll = Cmd::new("run")
        .arg("--listen")
        .arg("0.0.0.0:0")
        .arg("--read-token-file")
        .arg(&token_file)
        .arg("--data-dir")
        .arg(&data)
        .arg("--name")
        .arg("sleeper")
        .arg("--")
        .arg("sleep")
        .arg("30")
        .spawn_in(dir.path());
    let addr_file = data.join("run/http.addr");
    let addr = eventually("the bound address", WITHIN, || {
        let text = std::fs::read_to_string(&addr_file).ok()?;
        let port = text.trim().rsplit_once(':')?.1.to_owned();
        Some(format!("127.0.0.1:{port}"))
    });
    let (status, _) = request(&addr, "GET", "/health", None);
    assert_eq!(status, 401);
    let (status, body) = request(&addr, "GET", "/health", Some("read-secret"));
    assert_eq!(status, 200, "{body}");
    let (status, _) = request(&addr, "GET", "/", None);
    assert_eq!(status, 200);
    let stderr = std::fs::read_to_string(dir.path().join("plimsoll.stderr")).expect("stderr");
    assert!(
        stderr.contains("not loopback") && stderr.contains("in clear"),
        "{stderr}"
    );
    plimsoll.signal("TERM");
    plimsoll.wait_exit(WITHIN);

    // An empty token file is refused, naming it.
    std::fs::write(&token_file, "  \n").expect("empty token file");
    let output = Cmd::new("run")
        .arg("--listen")
        .arg("off")
        .arg("--read-token-file")
        .arg(&token_file)
        .arg("--data-dir")
        .arg(&data)
        .arg("--")
        .arg("true")
        .expect_exit(2);
    assert!(
        output.stderr.contains("--read-token-file") && output.stderr.contains("is empty"),
        "{}",
        output.stderr
    );
}
