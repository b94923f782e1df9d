//! `POST /api/v1/ingest` on a real socket, as abusers and careless clients use it: tokens (the
//! ingest token only), CORS, a 10 MB body, invalid JSON, 10,000 distinct instances over
//! keep-alive connections, a flood from one instance; `plimsoll serve` stays up, bounded in
//! memory, and `/metrics` stays one series per target.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::harness::{eventually, Cmd, Running};
use crate::http::json;

const WITHIN: Duration = Duration::from_secs(30);
pub(crate) const INGEST_TOKEN: &str = "ingest-secret";
const ADMIN_TOKEN: &str = "admin-secret";

/// `plimsoll serve` on a free port with the ingest token (and `args`); its address.
pub(crate) fn serve(dir: &Path, args: &[&str]) -> (Running, String) {
    let token = dir.join("ingest-token");
    std::fs::write(&token, format!("{INGEST_TOKEN}\n")).expect("token file");
    let data = dir.join("data");
    let cmd = args.iter().fold(
        Cmd::new("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data)
            .arg("--ingest-token-file")
            .arg(&token),
        |cmd, arg| cmd.arg(arg),
    );
    let running = cmd.spawn_in(dir);
    let addr_file = data.join("run/http.addr");
    let addr = eventually("the bound address in run/http.addr", WITHIN, || {
        let text = std::fs::read_to_string(&addr_file).ok()?;
        text.ends_with('\n').then(|| text.trim().to_owned())
    });
    (running, addr)
}

/// One answer: status, head (lower-cased), body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: String,
}

/// A keep-alive HTTP/1.1 connection for many requests.
pub(crate) struct Conn {
    reader: BufReader<TcpStream>,
    addr: String,
}

impl Conn {
    pub(crate) fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Conn {
            reader: BufReader::new(stream),
            addr: addr.to_owned(),
        }
    }

    /// Sends one request with `headers` and `body`; reads the answer (Content-Length framed).
    pub(crate) fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        // One write (and no Nagle): a head and a body in two segments wait for a delayed ACK.
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        // The server may answer (413) and close before the whole body is read.
        let _ = self.reader.get_mut().write_all(&bytes);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("read head");
            assert!(n > 0, "connection closed before an answer");
            if line == "\r\n" {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("read body");
        Answer {
            status,
            head,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// One request on a connection of its own.
pub(crate) fn send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    Conn::open(addr).send(method, path, headers, body)
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
}

/// A body with `n` samples of `instance` of `target`, the last one now.
pub(crate) fn batch(target: &str, instance: &str, n: usize) -> String {
    let now = now_ms();
    let samples: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"t_unix_ms": {}, "heap_used_bytes": {}, "dom_nodes": 500, "long_tasks": 1, "long_task_ms": 70}}"#,
                now - (n - i) as u128 * 100,
                (20 << 20) + i * 4096
            )
        })
        .collect();
    format!(
        r#"{{"target": "{target}", "instance": "{instance}", "samples": [{}]}}"#,
        samples.join(",")
    )
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn ingest_takes_only_its_token_and_names_every_mistake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = dir.path().join("admin-token");
    std::fs::write(&admin, ADMIN_TOKEN).expect("admin token");
    let (mut plimsoll, addr) = serve(
        dir.path(),
        &[
            "--admin-token-file",
            admin.to_str().expect("utf-8"),
            "--cors-origin",
            "http://allowed.test:8080",
        ],
    );
    let ingest = "/api/v1/ingest";
    let good = batch("web", "tab1", 5);
    let auth = bearer(INGEST_TOKEN);
    let with_token = [JSON, ("Authorization", auth.as_str())];

    // Tokens: none, wrong, the admin one: 401. The ingest token opens no admin route.
    let admin_auth = bearer(ADMIN_TOKEN);
    for headers in [
        vec![JSON],
        vec![JSON, ("Authorization", "Bearer nope")],
        vec![JSON, ("Authorization", admin_auth.as_str())],
    ] {
        let answer = send(&addr, "POST", ingest, &headers, good.as_bytes());
        assert_eq!(answer.status, 401, "{headers:?}: {answer:?}");
        assert!(answer.body.contains("ingest token"), "{answer:?}");
    }
    let answer = send(&addr, "DELETE", "/api/v1/leaks", &with_token, b"");
    assert_eq!(answer.status, 401, "{answer:?}");

    let answer = send(&addr, "POST", ingest, &with_token, good.as_bytes());
    assert_eq!(answer.status, 204, "{answer:?}");

    // Malformed bodies: 400 naming the field.
    for (body, expected) in [
        ("{\"target\": ", "not JSON"),
        (r#"{"target": "web", "samples": []}"#, "instance: missing"),
        (
            r#"{"target": "web", "instance": "x", "samples": [{"t_unix_ms": 1}]}"#,
            "samples[0].t_unix_ms",
        ),
    ] {
        let answer = send(&addr, "POST", ingest, &with_token, body.as_bytes());
        assert_eq!(answer.status, 400, "{body}: {answer:?}");
        assert!(answer.body.contains(expected), "{body}: {answer:?}");
    }
    // 10 MB: 413 without reading it all.
    let huge = vec![b' '; 10 << 20];
    let answer = send(&addr, "POST", ingest, &with_token, &huge);
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.body.contains("256 KiB"), "{answer:?}");

    // CORS: the configured origin gets its preflight and its header; another gets 403.
    let preflight = [
        ("Origin", "http://allowed.test:8080"),
        ("Access-Control-Request-Method", "POST"),
        (
            "Access-Control-Request-Headers",
            "authorization, content-type",
        ),
    ];
    let answer = send(&addr, "OPTIONS", ingest, &preflight, b"");
    assert_eq!(answer.status, 204, "{answer:?}");
    assert!(
        answer
            .head
            .contains("access-control-allow-origin: http://allowed.test:8080"),
        "{answer:?}"
    );
    assert!(answer.head.contains("authorization"), "{answer:?}");
    let other = [
        ("Origin", "http://evil.test"),
        ("Access-Control-Request-Method", "POST"),
    ];
    let answer = send(&addr, "OPTIONS", ingest, &other, b"");
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(
        !answer.head.contains("access-control-allow-origin"),
        "{answer:?}"
    );
    assert!(answer.body.contains("'http://evil.test'"), "{answer:?}");
    let from_evil = [
        JSON,
        ("Authorization", auth.as_str()),
        ("Origin", "http://evil.test"),
    ];
    let answer = send(&addr, "POST", ingest, &from_evil, good.as_bytes());
    assert_eq!(answer.status, 403, "{answer:?}");
    let from_allowed = [
        JSON,
        ("Authorization", auth.as_str()),
        ("Origin", "http://allowed.test:8080"),
    ];
    let answer = send(
        &addr,
        "POST",
        ingest,
        &from_allowed,
        batch("web", "tab2", 3).as_bytes(),
    );
    assert_eq!(answer.status, 204, "{answer:?}");
    assert!(
        answer.head.contains("access-control-allow-origin"),
        "{answer:?}"
    );

    // The script any page may import.
    let answer = send(&addr, "GET", "/agent/plimsoll-browser.js", &[], b"");
    assert_eq!(answer.status, 200);
    assert!(answer.body.contains("export function startMemoryMonitor"));
    assert!(
        answer.head.contains("access-control-allow-origin: *"),
        "{answer:?}"
    );

    // /health lists the remote target once, with its instances; the contract holds.
    let answer = send(&addr, "GET", "/health", &[], b"");
    let health = json(&answer.body);
    plimsoll_http::contract::check_health(&health).expect("contract");
    assert_eq!(health["targets"][0]["name"], "web", "{health}");
    assert_eq!(health["targets"][0]["remote"]["instances"], 2, "{health}");
    let answer = send(&addr, "GET", "/api/v1/targets", &[], b"");
    let targets = json(&answer.body);
    assert_eq!(
        targets["targets"].as_array().map(Vec::len),
        Some(1),
        "{targets}"
    );
    assert_eq!(targets["targets"][0]["instances"][0]["name"], "web.tab1");
    let answer = send(&addr, "GET", "/metrics", &[], b"");
    assert!(
        answer
            .body
            .contains("plimsoll_ingest_rejected_total{reason=\"token\"} 3"),
        "{}",
        answer.body
    );
    plimsoll.signal("TERM");
    assert_eq!(plimsoll.wait_exit(WITHIN), Some(0));
}

#[test]
fn ten_thousand_instances_and_a_flood_leave_serve_bounded_and_answering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut plimsoll, addr) = serve(dir.path(), &["--max-instances", "200"]);
    let auth = bearer(INGEST_TOKEN);
    // 10,000 distinct instances over 4 keep-alive connections: 200 taken, the rest 429.
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (addr, auth) = (addr.clone(), auth.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::open(&addr);
                let mut counts = (0u32, 0u32);
                let headers = [JSON, ("Authorization", auth.as_str())];
                for i in 0..2500 {
                    let body = batch("crowd", &format!("i{w}-{i}"), 2);
                    let answer = conn.send("POST", "/api/v1/ingest", &headers, body.as_bytes());
                    match answer.status {
                        204 => counts.0 += 1,
                        429 => {
                            assert!(answer.body.contains("at most 200"), "{answer:?}");
                            counts.1 += 1;
                        }
                        _ => panic!("{answer:?}"),
                    }
                }
                counts
            })
        })
        .collect();
    let (taken, refused) = workers
        .into_iter()
        .map(|w| w.join().expect("worker"))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    assert_eq!((taken, refused), (200, 9800));

    // One instance flooding: the bucket (bursts of 10) turns it away with Retry-After.
    let mut conn = Conn::open(&addr);
    let headers = [JSON, ("Authorization", auth.as_str())];
    let answers: Vec<Answer> = (0..30)
        .map(|i| {
            let body = batch("crowd", "i0-0", 1 + i % 2);
            conn.send("POST", "/api/v1/ingest", &headers, body.as_bytes())
        })
        .collect();
    let limited = answers.iter().find(|a| a.status == 429).expect("a 429");
    assert!(limited.head.contains("retry-after: 1"), "{limited:?}");
    assert!(limited.body.contains("requests per second"), "{limited:?}");

    // Bounded metrics: one target's series, no instance ids.
    let answer = send(&addr, "GET", "/metrics", &[], b"");
    let metrics = answer.body;
    assert!(
        metrics.contains("plimsoll_remote_instances{target=\"crowd\",leak_state=\"clear\"} 200"),
        "{metrics}"
    );
    assert!(!metrics.contains("i0-0"), "an instance id in the metrics");
    assert!(metrics.lines().count() < 150, "{metrics}");
    let answer = send(&addr, "GET", "/health", &[], b"");
    assert_eq!(answer.status, 200, "{answer:?}");

    // Memory stays bounded: a generous bound (bench/ingest.sh measures the figure).
    let rss_mib = rss_kib(plimsoll.pid()) / 1024;
    assert!(
        rss_mib < 200,
        "serve holds {rss_mib} MiB after 10,000 instances"
    );
    plimsoll.signal("TERM");
    assert_eq!(plimsoll.wait_exit(WITHIN), Some(0));
    let log = std::fs::read_to_string(dir.path().join("plimsoll.stderr")).expect("log");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn run_takes_ingest_too_when_an_ingest_token_is_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut plimsoll = Cmd::new("run")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(&data)
        .arg("--name")
        .arg("sleeper")
        .arg("--")
        .arg("sleep")
        .arg("30")
        .env("PLIMSOLL_INGEST_TOKEN", INGEST_TOKEN)
        .spawn_in(dir.path());
    let addr_file = data.join("run/http.addr");
    let addr = eventually("the bound address", WITHIN, || {
        let text = std::fs::read_to_string(&addr_file).ok()?;
        text.ends_with('\n').then(|| text.trim().to_owned())
    });
    let auth = bearer(INGEST_TOKEN);
    let answer = send(
        &addr,
        "POST",
        "/api/v1/ingest",
        &[JSON, ("Authorization", auth.as_str())],
        batch("web", "tab", 3).as_bytes(),
    );
    assert_eq!(answer.status, 204, "{answer:?}");
    let answer = send(&addr, "GET", "/health", &[], b"");
    let health = json(&answer.body);
    let names: Vec<&str> = health["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["sleeper", "web"], "{health}");
    // The instance's samples reach the store under TARGET.INSTANCE.
    eventually("the instance's stored samples", WITHIN, || {
        let answer = send(&addr, "GET", "/api/v1/targets/web.tab/samples", &[], b"");
        (json(&answer.body)["samples"].as_array()?.len() == 3).then_some(())
    });
    plimsoll.signal("TERM");
    plimsoll.wait_exit(WITHIN);
}
