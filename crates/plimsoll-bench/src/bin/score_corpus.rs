//! `score_corpus`: scores Plimsoll's detector and the baselines on the recorded corpus
//! (`bench/corpus.json` and `bench/traces/<name>.csv`) and prints one table with totals.
//! Exit codes: 0 scored, 2 bad usage or unreadable input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use plimsoll_analysis::{Observation, Verdict};
use plimsoll_bench::corpus::{read_manifest, read_trace, resample, Entry};
use plimsoll_bench::score::{
    evaluate, judge, ratio, seconds, soak_replay, BaselineInput, Detector, Outcome, Totals,
};
use plimsoll_bench::synthetic::Label;
use plimsoll_bench::table::{Align, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SignalArg {
    /// RSS only, for every detector.
    Rss,
    /// Plimsoll gets RSS plus heap used after GC (as with a runtime agent); the baselines watch
    /// heap used after GC where a sample has it, RSS otherwise.
    Heap,
}

#[derive(Debug, Parser)]
#[command(about = "Score the leak detector and the baselines on the recorded corpus")]
struct Args {
    /// The corpus manifest.
    #[arg(long, default_value = "bench/corpus.json")]
    manifest: PathBuf,
    /// Folder of the traces, `<name>.csv`.
    #[arg(long, default_value = "bench/traces")]
    traces: PathBuf,
    /// Which series the detectors watch.
    #[arg(long, value_enum, default_value_t = SignalArg::Rss)]
    signal: SignalArg,
    /// Also score `<name>.csv.partial` (a recording in progress) when `<name>.csv` is absent.
    #[arg(long)]
    partial: bool,
    /// Score only the first part of each trace, e.g. `15m` or `900` (seconds): what the
    /// detector says after that long.
    #[arg(long, value_parser = parse_span)]
    prefix: Option<f64>,
    /// Replay each trace as a soak of this length (e.g. `10m`): the samples after `--warmup`
    /// and before the end go to a detector, and the soak's steady-state verdict is scored.
    #[arg(long, value_parser = parse_span)]
    soak: Option<f64>,
    /// The declared warm-up of `--soak`.
    #[arg(long, value_parser = parse_span, default_value = "1m")]
    warmup: f64,
    /// The traces' heap column holds the heap right after each forced full GC (recorded from
    /// real soaks by `soak_corpus.sh --record`): the replay reads it as exact, as the soak does.
    #[arg(long, requires = "soak")]
    forced_gc: bool,
    /// Score each trace as a sparser sampler would have read it: a sample every this long
    /// (e.g. `60s`: a scraper once a minute), from `--offset` on.
    #[arg(long, value_parser = parse_span, conflicts_with = "soak")]
    every: Option<f64>,
    /// With `--every`: where the sparser sampling starts, after the first sample.
    #[arg(long, value_parser = parse_offset, default_value = "0", requires = "every")]
    offset: f64,
}

/// `--offset`: a duration like `parse_span`, or zero.
fn parse_offset(text: &str) -> Result<f64, String> {
    if text.trim_end_matches(['s', 'm']).parse::<f64>() == Ok(0.0) {
        return Ok(0.0);
    }
    parse_span(text)
}

/// A duration as seconds (`900`, `900s`) or minutes (`15m`), in seconds.
fn parse_span(text: &str) -> Result<f64, String> {
    let (number, unit) = match text.strip_suffix('m') {
        Some(number) => (number, 60.0),
        None => (text.strip_suffix('s').unwrap_or(text), 1.0),
    };
    match number.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value * unit),
        _ => Err(format!(
            "invalid duration '{text}' (expected e.g. 900, 900s or 15m)"
        )),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("score_corpus: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// A scored trace, or why it was skipped.
#[derive(Debug)]
struct Scored {
    entry: Entry,
    trace: Result<Trace, String>,
}

#[derive(Debug)]
struct Trace {
    outcome: Outcome,
    duration_s: f64,
    has_heap: bool,
    partial: bool,
}

fn run(args: &Args) -> anyhow::Result<()> {
    if !args.manifest.exists() {
        anyhow::bail!(
            "no corpus manifest at '{}' (the recorded corpus is not there yet; run from the repository root or pass --manifest)",
            args.manifest.display()
        );
    }
    let entries = read_manifest(&args.manifest)?;
    if let Some(soak_s) = args.soak {
        return soak_table(args, &entries, soak_s);
    }
    let scored: Vec<Scored> = entries
        .into_iter()
        .map(|entry| {
            let trace = score_trace(args, &entry);
            Scored { entry, trace }
        })
        .collect();
    plimsoll_bench::outln!(
        "corpus: {} ({} entries), signal {}{}; times in seconds after the first sample\n",
        args.manifest.display(),
        scored.len(),
        match args.signal {
            SignalArg::Rss => "rss",
            SignalArg::Heap =>
                "heap (Plimsoll: rss + heap after GC; baselines: heap after GC, else rss)",
        },
        match args.every {
            Some(every) => format!(
                ", resampled every {every:.0} s from {:.0} s on",
                args.offset
            ),
            None => String::new(),
        }
    );
    plimsoll_bench::outln!("{}", per_trace(&scored));
    plimsoll_bench::outln!("{}", totals(&scored));
    for item in &scored {
        if let Err(why) = &item.trace {
            plimsoll_bench::outln!("skipped {}: {why}", item.entry.name);
        }
    }
    Ok(())
}

/// `--soak`: each trace replayed as a soak of `soak_s` seconds with the declared warm-up.
fn soak_table(args: &Args, entries: &[Entry], soak_s: f64) -> anyhow::Result<()> {
    if args.warmup >= soak_s {
        anyhow::bail!(
            "--warmup {} s is not shorter than --soak {soak_s} s",
            args.warmup
        );
    }
    plimsoll_bench::outln!(
        "corpus: {}, replayed as soaks of {soak_s:.0} s after a warm-up of {:.0} s, signal {}\n",
        args.manifest.display(),
        args.warmup,
        match args.signal {
            SignalArg::Rss => "rss",
            SignalArg::Heap => "rss + heap after GC",
        }
    );
    let mut table = Table::new(&[
        ("trace", Align::Left),
        ("label", Align::Left),
        ("soak verdict", Align::Left),
        ("needs s", Align::Right),
        ("reason", Align::Left),
    ]);
    let (mut leaks, mut caught, mut leaks_passed) = (0, 0, 0);
    let (mut healthy, mut passed, mut healthy_failed) = (0, 0, 0);
    let mut skipped = Vec::new();
    for entry in entries {
        let Some((path, _)) = trace_path(args, &entry.name) else {
            skipped.push(entry.name.clone());
            continue;
        };
        let observations = read(&path)?;
        let observations: Vec<Observation> = match args.signal {
            SignalArg::Heap => observations,
            SignalArg::Rss => observations
                .into_iter()
                .map(|o| Observation {
                    heap_used_after_gc_bytes: None,
                    ..o
                })
                .collect(),
        };
        let verdict = soak_replay(&observations, soak_s, args.warmup, args.forced_gc);
        match entry.label {
            Label::Leak => {
                leaks += 1;
                caught += usize::from(verdict.verdict == Verdict::Leak);
                leaks_passed += usize::from(verdict.verdict == Verdict::NoLeak);
            }
            Label::NoLeak => {
                healthy += 1;
                passed += usize::from(verdict.verdict == Verdict::NoLeak);
                healthy_failed += usize::from(verdict.verdict == Verdict::Leak);
            }
        }
        table.row(vec![
            entry.name.clone(),
            entry.label.name().to_owned(),
            verdict_name(verdict.verdict).to_owned(),
            seconds(verdict.needs_more_s),
            verdict.reason.to_string(),
        ]);
    }
    plimsoll_bench::outln!("{table}");
    plimsoll_bench::outln!(
        "leaks failed (exit 1): {}   leaks passed (exit 0): {leaks_passed}   healthy passed (exit 0): {}   healthy failed (exit 1): {healthy_failed}",
        ratio(caught, leaks),
        ratio(passed, healthy)
    );
    for name in skipped {
        plimsoll_bench::outln!("skipped {name}: no trace");
    }
    Ok(())
}

fn trace_path(args: &Args, name: &str) -> Option<(PathBuf, bool)> {
    let done = args.traces.join(format!("{name}.csv"));
    if done.exists() {
        return Some((done, false));
    }
    let partial = args.traces.join(format!("{name}.csv.partial"));
    (args.partial && partial.exists()).then_some((partial, true))
}

fn score_trace(args: &Args, entry: &Entry) -> Result<Trace, String> {
    let Some((path, partial)) = trace_path(args, &entry.name) else {
        let hint = if args.partial {
            ""
        } else {
            " (try --partial for recordings in progress)"
        };
        return Err(format!(
            "no trace '{}'{hint}",
            args.traces.join(format!("{}.csv", entry.name)).display()
        ));
    };
    let mut observations = read(&path).map_err(|error| format!("{error:#}"))?;
    if let Some(every) = args.every {
        observations = resample(&observations, every, args.offset);
    }
    if let (Some(prefix), Some(first)) = (args.prefix, observations.first().map(|o| o.t_s)) {
        observations.retain(|o| o.t_s - first <= prefix);
    }
    let has_heap = observations
        .iter()
        .any(|o| o.heap_used_after_gc_bytes.is_some());
    let duration_s = match (observations.first(), observations.last()) {
        (Some(first), Some(last)) => last.t_s - first.t_s,
        _ => 0.0,
    };
    let (input, observations): (BaselineInput, Vec<Observation>) = match args.signal {
        SignalArg::Heap => (BaselineInput::HeapAfterGc, observations),
        SignalArg::Rss => (
            BaselineInput::Rss,
            observations
                .into_iter()
                .map(|o| Observation {
                    heap_used_after_gc_bytes: None,
                    ..o
                })
                .collect(),
        ),
    };
    let outcome = evaluate(observations, entry.budget_bytes, input);
    Ok(Trace {
        outcome,
        duration_s,
        has_heap,
        partial,
    })
}

fn read(path: &Path) -> anyhow::Result<Vec<Observation>> {
    read_trace(path).with_context(|| format!("reading trace '{}'", path.display()))
}

fn per_trace(scored: &[Scored]) -> Table {
    let mut table = Table::new(&[
        ("trace", Align::Left),
        ("label", Align::Left),
        ("start", Align::Right),
        ("dur", Align::Right),
        ("heap", Align::Left),
        ("verdict", Align::Left),
        ("confirmed", Align::Right),
        ("suspected", Align::Right),
        (Detector::Growth.name(), Align::Right),
        (Detector::RisingMinima.name(), Align::Right),
        (Detector::Slope.name(), Align::Right),
        ("reason", Align::Left),
    ]);
    for item in scored {
        let entry = &item.entry;
        let mut cells = vec![
            entry.name.clone(),
            entry.label.name().to_owned(),
            seconds(entry.leak_start_s),
        ];
        match &item.trace {
            Ok(trace) => {
                let outcome = &trace.outcome;
                let partial = if trace.partial { "*" } else { "" };
                cells.extend([
                    format!("{:.0}{partial}", trace.duration_s),
                    if trace.has_heap { "yes" } else { "no" }.to_owned(),
                    verdict_name(outcome.verdict).to_owned(),
                    seconds(outcome.confirmed_s),
                    seconds(outcome.suspected_s),
                    seconds(outcome.growth_s),
                    seconds(outcome.rising_minima_s),
                    seconds(outcome.slope_s),
                    outcome.reason.to_string(),
                ]);
            }
            Err(_) => cells.push("(skipped)".to_owned()),
        }
        table.row(cells);
    }
    table
}

fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Leak => "leak",
        Verdict::NoLeak => "no-leak",
        Verdict::Inconclusive => "inconclusive",
    }
}

fn totals(scored: &[Scored]) -> Table {
    let mut table = Table::new(&[
        ("detector", Align::Left),
        ("leaks caught", Align::Right),
        ("early", Align::Right),
        ("false alarms", Align::Right),
        ("median delay s", Align::Right),
        ("p90 delay s", Align::Right),
    ]);
    for detector in Detector::ALL {
        let mut totals = Totals::default();
        for item in scored {
            if let Ok(trace) = &item.trace {
                let entry = &item.entry;
                totals.add(judge(
                    entry.label,
                    entry.leak_start_s,
                    trace.outcome.alarm_s(detector),
                ));
            }
        }
        table.row(vec![
            detector.name().to_owned(),
            ratio(totals.caught, totals.leaks),
            totals.early.to_string(),
            ratio(totals.false_alarms, totals.healthy),
            seconds(totals.median_delay_s()),
            seconds(totals.p90_delay_s()),
        ]);
    }
    table
}
