//! Backpressure by memory: a [`Gate`] that pauses new work above a soft limit and resumes it
//! below 80 % of that limit (the queue pause/resume Node services hand-write), and a
//! [`BatchSizer`] that halves batches above the soft limit and grows them slowly below 60 % of
//! it (additive increase, multiplicative decrease).
//!
//! Both are fed memory readings (from the [`Monitor`](crate::monitor::Monitor), or by hand),
//! and take time as an argument where it matters, so tests drive them with a fake clock.
//! The gate is usable from async code: waiting holds no lock, only a watch receiver.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::GuardError;

/// Where the gate resumes, as a fraction of the soft limit.
pub const RESUME_RATIO: f64 = 0.8;
/// Below this fraction of the soft limit the batch sizer grows.
pub const GROW_BELOW_RATIO: f64 = 0.6;

/// Whether the gate lets new work in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateState {
    /// New work is admitted.
    Open,
    /// New work waits: memory went above the soft limit and has not yet fallen below the
    /// resume mark.
    Paused,
}

/// The admission gate.
#[derive(Debug)]
pub struct Gate {
    soft_limit_bytes: AtomicU64,
    state: watch::Sender<GateState>,
    pauses: AtomicU64,
}

impl Gate {
    /// A gate that pauses above `soft_limit_bytes` and resumes below 80 % of it.
    pub fn new(soft_limit_bytes: u64) -> Result<Gate, GuardError> {
        if soft_limit_bytes == 0 {
            return Err(GuardError::Config(
                "invalid soft limit '0' (expected a number of bytes above zero)".to_owned(),
            ));
        }
        Ok(Gate {
            soft_limit_bytes: AtomicU64::new(soft_limit_bytes),
            state: watch::Sender::new(GateState::Open),
            pauses: AtomicU64::new(0),
        })
    }

    /// The soft limit, bytes.
    pub fn soft_limit_bytes(&self) -> u64 {
        self.soft_limit_bytes.load(Ordering::Relaxed)
    }

    /// Moves the soft limit (e.g. once the budget is known); takes effect at the next reading.
    /// Zero is ignored.
    pub fn set_soft_limit_bytes(&self, soft_limit_bytes: u64) {
        if soft_limit_bytes > 0 {
            self.soft_limit_bytes
                .store(soft_limit_bytes, Ordering::Relaxed);
        }
    }

    /// The mark below which a paused gate opens again, bytes.
    pub fn resume_below_bytes(&self) -> u64 {
        (self.soft_limit_bytes() as f64 * RESUME_RATIO) as u64
    }

    /// Takes a memory reading; returns the new state when it changed.
    pub fn observe(&self, used_bytes: u64) -> Option<GateState> {
        let soft_limit_bytes = self.soft_limit_bytes();
        let resume_below_bytes = self.resume_below_bytes();
        let mut changed = None;
        self.state.send_if_modified(|state| {
            let next = match *state {
                GateState::Open if used_bytes > soft_limit_bytes => GateState::Paused,
                GateState::Paused if used_bytes < resume_below_bytes => GateState::Open,
                unchanged => unchanged,
            };
            if next == *state {
                return false;
            }
            *state = next;
            changed = Some(next);
            true
        });
        match changed {
            Some(GateState::Paused) => {
                self.pauses.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    used_bytes,
                    soft_limit_bytes,
                    "admission paused: memory above the soft limit"
                );
            }
            Some(GateState::Open) => {
                tracing::info!(used_bytes, resume_below_bytes, "admission resumed");
            }
            None => {}
        }
        changed
    }

    /// The current state.
    pub fn state(&self) -> GateState {
        *self.state.borrow()
    }

    /// How many times the gate has paused.
    pub fn pauses(&self) -> u64 {
        self.pauses.load(Ordering::Relaxed)
    }

    /// Whether new work may start now, without waiting.
    pub fn try_admit(&self) -> bool {
        self.state() == GateState::Open
    }

    /// Waits until new work may start (at once while the gate is open). Cancel-safe.
    pub async fn admit(&self) {
        let mut receiver = self.state.subscribe();
        // The sender lives in `self`, which outlives this borrow: the wait cannot fail.
        let _ = receiver.wait_for(|state| *state == GateState::Open).await;
    }

    /// Waits until new work may start, or `cancel` fires (shutdown); true when admitted.
    pub async fn admit_or_cancel(&self, cancel: &CancellationToken) -> bool {
        tokio::select! {
            () = self.admit() => true,
            () = cancel.cancelled() => false,
        }
    }

    /// A receiver of the gate's state, for code that wants to react to changes itself.
    pub fn subscribe(&self) -> watch::Receiver<GateState> {
        self.state.subscribe()
    }
}

/// How a [`BatchSizer`] moves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchConfig {
    /// The smallest batch.
    pub min: usize,
    /// The largest batch.
    pub max: usize,
    /// The first batch size.
    pub initial: usize,
    /// Above this, batches halve, bytes.
    pub soft_limit_bytes: u64,
    /// How much a batch grows at a time.
    pub grow_by: usize,
    /// The least time between two changes of size: memory readings come at an interval, and
    /// one reading must not halve a batch several times.
    pub settle: Duration,
}

impl BatchConfig {
    /// Batches from 1 to `max`, starting at `max / 4`, growing by a 16th of `max` at most once
    /// per `settle` of 5 s.
    pub fn recommended(max: usize, soft_limit_bytes: u64) -> BatchConfig {
        BatchConfig {
            min: 1,
            max,
            initial: (max / 4).max(1),
            soft_limit_bytes,
            grow_by: (max / 16).max(1),
            settle: Duration::from_secs(5),
        }
    }
}

/// An adaptive batch size: halves above the soft limit, grows slowly below 60 % of it, holds
/// in between; always within `min..=max`.
#[derive(Debug, Clone)]
pub struct BatchSizer {
    config: BatchConfig,
    size: usize,
    last_change: Option<Instant>,
}

impl BatchSizer {
    /// A sizer at `config.initial`; refuses bounds that are empty or do not hold it.
    pub fn new(config: BatchConfig) -> Result<BatchSizer, GuardError> {
        let BatchConfig {
            min, max, initial, ..
        } = config;
        if min == 0 || min > max {
            return Err(GuardError::Config(format!(
                "invalid batch bounds '{min}..={max}' (expected 1 <= min <= max)"
            )));
        }
        if !(min..=max).contains(&initial) {
            return Err(GuardError::Config(format!(
                "invalid initial batch '{initial}' (expected {min} to {max})"
            )));
        }
        if config.soft_limit_bytes == 0 || config.grow_by == 0 {
            return Err(GuardError::Config(format!(
                "invalid batch sizer: soft limit '{}' and growth '{}' must be above zero",
                config.soft_limit_bytes, config.grow_by
            )));
        }
        Ok(BatchSizer {
            config,
            size: initial,
            last_change: None,
        })
    }

    /// Moves the soft limit (e.g. to follow the gate's, once the budget is known); zero is
    /// ignored.
    pub fn set_soft_limit_bytes(&mut self, soft_limit_bytes: u64) {
        if soft_limit_bytes > 0 {
            self.config.soft_limit_bytes = soft_limit_bytes;
        }
    }

    /// The batch size to use now.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Takes a memory reading at `now`; returns the batch size to use.
    pub fn observe(&mut self, now: Instant, used_bytes: u64) -> usize {
        let settled = self
            .last_change
            .is_none_or(|last| now.saturating_duration_since(last) >= self.config.settle);
        let soft = self.config.soft_limit_bytes as f64;
        let used = used_bytes as f64;
        let next = if used > soft {
            (self.size / 2).max(self.config.min)
        } else if used < soft * GROW_BELOW_RATIO {
            self.size
                .saturating_add(self.config.grow_by)
                .min(self.config.max)
        } else {
            self.size
        };
        if next != self.size && settled {
            self.size = next;
            self.last_change = Some(now);
        }
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_gate_pauses_above_the_soft_limit_and_resumes_below_80_percent() {
        let gate = Gate::new(100 * MIB).expect("gate");
        assert_eq!(gate.resume_below_bytes(), 80 * MIB);
        let marks = [
            (99 * MIB, GateState::Open),
            (100 * MIB, GateState::Open), // at the limit: not above it
            (101 * MIB, GateState::Paused),
            (90 * MIB, GateState::Paused), // below the limit, above 80 %: still paused
            (80 * MIB, GateState::Paused), // at the resume mark: not below it
            (79 * MIB, GateState::Open),
            (95 * MIB, GateState::Open), // back up, under the limit: stays open
        ];
        for (used, expected) in marks {
            gate.observe(used);
            assert_eq!(gate.state(), expected, "at {} MiB", used / MIB);
            assert_eq!(gate.try_admit(), expected == GateState::Open);
        }
        assert_eq!(gate.pauses(), 1);
    }

    #[test]
    fn observe_reports_only_changes() {
        let gate = Gate::new(10).expect("gate");
        assert_eq!(gate.observe(11), Some(GateState::Paused));
        assert_eq!(gate.observe(12), None);
        assert_eq!(gate.observe(7), Some(GateState::Open));
        assert_eq!(gate.observe(7), None);
    }

    #[tokio::test(start_paused = true)]
    async fn admit_waits_while_paused_and_wakes_on_resume() {
        let gate = std::sync::Arc::new(Gate::new(100).expect("gate"));
        gate.observe(150);
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.admit().await }
        });
        // Paused: the waiter is still waiting a minute later on the fake clock.
        tokio::time::advance(Duration::from_secs(60)).await;
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        // 90 % of the limit: still above the resume mark.
        gate.observe(90);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        gate.observe(50);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("admitted after the resume")
            .expect("the waiter did not panic");
    }

    #[tokio::test(start_paused = true)]
    async fn admit_or_cancel_gives_up_at_shutdown() {
        let gate = Gate::new(100).expect("gate");
        gate.observe(150);
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert!(!gate.admit_or_cancel(&cancel).await);
        gate.observe(10);
        assert!(gate.admit_or_cancel(&CancellationToken::new()).await);
    }

    fn sizer() -> BatchSizer {
        BatchSizer::new(BatchConfig {
            min: 4,
            max: 256,
            initial: 64,
            soft_limit_bytes: 100 * MIB,
            grow_by: 8,
            settle: Duration::from_secs(5),
        })
        .expect("sizer")
    }

    #[test]
    fn batches_halve_above_the_soft_limit_once_per_settle_time() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut sizer = sizer();
        assert_eq!(sizer.observe(at(0), 120 * MIB), 32);
        // The same pressure a second later: the last halving has not settled yet.
        assert_eq!(sizer.observe(at(1), 120 * MIB), 32);
        assert_eq!(sizer.observe(at(5), 120 * MIB), 16);
        assert_eq!(sizer.observe(at(10), 120 * MIB), 8);
        assert_eq!(sizer.observe(at(15), 120 * MIB), 4);
        assert_eq!(sizer.observe(at(20), 120 * MIB), 4, "never below min");
    }

    #[test]
    fn batches_grow_slowly_below_60_percent_and_hold_in_between() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut sizer = sizer();
        // Between 60 % and the soft limit: hold.
        assert_eq!(sizer.observe(at(0), 70 * MIB), 64);
        assert_eq!(sizer.observe(at(100), 99 * MIB), 64);
        // Below 60 %: +8 per settle time, not per reading.
        assert_eq!(sizer.observe(at(101), 50 * MIB), 72);
        assert_eq!(sizer.observe(at(102), 50 * MIB), 72);
        assert_eq!(sizer.observe(at(106), 50 * MIB), 80);
        let mut t = 106;
        while sizer.size() < 256 {
            t += 5;
            sizer.observe(at(t), 10 * MIB);
        }
        assert_eq!(sizer.observe(at(t + 5), 10 * MIB), 256, "never above max");
        // From 72 to 256 by 8 every 5 s takes 23 steps: growth is slow on purpose.
        assert_eq!(t - 106, 5 * 22);
    }

    #[test]
    fn bad_bounds_are_named() {
        let bad = |min, max, initial| {
            BatchSizer::new(BatchConfig {
                min,
                max,
                initial,
                ..BatchConfig::recommended(100, MIB)
            })
            .expect_err("refused")
            .to_string()
        };
        assert!(bad(0, 10, 5).contains("'0..=10'"));
        assert!(bad(20, 10, 15).contains("'20..=10'"));
        assert!(bad(1, 10, 11).contains("'11'"));
        assert!(Gate::new(0).expect_err("zero").to_string().contains("'0'"));
    }
}
