//! `bench_heap`: `plimsoll heap summary` against memlab on the same snapshot in the same run
//! (wall time and peak RSS, each in a fresh process), and the parser's read rate against the
//! raw speed of reading the file from the page cache.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use nix::sys::resource::{getrusage, UsageWho};
use plimsoll_bench::table::{Align, Table};

#[derive(Debug, Parser)]
#[command(about = "plimsoll heap summary against memlab, and the parser against raw reads")]
struct Args {
    /// The .heapsnapshot to analyse (bench/heap.sh generates one).
    #[arg(long)]
    file: Option<PathBuf>,
    /// The plimsoll binary to measure.
    #[arg(long, default_value = "target/release/plimsoll")]
    plimsoll: PathBuf,
    /// memlab's command-line entry point (its `bin/memlab`); left out when not given.
    #[arg(long)]
    memlab: Option<PathBuf>,
    /// Runs of each tool; the fastest counts.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Internal: run a command, wait, print its stdout then "seconds peak_rss_kib".
    #[arg(long, hide = true, num_args = 1.., allow_hyphen_values = true)]
    child: Option<Vec<String>>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.child {
        Some(command) => run_child(command),
        None => run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench_heap: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `command`, passes its stdout through, then prints its wall time and peak RSS (the
/// largest resident size of any waited-for descendant of this process).
fn run_child(command: &[String]) -> Result<()> {
    let (program, rest) = command.split_first().context("empty command")?;
    let started = Instant::now();
    let output = Command::new(program)
        .args(rest)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run '{program}'"))?;
    let seconds = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!("'{program}' failed: {}", output.status);
    }
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage")?;
    let text = String::from_utf8_lossy(&output.stdout);
    // Only the last line of the command's output matters to the parent (plimsoll's JSON).
    let last = text.lines().last().unwrap_or("");
    plimsoll_bench::outln!("{last}");
    plimsoll_bench::outln!("{seconds} {}", usage.max_rss());
    Ok(())
}

/// One run in a fresh process: (seconds, peak RSS in KiB, last line of its output).
fn measure(command: &[&str]) -> Result<(f64, u64, String)> {
    let me = std::env::current_exe().context("current_exe")?;
    let output = Command::new(me)
        .arg("--child")
        .args(command)
        .output()
        .context("spawn child")?;
    if !output.status.success() {
        bail!(
            "measurement of {command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines().rev();
    let numbers = lines.next().context("no measurement")?;
    let before = lines.next().unwrap_or("").to_owned();
    let mut fields = numbers.split_whitespace();
    let seconds = fields.next().context("no time")?.parse()?;
    let kib = fields.next().context("no rss")?.parse()?;
    Ok((seconds, kib, before))
}

/// The fastest of `runs` measurements.
fn best(command: &[&str], runs: u32) -> Result<(f64, u64, String)> {
    let mut best: Option<(f64, u64, String)> = None;
    for _ in 0..runs.max(1) {
        let m = measure(command)?;
        if best.as_ref().is_none_or(|b| m.0 < b.0) {
            best = Some(m);
        }
    }
    best.context("no run")
}

/// Baseline: read the whole file in 1 MiB chunks (from the page cache after the first run).
fn raw_read(path: &Path, runs: u32) -> Result<f64> {
    let mut best = f64::INFINITY;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..runs.max(1) + 1 {
        let started = Instant::now();
        let mut file = File::open(path).with_context(|| format!("open {}", path.display()))?;
        let mut sum = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sum = sum.wrapping_add(u64::from(buf[n - 1]));
        }
        std::hint::black_box(sum);
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn run(args: &Args) -> Result<()> {
    let file = args.file.as_deref().context("--file is required")?;
    if !args.plimsoll.exists() {
        bail!(
            "no binary at '{}' (build it with cargo build --release -p plimsoll)",
            args.plimsoll.display()
        );
    }
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read '{}'", file.display()))?
        .len();
    let mb = size as f64 / 1e6;
    let path = file.to_str().context("path is not UTF-8")?;
    let plimsoll = args.plimsoll.to_str().context("binary path is not UTF-8")?;
    plimsoll_bench::outln!("snapshot {path}: {mb:.0} MB");

    let raw_s = raw_read(file, args.runs)?;
    let (ours_s, ours_kib, json) = best(
        &[plimsoll, "heap", "summary", "--json", "--top", "20", path],
        args.runs,
    )?;
    let report: serde_json::Value =
        serde_json::from_str(&json).context("plimsoll did not print JSON")?;
    let parse_s = report["timing_s"]["parse"]
        .as_f64()
        .context("no parse time")?;
    let analyze_s = report["timing_s"]["analyze"]
        .as_f64()
        .context("no analyze time")?;

    let mut table = Table::new(&[
        ("work", Align::Left),
        ("seconds", Align::Right),
        ("MB/s", Align::Right),
        ("peak RSS MiB", Align::Right),
        ("RSS / file", Align::Right),
        ("x plimsoll time", Align::Right),
    ]);
    let rss = |kib: u64| format!("{:.0}", kib as f64 / 1024.0);
    let ratio = |kib: u64| format!("{:.2}", kib as f64 * 1024.0 / size as f64);
    table.row(vec![
        "raw read (page cache, 1 MiB chunks)".into(),
        format!("{raw_s:.3}"),
        format!("{:.0}", mb / raw_s),
        "-".into(),
        "-".into(),
        "-".into(),
    ]);
    table.row(vec![
        "plimsoll parser alone".into(),
        format!("{parse_s:.3}"),
        format!("{:.0}", mb / parse_s),
        "-".into(),
        "-".into(),
        "-".into(),
    ]);
    table.row(vec![
        "plimsoll dominators+paths+summary".into(),
        format!("{analyze_s:.3}"),
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
    ]);
    table.row(vec![
        "plimsoll heap summary (end to end)".into(),
        format!("{ours_s:.3}"),
        format!("{:.0}", mb / ours_s),
        rss(ours_kib),
        ratio(ours_kib),
        "1.0".into(),
    ]);
    if let Some(memlab) = &args.memlab {
        let memlab = memlab.to_str().context("memlab path is not UTF-8")?;
        // memlab is slow: one run is enough to compare.
        let (s, kib, _) = best(
            &[
                "node",
                "--max-old-space-size=16000",
                memlab,
                "analyze",
                "object-size",
                "--snapshot",
                path,
            ],
            1,
        )?;
        table.row(vec![
            "memlab analyze object-size".into(),
            format!("{s:.3}"),
            format!("{:.0}", mb / s),
            rss(kib),
            ratio(kib),
            format!("{:.1}", s / ours_s),
        ]);
    }
    print!("{table}");
    plimsoll_bench::outln!(
        "parser read rate: {:.0} MB/s = {:.0} % of the raw page-cache read rate ({:.0} MB/s)",
        mb / parse_s,
        100.0 * raw_s / parse_s,
        mb / raw_s
    );
    Ok(())
}
