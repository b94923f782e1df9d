//! `plimsoll heap summary|diff`: V8 heap snapshot analysis, printed for people or as JSON.
//! The analysis lives in `plimsoll-heap`; this module only reads files and renders.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use plimsoll_heap::{Analysis, Census, PathStep, Snapshot};
use serde_json::{json, Value};

use crate::cli::{HeapCommand, HeapDiffArgs, HeapSummaryArgs};
use crate::exit;
use crate::stdout::outln;
use crate::units::human_bytes;

pub(crate) fn run(command: &HeapCommand) -> Result<u8> {
    match command {
        HeapCommand::Summary(args) => summary(args),
        HeapCommand::Diff(args) => diff(args),
    }
}

fn load(path: &Path) -> Result<Snapshot> {
    plimsoll_heap::parse_file(path).with_context(|| format!("cannot use '{}'", path.display()))
}

fn bytes(n: u64) -> String {
    human_bytes(n as f64)
}

/// A retainer path as structured JSON steps.
fn path_json(snap: &Snapshot, path: &[PathStep]) -> Value {
    Value::Array(
        path.iter()
            .map(|step| {
                json!({
                    "edge": step.edge.map(|e| snap.edge_label(e)),
                    "name": snap.display_name(step.node),
                    "type": snap.type_name(step.node),
                    "id": snap.id(step.node),
                })
            })
            .collect(),
    )
}

fn summary(args: &HeapSummaryArgs) -> Result<u8> {
    let started = Instant::now();
    let snap = load(&args.file)?;
    let parsed = started.elapsed().as_secs_f64();
    let analysis = Analysis::new(&snap);
    let analysed = started.elapsed().as_secs_f64() - parsed;
    let s = plimsoll_heap::summarize(&snap, &analysis, args.top);
    if args.json {
        let class = |r: &plimsoll_heap::ClassRow| {
            json!({"class": r.name, "count": r.count, "self_size_bytes": r.self_size,
                   "retained_size_bytes": r.retained_size})
        };
        let out = json!({
            "file": args.file.display().to_string(),
            "nodes": s.nodes,
            "edges": s.edges,
            "strings": snap.string_count(),
            "total_self_size_bytes": s.total_self_size,
            "reachable_nodes": s.reachable_nodes,
            "reachable_self_size_bytes": s.reachable_self_size,
            "by_type": s.by_type.iter().map(|t| json!({"type": t.name, "count": t.count,
                "self_size_bytes": t.self_size})).collect::<Vec<_>>(),
            "top_by_retained": s.by_retained.iter().map(class).collect::<Vec<_>>(),
            "top_by_count": s.by_count.iter().map(class).collect::<Vec<_>>(),
            "largest": s.largest.iter().map(|o| json!({
                "id": o.id, "name": o.name, "class": o.class, "self_size_bytes": o.self_size,
                "retained_size_bytes": o.retained_size,
                "retainer_path": snap.path_text(&o.path),
                "path": path_json(&snap, &o.path),
            })).collect::<Vec<_>>(),
            "timing_s": {"parse": parsed, "analyze": analysed},
        });
        outln!("{out}")?;
        return Ok(exit::OK);
    }
    outln!("{}", args.file.display())?;
    outln!(
        "  {} nodes, {} edges, {} self size ({} reachable: {} nodes)",
        s.nodes,
        s.edges,
        bytes(s.total_self_size),
        bytes(s.reachable_self_size),
        s.reachable_nodes
    )?;
    outln!("  parsed in {parsed:.2} s, analysed in {analysed:.2} s")?;
    outln!("\nBy node type (reachable)")?;
    for t in &s.by_type {
        outln!("  {:>12}  {:>10}  {}", bytes(t.self_size), t.count, t.name)?;
    }
    outln!(
        "\nTop constructors by retained size\n  {:>12}  {:>12}  {:>10}  class",
        "retained",
        "self",
        "count"
    )?;
    for r in &s.by_retained {
        outln!(
            "  {:>12}  {:>12}  {:>10}  {}",
            bytes(r.retained_size),
            bytes(r.self_size),
            r.count,
            r.name
        )?;
    }
    outln!(
        "\nTop constructors by count\n  {:>10}  {:>12}  class",
        "count",
        "self"
    )?;
    for r in &s.by_count {
        outln!("  {:>10}  {:>12}  {}", r.count, bytes(r.self_size), r.name)?;
    }
    outln!("\nLargest objects by retained size")?;
    for o in &s.largest {
        outln!(
            "  {:>12}  {} @{} (self {})",
            bytes(o.retained_size),
            o.name,
            o.id,
            bytes(o.self_size)
        )?;
        outln!("      {}", snap.path_text(&o.path))?;
    }
    Ok(exit::OK)
}

fn diff(args: &HeapDiffArgs) -> Result<u8> {
    match args.files.as_slice() {
        [a, b] => diff_two(a, b, args),
        [a, b, c] => diff_three(a, b, c, args),
        other => anyhow::bail!("heap diff takes 2 or 3 snapshots, not {}", other.len()),
    }
}

pub(crate) fn census(path: &Path) -> Result<Census> {
    let snap = load(path)?;
    Ok(Census::new(&snap))
}

fn growth_json(d: &plimsoll_heap::TwoWayDiff) -> Value {
    json!({
        "count_before": d.count_before, "count_after": d.count_after,
        "bytes_before": d.bytes_before, "bytes_after": d.bytes_after,
        "grew": d.grew.iter().map(|r| json!({
            "class": r.name, "count_before": r.count_before, "count_after": r.count_after,
            "count_delta": r.count_delta() as i64,
            "bytes_before": r.bytes_before, "bytes_after": r.bytes_after,
            "bytes_delta": r.byte_delta() as i64,
            "new_count": r.new_count, "new_bytes": r.new_bytes,
            "freed_count": r.freed_count, "freed_bytes": r.freed_bytes,
        })).collect::<Vec<_>>(),
    })
}

fn print_growth(d: &plimsoll_heap::TwoWayDiff) -> Result<()> {
    outln!(
        "  live objects {} → {}, live bytes {} → {}",
        d.count_before,
        d.count_after,
        bytes(d.bytes_before),
        bytes(d.bytes_after)
    )?;
    outln!(
        "\nWhat grew, by constructor\n  {:>12}  {:>10}  {:>10}  {:>12}  class",
        "Δ bytes",
        "Δ count",
        "new",
        "freed"
    )?;
    for r in &d.grew {
        let delta = r.byte_delta();
        let sign = if delta < 0 { "-" } else { "+" };
        outln!(
            "  {:>12}  {:>+10}  {:>10}  {:>12}  {}",
            format!("{sign}{}", bytes(delta.unsigned_abs() as u64)),
            r.count_delta(),
            r.new_count,
            r.freed_count,
            r.name
        )?;
    }
    Ok(())
}

fn diff_two(a: &Path, b: &Path, args: &HeapDiffArgs) -> Result<u8> {
    let before = census(a)?;
    let after = census(b)?;
    let d = plimsoll_heap::diff_two(&before, &after, args.top);
    if args.json {
        let mut out = growth_json(&d);
        out["files"] = json!([a.display().to_string(), b.display().to_string()]);
        outln!("{out}")?;
    } else {
        outln!("{} → {}", a.display(), b.display())?;
        print_growth(&d)?;
    }
    Ok(exit::OK)
}

fn suspect_json(snap: &Snapshot, s: &plimsoll_heap::Suspect) -> Value {
    json!({
        "id": s.id, "name": s.name, "self_size_bytes": s.self_size,
        "retained_size_bytes": s.retained_size,
        "retainer_path": snap.path_text(&s.path),
        "path": path_json(snap, &s.path),
    })
}

/// The three-snapshot diff (baseline, target, final) as the JSON of `heap diff A B C --json`;
/// also what the automatic leak investigation reports.
pub(crate) fn three_way_json(a: &Path, b: &Path, c: &Path, top: usize) -> Result<Value> {
    three_way_json_of(census(a)?, census(b)?, [a, b, c], top)
}

/// [`three_way_json`] with the first two snapshots' censuses already taken (the soak takes
/// each while it waits for the next snapshot).
pub(crate) fn three_way_json_of(
    baseline: Census,
    target: Census,
    [a, b, c]: [&Path; 3],
    top: usize,
) -> Result<Value> {
    let last = load(c)?;
    let analysis = Analysis::new(&last);
    let growth = plimsoll_heap::diff_two(&baseline, &Census::new(&last), top);
    let d = plimsoll_heap::diff_three(&baseline, &target, &last, &analysis, top);
    Ok(json!({
            "files": [a.display().to_string(), b.display().to_string(), c.display().to_string()],
            "new_in_target": d.new_in_target,
            "suspects": d.suspects,
            "suspect_self_size_bytes": d.suspect_self_size,
            "suspect_retained_size_bytes": d.suspect_retained_size,
            "by_class": d.by_class.iter().map(|g| json!({
                "class": g.name, "count": g.count, "self_size_bytes": g.self_size,
                "retained_size_bytes": g.retained_size,
                "example": suspect_json(&last, &g.example),
            })).collect::<Vec<_>>(),
            "by_path": d.by_path.iter().map(|g| json!({
                "signature": g.signature, "count": g.count,
                "retained_size_bytes": g.retained_size,
                "example": suspect_json(&last, &g.example),
            })).collect::<Vec<_>>(),
            "growth": growth_json(&growth),
    }))
}

fn diff_three(a: &Path, b: &Path, c: &Path, args: &HeapDiffArgs) -> Result<u8> {
    if args.json {
        outln!("{}", three_way_json(a, b, c, args.top)?)?;
        return Ok(exit::OK);
    }
    let baseline = census(a)?;
    let target = census(b)?;
    let last = load(c)?;
    let analysis = Analysis::new(&last);
    let growth = plimsoll_heap::diff_two(&baseline, &Census::new(&last), args.top);
    let d = plimsoll_heap::diff_three(&baseline, &target, &last, &analysis, args.top);
    outln!(
        "baseline {} → target {} → final {}",
        a.display(),
        b.display(),
        c.display()
    )?;
    outln!(
        "  {} objects appeared between baseline and target; {} of them are still alive in the final snapshot: \
         {} self, {} retained",
        d.new_in_target,
        d.suspects,
        bytes(d.suspect_self_size),
        bytes(d.suspect_retained_size)
    )?;
    outln!("\nLeak suspects by constructor (ranked by retained size)")?;
    for g in &d.by_class {
        outln!(
            "  {:>12}  {:>10}  {}",
            bytes(g.retained_size),
            g.count,
            g.name
        )?;
        outln!("      e.g. {}", last.path_text(&g.example.path))?;
    }
    outln!("\nLeak suspects by retainer path (ranked by retained size)")?;
    for g in &d.by_path {
        outln!("  {:>12}  {:>10} objects", bytes(g.retained_size), g.count)?;
        outln!("      {}", last.path_text(&g.example.path))?;
    }
    outln!("\nGrowth from baseline to final")?;
    print_growth(&growth)?;
    Ok(exit::OK)
}
