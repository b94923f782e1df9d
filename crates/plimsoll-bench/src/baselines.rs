//! Three naive leak rules that teams write by hand, as online detectors over the same samples
//! as Plimsoll's, so the harness can show what the detector buys. Each reports the time of its
//! first alarm in seconds after the first sample. Sizes here are MiB (2^20 bytes).

use std::collections::VecDeque;

const MIB: u64 = 1024 * 1024;

/// "50 MB in 5 minutes": every 5 minutes after the first sample (t = 300, 600, …) compare the
/// value with the one at the previous check; alarm when it grew by more than 50 MiB.
#[derive(Debug, Clone)]
pub struct GrowthRule {
    interval_s: f64,
    threshold_bytes: u64,
    origin_s: Option<f64>,
    next_check_s: f64,
    previous_bytes: u64,
    alarm_s: Option<f64>,
}

impl GrowthRule {
    pub fn new() -> Self {
        GrowthRule {
            interval_s: 300.0,
            threshold_bytes: 50 * MIB,
            origin_s: None,
            next_check_s: 0.0,
            previous_bytes: 0,
            alarm_s: None,
        }
    }

    /// Feeds one sample (time in seconds, value in bytes).
    pub fn push(&mut self, t_s: f64, value: u64) {
        let origin = *self.origin_s.get_or_insert_with(|| {
            self.previous_bytes = value;
            self.next_check_s = self.interval_s;
            t_s
        });
        let since = t_s - origin;
        if since < self.next_check_s {
            return;
        }
        if self.alarm_s.is_none()
            && value > self.previous_bytes.saturating_add(self.threshold_bytes)
        {
            self.alarm_s = Some(since);
        }
        self.previous_bytes = value;
        while self.next_check_s <= since {
            self.next_check_s += self.interval_s;
        }
    }

    /// First alarm, seconds after the first sample.
    pub fn alarm_s(&self) -> Option<f64> {
        self.alarm_s
    }
}

impl Default for GrowthRule {
    fn default() -> Self {
        GrowthRule::new()
    }
}

/// memwatch-style: the minimum of each 10 s window (aligned on the first sample); alarm when 5
/// consecutive window minima each exceed the one before.
#[derive(Debug, Clone)]
pub struct RisingMinimaRule {
    window_s: f64,
    needed_rises: u32,
    origin_s: Option<f64>,
    window: u64,
    window_min: u64,
    previous_min: Option<u64>,
    rises: u32,
    alarm_s: Option<f64>,
}

impl RisingMinimaRule {
    pub fn new() -> Self {
        RisingMinimaRule {
            window_s: 10.0,
            needed_rises: 5,
            origin_s: None,
            window: 0,
            window_min: u64::MAX,
            previous_min: None,
            rises: 0,
            alarm_s: None,
        }
    }

    /// Feeds one sample (time in seconds, value in bytes).
    pub fn push(&mut self, t_s: f64, value: u64) {
        let origin = *self.origin_s.get_or_insert(t_s);
        let since = t_s - origin;
        let window = (since / self.window_s).floor() as u64;
        if window != self.window {
            self.close_window(since);
            self.window = window;
            self.window_min = u64::MAX;
        }
        self.window_min = self.window_min.min(value);
    }

    fn close_window(&mut self, now_s: f64) {
        let min = self.window_min;
        if min == u64::MAX {
            return;
        }
        self.rises = match self.previous_min {
            Some(previous) if min > previous => self.rises + 1,
            _ => 0,
        };
        self.previous_min = Some(min);
        if self.rises >= self.needed_rises && self.alarm_s.is_none() {
            self.alarm_s = Some(now_s);
        }
    }

    /// First alarm, seconds after the first sample.
    pub fn alarm_s(&self) -> Option<f64> {
        self.alarm_s
    }
}

impl Default for RisingMinimaRule {
    fn default() -> Self {
        RisingMinimaRule::new()
    }
}

/// "Slope to budget": every 10 s, the least-squares slope over the last 5 minutes of samples;
/// when the current value plus one hour of that slope reaches the budget, a hold starts; alarm
/// when the condition has held at every evaluation for 5 minutes.
#[derive(Debug, Clone)]
pub struct SlopeRule {
    budget_bytes: f64,
    window_s: f64,
    evaluate_every_s: f64,
    horizon_s: f64,
    hold_s: f64,
    origin_s: Option<f64>,
    samples: VecDeque<(f64, f64)>,
    last_evaluation: Option<u64>,
    hold_since_s: Option<f64>,
    alarm_s: Option<f64>,
}

impl SlopeRule {
    pub fn new(budget_bytes: u64) -> Self {
        SlopeRule {
            budget_bytes: budget_bytes as f64,
            window_s: 300.0,
            evaluate_every_s: 10.0,
            horizon_s: 3600.0,
            hold_s: 300.0,
            origin_s: None,
            samples: VecDeque::new(),
            last_evaluation: None,
            hold_since_s: None,
            alarm_s: None,
        }
    }

    /// Feeds one sample (time in seconds, value in bytes).
    pub fn push(&mut self, t_s: f64, value: u64) {
        let origin = *self.origin_s.get_or_insert(t_s);
        let since = t_s - origin;
        self.samples.push_back((since, value as f64));
        while self
            .samples
            .front()
            .is_some_and(|&(t, _)| t < since - self.window_s)
        {
            self.samples.pop_front();
        }
        let evaluation = (since / self.evaluate_every_s).floor() as u64;
        if self.last_evaluation == Some(evaluation) {
            return;
        }
        self.last_evaluation = Some(evaluation);
        let full = self
            .samples
            .front()
            .is_some_and(|&(t, _)| since - t >= self.window_s - self.evaluate_every_s);
        let projected = match (full, least_squares_slope(&self.samples)) {
            (true, Some(slope)) if slope > 0.0 => {
                value as f64 + slope * self.horizon_s >= self.budget_bytes
            }
            _ => false,
        };
        if !projected {
            self.hold_since_s = None;
            return;
        }
        let hold_since = *self.hold_since_s.get_or_insert(since);
        if since - hold_since >= self.hold_s && self.alarm_s.is_none() {
            self.alarm_s = Some(since);
        }
    }

    /// First alarm, seconds after the first sample.
    pub fn alarm_s(&self) -> Option<f64> {
        self.alarm_s
    }
}

/// Least-squares slope of `(t, v)` points, in v per unit of t; `None` with fewer than two
/// distinct times. Centred on the means, so large times and values keep their precision.
fn least_squares_slope(points: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_t = points.iter().map(|&(t, _)| t).sum::<f64>() / n;
    let mean_v = points.iter().map(|&(_, v)| v).sum::<f64>() / n;
    let (mut stt, mut stv) = (0.0, 0.0);
    for &(t, v) in points {
        stt += (t - mean_t) * (t - mean_t);
        stv += (t - mean_t) * (v - mean_v);
    }
    (stt > 0.0).then(|| stv / stt)
}

/// The three rules side by side, fed the same samples.
#[derive(Debug, Clone)]
pub struct Baselines {
    pub growth: GrowthRule,
    pub rising_minima: RisingMinimaRule,
    pub slope: SlopeRule,
}

impl Baselines {
    /// The rules, with `budget_bytes` for the slope rule.
    pub fn new(budget_bytes: u64) -> Self {
        Baselines {
            growth: GrowthRule::new(),
            rising_minima: RisingMinimaRule::new(),
            slope: SlopeRule::new(budget_bytes),
        }
    }

    /// Feeds one sample to every rule.
    pub fn push(&mut self, t_s: f64, value: u64) {
        self.growth.push(t_s, value);
        self.rising_minima.push(t_s, value);
        self.slope.push(t_s, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = MIB;

    fn feed(values: impl Iterator<Item = (f64, u64)>, mut push: impl FnMut(f64, u64)) {
        for (t, v) in values {
            push(t, v);
        }
    }

    #[test]
    fn growth_rule_fires_at_the_first_check_past_50_mib() {
        let mut rule = GrowthRule::new();
        // 11 MiB/min: 55 MiB per 5 minutes, checked at 300 s.
        feed(
            (0..1000).map(|t| (t as f64, 100 * MB + t * 11 * MB / 60)),
            |t, v| rule.push(t, v),
        );
        assert_eq!(rule.alarm_s(), Some(300.0));

        let mut quiet = GrowthRule::new();
        feed(
            (0..1000).map(|t| (t as f64, 100 * MB + t * 9 * MB / 60)),
            |t, v| quiet.push(t, v),
        );
        assert_eq!(quiet.alarm_s(), None);
    }

    #[test]
    fn growth_rule_ignores_rises_between_checks() {
        let mut rule = GrowthRule::new();
        // A 200 MiB spike from 100 to 200 s is over by the check at 300 s.
        feed(
            (0..700).map(|t| {
                (
                    t as f64,
                    if (100..200).contains(&t) {
                        300 * MB
                    } else {
                        100 * MB
                    },
                )
            }),
            |t, v| rule.push(t, v),
        );
        assert_eq!(rule.alarm_s(), None);
    }

    #[test]
    fn rising_minima_needs_five_rises_in_a_row() {
        let mut rule = RisingMinimaRule::new();
        // Each 10 s window's minimum is one more than the last: 5 rises once window 5 closes,
        // which the first sample of window 6 (t = 60) shows.
        feed((0..100).map(|t| (t as f64, 1000 + t / 10)), |t, v| {
            rule.push(t, v)
        });
        assert_eq!(rule.alarm_s(), Some(60.0));

        let mut flat = RisingMinimaRule::new();
        // Rises 4 times, falls back, rises 4 times, ...
        feed(
            (0..1000).map(|t| (t as f64, 1000 + (t / 10) % 5)),
            |t, v| flat.push(t, v),
        );
        assert_eq!(flat.alarm_s(), None);
    }

    #[test]
    fn slope_rule_holds_for_five_minutes_before_alarming() {
        // 1 MiB/s towards a budget 1 GiB above: projects past it within the hour from the
        // start, the window is full at 290 s, the hold lasts 300 s more.
        let mut rule = SlopeRule::new(1124 * MB);
        feed((0..2000).map(|t| (t as f64, 100 * MB + t * MB)), |t, v| {
            rule.push(t, v)
        });
        assert_eq!(rule.alarm_s(), Some(590.0));

        let mut slow = SlopeRule::new(1124 * MB);
        // 0.1 MiB/s projects 360 MiB in an hour: short of the budget for a long time.
        feed(
            (0..1000).map(|t| (t as f64, 100 * MB + t * MB / 10)),
            |t, v| slow.push(t, v),
        );
        assert_eq!(slow.alarm_s(), None);
    }

    #[test]
    fn least_squares_slope_of_a_line() {
        let points: VecDeque<(f64, f64)> = (0..10)
            .map(|t| (1e7 + t as f64, 5e9 + 3.0 * t as f64))
            .collect();
        let slope = least_squares_slope(&points).unwrap_or(f64::NAN);
        assert!((slope - 3.0).abs() < 1e-6, "{slope}");
    }
}
