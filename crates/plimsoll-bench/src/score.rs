//! Scoring: runs Plimsoll's detector and the baseline rules over one labeled series, judges each
//! first alarm against the label, and sums the judgements per detector.

use plimsoll_analysis::{
    DetectorConfig, LeakDetector, Observation, Reason, SteadyVerdict, Verdict,
};

use crate::baselines::Baselines;
use crate::synthetic::Label;

/// A detector under evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detector {
    /// Plimsoll's online detector; its alarm is the first confirmed leak.
    Plimsoll,
    /// "50 MB in 5 minutes".
    Growth,
    /// Five rising 10 s minima.
    RisingMinima,
    /// Least-squares slope projected to the budget, held 5 minutes.
    Slope,
}

impl Detector {
    pub const ALL: [Detector; 4] = [
        Detector::Plimsoll,
        Detector::Growth,
        Detector::RisingMinima,
        Detector::Slope,
    ];

    /// Short name for table headers.
    pub fn name(self) -> &'static str {
        match self {
            Detector::Plimsoll => "plimsoll",
            Detector::Growth => "50MB/5min",
            Detector::RisingMinima => "5-rising-min",
            Detector::Slope => "ls-slope",
        }
    }
}

/// Which value of an observation the baseline rules watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaselineInput {
    /// RSS.
    Rss,
    /// Heap used after the last major GC where the observation has it, RSS otherwise.
    HeapAfterGc,
}

/// What every detector did over one series. Times are seconds after the first sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Plimsoll's verdict at the end of the series.
    pub verdict: Verdict,
    /// Why, in Plimsoll's words.
    pub reason: Reason,
    /// Plimsoll's first confirmed leak.
    pub confirmed_s: Option<f64>,
    /// Plimsoll's first suspicion.
    pub suspected_s: Option<f64>,
    /// First alarm of the growth rule.
    pub growth_s: Option<f64>,
    /// First alarm of the rising-minima rule.
    pub rising_minima_s: Option<f64>,
    /// First alarm of the slope rule.
    pub slope_s: Option<f64>,
    /// Number of observations.
    pub samples: u64,
}

impl Outcome {
    /// The first alarm of `detector`.
    pub fn alarm_s(&self, detector: Detector) -> Option<f64> {
        match detector {
            Detector::Plimsoll => self.confirmed_s,
            Detector::Growth => self.growth_s,
            Detector::RisingMinima => self.rising_minima_s,
            Detector::Slope => self.slope_s,
        }
    }
}

/// Feeds every observation, in order, to Plimsoll's detector (recommended settings) and to the
/// baselines (budget `budget_bytes` for the slope rule).
pub fn evaluate(
    observations: impl IntoIterator<Item = Observation>,
    budget_bytes: u64,
    input: BaselineInput,
) -> Outcome {
    let mut detector = LeakDetector::new(DetectorConfig::recommended());
    let mut baselines = Baselines::new(budget_bytes);
    for observation in observations {
        detector.push(&observation);
        let value = match input {
            BaselineInput::Rss => observation.rss_bytes,
            BaselineInput::HeapAfterGc => observation
                .heap_used_after_gc_bytes
                .unwrap_or(observation.rss_bytes),
        };
        baselines.push(observation.t_s, value);
    }
    let status = detector.status();
    Outcome {
        verdict: status.verdict,
        reason: status.reason,
        confirmed_s: status.detected_after_s,
        suspected_s: status.suspected_after_s,
        growth_s: baselines.growth.alarm_s(),
        rising_minima_s: baselines.rising_minima.alarm_s(),
        slope_s: baselines.slope.alarm_s(),
        samples: status.samples,
    }
}

/// Replays a recorded series as a soak of `soak_s` seconds with a declared warm-up of
/// `warmup_s`: the samples in between (seconds after the first) go to a detector with the
/// recommended settings, and the soak's steady-state verdict comes back. `forced_gc`: the heap
/// readings were taken right after forced full GCs, exact as in a soak of a Node target.
pub fn soak_replay(
    observations: &[Observation],
    soak_s: f64,
    warmup_s: f64,
    forced_gc: bool,
) -> SteadyVerdict {
    let mut detector = LeakDetector::new(DetectorConfig {
        exact_heap: forced_gc,
        ..DetectorConfig::recommended()
    });
    if let Some(first) = observations.first().map(|o| o.t_s) {
        for observation in observations
            .iter()
            .filter(|o| o.t_s - first >= warmup_s && o.t_s - first < soak_s)
        {
            detector.push(observation);
        }
    }
    detector.steady_state_verdict()
}

/// One detector's first alarm held against the label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Judgement {
    /// A leak with an alarm at or after its start; delay = alarm − leak start, seconds.
    Caught { delay_s: f64 },
    /// A leak whose first alarm came before the leak started: an alarm on the healthy part,
    /// not a catch. Holds how long before, seconds.
    Early { before_s: f64 },
    /// A leak without an alarm.
    Missed,
    /// A healthy series with an alarm, at this time.
    FalseAlarm { at_s: f64 },
    /// A healthy series without an alarm.
    Quiet,
}

/// Judges `alarm_s` for a series labeled `label` whose leak starts at `leak_start_s` (0 when
/// unknown).
pub fn judge(label: Label, leak_start_s: Option<f64>, alarm_s: Option<f64>) -> Judgement {
    let start = leak_start_s.unwrap_or(0.0);
    match (label, alarm_s) {
        (Label::Leak, Some(at)) if at < start => Judgement::Early {
            before_s: start - at,
        },
        (Label::Leak, Some(at)) => Judgement::Caught {
            delay_s: at - start,
        },
        (Label::Leak, None) => Judgement::Missed,
        (Label::NoLeak, Some(at)) => Judgement::FalseAlarm { at_s: at },
        (Label::NoLeak, None) => Judgement::Quiet,
    }
}

/// The sum of one detector's judgements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub leaks: usize,
    pub caught: usize,
    /// Leaks whose first alarm came before the leak started (not counted as caught).
    pub early: usize,
    pub healthy: usize,
    pub false_alarms: usize,
    /// Delays of the caught leaks, seconds.
    pub delays_s: Vec<f64>,
}

impl Totals {
    pub fn add(&mut self, judgement: Judgement) {
        match judgement {
            Judgement::Caught { delay_s } => {
                self.leaks += 1;
                self.caught += 1;
                self.delays_s.push(delay_s);
            }
            Judgement::Early { .. } => {
                self.leaks += 1;
                self.early += 1;
            }
            Judgement::Missed => self.leaks += 1,
            Judgement::FalseAlarm { .. } => {
                self.healthy += 1;
                self.false_alarms += 1;
            }
            Judgement::Quiet => self.healthy += 1,
        }
    }

    /// Median delay of the caught leaks, seconds.
    pub fn median_delay_s(&self) -> Option<f64> {
        percentile(&self.delays_s, 0.5)
    }

    /// 90th percentile delay of the caught leaks, seconds.
    pub fn p90_delay_s(&self) -> Option<f64> {
        percentile(&self.delays_s, 0.9)
    }
}

/// Nearest-rank percentile (`q` in (0, 1]) of `values`; `None` when empty.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// `"12/20"` with a percentage, or `"-"` when the denominator is zero.
pub fn ratio(count: usize, of: usize) -> String {
    if of == 0 {
        return "-".to_owned();
    }
    format!("{count}/{of} {:.0}%", 100.0 * count as f64 / of as f64)
}

/// Seconds as a whole number, or `"-"`.
pub fn seconds(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |s| format!("{s:.0}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let values = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(percentile(&values, 0.5), Some(3.0));
        assert_eq!(percentile(&values, 0.9), Some(5.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7.0], 0.9), Some(7.0));
    }

    #[test]
    fn judgements_follow_the_label() {
        assert_eq!(
            judge(Label::Leak, Some(100.0), Some(400.0)),
            Judgement::Caught { delay_s: 300.0 }
        );
        assert_eq!(judge(Label::Leak, Some(100.0), None), Judgement::Missed);
        assert_eq!(
            judge(Label::Leak, Some(100.0), Some(40.0)),
            Judgement::Early { before_s: 60.0 }
        );
        assert_eq!(
            judge(Label::Leak, None, Some(0.0)),
            Judgement::Caught { delay_s: 0.0 }
        );
        assert_eq!(
            judge(Label::NoLeak, None, Some(10.0)),
            Judgement::FalseAlarm { at_s: 10.0 }
        );
        assert_eq!(judge(Label::NoLeak, None, None), Judgement::Quiet);
    }

    #[test]
    fn totals_count_and_collect_delays() {
        let mut totals = Totals::default();
        totals.add(Judgement::Caught { delay_s: 10.0 });
        totals.add(Judgement::Missed);
        totals.add(Judgement::Quiet);
        totals.add(Judgement::FalseAlarm { at_s: 3.0 });
        assert_eq!(
            (
                totals.leaks,
                totals.caught,
                totals.healthy,
                totals.false_alarms
            ),
            (2, 1, 2, 1)
        );
        assert_eq!(totals.median_delay_s(), Some(10.0));
        assert_eq!(ratio(1, 2), "1/2 50%");
        assert_eq!(ratio(0, 0), "-");
    }

    #[test]
    fn a_flat_series_raises_no_alarm() {
        let observations = (0..1200).map(|t| Observation {
            t_s: t as f64,
            rss_bytes: 100 << 20,
            heap_used_after_gc_bytes: None,
        });
        let outcome = evaluate(observations, 1 << 30, BaselineInput::Rss);
        assert_eq!(outcome.confirmed_s, None);
        assert_eq!(outcome.growth_s, None);
        assert_eq!(outcome.rising_minima_s, None);
        assert_eq!(outcome.slope_s, None);
        assert_eq!(outcome.samples, 1200);
    }
}
