//! What a supervisor knows about one target since it (re)started: its budget, its budget level
//! and its leak detector. Fed one sample at a time, it emits the level and leak events and says
//! when the budget is breached. Shared by `run` (which restarts) and `watch` (which only tells).

use std::time::Duration;

use plimsoll_analysis::{
    DetectorConfig, LeakDetector, LeakEventKind, LeakStatus, Level, LevelConfig, LevelTracker,
    Observation,
};
use plimsoll_probe::Sample;
use tokio::time::Instant;

use super::{now_unix_ms, EventOutput};
use crate::agent::HeapFigures;
use crate::event::{Event, EventKind, LeakChange};
use crate::registry::Registry;
use crate::units::human_bytes;

/// One target's levels and leak detector.
#[derive(Debug)]
pub(crate) struct Monitor {
    name: String,
    budget: Option<u64>,
    warmup: Duration,
    started: Instant,
    levels: LevelTracker,
    detector: LeakDetector,
}

impl Monitor {
    /// A fresh monitor for a target that starts now. With no `budget`, the cgroup limit of the
    /// first sample becomes the budget.
    pub(crate) fn new(
        name: &str,
        budget: Option<u64>,
        levels: LevelConfig,
        warmup: Duration,
        detector: DetectorConfig,
    ) -> Monitor {
        Monitor {
            name: name.to_owned(),
            budget,
            warmup,
            started: Instant::now(),
            levels: LevelTracker::new(levels),
            detector: LeakDetector::new(detector),
        }
    }

    /// The budget in force, once known.
    pub(crate) fn budget(&self) -> Option<u64> {
        self.budget
    }

    /// The current level.
    pub(crate) fn level(&self) -> Level {
        self.levels.level()
    }

    /// Replaces the level marks and holds (the thresholds admin action).
    pub(crate) fn set_levels(&mut self, config: LevelConfig) {
        self.levels.set_config(config);
    }

    /// The leak detector's current view.
    pub(crate) fn leak(&self) -> LeakStatus {
        self.detector.status()
    }

    /// Projected seconds until the budget is reached, while a leak is suspected or confirmed.
    pub(crate) fn time_to_budget_s(&self) -> Option<f64> {
        self.budget.and_then(|b| self.detector.time_to_budget_s(b))
    }

    /// Feeds one sample taken at `t_s` (seconds on the supervisor's clock): records it, updates
    /// the level and the leak detector, emits their events. Returns true on a budget breach.
    /// Within the warm-up the sample is recorded but neither a breach nor a leak can come of it.
    pub(crate) fn observe(
        &mut self,
        t_s: f64,
        sample: &Sample,
        heap: Option<&HeapFigures>,
        output: &mut dyn EventOutput,
    ) -> bool {
        self.observe_at(t_s, now_unix_ms(), sample, heap, output)
    }

    /// [`Monitor::observe`] of a sample taken at `t_unix_ms` by another clock (a remote
    /// reporter's), which the store and the events keep.
    pub(crate) fn observe_at(
        &mut self,
        t_s: f64,
        t_unix_ms: i64,
        sample: &Sample,
        heap: Option<&HeapFigures>,
        output: &mut dyn EventOutput,
    ) -> bool {
        if self.budget.is_none() {
            self.budget = sample.cgroup.as_ref().and_then(|c| c.limit).map(|b| b.0);
            if let Some(b) = self.budget {
                tracing::info!(target_name = %self.name, budget_bytes = b, "budget {} from the cgroup limit", human_bytes(b as f64));
            }
        }
        let rss = sample.rss.0;
        output.sample(
            &self.name,
            t_unix_ms,
            sample,
            heap,
            self.budget,
            self.levels.level(),
        );
        if self.started.elapsed() < self.warmup {
            return false;
        }
        let mut breach = false;
        if let Some(budget) = self.budget {
            if let Some(change) = self.levels.update(t_s, rss, budget) {
                self.emit(
                    output,
                    t_unix_ms,
                    EventKind::LevelChanged {
                        from: change.from.as_str(),
                        to: change.to.as_str(),
                        rss_bytes: rss,
                        budget_bytes: budget,
                    },
                );
                if change.to == Level::Breach {
                    self.emit(
                        output,
                        t_unix_ms,
                        EventKind::BudgetBreach {
                            rss_bytes: rss,
                            budget_bytes: budget,
                        },
                    );
                    breach = true;
                }
            }
        }
        let observation = Observation {
            t_s,
            rss_bytes: rss,
            heap_used_after_gc_bytes: heap.and_then(|h| h.heap_used_after_gc_bytes),
        };
        if let Some(leak) = self.detector.push(&observation) {
            let state = match leak.kind {
                LeakEventKind::Suspected => "suspected",
                LeakEventKind::Confirmed => "confirmed",
                LeakEventKind::Cleared => "cleared",
            };
            let change = LeakChange {
                state,
                growth_bytes_per_s: leak.growth_bytes_per_s,
                confidence: leak.confidence,
                time_to_budget_s: self.budget.and_then(|b| self.detector.time_to_budget_s(b)),
                signal: leak.signal.as_str(),
            };
            self.emit(output, t_unix_ms, EventKind::Leak(change));
        }
        breach
    }

    /// Publishes what this monitor knows after `sample` to the target's view in `registry`:
    /// the one place `run`, `up` and `watch` publish from.
    pub(crate) fn publish(&self, registry: &Registry, sample: &Sample, heap: Option<&HeapFigures>) {
        registry.update(&self.name, |view| {
            view.status.rss_bytes = Some(sample.rss.0);
            view.status.heap_used_bytes = heap.map(|h| h.heap_used_bytes);
            view.status.heap_used_after_gc_bytes = heap.and_then(|h| h.heap_used_after_gc_bytes);
            view.status.budget_bytes = self.budget;
            view.status.level = self.level();
            view.status.leak = Some(self.leak());
            view.status.time_to_budget_s = self.time_to_budget_s();
        });
    }

    fn emit(&self, output: &mut dyn EventOutput, t_unix_ms: i64, kind: EventKind) {
        output.emit(&Event {
            t_unix_ms,
            target: self.name.clone(),
            kind,
        });
    }
}
