//! Budget levels: ok → warn → critical → breach, each entered only after the usage has held
//! above its mark for a while, and left only below a lower mark (hysteresis), so that a level
//! means something and does not flap.

/// How close a target is to its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Below the warn mark, or not above it for long.
    Ok,
    /// Above the warn mark for the warn hold.
    Warn,
    /// Above the critical mark for the critical hold.
    Critical,
    /// At or above the budget: time for a graceful restart.
    Breach,
}

impl Level {
    /// The lowercase name used in JSON, metrics and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Critical => "critical",
            Level::Breach => "breach",
        }
    }
}

/// Marks and holds. Marks are fractions of the budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelConfig {
    /// Usage above this fraction of the budget, held for `warn_hold_s`, is a warning.
    pub warn: f64,
    /// Seconds the usage must stay above the warn mark.
    pub warn_hold_s: f64,
    /// Usage above this fraction of the budget, held for `critical_hold_s`, is critical.
    pub critical: f64,
    /// Seconds the usage must stay above the critical mark.
    pub critical_hold_s: f64,
    /// A level is left only when the usage falls this fraction of the budget below its mark.
    pub hysteresis: f64,
}

impl LevelConfig {
    /// The documented defaults: warn at 75 % held 2 minutes, critical at 85 % held 5 minutes,
    /// breach at 100 %, and 5 % of the budget of hysteresis.
    pub fn recommended() -> Self {
        LevelConfig {
            warn: 0.75,
            warn_hold_s: 120.0,
            critical: 0.85,
            critical_hold_s: 300.0,
            hysteresis: 0.05,
        }
    }
}

/// A change of level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelChange {
    /// The level before.
    pub from: Level,
    /// The level now.
    pub to: Level,
    /// Time of the reading that caused it, seconds.
    pub t_s: f64,
    /// Usage as a fraction of the budget at that reading.
    pub ratio: f64,
}

/// The level state machine of one target. Pure: times are passed in.
#[derive(Debug, Clone)]
pub struct LevelTracker {
    config: LevelConfig,
    level: Level,
    above_warn_since: Option<f64>,
    above_critical_since: Option<f64>,
}

impl LevelTracker {
    pub fn new(config: LevelConfig) -> Self {
        LevelTracker {
            config,
            level: Level::Ok,
            above_warn_since: None,
            above_critical_since: None,
        }
    }

    /// The current level.
    pub fn level(&self) -> Level {
        self.level
    }

    /// The marks and holds in force.
    pub fn config(&self) -> LevelConfig {
        self.config
    }

    /// Replaces the marks and holds (the thresholds admin action); the level is re-derived at
    /// the next reading.
    pub fn set_config(&mut self, config: LevelConfig) {
        self.config = config;
    }

    /// Back to `Ok` with no history, e.g. after the target restarted.
    pub fn reset(&mut self) {
        self.level = Level::Ok;
        self.above_warn_since = None;
        self.above_critical_since = None;
    }

    /// Takes one reading of `used_bytes` against `budget_bytes` at time `t_s`; returns the
    /// change when the level moved. A zero budget means no budget: always `Ok`.
    pub fn update(&mut self, t_s: f64, used_bytes: u64, budget_bytes: u64) -> Option<LevelChange> {
        let ratio = if budget_bytes == 0 {
            0.0
        } else {
            used_bytes as f64 / budget_bytes as f64
        };
        let c = self.config;
        self.above_warn_since = held_since(self.above_warn_since, ratio >= c.warn, t_s);
        self.above_critical_since = held_since(self.above_critical_since, ratio >= c.critical, t_s);
        let held = |since: Option<f64>, hold: f64| since.is_some_and(|s| t_s - s >= hold);
        let reached = if ratio >= 1.0 {
            Level::Breach
        } else if held(self.above_critical_since, c.critical_hold_s) {
            Level::Critical
        } else if held(self.above_warn_since, c.warn_hold_s) {
            Level::Warn
        } else {
            Level::Ok
        };
        // The highest level whose lower mark the usage is still above: a level is kept until
        // the usage falls below it.
        let kept = if ratio >= 1.0 - c.hysteresis {
            Level::Breach
        } else if ratio >= c.critical - c.hysteresis {
            Level::Critical
        } else if ratio >= c.warn - c.hysteresis {
            Level::Warn
        } else {
            Level::Ok
        };
        let level = reached.max(self.level.min(kept));
        if level == self.level {
            return None;
        }
        let from = std::mem::replace(&mut self.level, level);
        Some(LevelChange {
            from,
            to: level,
            t_s,
            ratio,
        })
    }
}

fn held_since(since: Option<f64>, above: bool, t_s: f64) -> Option<f64> {
    match (since, above) {
        (_, false) => None,
        (Some(s), true) => Some(s),
        (None, true) => Some(t_s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: u64 = 1000;

    fn tracker() -> LevelTracker {
        LevelTracker::new(LevelConfig::recommended())
    }

    /// Feeds `(t, used)` readings and returns the levels after each.
    fn run(tracker: &mut LevelTracker, readings: &[(f64, u64)]) -> Vec<Level> {
        readings
            .iter()
            .map(|&(t, used)| {
                tracker.update(t, used, BUDGET);
                tracker.level()
            })
            .collect()
    }

    #[test]
    fn warn_needs_the_hold() {
        let mut t = tracker();
        let levels = run(
            &mut t,
            &[(0.0, 800), (60.0, 800), (119.0, 800), (120.0, 800)],
        );
        assert_eq!(levels, [Level::Ok, Level::Ok, Level::Ok, Level::Warn]);
    }

    #[test]
    fn a_dip_below_the_mark_restarts_the_hold() {
        let mut t = tracker();
        let levels = run(
            &mut t,
            &[
                (0.0, 800),
                (100.0, 700),
                (110.0, 800),
                (200.0, 800),
                (230.0, 800),
            ],
        );
        assert_eq!(
            levels,
            [Level::Ok, Level::Ok, Level::Ok, Level::Ok, Level::Warn]
        );
    }

    #[test]
    fn critical_after_its_own_hold_and_breach_at_once() {
        let mut t = tracker();
        let levels = run(
            &mut t,
            &[
                (0.0, 900),
                (120.0, 900),
                (299.0, 900),
                (300.0, 900),
                (301.0, 1000),
            ],
        );
        assert_eq!(
            levels,
            [
                Level::Ok,
                Level::Warn,
                Level::Warn,
                Level::Critical,
                Level::Breach
            ]
        );
    }

    #[test]
    fn levels_go_down_only_below_the_lower_mark() {
        let mut t = tracker();
        run(&mut t, &[(0.0, 900), (300.0, 900)]);
        assert_eq!(t.level(), Level::Critical);
        // 82 % is below the critical mark but above critical - hysteresis: stays critical.
        assert_eq!(run(&mut t, &[(301.0, 820)]), [Level::Critical]);
        // 79 % drops to warn (above warn's lower mark 70 %).
        assert_eq!(run(&mut t, &[(302.0, 790)]), [Level::Warn]);
        assert_eq!(run(&mut t, &[(303.0, 650)]), [Level::Ok]);
    }

    #[test]
    fn breach_is_left_below_its_lower_mark() {
        let mut t = tracker();
        let change = t.update(0.0, 1200, BUDGET).expect("change");
        assert_eq!((change.from, change.to), (Level::Ok, Level::Breach));
        assert_eq!(run(&mut t, &[(1.0, 960)]), [Level::Breach]);
        // Not held above critical long enough to be critical: straight to ok.
        assert_eq!(run(&mut t, &[(2.0, 500)]), [Level::Ok]);
    }

    #[test]
    fn no_budget_is_always_ok() {
        let mut t = tracker();
        assert_eq!(t.update(0.0, u64::MAX, 0), None);
        assert_eq!(t.level(), Level::Ok);
    }

    #[test]
    fn reset_forgets_the_holds() {
        let mut t = tracker();
        run(&mut t, &[(0.0, 800), (119.0, 800)]);
        t.reset();
        assert_eq!(run(&mut t, &[(120.0, 800)]), [Level::Ok]);
    }
}
