//! The browser monitor in real headless Chromium against a live `plimsoll serve`: pages served
//! by a small static server of the test import `/agent/plimsoll-browser.js` from serve, one
//! leaking detached DOM nodes and listeners, one healthy, one healthy and cross-origin isolated
//! (the whole page measured), one from an origin serve does not allow. Each page reports its monitor's `export()` (cost per sample, what it sent) back to
//! the static server.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::chromium::{body_data, chromium, run_bounded};
use crate::harness::eventually;
use crate::http::json;
use crate::ingest::{send, serve, INGEST_TOKEN};

/// The test page: `?server=…&token=…&target=…&mode=leak|healthy`.
const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>plimsoll browser test</title>
<body><ul id="list"></ul>
<script type="module">
const q = new URLSearchParams(location.search);
const server = q.get("server");
const target = q.get("target");
const report = (what) => fetch("/report?" + new URLSearchParams({ target, what: JSON.stringify(what) }));
try {
  const { startMemoryMonitor } = await import(server + "/agent/plimsoll-browser.js");
  const monitor = startMemoryMonitor({ endpoint: server, token: q.get("token"), target, intervalMs: 100, flushMs: 500 });
  const kept = [];
  const list = document.getElementById("list");
  setInterval(() => {
    for (let n = 0; n < 25; n++) {
      const held = new Array(1000).fill(Math.random());
      if (q.get("mode") === "leak") {
        // Detached subtrees with listeners whose closures hold 8 KB each: 2 MB/s retained.
        const div = document.createElement("div");
        div.appendChild(document.createElement("span"));
        div.addEventListener("click", () => held.length);
        kept.push(div);
      }
      // On the healthy page the same 2 MB/s is young garbage. (A listener on a dropped node
      // lives until the next full GC of both heaps: a sawtooth of seconds, a ramp to
      // the detector's windows compressed 50 times.)
    }
    // Both pages keep a live DOM of the same size.
    list.replaceChildren(...Array.from({ length: 50 }, () => document.createElement("li")));
  }, 100);
  setInterval(() => { const e = monitor.export(); report({ cost: e.cost, stats: e.stats, samples: e.samples.length }); }, 1000);
} catch (error) {
  report({ error: String(error) });
}
</script>
"#;

/// A static server on loopback for the page and the pages' reports; stops when dropped.
struct Pages {
    addr: String,
    reports: Arc<Mutex<HashMap<String, serde_json::Value>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pages {
    fn start() -> Pages {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let reports = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopping) = (reports.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    answer(stream, &shared);
                }
            }
        });
        Pages {
            addr,
            reports,
            stop,
            thread: Some(thread),
        }
    }

    /// The last report of the page of `target`.
    fn report(&self, target: &str) -> Option<serde_json::Value> {
        self.reports.lock().expect("reports").get(target).cloned()
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One request of a page: the page, or a report (kept by target), else 404.
fn answer(stream: TcpStream, reports: &Mutex<HashMap<String, serde_json::Value>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(n) if n > 2 => continue,
            _ => break,
        }
    }
    let path = line.split(' ').nth(1).unwrap_or("/");
    let mut extra = "";
    let (status, body) = if path.starts_with("/page.html") {
        ("200 OK", PAGE.to_owned())
    } else if path.starts_with("/isolated.html") {
        // Cross-origin isolated: the monitor measures the whole page.
        extra = "Cross-Origin-Opener-Policy: same-origin\r\nCross-Origin-Embedder-Policy: require-corp\r\n";
        ("200 OK", PAGE.to_owned())
    } else if let Some(query) = path.strip_prefix("/report?") {
        let pairs: HashMap<String, String> = query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), decode(v)))
            .collect();
        if let (Some(target), Some(what)) = (pairs.get("target"), pairs.get("what")) {
            if let Ok(value) = serde_json::from_str(what) {
                reports
                    .lock()
                    .expect("reports")
                    .insert(target.clone(), value);
            }
        }
        ("204 No Content", String::new())
    } else {
        ("404 Not Found", String::new())
    };
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\n{extra}Content-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// `application/x-www-form-urlencoded` decoding.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A headless Chromium on one page, killed when dropped.
struct Browser(Child);

impl Browser {
    fn open(profile: &Path, url: &str) -> Browser {
        let mut command = chromium();
        command
            .arg(format!("--user-data-dir={}", profile.display()))
            // performance.memory is rounded and cached for minutes without it.
            .arg("--enable-precise-memory-info")
            // A young generation of 1 MB: GC cycles well under a second, short against the
            // detector's windows compressed 50 times (a page's own cycles are seconds against
            // minutes), so the healthy page's garbage is a sawtooth, not a ramp.
            .arg("--js-flags=--max-semi-space-size=1")
            // measureUserAgentSpecificMemory() at once, not at the next GC or within 20 s.
            .arg("--enable-blink-features=ForceEagerMeasureMemory")
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null());
        Browser(command.spawn().expect("spawn chromium"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn target<'a>(targets: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    targets["targets"]
        .as_array()?
        .iter()
        .find(|t| t["name"] == name)
}

#[test]
fn browser_pages_report_to_serve_and_only_the_leaking_one_is_flagged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pages = Pages::start();
    let page_origin = format!("http://{}", pages.addr);
    let (mut plimsoll, addr) = serve(
        dir.path(),
        // Windows 50 times shorter: a 2 MB/s leak is suspected within seconds.
        &["--cors-origin", &page_origin, "--time-scale", "0.02"],
    );
    let server = format!("http://{addr}");
    let url = |origin: &str, target: &str, mode: &str| {
        let page = if target == "isolated" {
            "isolated"
        } else {
            "page"
        };
        format!(
            "{origin}/{page}.html?server={server}&token={INGEST_TOKEN}&target={target}&mode={mode}"
        )
    };
    let started = Instant::now();
    let _leaky = Browser::open(
        &dir.path().join("profile-leaky"),
        &url(&page_origin, "leaky", "leak"),
    );
    let _healthy = Browser::open(
        &dir.path().join("profile-healthy"),
        &url(&page_origin, "healthy", "healthy"),
    );
    // The same page from another origin (localhost is not 127.0.0.1 to CORS).
    let other_origin = page_origin.replace("127.0.0.1", "localhost");
    let _isolated = Browser::open(
        &dir.path().join("profile-isolated"),
        &url(&page_origin, "isolated", "healthy"),
    );
    let _refused = Browser::open(
        &dir.path().join("profile-refused"),
        &url(&other_origin, "refused", "healthy"),
    );

    // Both targets show up with samples within the pages' first seconds.
    eventually(
        "both pages' targets with samples",
        Duration::from_secs(20),
        || {
            let targets = json(&send(&addr, "GET", "/api/v1/targets", &[], b"").body);
            let has_samples = |name: &str| {
                target(&targets, name).is_some_and(|t| t["heap_used_bytes"].as_u64() > Some(0))
            };
            (has_samples("leaky") && has_samples("healthy")).then_some(())
        },
    );
    let first_seen_s = started.elapsed().as_secs_f64();
    assert!(
        first_seen_s < 15.0,
        "targets appeared after {first_seen_s:.1} s"
    );

    // The leak is detected on the leaking page.
    let targets = eventually(
        "a leak on the leaking page",
        Duration::from_secs(40),
        || {
            let targets = json(&send(&addr, "GET", "/api/v1/targets", &[], b"").body);
            let state = target(&targets, "leaky")?["leak"]["state"]
                .as_str()?
                .to_owned();
            (state != "clear").then_some(targets)
        },
    );
    let leaky = target(&targets, "leaky").expect("leaky");
    assert_eq!(leaky["remote"]["instances"], 1, "{leaky}");
    let instance = &leaky["instances"][0];
    assert!(instance["dom_nodes"].as_u64() > Some(50), "{instance}");
    assert!(
        instance["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("leaky.")),
        "{instance}"
    );
    // … and not on the healthy one, which ran as long.
    let healthy = target(&targets, "healthy").expect("healthy");
    assert_eq!(healthy["leak"]["state"], "clear", "{healthy}");
    let events = json(&send(&addr, "GET", "/api/v1/events", &[], b"").body);
    let leak_events: Vec<&serde_json::Value> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"].as_str().is_some_and(|n| n.starts_with("leak-")))
        .collect();
    assert!(!leak_events.is_empty(), "{events}");
    assert!(
        leak_events.iter().all(|e| e["target"]
            .as_str()
            .is_some_and(|t| !t.starts_with("healthy."))),
        "{events}"
    );
    // The isolated page measured the whole page (measureUserAgentSpecificMemory) and sent it.
    let isolated = eventually(
        "the isolated page's samples",
        Duration::from_secs(20),
        || {
            let report = pages.report("isolated")?;
            (report["stats"]["sent"].as_u64() > Some(0)).then_some(report)
        },
    );
    assert_eq!(
        isolated["stats"]["source"], "measureUserAgentSpecificMemory",
        "{isolated}"
    );
    // The other origin's page is refused: nothing of it arrives, its monitor saw failures.
    assert!(target(&targets, "refused").is_none(), "{targets}");
    let refused = eventually("the refused page's report", Duration::from_secs(10), || {
        pages
            .report("refused")
            .filter(|r| r["stats"]["failed"].as_u64() > Some(0))
    });
    assert_eq!(refused["stats"]["sent"], 0, "{refused}");

    // The monitor's own cost per sample, as the pages measured it.
    for name in ["leaky", "healthy"] {
        let report = pages.report(name).expect("a report");
        assert!(report["error"].is_null(), "{report}");
        // The median: one sample that meets a GC or the page's start-up is not the cost.
        let median_ms = report["cost"]["median_ms"].as_f64().expect("median_ms");
        assert!(
            median_ms < 1.0,
            "{name}: {median_ms} ms per sample: {report}"
        );
        assert!(report["stats"]["sent"].as_u64() > Some(0), "{report}");
        eprintln!("{name}: cost per sample {report}");
    }

    // /metrics: one series per target, instances per leak state.
    let metrics = send(&addr, "GET", "/metrics", &[], b"").body;
    assert!(metrics.contains("plimsoll_targets 3\n"), "{metrics}");
    assert!(
        metrics.contains("plimsoll_remote_instances{target=\"healthy\",leak_state=\"clear\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("plimsoll_remote_instances{target=\"leaky\",leak_state=\"clear\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("plimsoll_remote_heap_used_bytes{target=\"leaky\",quantile=\"1\"}"),
        "{metrics}"
    );

    // The dashboard draws both targets, each from its instance's stored series.
    let mut dump = chromium();
    dump.arg(format!(
        "--user-data-dir={}",
        dir.path().join("profile-dashboard").display()
    ))
    .arg("--virtual-time-budget=5000")
    .arg("--dump-dom")
    .arg(format!("{server}/?interval_ms=500"));
    let dom = run_bounded(dump, Duration::from_secs(60));
    assert_eq!(
        body_data(&dom, "targets"),
        Some("healthy,isolated,leaky"),
        "{dom}"
    );
    assert_eq!(body_data(&dom, "errors"), Some("[]"), "JS errors: {dom}");
    let points: u64 = body_data(&dom, "points")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    assert!(points > 0, "the charts drew no points: {dom}");

    plimsoll.signal("TERM");
    assert_eq!(plimsoll.wait_exit(Duration::from_secs(30)), Some(0));
}

#[test]
fn the_monitor_never_throws_into_its_host_even_without_a_dom() {
    // Node has no `document`: starting fails inside, and the caller gets an inert monitor.
    let module =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../agents/browser/plimsoll-browser.js");
    let script = format!(
        "import {{ startMemoryMonitor }} from {:?};\n\
         const m = startMemoryMonitor({{ endpoint: 'http://127.0.0.1:9', token: 't' }});\n\
         m.stop(); m.stop();\n\
         const n = startMemoryMonitor(null);\n\
         console.log(JSON.stringify([m.export(), n.export()]));",
        format!("file://{}", module.display())
    );
    let out = std::process::Command::new("node")
        .args(["--input-type=module", "-e", &script])
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exports = json(&String::from_utf8_lossy(&out.stdout));
    for export in exports.as_array().expect("two exports") {
        assert_eq!(export["samples"], serde_json::json!([]), "{export}");
        let error = export["stats"]["error"].as_str().unwrap_or_default();
        assert!(error.contains("document"), "{export}");
    }
}
