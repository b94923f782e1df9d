//! When to restart a target and when to give up: exponential backoff over the restarts within
//! a sliding window, and a crash-loop limit. Pure: times are passed in, so it is unit-tested.

use std::collections::VecDeque;
use std::time::Duration;

/// How restarts are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RestartPolicy {
    /// Delay before the first restart of a burst; doubled for each further one.
    pub(crate) base_delay: Duration,
    /// The delay never grows past this.
    pub(crate) max_delay: Duration,
    /// More restarts than this within `window` is a crash loop: give up.
    pub(crate) max_restarts: u32,
    /// The sliding window restarts are counted over.
    pub(crate) window: Duration,
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
    /// Times of the restarts still within the window, seconds on the caller's clock.
    times: VecDeque<f64>,
}

impl RestartHistory {
    /// Decides about a restart at `now_s` and, when it is one, remembers it.
    pub(crate) fn decide(&mut self, policy: &RestartPolicy, now_s: f64) -> Decision {
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

    fn policy() -> RestartPolicy {
        RestartPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            max_restarts: 4,
            window: Duration::from_secs(60),
        }
    }

    #[test]
    fn delay_doubles_up_to_the_cap() {
        let delays: Vec<_> = (1..=7)
            .map(|n| backoff_delay(&policy(), n).as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(backoff_delay(&policy(), u32::MAX), Duration::from_secs(2));
    }

    #[test]
    fn a_burst_of_crashes_gives_up_after_the_limit() {
        let mut history = RestartHistory::default();
        let decisions: Vec<_> = (0..6)
            .map(|i| history.decide(&policy(), f64::from(i)))
            .collect();
        assert_eq!(
            decisions[0],
            Decision::Restart {
                attempt: 1,
                delay: Duration::from_millis(100)
            }
        );
        assert_eq!(
            decisions[3],
            Decision::Restart {
                attempt: 4,
                delay: Duration::from_millis(800)
            }
        );
        assert_eq!(decisions[4], Decision::GiveUp { restarts: 4 });
        assert_eq!(decisions[5], Decision::GiveUp { restarts: 4 });
    }

    #[test]
    fn restarts_older_than_the_window_are_forgotten() {
        let mut history = RestartHistory::default();
        for t in [0.0, 10.0, 20.0] {
            history.decide(&policy(), t);
        }
        // At t = 65 the restart at 0 has left the window: this is the third of the burst.
        assert_eq!(
            history.decide(&policy(), 65.0),
            Decision::Restart {
                attempt: 3,
                delay: Duration::from_millis(400)
            }
        );
        assert_eq!(history.len(), 3);
        // Long after, a new burst starts from the base delay.
        assert_eq!(
            history.decide(&policy(), 1000.0),
            Decision::Restart {
                attempt: 1,
                delay: Duration::from_millis(100)
            }
        );
    }
}
