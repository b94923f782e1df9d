//! Automatic leak investigation: when a Node target's leak is confirmed, three heap snapshots
//! spaced over minutes, diffed the way memlab does (objects born between the first two and still
//! alive in the third), name the leak suspects and what holds them. A snapshot pauses the app
//! for about a second per 100 MB of heap, so there is at most one investigation per run, and
//! none when memory or disk is short.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::agent::AgentHub;
use crate::units::human_bytes;

/// How many snapshots an investigation takes.
const SNAPSHOTS: usize = 3;
/// How many suspects it reports, by constructor and by retainer path.
pub(crate) const TOP: usize = 10;
/// How many suspects the verdict and the events name.
const NAMED: usize = 5;

/// What an investigation found.
#[derive(Debug, Clone)]
pub(crate) struct Findings {
    /// The last snapshot, kept as evidence (the first two are deleted once diffed).
    pub(crate) snapshot: PathBuf,
    /// The suspects, as `heap diff A B C --json` gives them, trimmed.
    pub(crate) suspects: Value,
}

/// Takes the snapshots from the agent of `pid`, `spacing` apart, into `dir`, and diffs them.
pub(crate) async fn investigate(
    hub: AgentHub,
    pid: u32,
    dir: PathBuf,
    name: String,
    spacing: Duration,
) -> Result<Findings> {
    let heap = hub.figures().map_or(0, |f| f.heap_total_bytes);
    check_room(&dir, heap)?;
    let mut paths = Vec::with_capacity(SNAPSHOTS);
    for i in 0..SNAPSHOTS {
        if i > 0 {
            tokio::time::sleep(spacing).await;
        }
        let path = dir.join(format!(
            "{name}-{pid}-investigation-{}-{i}.heapsnapshot",
            super::now_unix_ms()
        ));
        let command = json!({ "cmd": "snapshot", "path": path.display().to_string() });
        let reply = hub
            .command(pid, command)
            .await
            .context("snapshot for the leak investigation")?;
        paths.push(PathBuf::from(reply["path"].as_str().unwrap_or_default()));
    }
    findings(paths).await
}

/// Diffs three snapshots (baseline, target, final) on the blocking pool, deletes the first two
/// and keeps the last as evidence.
pub(crate) async fn findings(paths: Vec<PathBuf>) -> Result<Findings> {
    let [a, b, c] = match paths.as_slice() {
        [a, b, c] => [a.clone(), b.clone(), c.clone()],
        _ => bail!("{} snapshots, {SNAPSHOTS} needed", paths.len()),
    };
    let diff = tokio::task::spawn_blocking(move || crate::heap::three_way_json(&a, &b, &c, TOP))
        .await
        .context("the snapshot diff")??;
    Ok(kept(&paths, &diff))
}

/// The findings of `diff`, the three-way diff of `paths`: deletes the first two snapshots and
/// keeps the last as evidence.
pub(crate) fn kept(paths: &[PathBuf], diff: &Value) -> Findings {
    for path in &paths[..paths.len().saturating_sub(1)] {
        let _ = std::fs::remove_file(path);
    }
    Findings {
        snapshot: paths.last().cloned().unwrap_or_default(),
        suspects: trim(diff),
    }
}

/// Refuses to start when a snapshot might not fit: it needs about the heap's size in free
/// memory while it is written, and on disk for each of the three snapshots (twice, to be safe).
pub(crate) fn check_room(dir: &Path, heap_bytes: u64) -> Result<()> {
    let needed_disk = heap_bytes.saturating_mul(2 * SNAPSHOTS as u64);
    let stat = nix::sys::statvfs::statvfs(dir)
        .with_context(|| format!("cannot stat '{}'", dir.display()))?;
    let free_disk = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    if free_disk < needed_disk {
        bail!(
            "skipped: {} free in '{}', {} needed for {SNAPSHOTS} snapshots",
            human_bytes(free_disk as f64),
            dir.display(),
            human_bytes(needed_disk as f64)
        );
    }
    if let Some(available) = mem_available() {
        if available < heap_bytes.saturating_mul(2) {
            bail!(
                "skipped: only {} of memory available for a snapshot of a {} heap",
                human_bytes(available as f64),
                human_bytes(heap_bytes as f64)
            );
        }
    }
    Ok(())
}

/// MemAvailable from /proc/meminfo, bytes.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The parts of the diff an event carries: totals, and per suspect its class, count, retained
/// size and one retainer path as DevTools shows it.
fn trim(diff: &Value) -> Value {
    let rows = |key: &str, label: &str| -> Vec<Value> {
        diff[key]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|row| {
                        json!({
                            label: row[label],
                            "count": row["count"],
                            "retained_size_bytes": row["retained_size_bytes"],
                            "retainer_path": row["example"]["retainer_path"],
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    json!({
        "top": named(diff),
        "suspects": diff["suspects"],
        "suspect_retained_size_bytes": diff["suspect_retained_size_bytes"],
        "by_class": rows("by_class", "class"),
        "by_path": rows("by_path", "signature"),
    })
}

/// The suspects the verdict names, most likely first: per constructor, the objects born between
/// the first two snapshots and still alive in the third (`count_growth`), the bytes they retain
/// (`bytes_growth`) and a retainer path of the one that retains most. The app's own
/// constructors come before V8's internal groups (`(array)`, `(string)`, …): a growing `Map`
/// reallocates its `(array)` table, which then retains every entry, old ones included, and
/// would hide the class that leaks. Rows under a twentieth of the first one's bytes are left
/// out.
pub(crate) fn named(diff: &Value) -> Value {
    let rows = diff["by_class"].as_array().cloned().unwrap_or_default();
    let internal = |row: &Value| {
        let class = row["class"].as_str().unwrap_or_default();
        class.is_empty() || class.starts_with('(')
    };
    let (mut list, internals): (Vec<Value>, Vec<Value>) =
        rows.into_iter().partition(|row| !internal(row));
    list.extend(internals);
    // A row that holds a twentieth of the first one's bytes is noise (a module's one new
    // array), not a suspect.
    let first = list
        .first()
        .and_then(|row| row["retained_size_bytes"].as_u64())
        .unwrap_or(0);
    Value::Array(
        list.iter()
            .filter(|row| row["retained_size_bytes"].as_u64().unwrap_or(0) * 20 >= first)
            .take(NAMED)
            .map(|row| {
                json!({
                    "constructor": row["class"],
                    "retainer_path": row["example"]["retainer_path"],
                    "count_growth": row["count"],
                    "bytes_growth": row["retained_size_bytes"],
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apps_constructors_are_named_before_v8_internals() {
        let row = |class: &str, count: u64, retained: u64| {
            json!({"class": class, "count": count, "retained_size_bytes": retained,
                   "example": {"retainer_path": format!("(GC roots) → .cache Map → {class}")}})
        };
        let diff = json!({"by_class": [
            row("(array)", 1, 9_000_000),
            row("LeakyRecord", 7000, 2_700_000),
            row("(string)", 14000, 300_000),
            row("Array", 7000, 450_000),
            row("Tiny", 1, 880),
        ]});
        let named = named(&diff);
        let constructors: Vec<&str> = named
            .as_array()
            .expect("a list")
            .iter()
            .map(|s| s["constructor"].as_str().expect("a name"))
            .collect();
        assert_eq!(
            constructors,
            ["LeakyRecord", "Array", "(array)", "(string)"]
        );
        assert_eq!(named[0]["count_growth"], 7000);
        assert_eq!(named[0]["bytes_growth"], 2_700_000);
        assert_eq!(
            named[0]["retainer_path"],
            "(GC roots) → .cache Map → LeakyRecord"
        );
        assert_eq!(super::named(&json!({})), json!([]));
    }
}
