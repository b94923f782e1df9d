//! `bench_analyze`: throughput and memory of the online leak detector. Each measurement runs in
//! a fresh child process (this binary with a hidden `--child`), so its peak RSS (VmHWM) is its
//! own; the table gives ratios against the baseline measured in the same run: just generating
//! and summing the same samples.

use std::hint::black_box;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use plimsoll_analysis::{DetectorConfig, LeakDetector};
use plimsoll_bench::baselines::SlopeRule;
use plimsoll_bench::synthetic::{Generator, Pattern};
use plimsoll_bench::table::{Align, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Work {
    /// Baseline: generate the samples and sum them.
    Iterate,
    /// The "LS slope to budget" rule over the samples.
    Slope,
    /// Plimsoll's detector, `push` per sample and `status` at the end.
    Plimsoll,
}

impl Work {
    fn name(self) -> &'static str {
        match self {
            Work::Iterate => "iterate+sum (baseline)",
            Work::Slope => "ls-slope rule",
            Work::Plimsoll => "plimsoll detector",
        }
    }
}

#[derive(Debug, Parser)]
#[command(about = "Throughput and peak memory of the leak detector over long synthetic series")]
struct Args {
    /// Samples of the long run.
    #[arg(long, default_value_t = 10_000_000)]
    samples: u64,
    /// Samples of the short run (peak memory must not depend on the length).
    #[arg(long, default_value_t = 1_000_000)]
    short_samples: u64,
    /// Internal: run one measurement and print it.
    #[arg(long, hide = true, num_args = 3, value_names = ["WORK", "PATTERN", "SAMPLES"])]
    child: Option<Vec<String>>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.child {
        Some(child) => run_child(child),
        None => run_parent(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench_analyze: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// One measurement, as a child reports it.
#[derive(Debug, Clone)]
struct Measurement {
    seconds: f64,
    peak_rss_kib: Option<u64>,
    note: String,
}

/// Seed of the series every measurement uses.
const SEED: u64 = 1;

fn run_child(child: &[String]) -> anyhow::Result<()> {
    let [work, pattern, samples] = child else {
        anyhow::bail!("--child needs WORK PATTERN SAMPLES");
    };
    let work =
        Work::from_str(work, true).map_err(|e| anyhow::anyhow!("invalid work '{work}': {e}"))?;
    let pattern =
        Pattern::from_name(pattern).with_context(|| format!("unknown pattern '{pattern}'"))?;
    let samples: u64 = samples
        .parse()
        .with_context(|| format!("invalid sample count '{samples}'"))?;
    let generator = Generator::new(pattern, SEED, samples);
    let start = Instant::now();
    let note = match work {
        Work::Iterate => {
            let sum = generator.fold(0u64, |sum, o| sum.wrapping_add(black_box(o.rss_bytes)));
            format!("checksum={}", black_box(sum) % 1000)
        }
        Work::Slope => {
            let mut rule = SlopeRule::new(u64::MAX / 2);
            generator.for_each(|o| rule.push(o.t_s, black_box(o.rss_bytes)));
            format!("alarm={:?}", black_box(rule.alarm_s()))
        }
        Work::Plimsoll => {
            let mut detector = LeakDetector::new(DetectorConfig::recommended());
            generator.for_each(|o| {
                black_box(detector.push(black_box(&o)));
            });
            let status = detector.status();
            format!(
                "verdict={:?} confirmed_at={:?}",
                status.verdict, status.detected_after_s
            )
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let peak = peak_rss_kib().map_or_else(|| "-".to_owned(), |kib| kib.to_string());
    plimsoll_bench::outln!("{seconds} {peak} {note}");
    Ok(())
}

/// The process's peak resident set size (VmHWM), KiB; `None` where /proc is unavailable.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn measure(work: Work, pattern: Pattern, samples: u64) -> anyhow::Result<Measurement> {
    let exe = std::env::current_exe().context("cannot find this benchmark's executable")?;
    let output = Command::new(&exe)
        .args([
            "--child",
            &format!("{work:?}").to_lowercase(),
            pattern.name(),
            &samples.to_string(),
        ])
        .output()
        .with_context(|| format!("cannot run '{}'", exe.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        anyhow::bail!(
            "child {work:?} {} {samples} failed: {}",
            pattern.name(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut fields = stdout.trim().splitn(3, ' ');
    let seconds: f64 = fields
        .next()
        .unwrap_or("")
        .parse()
        .with_context(|| format!("bad child output '{stdout}'"))?;
    let peak_rss_kib = fields.next().and_then(|field| field.parse().ok());
    let note = fields.next().unwrap_or("").to_owned();
    Ok(Measurement {
        seconds,
        peak_rss_kib,
        note,
    })
}

fn run_parent(args: &Args) -> anyhow::Result<()> {
    let patterns = [Pattern::Sawtooth, Pattern::LeakLinear];
    let lengths = [args.short_samples, args.samples];
    let works = [Work::Iterate, Work::Slope, Work::Plimsoll];
    plimsoll_bench::outln!(
        "bench_analyze: synthetic series (seed {SEED}) at 1 Hz, each measurement in a fresh process; \
         ratios against the iterate+sum baseline of the same series and length\n"
    );
    let mut table = Table::new(&[
        ("work", Align::Left),
        ("pattern", Align::Left),
        ("samples", Align::Right),
        ("seconds", Align::Right),
        ("Msamples/s", Align::Right),
        ("ns/sample", Align::Right),
        ("x baseline", Align::Right),
        ("net ns/sample", Align::Right),
        ("peak RSS MiB", Align::Right),
        ("RSS vs short", Align::Right),
        ("result", Align::Left),
    ]);
    for pattern in patterns {
        let mut baseline_s = None;
        let mut short_peak = std::collections::HashMap::new();
        for &samples in &lengths {
            for work in works {
                let m = measure(work, pattern, samples)?;
                if work == Work::Iterate {
                    baseline_s = Some(m.seconds);
                }
                let n = samples as f64;
                let base = baseline_s.unwrap_or(m.seconds);
                let peak_vs_short = match (m.peak_rss_kib, short_peak.get(&(work as u8))) {
                    (Some(peak), Some(&short)) if samples != args.short_samples => {
                        format!("{:.2}", peak as f64 / short as f64)
                    }
                    _ => "-".to_owned(),
                };
                if samples == args.short_samples {
                    if let Some(peak) = m.peak_rss_kib {
                        short_peak.insert(work as u8, peak);
                    }
                }
                table.row(vec![
                    work.name().to_owned(),
                    pattern.name().to_owned(),
                    samples.to_string(),
                    format!("{:.3}", m.seconds),
                    format!("{:.2}", n / m.seconds / 1e6),
                    format!("{:.1}", m.seconds / n * 1e9),
                    format!("{:.2}", m.seconds / base),
                    format!("{:.1}", (m.seconds - base) / n * 1e9),
                    m.peak_rss_kib.map_or_else(
                        || "-".to_owned(),
                        |kib| format!("{:.1}", kib as f64 / 1024.0),
                    ),
                    peak_vs_short,
                    m.note,
                ]);
            }
        }
        table.rule();
    }
    print!("{table}");
    plimsoll_bench::outln!(
        "\nnet ns/sample = (seconds - baseline seconds) / samples: the cost of the rule itself. \
         RSS vs short = peak RSS at {} samples / at {}.",
        args.samples,
        args.short_samples
    );
    Ok(())
}
