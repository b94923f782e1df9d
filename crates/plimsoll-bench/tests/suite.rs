//! Holds Plimsoll's detector to the bar on a few seeds of the synthetic suite: no
//! confirmed alarm on any healthy series, and recall ≥ 90 % within 15 minutes for leaks of at
//! least 1 MB/min (the full bar, 95 % over 100 seeds, is checked by `score_synthetic`).

use plimsoll_bench::score::Detector;
use plimsoll_bench::suite::{run_suite, BarFigures, SuiteCase, BAR_WITHIN_S};
use plimsoll_bench::synthetic::{Label, Pattern, DEFAULT_SAMPLES};

const SEEDS: u64 = 30;

fn suite() -> Vec<SuiteCase> {
    run_suite(&Pattern::ALL, 0..SEEDS, DEFAULT_SAMPLES)
}

fn describe(cases: &[&SuiteCase]) -> String {
    cases
        .iter()
        .map(|case| {
            let what = case
                .bar_failure()
                .unwrap_or_else(|| format!("{:?}", case.outcome));
            format!(
                "\n  {} seed {}: {what}\n      {}",
                case.pattern.name(),
                case.seed,
                case.truth.description
            )
        })
        .collect()
}

#[test]
fn no_confirmed_alarm_on_healthy_series() {
    let cases = suite();
    let alarms: Vec<&SuiteCase> = cases
        .iter()
        .filter(|case| case.truth.label == Label::NoLeak && case.outcome.confirmed_s.is_some())
        .collect();
    assert!(
        alarms.is_empty(),
        "confirmed alarms on healthy series:{}",
        describe(&alarms)
    );
}

#[test]
fn leaks_of_one_mb_per_min_are_caught_within_15_minutes() {
    let cases = suite();
    let bar = BarFigures::of(&cases, Detector::Plimsoll);
    assert!(
        bar.bar_leaks >= 5,
        "too few leaks in the bar: {}",
        bar.bar_leaks
    );
    let missed: Vec<&SuiteCase> = cases
        .iter()
        .filter(|case| case.in_bar() && !case.caught_within(Detector::Plimsoll, BAR_WITHIN_S))
        .collect();
    assert!(
        bar.recall() >= 0.90,
        "recall {}/{} below 90 %; missed:{}",
        bar.caught_in_time,
        bar.bar_leaks,
        describe(&missed)
    );
}

/// The recorded corpus replayed as `soak --duration 10m --warmup 1m` (the samples of 60–600 s
/// through the soak's steady-state verdict, with the heap channel where a trace has it, as a
/// soak with the agent would): no leak passes and no healthy trace fails, and every leak fails.
#[test]
fn the_soak_verdict_on_recorded_traces_never_passes_a_leak() {
    use plimsoll_analysis::Verdict;
    use plimsoll_bench::corpus::{read_manifest, read_trace};
    use plimsoll_bench::score::soak_replay;

    let bench = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench");
    let entries = read_manifest(&bench.join("corpus.json")).expect("manifest");
    let mut wrong = Vec::new();
    let mut passed_healthy = 0;
    for entry in &entries {
        let path = bench.join("traces").join(format!("{}.csv", entry.name));
        let observations = read_trace(&path).expect("trace");
        let verdict = soak_replay(&observations, 600.0, 60.0, false);
        let ok = match entry.label {
            Label::Leak => verdict.verdict == Verdict::Leak,
            Label::NoLeak => verdict.verdict != Verdict::Leak,
        };
        if entry.label == Label::NoLeak && verdict.verdict == Verdict::NoLeak {
            passed_healthy += 1;
        }
        if !ok {
            wrong.push(format!(
                "{}: {:?} ({})",
                entry.name, verdict.verdict, verdict.reason
            ));
        }
        if verdict.verdict == Verdict::Inconclusive {
            assert!(
                verdict.needs_more_s.is_some(),
                "{}: {verdict:?}",
                entry.name
            );
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert!(
        passed_healthy >= 4,
        "healthy traces passed: {passed_healthy}"
    );
}

/// What real soaks' detectors were fed (`bench/soak_traces/run*`, recorded by
/// `soak_corpus.sh --record` from `plimsoll soak --duration 10m --warmup 1m` on every workload,
/// Node ones with a forced GC every 15 s; eight runs, the last five with the GCs jittered and the
/// last two with `external` exact), replayed: every leak fails, no healthy
/// workload fails, and at least five of the nine healthy ones pass. Those that do not must
/// say why in words that hold: a cache still filling, a clear every 3.5 min, a heap still
/// rising (not as a ramp) at the end.
#[test]
fn the_soak_verdict_on_recorded_soaks_gives_the_labels() {
    use plimsoll_analysis::Verdict;
    use plimsoll_bench::corpus::{read_manifest, read_trace};
    use plimsoll_bench::score::soak_replay;

    let bench = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench");
    let entries = read_manifest(&bench.join("corpus.json")).expect("manifest");
    // Healthy workloads without a warm-up longer than the declared minute: no soak from four
    // minutes on, however long, fails them (a wandering live heap once read as four troughs
    // in a row at 6.5 min; a periodic clear's next cycle once read as a ramp).
    let steady = [
        "node-gc-sawtooth",
        "node-spiky-transient",
        "node-periodic-clear",
        "node-one-time-step",
        "py-periodic-clear",
        "c-steady-trim",
        "c-steady-fragmented",
    ];
    for run in [
        "run1", "run2", "run3", "run4", "run5", "run6", "run7", "run8",
    ] {
        for name in steady {
            let path = bench
                .join("soak_traces")
                .join(run)
                .join(format!("{name}.csv"));
            let observations = read_trace(&path).expect("recorded soak");
            for soak_s in (240..=600).step_by(20) {
                let verdict = soak_replay(&observations, f64::from(soak_s), 60.0, true);
                assert_ne!(
                    verdict.verdict,
                    Verdict::Leak,
                    "{run} {name} as a soak of {soak_s} s: {}",
                    verdict.reason
                );
            }
        }
    }
    for run in [
        "run1", "run2", "run3", "run4", "run5", "run6", "run7", "run8",
    ] {
        let mut wrong = Vec::new();
        let mut passed = 0;
        for entry in &entries {
            let path = bench
                .join("soak_traces")
                .join(run)
                .join(format!("{}.csv", entry.name));
            let observations = read_trace(&path).expect("recorded soak");
            let verdict = soak_replay(&observations, 600.0, 60.0, true);
            let reason = verdict.reason.to_string();
            let expected = match (entry.label, verdict.verdict) {
                (Label::Leak, v) => v == Verdict::Leak,
                (Label::NoLeak, Verdict::NoLeak) => {
                    passed += 1;
                    true
                }
                (Label::NoLeak, Verdict::Inconclusive) => {
                    reason.contains("handed back in cycles") || reason.contains("still rising")
                }
                (Label::NoLeak, Verdict::Leak) => false,
            };
            if !expected {
                wrong.push(format!("{}: {:?} ({reason})", entry.name, verdict.verdict));
            }
        }
        assert!(wrong.is_empty(), "{run}: {wrong:#?}");
        assert!(passed >= 5, "{run}: {passed} of 9 healthy soaks passed");
    }
}

/// The recorded corpus read as a sparser sampler would (a scraper every 15 s to 10 min, from
/// four offsets each; `score_corpus --every`): no healthy trace is ever confirmed as a leak,
/// on RSS alone or with the heap after GC. Read once a minute, a Map LRU's RSS (sawing
/// 180–210 MB each minute) climbed 181 → 191 MB over 17 minutes of samples and a one-time
/// load's RSS 341 → 348 MB: both were confirmed before the sparse-series rules. Read every 10
/// or 15 s with the heap after GC, every leak is still confirmed.
#[test]
fn sparse_samples_never_confirm_a_healthy_trace() {
    use plimsoll_bench::corpus::{read_manifest, read_trace, resample};
    use plimsoll_bench::score::{evaluate, BaselineInput};

    let bench = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench");
    let entries = read_manifest(&bench.join("corpus.json")).expect("manifest");
    let traces: Vec<_> = entries
        .iter()
        .map(|entry| {
            let path = bench.join("traces").join(format!("{}.csv", entry.name));
            (entry, read_trace(&path).expect("trace"))
        })
        .collect();
    let mut alarms = Vec::new();
    for every in [10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0] {
        for quarter in 0..4 {
            let offset = every * f64::from(quarter) / 4.0;
            for heap in [false, true] {
                for (entry, observations) in &traces {
                    let sparse = resample(observations, every, offset);
                    let sparse: Vec<_> = sparse
                        .into_iter()
                        .map(|o| plimsoll_analysis::Observation {
                            heap_used_after_gc_bytes: o.heap_used_after_gc_bytes.filter(|_| heap),
                            ..o
                        })
                        .collect();
                    let outcome = evaluate(sparse, entry.budget_bytes, BaselineInput::Rss);
                    let confirmed = outcome.confirmed_s.is_some();
                    let wrong = match entry.label {
                        Label::NoLeak => confirmed,
                        Label::Leak => heap && every <= 15.0 && !confirmed,
                    };
                    if wrong {
                        alarms.push(format!(
                            "{} every {every} s from {offset} s (heap {heap}): {:?}, {}",
                            entry.name, outcome.verdict, outcome.reason
                        ));
                    }
                }
            }
        }
    }
    assert!(alarms.is_empty(), "{alarms:#?}");
}

/// The synthetic suite read every 15 s: no healthy series confirmed; its steps read every 60
/// s neither (a step between two samples once read, interpolated, as a fast ramp: `step` seed
/// 65). Read every 60 s or more, saws as tall as half the floor can beat into a ramp that is
/// confirmed: 3 of 800 healthy series every 60 s (ARCHITECTURE.md, "Sparse samples").
#[test]
fn sparse_synthetic_series_never_confirm_a_healthy_one() {
    use plimsoll_bench::suite::run_suite_every;

    let healthy: Vec<Pattern> = Pattern::ALL
        .into_iter()
        .filter(|p| p.label() == Label::NoLeak)
        .collect();
    let mut cases = run_suite_every(&healthy, 0..SEEDS, DEFAULT_SAMPLES, Some(15.0));
    cases.extend(run_suite_every(
        &[Pattern::Step],
        0..100,
        DEFAULT_SAMPLES,
        Some(60.0),
    ));
    let alarms: Vec<&SuiteCase> = cases
        .iter()
        .filter(|case| case.outcome.confirmed_s.is_some())
        .collect();
    assert!(
        alarms.is_empty(),
        "confirmed alarms on sparse healthy series:{}",
        describe(&alarms)
    );
}
