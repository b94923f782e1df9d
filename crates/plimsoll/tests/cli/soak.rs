//! `plimsoll soak` and `plimsoll report`: real target processes and load commands, short soaks
//! on a compressed detector clock (`--time-scale`), and the report opened in headless Chromium.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::chromium::{body_data, chromium, run_bounded};
use crate::harness::Cmd;

/// The detector's windows at 4 % of their length: a steady leak is confirmed after about 29 s,
/// and the soak's steady-state verdict needs a flat last part of about 10 s.
const TIME_SCALE: &str = "0.04";
/// Long enough for the steady state after a 2 s warm-up to show a flat last part, with room.
const FULL: &str = "38s";

/// A Python program that holds `mb_per_s` more every second (0 is flat after 20 MB) and churns
/// short-lived garbage.
fn python_target(dir: &Path, name: &str, mb_per_s: f64) -> String {
    let script = format!(
        r#"
import time
hold = [bytearray(b"x" * (20 * 1024 * 1024))]
while True:
    junk = bytearray(b"y" * (4 * 1024 * 1024))
    del junk
    if {mb_per_s} > 0:
        hold.append(bytearray(b"z" * int({mb_per_s} * 1024 * 1024 / 10)))
    time.sleep(0.1)
"#
    );
    let path = dir.join(name);
    std::fs::write(&path, script).expect("write target");
    path.display().to_string()
}

fn soak_in(dir: &Path, duration: &str) -> Cmd {
    Cmd::new("soak")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--interval")
        .arg("100ms")
        .arg("--time-scale")
        .arg(TIME_SCALE)
        .arg("--duration")
        .arg(duration)
}

#[test]
fn a_leaking_program_fails_the_soak_and_the_report_draws_it_in_chromium() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = python_target(dir.path(), "leak.py", 2.0);
    let report = dir.path().join("soak report.html");
    let started = Instant::now();
    let out = soak_in(dir.path(), "50s")
        .arg("--warmup")
        .arg("2s")
        .arg("--budget")
        .arg("1GiB")
        .arg("--fail-fast")
        .arg("--json")
        .arg("--report")
        .arg(&report)
        .arg("--")
        .arg("python3")
        .arg(&target)
        .expect_exit(1);
    let verdict = out.json();
    assert_eq!(verdict["verdict"], "leak", "{verdict}");
    assert_eq!(verdict["stopped"], "leak-confirmed", "{verdict}");
    assert_eq!(verdict["budget_exceeded"], false, "{verdict}");
    assert_eq!(verdict["load_failed"], false, "{verdict}");
    let rate = verdict["growth_bytes_per_s"].as_f64().expect("rate");
    assert!((1.0e6..4.0e6).contains(&rate), "about 2 MiB/s: {verdict}");
    assert!(verdict["time_to_budget_s"].as_f64().is_some(), "{verdict}");
    let detected = verdict["detected_after_s"].as_f64().expect("detected");
    assert!(detected < 45.0, "{verdict}");
    // --fail-fast: it stopped at the confirmation, not at the end of the 50 s.
    assert!(started.elapsed() < Duration::from_secs(48), "{verdict}");
    // Standard output is the verdict alone, even though the target shares it.
    assert_eq!(out.stdout.trim().lines().count(), 1, "{}", out.stdout);

    let page = std::fs::read_to_string(&report).expect("report written");
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "self-contained"
    );
    let dom = chromium_dom(&report);
    let points: u64 = body_data(&dom, "points")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no data-points in {}", &dom[..dom.len().min(2000)]));
    assert!(points > 100, "points drawn: {points}");
    assert_eq!(body_data(&dom, "errors"), Some("[]"), "JS errors");
    assert!(dom.contains("leak-confirmed"), "the events are listed");
    assert!(dom.contains("LEAK"), "the verdict is shown");

    // `plimsoll report` of the same data dir, with the same detector clock.
    let again = dir.path().join("again.html");
    Cmd::new("report")
        .arg(dir.path().join("data"))
        .arg("--out")
        .arg(&again)
        .arg("--time-scale")
        .arg(TIME_SCALE)
        .expect_exit(0);
    let dom = chromium_dom(&again);
    let points: u64 = body_data(&dom, "points")
        .and_then(|p| p.parse().ok())
        .expect("points");
    assert!(points > 100, "points drawn: {points}");
    assert_eq!(body_data(&dom, "errors"), Some("[]"), "JS errors");
}

#[test]
fn a_healthy_program_passes_with_line_based_progress_off_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = python_target(dir.path(), "flat.py", 0.0);
    let out = soak_in(dir.path(), FULL)
        .arg("--warmup")
        .arg("2s")
        .arg("--budget")
        .arg("1GiB")
        .arg("--load")
        .arg("while true; do sleep 0.2; done")
        .arg("--")
        .arg("python3")
        .arg(&target)
        .expect_exit(0);
    assert!(out.stdout.contains("PASSED: no leak"), "{}", out.stdout);
    let progress: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("plimsoll soak: 0:"))
        .collect();
    assert!(progress.len() >= 3, "a line every 10 s: {}", out.stderr);
    assert!(
        progress[0].contains("/0:38") && progress[0].contains("rss "),
        "{progress:?}"
    );
    assert!(!out.stderr.contains('\r'), "no bar redrawn off a terminal");
}

#[test]
fn a_soak_too_short_to_tell_is_inconclusive_and_says_how_much_longer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = python_target(dir.path(), "flat.py", 0.0);
    let out = soak_in(dir.path(), "5s")
        .arg("--json")
        .arg("--")
        .arg("python3")
        .arg(&target)
        .expect_exit(3);
    let verdict = out.json();
    assert_eq!(verdict["verdict"], "inconclusive", "{verdict}");
    // The steady state after the warm-up needs a flat part of at least 2 MiB at the flat rate
    // (2 MiB / (0.5 MiB/min / 0.04) = 9.6 s) before a no-leak can be said; on a loaded machine
    // the RSS of the target jitters more, the allowance for noise grows and so does the flat
    // part a verdict needs (227 s seen), but something more is always asked.
    let more = verdict["needs_more_s"].as_f64().expect("needs_more_s");
    assert!((3.0..900.0).contains(&more), "{verdict}");
    assert!(
        verdict["reason"]
            .as_str()
            .is_some_and(|r| r.contains("too short")),
        "{verdict}"
    );

    let out = soak_in(dir.path(), "3s")
        .arg("--")
        .arg("python3")
        .arg(&target)
        .expect_exit(3);
    assert!(out.stdout.contains("INCONCLUSIVE"), "{}", out.stdout);
    assert!(out.stdout.contains("more of observation"), "{}", out.stdout);
}

#[test]
fn a_failing_load_command_fails_the_soak() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = python_target(dir.path(), "flat.py", 0.0);
    let started = Instant::now();
    let out = soak_in(dir.path(), FULL)
        .arg("--load")
        .arg("exit 3")
        .arg("--json")
        .arg("--")
        .arg("python3")
        .arg(&target)
        .expect_exit(1);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "it stops at once"
    );
    let verdict = out.json();
    assert_eq!(verdict["load_failed"], true, "{verdict}");
    assert_eq!(verdict["stopped"], "load-failed", "{verdict}");
    let error = verdict["load_error"].as_str().expect("load_error");
    assert!(
        error.contains("'exit 3'") && error.contains("exit code 3"),
        "{error}"
    );

    let out = soak_in(dir.path(), FULL)
        .arg("--load")
        .arg("exit 3")
        .arg("--")
        .arg("python3")
        .arg(&target)
        .expect_exit(1);
    assert!(
        out.stdout
            .contains("the load command 'exit 3' failed with exit code 3"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_budget_reached_fails_the_soak() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = python_target(dir.path(), "grow.py", 20.0);
    let out = soak_in(dir.path(), "30s")
        .arg("--budget")
        .arg("60MiB")
        .arg("--fail-fast")
        .arg("--json")
        .arg("--")
        .arg("python3")
        .arg(&target)
        .expect_exit(1);
    let verdict = out.json();
    assert_eq!(verdict["budget_exceeded"], true, "{verdict}");
    assert_eq!(verdict["budget_bytes"], 60 * 1024 * 1024, "{verdict}");
}

#[test]
fn bad_usage_exits_2_naming_the_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = soak_in(dir.path(), "10s")
        .arg("--warmup")
        .arg("10s")
        .arg("--")
        .arg("true")
        .expect_exit(2);
    assert!(out.stderr.contains("--warmup 10s"), "{}", out.stderr);
    let out = Cmd::new("soak")
        .arg("--time-scale")
        .arg("0")
        .arg("--")
        .arg("true")
        .expect_exit(2);
    assert!(out.stderr.contains("'0'"), "{}", out.stderr);
    // Quoted as given, not as the number it parses to (1e308 once printed 309 digits).
    let out = Cmd::new("soak")
        .arg("--time-scale")
        .arg("1e308")
        .arg("--")
        .arg("true")
        .expect_exit(2);
    assert!(out.stderr.contains("'1e308'"), "{}", out.stderr);
    assert!(out.stderr.len() < 300, "{}", out.stderr);
    let out = Cmd::new("report")
        .arg(dir.path().join("nothing-here"))
        .arg("--out")
        .arg(dir.path().join("r.html"))
        .expect_exit(2);
    assert!(out.stderr.contains("no store in"), "{}", out.stderr);
    assert!(!dir.path().join("r.html").exists(), "nothing written");
}

#[test]
fn output_paths_that_cannot_be_written_fail_before_the_soak_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let started = dir.path().join("started");
    let target = format!("touch '{}'; sleep 60", started.display());
    let missing = dir.path().join("missing/dir");
    let cases = [
        (
            "--report",
            missing.join("r.html"),
            "cannot write the report",
        ),
        ("--report", dir.path().to_owned(), "it is a directory"),
        ("--events", missing.join("e.jsonl"), "e.jsonl"),
    ];
    for (flag, path, expected) in cases {
        let clock = Instant::now();
        let out = soak_in(dir.path(), "30s")
            .arg(flag)
            .arg(&path)
            .arg("--")
            .arg("sh")
            .arg("-c")
            .arg(&target)
            .expect_exit(2);
        assert!(out.stderr.contains(expected), "{flag}: {}", out.stderr);
        assert!(
            clock.elapsed() < Duration::from_secs(10),
            "{flag}: took {:?}",
            clock.elapsed()
        );
        assert!(!started.exists(), "{flag}: the target was started");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        1,
        "only the data dir is left (no temporary report file)"
    );
}

/// Headless Chromium's DOM of `page` after its scripts ran; fails when Chromium is missing.
/// A Node program that keeps `records` more `LeakyRecord`s (each with a 5 KB string) in a Map
/// every 100 ms (0: holds nothing) and churns short-lived garbage: a GC sawtooth on the heap.
fn node_target(dir: &Path, name: &str, records: u32) -> String {
    let script = format!(
        r#"
class LeakyRecord {{ constructor(i) {{ this.id = i; this.payload = 'x'.repeat(5000) + i; }} }}
const cache = new Map();
let i = 0;
setInterval(() => {{
  for (let k = 0; k < {records}; k++) {{ cache.set(i, new LeakyRecord(i)); i++; }}
  let junk = [];
  for (let k = 0; k < 2000; k++) junk.push({{ k, s: 'j' + k }});
}}, 100);
"#
    );
    let path = dir.join(name);
    std::fs::write(&path, script).expect("write target");
    path.display().to_string()
}

/// Forced GCs through the real agent: the heap channel is the heap right after each one, flat
/// for a program that holds nothing new however much garbage it churns, and the pause each GC
/// cost the app is in the verdict and the report. `--no-forced-gc` goes back to the app's own
/// major GCs.
#[test]
fn forced_gcs_give_the_live_heap_and_their_pauses_through_the_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = node_target(dir.path(), "flat.js", 0);
    let report = dir.path().join("flat.html");
    // Too short for a no-leak on purpose: the readings are what is tested.
    let out = soak_in(dir.path(), "8s")
        .arg("--warmup")
        .arg("3s")
        .arg("--gc-every")
        .arg("500ms")
        .arg("--json")
        .arg("--report")
        .arg(&report)
        .arg("--")
        .arg("node")
        .arg(&target)
        .expect_exit(3);
    let verdict = out.json();
    assert_eq!(verdict["heap_channel"], "forced-gc", "{verdict}");
    let gc = &verdict["forced_gc"];
    assert_eq!(gc["every_s"], 0.5, "{verdict}");
    let count = gc["count"].as_u64().expect("count");
    assert!((8..=20).contains(&count), "about one per 500 ms: {verdict}");
    let median = gc["pause_ms"]["median"].as_f64().expect("pause");
    let max = gc["pause_ms"]["max"].as_f64().expect("max pause");
    assert!(median > 0.0 && median <= max && max < 2000.0, "{verdict}");
    assert!(
        gc["paused_fraction"]
            .as_f64()
            .is_some_and(|f| f > 0.0 && f < 0.5),
        "{verdict}"
    );
    // The live heap: the churn (2000 objects every 100 ms) never shows after a forced GC.
    let first = gc["heap_after_gc_bytes"]["first_steady"]
        .as_u64()
        .expect("first");
    let last = gc["heap_after_gc_bytes"]["last"].as_u64().expect("last");
    assert!(first > 1_000_000 && last > 1_000_000, "{verdict}");
    assert!(
        first.abs_diff(last) < 1_500_000,
        "flat live heap: {verdict}"
    );
    assert_eq!(verdict["signal"], "heap_used_after_gc", "{verdict}");
    let page = std::fs::read_to_string(&report).expect("report");
    assert!(
        page.contains("\"forced_gc\""),
        "the report carries the forced GCs"
    );

    let out = soak_in(dir.path(), "4s")
        .arg("--no-forced-gc")
        .arg("--json")
        .arg("--")
        .arg("node")
        .arg(&target)
        .expect_exit(3);
    let verdict = out.json();
    assert_eq!(verdict["heap_channel"], "major-gc", "{verdict}");
    assert_eq!(verdict["forced_gc"], serde_json::Value::Null, "{verdict}");
    Cmd::new("soak")
        .arg("--gc-every")
        .arg("1s")
        .arg("--no-forced-gc")
        .arg("--")
        .arg("node")
        .expect_exit(2);
}

/// A real, short soak of a leaking Node program: the steady state rises like a leak, three heap
/// snapshots are taken in the time left, and the class that leaks is named with what holds it,
/// in the exit line, the verdict (in the report), the `leak-suspects` event and the report; the
/// soak still ends on time.
#[test]
fn a_leaking_node_program_is_named_before_the_soak_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = node_target(dir.path(), "leak.js", 20);
    let report = dir.path().join("leak.html");
    let events = dir.path().join("events.jsonl");
    let started = Instant::now();
    let out = soak_in(dir.path(), "80s")
        .deadline(Duration::from_secs(110))
        .arg("--warmup")
        .arg("3s")
        .arg("--gc-every")
        .arg("1s")
        .arg("--events")
        .arg(&events)
        .arg("--report")
        .arg(&report)
        .arg("--")
        .arg("node")
        .arg(&target)
        .expect_exit(1);
    assert!(
        started.elapsed() < Duration::from_secs(95),
        "ended on time: {:?}",
        started.elapsed()
    );
    let exit_line = out.stdout.lines().next().unwrap_or_default();
    assert!(
        exit_line.starts_with("soak of node: FAILED: leak (LeakyRecord: +"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.contains("  suspect        LeakyRecord"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("  forced GC      every 1s"),
        "{}",
        out.stdout
    );

    let events = crate::harness::read_events(&events);
    let suspects = events
        .iter()
        .find(|e| e["event"] == "leak-suspects")
        .unwrap_or_else(|| panic!("no leak-suspects event: {events:?}"));
    let top = &suspects["suspects"]["top"][0];
    assert_eq!(top["constructor"], "LeakyRecord", "{suspects}");
    let path = top["retainer_path"].as_str().expect("path");
    assert!(path.contains(".cache Map"), "held by the Map: {path}");
    assert!(
        top["count_growth"].as_u64().is_some_and(|n| n > 50),
        "{suspects}"
    );
    assert!(
        top["bytes_growth"].as_u64().is_some_and(|b| b > 250_000),
        "{suspects}"
    );
    // The evidence is kept; the first two snapshots are gone.
    let kept = suspects["snapshot"].as_str().expect("snapshot");
    assert!(Path::new(kept).exists(), "{kept}");
    let snapshots = std::fs::read_dir(dir.path().join("data/snapshots"))
        .expect("snapshots")
        .count();
    assert_eq!(snapshots, 1, "only the last snapshot stays");

    let page = std::fs::read_to_string(&report).expect("report");
    assert!(
        page.contains("\"constructor\":\"LeakyRecord\""),
        "the verdict's suspects"
    );
    assert!(
        page.contains("\"heap_channel\":\"forced-gc\""),
        "the heap channel"
    );
}

fn chromium_dom(page: &Path) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut dump = chromium();
    dump.arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg("--virtual-time-budget=5000")
        .arg(format!("file://{}", page.display()).replace(' ', "%20"));
    run_bounded(dump, Duration::from_secs(60))
}

/// A real soak of a Node program whose cache fills for nine seconds after the declared
/// warm-up and then stays full: the live heap rose like a leak (the soak took its heap
/// snapshots, which leave native memory in RSS) and levelled off, so the soak passes on the
/// live heap read after its forced GCs, and says the warm-up outlasted the declared one.
#[test]
fn a_node_cache_that_fills_past_the_warm_up_and_levels_off_passes_on_its_live_heap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("cache.js");
    std::fs::write(
        &script,
        r#"
const cache = new Map();
let i = 0;
setInterval(() => {
  if (cache.size < 3000) for (let k = 0; k < 25; k++) { cache.set(i, 'x'.repeat(5000) + i); i++; }
  let junk = [];
  for (let k = 0; k < 2000; k++) junk.push({ k, s: 'j' + k });
}, 100);
"#,
    )
    .expect("write target");
    let out = soak_in(dir.path(), "60s")
        .deadline(Duration::from_secs(100))
        .arg("--warmup")
        .arg("3s")
        .arg("--gc-every")
        .arg("1s")
        .arg("--json")
        .arg("--")
        .arg("node")
        .arg(&script)
        .expect_exit(0);
    let verdict = out.json();
    assert_eq!(verdict["verdict"], "no-leak", "{verdict}");
    assert_eq!(verdict["heap_channel"], "forced-gc", "{verdict}");
    let reason = verdict["reason"].as_str().expect("reason");
    assert!(reason.starts_with("live heap flat within"), "{reason}");
    if verdict["leak_seen_after_s"].is_number() {
        assert!(
            reason.contains("levelled off: a warm-up longer than --warmup 3s"),
            "{reason}"
        );
    }
    // No suspects for a heap that came out flat.
    assert_eq!(verdict["suspects"], serde_json::Value::Null, "{verdict}");
}
