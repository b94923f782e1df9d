//! When to restart a target and when to give up: exponential backoff over the restarts within
//! a sliding window of the target's run time, and a crash-loop limit. Pure: the caller passes
//! how long each run lasted, so it is unit-tested with the times its own delays imply.
//!
//! The window measures run time, not wall time (PM2's `min_uptime` idea): the backoff delays
//! between runs do not count, so a command that fails at once reaches the limit after
//! `max_restarts` restarts however long the delays grow, while a service that runs for minutes
//! between crashes is restarted forever.

use std::collections::VecDeque;
use std::time::Duration;

/// The delay before the first restart of a burst.
pub(crate) const BASE_DELAY: Duration = Duration::from_millis(100);
/// The longest delay between two restarts. With the defaults (10 restarts) a command that
/// fails at once gives up after 100 + 200 + 400 + 800 + 6 × 1000 ms = 7.5 s of delays.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(1);

/// How restarts are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RestartPolicy {
    /// Delay before the first restart of a burst; doubled for each further one.
    pub(crate) base_delay: Duration,
    /// The delay never grows past this.
    pub(crate) max_delay: Duration,
    /// More restarts than this within `window` of run time is a crash loop: give up.
    pub(crate) max_restarts: u32,
    /// The sliding window restarts are counted over, in time the target spent running.
    pub(crate) window: Duration,
}

impl RestartPolicy {
    /// The documented delays with the given limit and window.
    pub(crate) fn with_limit(max_restarts: u32, window: Duration) -> RestartPolicy {
        RestartPolicy {
            base_delay: BASE_DELAY,
            max_delay: MAX_DELAY,
            max_restarts,
            window,
        }
    }
}

/// What to do after the target stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Restart after `delay`; this is restart number `attempt` within the window.
    Restart { attempt: u32, delay: Duration },
    /// The crash-loop limit is reached after `restarts` restarts within the window.
    GiveUp { restarts: u32 },
}

/// The delay before restart number `attempt` (1-based) of a burst:
/// `base_delay × 2^(attempt − 1)`, at most `max_delay`.
pub(crate) fn backoff_delay(policy: &RestartPolicy, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(32);
    policy
        .base_delay
        .saturating_mul(1u32 << doublings.min(31))
        .min(policy.max_delay)
}

/// The restarts of one target within the window.
#[derive(Debug, Clone, Default)]
pub(crate) struct RestartHistory {
    /// The target's run time so far, summed over its runs, seconds.
    run_time_s: f64,
    /// Run times (on the clock above) of the restarts still within the window, seconds.
    times: VecDeque<f64>,
}

impl RestartHistory {
    /// Decides about a restart after a run that lasted `ran` (zero for a start that failed)
    /// and, when it is one, remembers it.
    pub(crate) fn decide(&mut self, policy: &RestartPolicy, ran: Duration) -> Decision {
        self.run_time_s += ran.as_secs_f64();
        let now_s = self.run_time_s;
        let window = policy.window.as_secs_f64();
        while self.times.front().is_some_and(|&t| now_s - t >= window) {
            self.times.pop_front();
        }
        let attempt = self.times.len() as u32 + 1;
        if attempt > policy.max_restarts {
            return Decision::GiveUp {
                restarts: self.times.len() as u32,
            };
        }
        self.times.push_back(now_s);
        Decision::Restart {
            attempt,
            delay: backoff_delay(policy, attempt),
        }
    }

    /// Restarts counted in the window so far.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.times.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults of `run` and `up`: 10 restarts within 60 s of run time.
    fn defaults() -> RestartPolicy {
        RestartPolicy::with_limit(10, Duration::from_secs(60))
    }

    #[test]
    fn delay_doubles_up_to_the_cap() {
        let delays: Vec<_> = (1..=7)
            .map(|n| backoff_delay(&defaults(), n).as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(backoff_delay(&defaults(), u32::MAX), MAX_DELAY);
    }

    /// Replays a target whose every run lasts `ran`, each restart after the delay the policy
    /// chose; returns the decisions and the wall time from the first start to the last one.
    fn replay(policy: &RestartPolicy, ran: Duration, crashes: usize) -> (Vec<Decision>, Duration) {
        let mut history = RestartHistory::default();
        let mut wall = Duration::ZERO;
        let mut decisions = Vec::new();
        for _ in 0..crashes {
            wall += ran;
            let decision = history.decide(policy, ran);
            if let Decision::Restart { delay, .. } = decision {
                wall += delay;
            }
            decisions.push(decision);
            if matches!(decision, Decision::GiveUp { .. }) {
                break;
            }
        }
        (decisions, wall)
    }

    #[test]
    fn a_command_that_fails_at_once_gives_up_with_the_defaults_within_8_s() {
        // `false` runs for a few milliseconds; the delays are what the policy itself returns.
        let (decisions, wall) = replay(&defaults(), Duration::from_millis(5), 100);
        assert_eq!(decisions.len(), 11, "{decisions:?}");
        assert_eq!(decisions[10], Decision::GiveUp { restarts: 10 });
        assert_eq!(
            decisions[9],
            Decision::Restart {
                attempt: 10,
                delay: MAX_DELAY
            }
        );
        assert!(wall < Duration::from_secs(8), "{wall:?}");
        assert!(wall >= Duration::from_millis(7500), "{wall:?}");
    }

    #[test]
    fn the_limit_holds_even_with_delays_longer_than_the_window() {
        // Delays of 30 s each would span 5 minutes of wall time for 10 restarts: still a loop.
        let policy = RestartPolicy {
            max_delay: Duration::from_secs(30),
            ..defaults()
        };
        let (decisions, wall) = replay(&policy, Duration::from_millis(50), 100);
        assert_eq!(decisions.last(), Some(&Decision::GiveUp { restarts: 10 }));
        assert!(wall > policy.window, "{wall:?}");
    }

    #[test]
    fn a_service_that_runs_longer_than_the_window_between_crashes_is_restarted_forever() {
        let (decisions, _) = replay(&defaults(), Duration::from_secs(61), 50);
        assert_eq!(decisions.len(), 50);
        assert!(decisions.iter().all(|d| *d
            == Decision::Restart {
                attempt: 1,
                delay: BASE_DELAY
            }));
    }

    #[test]
    fn crashes_every_few_seconds_of_run_time_give_up_once_the_window_holds_too_many() {
        // Each run lasts 5 s: 10 restarts span 50 s of run time, within the 60 s window.
        let (decisions, _) = replay(&defaults(), Duration::from_secs(5), 100);
        assert_eq!(decisions.len(), 11);
        assert_eq!(decisions[10], Decision::GiveUp { restarts: 10 });
        // Runs of 7 s: the window never holds more than 9 restarts (9 × 7 = 63 s).
        let (decisions, _) = replay(&defaults(), Duration::from_secs(7), 100);
        assert_eq!(decisions.len(), 100);
    }

    #[test]
    fn restarts_older_than_the_window_are_forgotten() {
        let mut history = RestartHistory::default();
        for ran in [0, 10, 10] {
            history.decide(&defaults(), Duration::from_secs(ran));
        }
        // 45 s more of run time: the restart at 0 s has left the window, two remain.
        assert_eq!(
            history.decide(&defaults(), Duration::from_secs(45)),
            Decision::Restart {
                attempt: 3,
                delay: Duration::from_millis(400)
            }
        );
        assert_eq!(history.len(), 3);
        // Long after, a new burst starts from the base delay.
        assert_eq!(
            history.decide(&defaults(), Duration::from_secs(1000)),
            Decision::Restart {
                attempt: 1,
                delay: BASE_DELAY
            }
        );
    }
}
