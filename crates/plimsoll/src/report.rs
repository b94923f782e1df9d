//! `plimsoll report DATA_DIR --out FILE.html` and `soak --report`: one self-contained HTML file
//! (uPlot and the page's script inlined, the data inlined as JSON) that shows a recorded run in
//! a minute: memory against the budget and its marks, the events on the time axis, the leak
//! verdict with growth rate and time to budget, heap suspects when snapshots allow a diff, and
//! the run's settings. The file is written atomically: a reader sees the old file or the new.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use plimsoll_analysis::{DetectorConfig, LeakDetector, Observation};
use plimsoll_store::{EventRow, SampleRow, StoreReader};
use serde_json::{json, Value};

use crate::cli::ReportArgs;
use crate::exit;
use crate::stdout::errln;
use crate::units::{human_bytes, human_seconds};
use plimsoll_http::verdict_json;

/// At most this many samples are read for one report (a week at one per 1.2 s).
const MAX_SAMPLES: usize = 500_000;
/// At most this many events.
const MAX_EVENTS: usize = 10_000;
/// Charts get at most about this many points per series (each bucket keeps its highest RSS).
const MAX_POINTS: usize = 4_000;

const UPLOT_JS: &str = include_str!("../assets/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../assets/uPlot.min.css");
const REPORT_JS: &str = include_str!("../assets/report.js");
const REPORT_CSS: &str = include_str!("../assets/report.css");

/// Everything a report shows.
#[derive(Debug, Clone)]
pub(crate) struct ReportInput {
    /// The page's heading.
    pub(crate) title: String,
    /// The target's name.
    pub(crate) target: String,
    /// Its samples, oldest first.
    pub(crate) samples: Vec<SampleRow>,
    /// Its events, oldest first.
    pub(crate) events: Vec<EventRow>,
    /// The verdict object (the verdict JSON of DESIGN.md, with extra fields).
    pub(crate) verdict: Value,
    /// The run's settings, as label and value, for people.
    pub(crate) settings: Vec<(String, String)>,
    /// The three-snapshot diff (`heap diff A B C --json`), when there is one.
    pub(crate) suspects: Option<Value>,
    /// The end of the warm-up, milliseconds since the Unix epoch, when there was one.
    pub(crate) warmup_end_unix_ms: Option<i64>,
}

pub(crate) fn run(args: &ReportArgs) -> Result<u8> {
    let dir = &args.data_dir;
    if !dir.join(plimsoll_store::DB_FILE_NAME).exists() {
        bail!(
            "no store in '{}' (expected the --data-dir of a run, with {})",
            dir.display(),
            plimsoll_store::DB_FILE_NAME
        );
    }
    let reader = StoreReader::open(dir)
        .with_context(|| format!("cannot open the store in '{}'", dir.display()))?;
    let target = match &args.target {
        Some(target) => target.clone(),
        None => newest_target(&reader)?,
    };
    let since = match args.last {
        Some(last) => crate::supervise::now_unix_ms() - last.as_millis() as i64,
        None => 0,
    };
    let (samples, events) = read(&reader, &target, since)?;
    if samples.is_empty() {
        let known = reader.targets().unwrap_or_default();
        bail!(
            "no samples of target '{target}' in '{}' (targets: {})",
            dir.display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
    }
    if !(args.time_scale > 0.0 && args.time_scale <= 1.0) {
        bail!(
            "invalid --time-scale '{}' (expected a factor above 0 and at most 1)",
            args.time_scale
        );
    }
    let verdict = recorded_verdict(&samples, args.time_scale);
    let first = samples.first().map_or(0, |s| s.t_unix_ms);
    let last = samples.last().map_or(0, |s| s.t_unix_ms);
    let budget = samples.iter().rev().find_map(|s| s.budget_bytes);
    let settings = vec![
        ("data dir".to_owned(), dir.display().to_string()),
        ("samples".to_owned(), samples.len().to_string()),
        (
            "span".to_owned(),
            human_seconds((last - first) as f64 / 1000.0),
        ),
        (
            "budget".to_owned(),
            budget.map_or_else(|| "none".to_owned(), |b| human_bytes(b as f64)),
        ),
        (
            "command".to_owned(),
            events
                .iter()
                .rev()
                .find(|e| e.kind == "started")
                .and_then(|e| serde_json::from_str::<Value>(&e.payload_json).ok())
                .and_then(|p| p["command"].as_array().cloned())
                .map(|parts| {
                    parts
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_else(|| "unknown".to_owned()),
        ),
    ];
    let suspects = heap_suspects(&events);
    let input = ReportInput {
        title: format!("Plimsoll report: {target}"),
        target,
        samples,
        events,
        verdict,
        settings,
        suspects,
        warmup_end_unix_ms: None,
    };
    write(&args.out, &input)?;
    errln!("plimsoll report: wrote {}", args.out.display());
    Ok(exit::OK)
}

/// The target with the newest sample.
fn newest_target(reader: &StoreReader) -> Result<String> {
    let targets = reader.targets().context("cannot read the targets")?;
    let mut newest: Option<(i64, String)> = None;
    for target in targets {
        // The last sample: read from the end of a bounded window is not offered, so look at
        // the newest minute roll-up or the raw samples of the last day.
        let since = crate::supervise::now_unix_ms() - 24 * 3600 * 1000;
        let t = reader
            .samples(&target, since, MAX_SAMPLES)
            .ok()
            .and_then(|rows| rows.last().map(|r| r.t_unix_ms))
            .unwrap_or(i64::MIN);
        if newest.as_ref().is_none_or(|(best, _)| t > *best) {
            newest = Some((t, target));
        }
    }
    newest
        .map(|(_, name)| name)
        .context("the store holds no targets: nothing to report")
}

/// The samples and events of `target` since `since_unix_ms`, from the store in `data_dir`.
pub(crate) fn load(
    data_dir: &Path,
    target: &str,
    since_unix_ms: i64,
) -> Result<(Vec<SampleRow>, Vec<EventRow>)> {
    let reader = StoreReader::open(data_dir)
        .with_context(|| format!("cannot open the store in '{}'", data_dir.display()))?;
    read(&reader, target, since_unix_ms)
}

fn read(
    reader: &StoreReader,
    target: &str,
    since_unix_ms: i64,
) -> Result<(Vec<SampleRow>, Vec<EventRow>)> {
    let samples = reader
        .samples(target, since_unix_ms, MAX_SAMPLES)
        .with_context(|| format!("cannot read the samples of '{target}'"))?;
    let mut events = reader
        .events(Some(target), since_unix_ms, MAX_EVENTS)
        .with_context(|| format!("cannot read the events of '{target}'"))?;
    events.sort_by_key(|e| (e.t_unix_ms, e.id));
    Ok((samples, events))
}

/// The verdict on recorded samples, as `analyze` gives it (the same online detector).
fn recorded_verdict(samples: &[SampleRow], time_scale: f64) -> Value {
    let mut detector = LeakDetector::new(DetectorConfig::recommended().time_scaled(time_scale));
    let first = samples.first().map_or(0, |s| s.t_unix_ms);
    for sample in samples {
        detector.push(&Observation {
            t_s: (sample.t_unix_ms - first) as f64 / 1000.0,
            rss_bytes: sample.rss_bytes,
            heap_used_after_gc_bytes: sample.heap_used_after_gc_bytes,
        });
    }
    let budget = samples.iter().rev().find_map(|s| s.budget_bytes);
    let time_to_budget = budget.and_then(|b| detector.time_to_budget_s(b));
    verdict_json(&detector.status(), budget, time_to_budget)
}

/// The suspects of the last leak investigation; else the three-way heap diff of the last three
/// snapshots written, when there are three on disk.
pub(crate) fn heap_suspects(events: &[EventRow]) -> Option<Value> {
    let investigated = events
        .iter()
        .rev()
        .filter(|e| e.kind == "leak-suspects")
        .filter_map(|e| serde_json::from_str::<Value>(&e.payload_json).ok())
        .find_map(|p| p.get("suspects").filter(|s| s.is_object()).cloned());
    if investigated.is_some() {
        return investigated;
    }
    let paths: Vec<PathBuf> = events
        .iter()
        .filter(|e| e.kind == "snapshot-written")
        .filter_map(|e| serde_json::from_str::<Value>(&e.payload_json).ok())
        .filter_map(|p| p["path"].as_str().map(PathBuf::from))
        .filter(|p| p.exists())
        .collect();
    let [.., a, b, c] = paths.as_slice() else {
        return None;
    };
    match crate::heap::three_way_json(a, b, c, 10) {
        Ok(diff) => Some(diff),
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "no heap suspects in the report");
            None
        }
    }
}

/// The data the page's script draws, as JSON.
fn page_data(input: &ReportInput) -> Value {
    let samples = &input.samples;
    let stride = samples.len().div_ceil(MAX_POINTS).max(1);
    let mut t = Vec::new();
    let mut rss = Vec::new();
    let mut heap = Vec::new();
    let mut heap_gc = Vec::new();
    let mut budget = Vec::new();
    for bucket in samples.chunks(stride) {
        // Each bucket is shown by its highest RSS: a peak never disappears from the chart.
        let Some(top) = bucket.iter().max_by_key(|s| s.rss_bytes) else {
            continue;
        };
        t.push(top.t_unix_ms as f64 / 1000.0);
        rss.push(json!(top.rss_bytes));
        heap.push(json!(top.heap_used_bytes));
        heap_gc.push(json!(top.heap_used_after_gc_bytes));
        budget.push(json!(top.budget_bytes));
    }
    let events: Vec<Value> = input
        .events
        .iter()
        .map(|e| {
            let payload: Value = serde_json::from_str(&e.payload_json).unwrap_or(Value::Null);
            json!({
                "t": e.t_unix_ms as f64 / 1000.0,
                "kind": e.kind,
                "text": event_text(&e.kind, &payload),
            })
        })
        .collect();
    json!({
        "title": input.title,
        "target": input.target,
        "generated_unix_ms": crate::supervise::now_unix_ms(),
        "samples": { "t": t, "rss": rss, "heap": heap, "heap_gc": heap_gc, "budget": budget },
        "sample_count": samples.len(),
        "levels": { "warn": 0.75, "critical": 0.85 },
        "warmup_end": input.warmup_end_unix_ms.map(|ms| ms as f64 / 1000.0),
        "events": events,
        "verdict": input.verdict,
        "settings": input.settings.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "suspects": input.suspects,
    })
}

/// One line for people about an event, from its stored JSON.
fn event_text(kind: &str, payload: &Value) -> String {
    let bytes = |key: &str| payload[key].as_u64().map(|b| human_bytes(b as f64));
    match kind {
        "started" => format!("pid {}", payload["pid"]),
        "exited" => match (payload["code"].as_i64(), payload["signal"].as_i64()) {
            (Some(code), _) => format!("code {code}"),
            (None, Some(signal)) => format!("signal {signal}"),
            _ => String::new(),
        },
        "restarted" => format!(
            "after {} (restart {})",
            payload["reason"].as_str().unwrap_or("?"),
            payload["attempt"]
        ),
        "level-changed" => format!(
            "{} → {} (rss {})",
            payload["from"].as_str().unwrap_or("?"),
            payload["to"].as_str().unwrap_or("?"),
            bytes("rss_bytes").unwrap_or_default()
        ),
        "budget-breach" => format!(
            "rss {} over {}",
            bytes("rss_bytes").unwrap_or_default(),
            bytes("budget_bytes").unwrap_or_default()
        ),
        "snapshot-written" => payload["path"].as_str().unwrap_or_default().to_owned(),
        k if k.starts_with("leak-") => format!(
            "{}/min on {}",
            human_bytes(payload["growth_bytes_per_s"].as_f64().unwrap_or(0.0) * 60.0),
            payload["signal"].as_str().unwrap_or("?")
        ),
        _ => String::new(),
    }
}

/// JSON that may sit inside a `<script>` element: no `</script>` or `<!--` can end it early.
fn script_safe(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// Text for an HTML element.
fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The whole page.
pub(crate) fn render(input: &ReportInput) -> String {
    let data = script_safe(&page_data(input).to_string());
    let title = escape_html(&input.title);
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<script>
  // Collected before anything else runs, for the tests and for anyone who opens the console.
  window.plimsollErrors = [];
  window.addEventListener("error", function (event) {{
    window.plimsollErrors.push(String(event.message) + " (" + event.filename + ":" + event.lineno + ")");
    if (document.body) document.body.dataset.errors = JSON.stringify(window.plimsollErrors);
  }});
</script>
<style>{UPLOT_CSS}</style>
<style>{REPORT_CSS}</style>
</head>
<body data-points="0" data-errors="[]">
<h1>{title}</h1>
<div id="report"></div>
<script id="plimsoll-data" type="application/json">{data}</script>
<script>{UPLOT_JS}</script>
<script>{REPORT_JS}</script>
</body>
</html>
"#
    )
}

/// The temporary file a report at `path` is first written to, beside it.
fn temporary_path(path: &Path) -> Result<PathBuf> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("invalid report path '{}'", path.display()))?;
    Ok(dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Checks, before a long run, that a report can be written to `path`: not a directory, and
/// its temporary file can be created beside it (and is removed again).
pub(crate) fn check_destination(path: &Path) -> Result<()> {
    if path.is_dir() {
        bail!(
            "cannot write the report '{}': it is a directory",
            path.display()
        );
    }
    let temporary = temporary_path(path)?;
    std::fs::File::create(&temporary)
        .with_context(|| format!("cannot write the report '{}'", path.display()))?;
    let _ = std::fs::remove_file(&temporary);
    Ok(())
}

/// Writes the report to `path` atomically (a temporary file beside it, then a rename).
pub(crate) fn write(path: &Path, input: &ReportInput) -> Result<()> {
    let page = render(input);
    let temporary = temporary_path(path)?;
    let result = (|| -> Result<()> {
        let mut file = std::fs::File::create(&temporary)
            .with_context(|| format!("cannot write the report '{}'", temporary.display()))?;
        file.write_all(page.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write the report '{}'", temporary.display()))?;
        std::fs::rename(&temporary, path)
            .with_context(|| format!("cannot write the report '{}'", path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inlined_json_cannot_end_its_script_element() {
        let text = script_safe(r#"{"a":"</script><!-- & x"}"#);
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        let back: Value = serde_json::from_str(&text).expect("still JSON");
        assert_eq!(back["a"], "</script><!-- & x");
    }

    #[test]
    fn long_runs_are_bucketed_by_their_highest_rss() {
        let samples: Vec<SampleRow> = (0..10_000)
            .map(|i| SampleRow::new("api", i * 1000, if i == 4321 { 1 << 30 } else { 1 << 20 }))
            .collect();
        let input = ReportInput {
            title: "t".to_owned(),
            target: "api".to_owned(),
            samples,
            events: Vec::new(),
            verdict: json!({}),
            settings: Vec::new(),
            suspects: None,
            warmup_end_unix_ms: None,
        };
        let data = page_data(&input);
        let rss = data["samples"]["rss"].as_array().expect("rss");
        assert!(rss.len() <= MAX_POINTS, "{}", rss.len());
        assert!(
            rss.iter().any(|v| v == &json!(1u64 << 30)),
            "the peak is kept"
        );
    }
}
