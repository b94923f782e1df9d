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
const TOP: usize = 5;

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
    let [a, b, c] = [paths[0].clone(), paths[1].clone(), paths[2].clone()];
    let diff = tokio::task::spawn_blocking(move || crate::heap::three_way_json(&a, &b, &c, TOP))
        .await
        .context("the snapshot diff")??;
    for path in &paths[..SNAPSHOTS - 1] {
        let _ = std::fs::remove_file(path);
    }
    Ok(Findings {
        snapshot: paths[SNAPSHOTS - 1].clone(),
        suspects: trim(&diff),
    })
}

/// Refuses to start when a snapshot might not fit: it needs about the heap's size in free
/// memory while it is written, and on disk for each of the three snapshots (twice, to be safe).
fn check_room(dir: &Path, heap_bytes: u64) -> Result<()> {
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
        "suspects": diff["suspects"],
        "suspect_retained_size_bytes": diff["suspect_retained_size_bytes"],
        "by_class": rows("by_class", "class"),
        "by_path": rows("by_path", "signature"),
    })
}
