//! `score_synthetic`: scores Plimsoll's detector and the baselines on the synthetic suite and
//! checks the bar; `--dump` writes one series as CSV for `plimsoll analyze`.
//! Exit codes: 0 bar met (or dump written), 1 bar missed, 2 bad usage or I/O error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use plimsoll_analysis::Verdict;
use plimsoll_bench::score::{ratio, seconds, soak_replay, Detector, Judgement, Totals};
use plimsoll_bench::suite::{
    run_suite_every, BarFigures, SuiteCase, BAR_MIN_RATE_MB_PER_MIN, BAR_RECALL, BAR_WITHIN_S,
    RATE_BANDS,
};
use plimsoll_bench::synthetic::{Generator, Label, Pattern, Series, DEFAULT_SAMPLES};
use plimsoll_bench::table::{Align, Table};

#[derive(Debug, Parser)]
#[command(about = "Score the leak detector and the baselines on labeled synthetic series")]
struct Args {
    /// Seeds per pattern (seeds 0..N).
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// Samples per series (1 Hz).
    #[arg(long, default_value_t = DEFAULT_SAMPLES)]
    samples: u64,
    /// Only these patterns (repeatable).
    #[arg(long = "pattern", value_name = "PATTERN")]
    patterns: Vec<String>,
    /// Write the series PATTERN SEED to FILE.csv (t_s,rss_bytes) and exit.
    #[arg(long, num_args = 3, value_names = ["PATTERN", "SEED", "FILE.csv"])]
    dump: Option<Vec<String>>,
    /// Replay each series as a soak of this many seconds (after `--warmup`) through the soak's
    /// steady-state verdict, and count its verdicts per pattern instead.
    #[arg(long, value_name = "SECONDS")]
    soak: Option<f64>,
    /// The declared warm-up of `--soak`, seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    warmup: f64,
    /// With `--soak`: also list every series the soak did not answer as labeled (a healthy
    /// series not passed, a leak not failed), with its parameters and the verdict's reason.
    #[arg(long, requires = "soak")]
    why: bool,
    /// Measure the minimum soak instead: for each growth rate and trough noise of
    /// ARCHITECTURE.md's table, how long a steady state (after the warm-up) takes until the
    /// soak's verdict says leak (growth) or no leak (flat); median and max over the seeds.
    #[arg(long, conflicts_with = "soak")]
    min_soak: bool,
    /// With `--min-soak`: the same for a Node soak's heap channel, one exact reading per forced
    /// GC (every 15 s ± 30 %), with quiet readings, two live levels 7 MiB apart (each kept
    /// 30–120 s), or a spike of 50–200 MiB at one reading in ten; RSS a flat sawtooth.
    #[arg(long, requires = "min_soak")]
    forced_gc: bool,
    /// Read each series once every this many seconds (from an offset of seed mod SECONDS), as
    /// a scraper or `watch --interval` would: what sparse sampling does to the verdicts.
    #[arg(long, value_name = "SECONDS", value_parser = parse_every, conflicts_with_all = ["soak", "min_soak"])]
    every: Option<f64>,
}

/// `--every`: a whole number of seconds, at least 1 and at most 600 (`--interval`'s range).
fn parse_every(text: &str) -> Result<f64, String> {
    match text.parse::<u32>() {
        Ok(seconds) if (1..=600).contains(&seconds) => Ok(f64::from(seconds)),
        _ => Err(format!(
            "invalid --every '{text}' (expected whole seconds from 1 to 600)"
        )),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("score_synthetic: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if let Some(dump) = &args.dump {
        return write_dump(dump, args.samples).map(|()| ExitCode::SUCCESS);
    }
    let patterns = if args.patterns.is_empty() {
        Pattern::ALL.to_vec()
    } else {
        args.patterns
            .iter()
            .map(|name| parse_pattern(name))
            .collect::<anyhow::Result<_>>()?
    };
    if let Some(soak_s) = args.soak {
        soak_table(&patterns, args, soak_s);
        return Ok(ExitCode::SUCCESS);
    }
    if args.min_soak && args.forced_gc {
        min_soak_exact_table(args.seeds);
        return Ok(ExitCode::SUCCESS);
    }
    if args.min_soak {
        min_soak_table(args.seeds);
        return Ok(ExitCode::SUCCESS);
    }
    let cases = run_suite_every(&patterns, 0..args.seeds, args.samples, args.every);
    plimsoll_bench::outln!(
        "synthetic suite: seeds 0..{} for each of {} patterns, {} samples at 1 Hz{}; ls-slope budget = 2 x healthy peak",
        args.seeds,
        patterns.len(),
        args.samples,
        match args.every {
            Some(every) => format!(", read every {every:.0} s"),
            None => String::new(),
        }
    );
    plimsoll_bench::outln!("alarm = Plimsoll's first confirmed leak / a baseline's first alarm; delay = median/p90 of alarm - leak start, s;");
    plimsoll_bench::outln!("susp = Plimsoll suspected at some point; caught = alarm at or after the leak start (earlier: 'early')\n");
    plimsoll_bench::outln!("{}", per_pattern(&patterns, &cases));
    plimsoll_bench::outln!("{}", per_band(&cases));
    plimsoll_bench::outln!("{}", totals(&cases));
    let met = print_bar(&cases);
    print_failures(&cases, args.samples);
    Ok(if met {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `--soak`: per pattern, how the soak's steady-state verdict answers. A leak counts as steady
/// load when it started within the warm-up; one that starts later is counted apart.
fn soak_table(patterns: &[Pattern], args: &Args, soak_s: f64) {
    plimsoll_bench::outln!(
        "synthetic suite replayed as soaks of {soak_s:.0} s after a warm-up of {:.0} s, seeds 0..{}\n",
        args.warmup, args.seeds
    );
    let mut table = Table::new(&[
        ("pattern", Align::Left),
        ("label", Align::Left),
        ("n", Align::Right),
        ("leak", Align::Right),
        ("no-leak", Align::Right),
        ("inconclusive", Align::Right),
        ("leak started after warm-up", Align::Right),
        ("of which passed (started in the first half)", Align::Right),
    ]);
    for &pattern in patterns {
        let (mut n, mut leak, mut pass, mut unsure, mut late) = (0, 0, 0, 0, 0);
        let mut late_passed = 0;
        let mut misjudged = Vec::new();
        for seed in 0..args.seeds {
            let series = Series::generate(pattern, seed, args.samples);
            if series
                .truth
                .leak_start_s
                .is_some_and(|start| start > args.warmup)
            {
                // A leak that starts within the soak is not steady load, but it must not pass
                // either unless it started too late to be seen.
                late += 1;
                let soak = soak_replay(&series.observations, soak_s, args.warmup, false);
                let visible = series
                    .truth
                    .leak_start_s
                    .is_some_and(|start| start <= (args.warmup + soak_s) / 2.0);
                if visible && soak.verdict == Verdict::NoLeak {
                    late_passed += 1;
                    if args.why {
                        misjudged.push(format!(
                            "{} {seed} (late): no-leak ({}) {}",
                            pattern.name(),
                            soak.reason,
                            series.truth.description
                        ));
                    }
                }
                continue;
            }
            n += 1;
            let soak = soak_replay(&series.observations, soak_s, args.warmup, false);
            match soak.verdict {
                Verdict::Leak => leak += 1,
                Verdict::NoLeak => pass += 1,
                Verdict::Inconclusive => unsure += 1,
            }
            let expected = match pattern.label() {
                Label::Leak => Verdict::Leak,
                Label::NoLeak => Verdict::NoLeak,
            };
            if args.why && soak.verdict != expected {
                misjudged.push(format!(
                    "{} {seed}: {} ({}) {}",
                    pattern.name(),
                    soak.verdict.as_str(),
                    soak.reason,
                    series.truth.description
                ));
            }
        }
        table.row(vec![
            pattern.name().to_owned(),
            pattern.label().name().to_owned(),
            n.to_string(),
            leak.to_string(),
            pass.to_string(),
            unsure.to_string(),
            late.to_string(),
            late_passed.to_string(),
        ]);
        for line in misjudged {
            plimsoll_bench::outln!("  {line}");
        }
    }
    plimsoll_bench::outln!("{table}");
}

/// `--min-soak`: a 20 MiB sawtooth of period 20 s (random phase) on a 100 MiB base, its troughs
/// wobbling by up to ±`noise` per tooth, and a floor growing at `rate`; each series is fed to a
/// soak's detector from its first second (the steady state), and the verdict is read every 5 s
/// up to 30 minutes. A rate of zero is timed to its first `no-leak`, others to their first
/// `leak`; a `no-leak` on a growing series is counted apart (it must stay 0 from 0.5 MiB/min up).
fn min_soak_table(seeds: u64) {
    use plimsoll_analysis::{DetectorConfig, Observation};
    use rand::{Rng, SeedableRng};
    const MIB: f64 = 1024.0 * 1024.0;
    plimsoll_bench::outln!(
        "minimum soak (steady state until the verdict), 20 MiB sawtooth of 20 s, seeds 0..{seeds}\n"
    );
    let mut table = Table::new(&[
        ("growth MiB/min", Align::Right),
        ("trough noise", Align::Left),
        ("verdict timed", Align::Left),
        ("median", Align::Right),
        ("max", Align::Right),
        ("never within 30 min", Align::Right),
        ("passed as flat", Align::Right),
    ]);
    for (noise_name, noise) in [("quiet ±0.3 MiB", 0.3 * MIB), ("noisy ±5 MiB", 5.0 * MIB)] {
        for rate in [0.0, 0.25, 0.5, 1.0, 2.0, 5.0] {
            let expected = if rate > 0.0 {
                Verdict::Leak
            } else {
                Verdict::NoLeak
            };
            let mut tally = MinSoakTally::default();
            for seed in 0..seeds {
                let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed ^ 0x5eed);
                let phase = rng.random_range(0.0..20.0);
                let (mut tooth, mut offset) = (u64::MAX, 0.0);
                let config = DetectorConfig::recommended();
                let outcome = time_to_verdict(config, expected, rate, |t| {
                    let cycle = ((t + phase) / 20.0).floor() as u64;
                    if cycle != tooth {
                        tooth = cycle;
                        offset = rng.random_range(-noise..=noise);
                    }
                    let value = 100.0 * MIB
                        + rate * MIB * t / 60.0
                        + 20.0 * MIB * ((t + phase) % 20.0) / 20.0
                        + offset
                        + rng.random_range(-0.1 * MIB..=0.1 * MIB);
                    Observation {
                        t_s: t,
                        rss_bytes: value as u64,
                        heap_used_after_gc_bytes: None,
                    }
                });
                tally.add(outcome);
            }
            table.row(tally.row(rate, noise_name, expected, seeds));
        }
    }
    plimsoll_bench::outln!("{table}");
}

/// How long a minimum-soak table gives a series before saying it never got its verdict.
const MIN_SOAK_LIMIT_S: u32 = 1800;

/// Feeds a detector with `config` the observation `next(t)` every second for up to 30 minutes
/// and looks at the soak's verdict every 5 s: when it first said `expected` (seconds), and
/// whether it said no leak at some moment of a growing series (`rate` above 0).
fn time_to_verdict(
    config: plimsoll_analysis::DetectorConfig,
    expected: Verdict,
    rate: f64,
    mut next: impl FnMut(f64) -> plimsoll_analysis::Observation,
) -> (Option<f64>, bool) {
    let mut detector = plimsoll_analysis::LeakDetector::new(config);
    let mut flat_seen = false;
    for i in 0..MIN_SOAK_LIMIT_S {
        let t = f64::from(i);
        detector.push(&next(t));
        if i % 5 == 4 {
            let verdict = detector.steady_state_verdict().verdict;
            flat_seen |= rate > 0.0 && verdict == Verdict::NoLeak;
            if verdict == expected {
                return (Some(t + 1.0), flat_seen);
            }
        }
    }
    (None, flat_seen)
}

/// The outcomes of one row of a minimum-soak table, over the seeds.
#[derive(Default)]
struct MinSoakTally {
    times: Vec<f64>,
    never: u64,
    passed: u64,
}

impl MinSoakTally {
    fn add(&mut self, (found, flat_seen): (Option<f64>, bool)) {
        self.passed += u64::from(flat_seen);
        match found {
            Some(at) => self.times.push(at),
            None => self.never += 1,
        }
    }

    /// The row: when the verdict came (median and max over the seeds that gave it), how many
    /// never did, and how many leaks passed as flat at some moment.
    fn row(mut self, rate: f64, noise: &str, expected: Verdict, seeds: u64) -> Vec<String> {
        self.times.sort_by(f64::total_cmp);
        let minutes =
            |s: Option<&f64>| s.map_or("-".to_owned(), |s| format!("{:.1} min", s / 60.0));
        vec![
            format!("{rate}"),
            noise.to_owned(),
            verdict_name(expected).to_owned(),
            minutes(self.times.get(self.times.len() / 2)),
            minutes(self.times.last()),
            format!("{}/{seeds}", self.never),
            if rate > 0.0 {
                format!("{}/{seeds}", self.passed)
            } else {
                "-".to_owned()
            },
        ]
    }
}

/// `--min-soak --forced-gc`: [`min_soak_table`] for the exact heap channel of a Node soak.
fn min_soak_exact_table(seeds: u64) {
    use plimsoll_analysis::{DetectorConfig, Observation};
    use rand::{Rng, SeedableRng};
    const MIB: f64 = 1024.0 * 1024.0;
    plimsoll_bench::outln!(
        "minimum soak (steady state until the verdict), heap read after a forced GC every 15 s ± 30 %, seeds 0..{seeds}\n"
    );
    let mut table = Table::new(&[
        ("growth MiB/min", Align::Right),
        ("live heap at the GCs", Align::Left),
        ("verdict timed", Align::Left),
        ("median", Align::Right),
        ("max", Align::Right),
        ("never within 30 min", Align::Right),
        ("passed as flat", Align::Right),
    ]);
    for noise in ["quiet ±0.3 MiB", "two levels 7 MiB apart", "spikes 1 in 10"] {
        for rate in [0.0, 0.25, 0.5, 1.0, 2.0, 5.0] {
            let expected = if rate > 0.0 {
                Verdict::Leak
            } else {
                Verdict::NoLeak
            };
            let mut tally = MinSoakTally::default();
            for seed in 0..seeds {
                let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed ^ 0x9c);
                let config = DetectorConfig {
                    exact_heap: true,
                    ..DetectorConfig::recommended()
                };
                let (mut next_gc, mut high, mut until) = (0.0, false, 0.0);
                let outcome = time_to_verdict(config, expected, rate, |t| {
                    let reading = (t >= next_gc).then(|| {
                        next_gc = t + 15.0 * rng.random_range(0.7..=1.3);
                        let live = match noise {
                            "two levels 7 MiB apart" => {
                                if t >= until {
                                    high = !high;
                                    until = t + rng.random_range(30.0..=120.0);
                                }
                                if high {
                                    7.0 * MIB
                                } else {
                                    0.0
                                }
                            }
                            "spikes 1 in 10" if rng.random_bool(0.1) => {
                                rng.random_range(50.0 * MIB..=200.0 * MIB)
                            }
                            _ => 0.0,
                        };
                        (120.0 * MIB
                            + rate * MIB * t / 60.0
                            + live
                            + rng.random_range(-0.3 * MIB..=0.3 * MIB))
                            as u64
                    });
                    Observation {
                        t_s: t,
                        rss_bytes: (300.0 * MIB + 40.0 * MIB * (t % 20.0) / 20.0) as u64,
                        heap_used_after_gc_bytes: reading,
                    }
                });
                tally.add(outcome);
            }
            table.row(tally.row(rate, noise, expected, seeds));
        }
    }
    plimsoll_bench::outln!("{table}");
}

fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Leak => "leak",
        Verdict::NoLeak => "no-leak",
        Verdict::Inconclusive => "inconclusive",
    }
}

fn parse_pattern(name: &str) -> anyhow::Result<Pattern> {
    Pattern::from_name(name).with_context(|| {
        let names: Vec<&str> = Pattern::ALL.iter().map(|p| p.name()).collect();
        format!(
            "unknown pattern '{name}' (expected one of {})",
            names.join(", ")
        )
    })
}

fn write_dump(dump: &[String], samples: u64) -> anyhow::Result<()> {
    let [pattern, seed, file] = dump else {
        anyhow::bail!("--dump needs PATTERN SEED FILE.csv");
    };
    let pattern = parse_pattern(pattern)?;
    let seed: u64 = seed
        .parse()
        .with_context(|| format!("invalid seed '{seed}'"))?;
    let path = PathBuf::from(file);
    let generator = Generator::new(pattern, seed, samples);
    let truth = generator.truth().clone();
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&path)
            .with_context(|| format!("cannot create '{}'", path.display()))?,
    );
    writeln!(out, "t_s,rss_bytes")?;
    for observation in generator {
        writeln!(out, "{},{}", observation.t_s, observation.rss_bytes)?;
    }
    out.flush()
        .with_context(|| format!("cannot write '{}'", path.display()))?;
    plimsoll_bench::outln!(
        "{} seed {seed} ({}): {} -> {}",
        pattern.name(),
        truth.label.name(),
        truth.description,
        path.display()
    );
    Ok(())
}

/// One row per pattern: per detector, alarms over n (recall for leaks, false-alarm rate for
/// healthy patterns) and median/p90 delay for leaks.
fn per_pattern(patterns: &[Pattern], cases: &[SuiteCase]) -> Table {
    let mut columns = vec![
        ("pattern", Align::Left),
        ("label", Align::Left),
        ("n", Align::Right),
    ];
    for detector in Detector::ALL {
        columns.push((detector.name(), Align::Right));
        columns.push(("delay", Align::Right));
    }
    columns.insert(5, ("susp", Align::Right));
    let mut table = Table::new(&columns);
    for &pattern in patterns {
        let rows: Vec<&SuiteCase> = cases
            .iter()
            .filter(|case| case.pattern == pattern)
            .collect();
        let mut cells = vec![
            pattern.name().to_owned(),
            pattern.label().name().to_owned(),
            rows.len().to_string(),
        ];
        for detector in Detector::ALL {
            let mut totals = Totals::default();
            rows.iter()
                .for_each(|case| totals.add(case.judgement(detector)));
            // Recall for leaks (alarms before the leak start do not count), false alarms else.
            let alarms = totals.caught + totals.false_alarms;
            cells.push(ratio(alarms, rows.len()));
            cells.push(delay_cell(&totals));
            if detector == Detector::Plimsoll {
                let suspected = rows
                    .iter()
                    .filter(|case| case.outcome.suspected_s.is_some())
                    .count();
                cells.push(suspected.to_string());
            }
        }
        table.row(cells);
    }
    table
}

fn delay_cell(totals: &Totals) -> String {
    if totals.delays_s.is_empty() {
        return "-".to_owned();
    }
    format!(
        "{}/{}",
        seconds(totals.median_delay_s()),
        seconds(totals.p90_delay_s())
    )
}

/// Recall by leak-rate band: caught at all, and caught within 15 minutes.
fn per_band(cases: &[SuiteCase]) -> Table {
    let mut columns = vec![("leak MB/min", Align::Left), ("n", Align::Right)];
    for detector in Detector::ALL {
        columns.push((detector.name(), Align::Right));
        columns.push(("<=15min", Align::Right));
    }
    let mut table = Table::new(&columns);
    // (name, low, high): leak rates in [low, high) MB/min.
    let mut bands: Vec<(String, f64, f64)> = RATE_BANDS
        .iter()
        .map(|&(low, high)| (format!("{low}-{high}"), low, high))
        .collect();
    bands.push((
        format!(">={BAR_MIN_RATE_MB_PER_MIN} (bar)"),
        BAR_MIN_RATE_MB_PER_MIN,
        f64::INFINITY,
    ));
    bands.push(("all".to_owned(), 0.0, f64::INFINITY));
    for (i, (name, low, high)) in bands.iter().enumerate() {
        let rows: Vec<&SuiteCase> = cases
            .iter()
            .filter(|case| {
                case.rate_mb_per_min()
                    .is_some_and(|rate| rate >= *low && rate < *high)
            })
            .collect();
        let mut cells = vec![name.clone(), rows.len().to_string()];
        for detector in Detector::ALL {
            let caught = rows
                .iter()
                .filter(|case| matches!(case.judgement(detector), Judgement::Caught { .. }))
                .count();
            let within = rows
                .iter()
                .filter(|case| case.caught_within(detector, BAR_WITHIN_S))
                .count();
            cells.push(ratio(caught, rows.len()));
            cells.push(ratio(within, rows.len()));
        }
        if i == RATE_BANDS.len() {
            table.rule();
        }
        table.row(cells);
    }
    table
}

/// Totals per detector.
fn totals(cases: &[SuiteCase]) -> Table {
    let mut table = Table::new(&[
        ("detector", Align::Left),
        ("leaks caught", Align::Right),
        ("early", Align::Right),
        ("<=15min (>=1MB/min)", Align::Right),
        ("false alarms", Align::Right),
        ("median delay s", Align::Right),
        ("p90 delay s", Align::Right),
    ]);
    for detector in Detector::ALL {
        let mut totals = Totals::default();
        cases
            .iter()
            .for_each(|case| totals.add(case.judgement(detector)));
        let bar = BarFigures::of(cases, detector);
        table.row(vec![
            detector.name().to_owned(),
            ratio(totals.caught, totals.leaks),
            totals.early.to_string(),
            ratio(bar.caught_in_time, bar.bar_leaks),
            ratio(totals.false_alarms, totals.healthy),
            seconds(totals.median_delay_s()),
            seconds(totals.p90_delay_s()),
        ]);
    }
    table
}

/// Prints the bar's two checks for Plimsoll; true when both hold.
fn print_bar(cases: &[SuiteCase]) -> bool {
    let bar = BarFigures::of(cases, Detector::Plimsoll);
    let recall_ok = bar.recall() >= BAR_RECALL;
    let quiet_ok = bar.false_alarms == 0;
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    plimsoll_bench::outln!(
        "bar: recall within {:.0} min for leaks >= {BAR_MIN_RATE_MB_PER_MIN} MB/min: {}/{} = {:.1}% (need >= {:.0}%) {}",
        BAR_WITHIN_S / 60.0,
        bar.caught_in_time,
        bar.bar_leaks,
        100.0 * bar.recall(),
        100.0 * BAR_RECALL,
        verdict(recall_ok)
    );
    plimsoll_bench::outln!(
        "bar: confirmed alarms on healthy series: {}/{} (need 0) {}",
        bar.false_alarms,
        bar.healthy,
        verdict(quiet_ok)
    );
    recall_ok && quiet_ok
}

/// Every series where Plimsoll misses the bar, with the command that reproduces it.
fn print_failures(cases: &[SuiteCase], samples: u64) {
    let failures: Vec<(&SuiteCase, String)> = cases
        .iter()
        .filter_map(|case| case.bar_failure().map(|what| (case, what)))
        .collect();
    let slow_missed = cases
        .iter()
        .filter(|case| case.truth.label == Label::Leak && !case.in_bar())
        .filter(|case| case.outcome.confirmed_s.is_none())
        .count();
    plimsoll_bench::outln!("\nfailing seeds ({}):", failures.len());
    for (case, what) in &failures {
        plimsoll_bench::outln!("  {} {}: {what}", case.pattern.name(), case.seed);
        plimsoll_bench::outln!("      {}", case.truth.description);
    }
    if !failures.is_empty() {
        plimsoll_bench::outln!(
            "reproduce: cargo run --release -p plimsoll-bench --bin score_synthetic -- --samples {samples} --dump PATTERN SEED /tmp/series.csv && cargo run --release -p plimsoll -- analyze /tmp/series.csv"
        );
    }
    plimsoll_bench::outln!("(not in the bar: {slow_missed} leaks below {BAR_MIN_RATE_MB_PER_MIN} MB/min never confirmed)");
}
