//! The synthetic suite: every pattern over a range of seeds, scored, and checked against the
//! issue's bar: recall ≥ 95 % within 15 minutes for leaks of at least 1 MB/min, and no
//! confirmed alarm on any healthy series.

use std::ops::Range;

use crate::score::{evaluate, BaselineInput, Detector, Judgement, Outcome};
use crate::synthetic::{Label, Pattern, Series, Truth, MB};

/// Leaks at least this fast (MB/min) count towards the bar.
pub const BAR_MIN_RATE_MB_PER_MIN: f64 = 1.0;
/// A leak counts towards the bar when confirmed this soon after its start, seconds.
pub const BAR_WITHIN_S: f64 = 900.0;
/// The recall the bar asks for, over all seeds.
pub const BAR_RECALL: f64 = 0.95;

/// Leak-rate bands for the recall split, MB/min: `[low, high)`.
pub const RATE_BANDS: [(f64, f64); 3] = [(0.5, 1.0), (1.0, 5.0), (5.0, 20.0)];

/// One scored series.
#[derive(Debug, Clone)]
pub struct SuiteCase {
    pub pattern: Pattern,
    pub seed: u64,
    pub truth: Truth,
    /// The budget the slope rule used, bytes.
    pub budget_bytes: u64,
    pub outcome: Outcome,
}

impl SuiteCase {
    /// The judgement of `detector` on this series.
    pub fn judgement(&self, detector: Detector) -> Judgement {
        crate::score::judge(
            self.truth.label,
            self.truth.leak_start_s,
            self.outcome.alarm_s(detector),
        )
    }

    /// Leak rate in MB/min; `None` for healthy series.
    pub fn rate_mb_per_min(&self) -> Option<f64> {
        self.truth
            .leak_rate_bytes_per_s
            .map(|rate| rate * 60.0 / MB)
    }

    /// Does this leak count towards the bar?
    pub fn in_bar(&self) -> bool {
        self.rate_mb_per_min()
            .is_some_and(|rate| rate >= BAR_MIN_RATE_MB_PER_MIN)
    }

    /// Did `detector` catch this leak within `within_s` of its start?
    pub fn caught_within(&self, detector: Detector, within_s: f64) -> bool {
        matches!(self.judgement(detector), Judgement::Caught { delay_s } if delay_s <= within_s)
    }

    /// What went wrong for Plimsoll against the bar, if anything.
    pub fn bar_failure(&self) -> Option<String> {
        let outcome = &self.outcome;
        let suspected = match outcome.suspected_s {
            Some(at) => format!("suspected at {at:.0}s"),
            None => "never suspected".to_owned(),
        };
        match self.judgement(Detector::Plimsoll) {
            Judgement::FalseAlarm { at_s } => Some(format!(
                "confirmed at {at_s:.0}s on a healthy series ({suspected})"
            )),
            Judgement::Early { before_s } => {
                Some(format!("confirmed {before_s:.0}s before the leak started"))
            }
            Judgement::Caught { delay_s } if self.in_bar() && delay_s > BAR_WITHIN_S => Some(
                format!("confirmed {delay_s:.0}s after the leak started (> {BAR_WITHIN_S:.0}s)"),
            ),
            Judgement::Missed if self.in_bar() => Some(format!(
                "missed ({suspected}, verdict {:?})",
                outcome.verdict
            )),
            _ => None,
        }
    }
}

/// Generates and scores `patterns` × `seeds`, `samples` seconds each, on all cores. The result
/// is ordered by pattern, then seed.
pub fn run_suite(patterns: &[Pattern], seeds: Range<u64>, samples: u64) -> Vec<SuiteCase> {
    run_suite_every(patterns, seeds, samples, None)
}

/// [`run_suite`] with each series read once every `every_s` seconds (all of it when `None`),
/// from an offset that the seed sets (`seed` mod `every_s`): what a sparser sampler sees.
pub fn run_suite_every(
    patterns: &[Pattern],
    seeds: Range<u64>,
    samples: u64,
    every_s: Option<f64>,
) -> Vec<SuiteCase> {
    let jobs: Vec<(Pattern, u64)> = patterns
        .iter()
        .flat_map(|&pattern| seeds.clone().map(move |seed| (pattern, seed)))
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .max(1);
    let chunk = jobs.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|slice| {
                scope.spawn(move || {
                    slice
                        .iter()
                        .map(|&(p, s)| run_case(p, s, samples, every_s))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // A worker only panics if scoring itself has a bug; pass the panic on.
        handles
            .into_iter()
            .flat_map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e))
            })
            .collect()
    })
}

/// Generates and scores one series (read every `every_s` seconds: see [`run_suite_every`]).
pub fn run_case(pattern: Pattern, seed: u64, samples: u64, every_s: Option<f64>) -> SuiteCase {
    let series = Series::generate(pattern, seed, samples);
    let budget_bytes = series.budget_bytes();
    let observations = match every_s {
        Some(every) => crate::corpus::resample(&series.observations, every, (seed as f64) % every),
        None => series.observations,
    };
    let outcome = evaluate(observations, budget_bytes, BaselineInput::Rss);
    SuiteCase {
        pattern,
        seed,
        truth: series.truth,
        budget_bytes,
        outcome,
    }
}

/// The bar's two figures for one detector over a suite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarFigures {
    /// Leaks of at least 1 MB/min.
    pub bar_leaks: usize,
    /// Of those, caught within 15 minutes of their start.
    pub caught_in_time: usize,
    /// Healthy series.
    pub healthy: usize,
    /// Healthy series with an alarm.
    pub false_alarms: usize,
}

impl BarFigures {
    pub fn of(cases: &[SuiteCase], detector: Detector) -> BarFigures {
        let bar: Vec<&SuiteCase> = cases.iter().filter(|case| case.in_bar()).collect();
        let healthy: Vec<&SuiteCase> = cases
            .iter()
            .filter(|case| case.truth.label == Label::NoLeak)
            .collect();
        BarFigures {
            bar_leaks: bar.len(),
            caught_in_time: bar
                .iter()
                .filter(|case| case.caught_within(detector, BAR_WITHIN_S))
                .count(),
            healthy: healthy.len(),
            false_alarms: healthy
                .iter()
                .filter(|case| case.outcome.alarm_s(detector).is_some())
                .count(),
        }
    }

    /// Recall within 15 minutes over the bar's leaks, from 0 to 1 (1 when there are none).
    pub fn recall(&self) -> f64 {
        if self.bar_leaks == 0 {
            return 1.0;
        }
        self.caught_in_time as f64 / self.bar_leaks as f64
    }
}
