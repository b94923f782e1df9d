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
