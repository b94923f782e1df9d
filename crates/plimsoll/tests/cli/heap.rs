//! `plimsoll heap summary|diff` on snapshots written by real node programs in the test.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{write_file, Cmd};

trait Files {
    fn files(self, files: &[PathBuf]) -> Self;
}

impl Files for Cmd {
    fn files(self, files: &[PathBuf]) -> Self {
        files.iter().fold(self, |cmd, f| cmd.arg(f))
    }
}

/// Runs `script` with node in `dir` (with `--expose-gc`) and returns its stdout.
fn node(dir: &Path, script: &str) -> String {
    let path = write_file(dir, "program.js", script);
    let output = Command::new("node")
        .arg("--expose-gc")
        .arg(&path)
        .current_dir(dir)
        .output()
        .expect("node must be installed to run the heap tests");
    assert!(
        output.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const SET_LEAK: &str = r#"
const v8 = require('v8');
class LeakyThing { constructor(i) { this.payload = 'x'.repeat(200) + i; this.n = i; } }
const leakySet = new Set();
function grow(n) { for (let i = 0; i < n; i++) leakySet.add(new LeakyThing(leakySet.size)); }
function churn() { let t = []; for (let i = 0; i < 20000; i++) t.push({ i }); return t.length; }
// Each step runs from the event loop, so no top-level frame holds the Set: it is reachable
// only through the module's context, by the variable's name.
function step(n, name, then) {
  grow(n); churn(); gc();
  const used = v8.getHeapStatistics().used_heap_size;
  v8.writeHeapSnapshot(name);
  if (then) setImmediate(then); else console.log(used);
}
setImmediate(() => step(500, 'a.heapsnapshot',
  () => step(3000, 'b.heapsnapshot', () => step(3000, 'c.heapsnapshot'))));
"#;

fn set_leak(dir: &Path) -> (Vec<PathBuf>, u64) {
    let used = node(dir, SET_LEAK).trim().parse().expect("used_heap_size");
    let files = ["a", "b", "c"].map(|n| dir.join(format!("{n}.heapsnapshot")));
    (files.to_vec(), used)
}

#[test]
fn summary_totals_match_what_v8_reports() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (files, used) = set_leak(dir.path());
    let out = Cmd::new("heap")
        .arg("summary")
        .arg(&files[2])
        .arg("--json")
        .expect_exit(0)
        .json();
    let total = out["reachable_self_size_bytes"].as_u64().expect("total");
    // The snapshot is written right after the reading; V8 counts the same objects, give or
    // take what writing the snapshot itself allocates: within 10 %.
    let ratio = total as f64 / used as f64;
    assert!(
        (0.9..1.1).contains(&ratio),
        "snapshot {total} B vs used_heap_size {used} B"
    );
    let by_type: u64 = out["by_type"]
        .as_array()
        .expect("by_type")
        .iter()
        .map(|t| t["self_size_bytes"].as_u64().expect("size"))
        .sum();
    assert_eq!(by_type, total);
    assert!(out["nodes"].as_u64().expect("nodes") > 10_000);
    let leaky = out["top_by_count"]
        .as_array()
        .expect("by count")
        .iter()
        .find(|r| r["class"] == "LeakyThing")
        .expect("LeakyThing counted");
    assert_eq!(leaky["count"], 6500);
    let set = out["largest"]
        .as_array()
        .expect("largest")
        .iter()
        .find(|o| o["name"] == "Set")
        .unwrap_or_else(|| panic!("the Set is not among the largest objects: {out}"));
    // 6500 objects with a 200-character string each.
    assert!(set["retained_size_bytes"].as_u64().expect("retained") > 6500 * 200);
    let set_path = set["retainer_path"].as_str().expect("path");
    assert!(set_path.starts_with("(GC roots) @"), "{set_path}");
    assert!(set_path.contains(".leakySet Set @"), "{set_path}");
    let text = Cmd::new("heap")
        .arg("summary")
        .arg(&files[2])
        .expect_exit(0)
        .stdout;
    assert!(text.contains("Top constructors by retained size"), "{text}");
}

#[test]
fn three_snapshot_diff_names_the_leaking_set() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (files, _) = set_leak(dir.path());
    let out = Cmd::new("heap")
        .arg("diff")
        .files(&files)
        .arg("--json")
        .expect_exit(0)
        .json();
    let top = &out["by_class"][0];
    assert_eq!(top["class"], "LeakyThing", "{out:#}");
    assert_eq!(top["count"], 3000);
    let path = &out["by_path"][0];
    assert_eq!(path["count"], 3000, "{out:#}");
    let text = path["example"]["retainer_path"].as_str().expect("path");
    assert!(text.contains(".leakySet Set @"), "{text}");
    assert!(
        text.ends_with(&format!("LeakyThing @{}", path["example"]["id"])),
        "{text}"
    );
    let human = Cmd::new("heap")
        .arg("diff")
        .files(&files)
        .expect_exit(0)
        .stdout;
    assert!(human.contains("Leak suspects by retainer path"), "{human}");
}

#[test]
fn two_snapshot_diff_shows_growth_by_constructor() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (files, _) = set_leak(dir.path());
    let out = Cmd::new("heap")
        .arg("diff")
        .arg(&files[0])
        .arg(&files[1])
        .arg("--json")
        .expect_exit(0)
        .json();
    let row = out["grew"]
        .as_array()
        .expect("grew")
        .iter()
        .find(|r| r["class"] == "LeakyThing")
        .expect("LeakyThing grew");
    assert_eq!(row["count_delta"], 3000);
    assert_eq!(row["new_count"], 3000);
    assert_eq!(row["freed_count"], 0);
}

#[test]
fn listener_and_closure_leaks_are_traced_to_their_holders() {
    let dir = tempfile::tempdir().expect("temp dir");
    node(
        dir.path(),
        r#"
const v8 = require('v8');
const { EventEmitter } = require('events');
const bus = new EventEmitter();
bus.setMaxListeners(0);
class RequestContext { constructor(i) { this.body = Buffer.alloc(16).toString('hex') + i; } }
const callbacks = [];
class CapturedState { constructor(i) { this.data = new Array(20).fill(i); } }
function listen(i) {
  const ctx = new RequestContext(i);
  bus.on('tick', function onTick() { return ctx.body; });
}
function remember(i) {
  const state = new CapturedState(i);
  callbacks.push(() => state.data.length);
}
function handle(i) { listen(i); remember(i); }
// Each step runs from the event loop: with no script frame on the stack, no handle scope holds
// the objects, and their shortest path goes through the variables that really keep them.
function step(n, name, then) {
  for (let i = 0; i < n; i++) handle(i);
  gc(); v8.writeHeapSnapshot(name);
  if (then) setImmediate(then);
}
setImmediate(() => step(200, 'a.heapsnapshot',
  () => step(2000, 'b.heapsnapshot', () => step(2000, 'c.heapsnapshot'))));
"#,
    );
    let files = ["a", "b", "c"]
        .map(|n| dir.path().join(format!("{n}.heapsnapshot")))
        .to_vec();
    let out = Cmd::new("heap")
        .arg("diff")
        .files(&files)
        .arg("--json")
        .arg("--top")
        .arg("50")
        .expect_exit(0)
        .json();
    let class = |name: &str| {
        out["by_class"]
            .as_array()
            .expect("by_class")
            .iter()
            .find(|r| r["class"] == name)
            .unwrap_or_else(|| panic!("{name} not among the suspects: {out}"))
            .clone()
    };
    let listener = class("RequestContext");
    assert_eq!(listener["count"], 2000);
    let path = listener["example"]["retainer_path"].as_str().expect("path");
    assert!(path.contains("._events"), "{path}");
    assert!(path.contains("onTick()"), "{path}");
    let captured = class("CapturedState");
    assert_eq!(captured["count"], 2000);
    let path = captured["example"]["retainer_path"].as_str().expect("path");
    assert!(path.contains(".callbacks "), "{path}");
    assert!(path.contains(".state CapturedState @"), "{path}");
}

#[test]
fn field_shuffled_snapshots_read_the_same() {
    let dir = tempfile::tempdir().expect("temp dir");
    node(
        dir.path(),
        r#"
const v8 = require('v8'); const fs = require('fs');
const keep = []; for (let i = 0; i < 1000; i++) keep.push({ i });
v8.writeHeapSnapshot('plain.heapsnapshot');
const s = JSON.parse(fs.readFileSync('plain.heapsnapshot', 'utf8'));
const m = s.snapshot.meta; const n = m.node_fields.length;
const order = [...Array(n).keys()].reverse();
m.node_fields = order.map(i => m.node_fields[i]);
m.node_types = order.map(i => m.node_types[i]);
const nodes = new Array(s.nodes.length);
for (let base = 0; base < s.nodes.length; base += n)
  for (let j = 0; j < n; j++) nodes[base + j] = s.nodes[base + order[j]];
s.nodes = nodes;
fs.writeFileSync('shuffled.heapsnapshot', JSON.stringify(s));
"#,
    );
    let summary = |name: &str| {
        let mut v = Cmd::new("heap")
            .arg("summary")
            .arg(dir.path().join(name))
            .arg("--json")
            .expect_exit(0)
            .json();
        v["file"] = serde_json::Value::Null;
        v["timing_s"] = serde_json::Value::Null;
        v
    };
    assert_eq!(
        summary("plain.heapsnapshot"),
        summary("shuffled.heapsnapshot")
    );
}

#[test]
fn bad_files_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (files, _) = set_leak(dir.path());
    let good = std::fs::read(&files[0]).expect("read snapshot");
    let check = |name: &str, bytes: &[u8], expected: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        let err = Cmd::new("heap")
            .arg("summary")
            .arg(&path)
            .expect_exit(2)
            .stderr;
        assert!(err.contains(expected), "{name}: {err}");
        assert!(err.contains(name), "{name}: {err}");
    };
    check("empty.heapsnapshot", b"", "the snapshot is empty");
    let cut = good.len() / 2;
    check(
        "truncated.heapsnapshot",
        &good[..cut],
        &format!("the snapshot is truncated: the file ends at byte {cut} inside 'edges'"),
    );
    // The header's node field names shuffled but the numbers not: the edge counts no
    // longer add up, and the parser says so.
    let text = String::from_utf8(good.clone()).expect("utf-8");
    let shuffled = text.replacen(
        r#""node_fields":["type","name","id","self_size","edge_count""#,
        r#""node_fields":["type","name","id","edge_count","self_size""#,
        1,
    );
    assert_ne!(shuffled, text, "V8's field order changed; update the test");
    check(
        "shuffled.heapsnapshot",
        shuffled.as_bytes(),
        "inconsistent snapshot",
    );
    let no_field = text.replacen(r#""to_node""#, r#""target""#, 1);
    check(
        "nofield.heapsnapshot",
        no_field.as_bytes(),
        "edge_fields lacks 'to_node'",
    );
    check("notjson.heapsnapshot", b"hello", "expected '{'");
    let missing = Cmd::new("heap")
        .arg("summary")
        .arg(dir.path().join("absent.heapsnapshot"))
        .expect_exit(2)
        .stderr;
    assert!(missing.contains("absent.heapsnapshot"), "{missing}");
}
