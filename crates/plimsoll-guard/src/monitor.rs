//! The memory monitor of the own process: samples RSS (and jemalloc's figures when that
//! allocator is in use) at an interval, runs the binary's level state machine and leak detector
//! over it (`plimsoll-analysis`, the same marks, holds and hysteresis), and publishes the
//! result as a [`Pressure`] through a watch channel.
//!
//! [`PressureTracker`] is the pure part, fed explicit [`Reading`]s (tests drive it with a fake
//! clock); [`Monitor`] is the task that feeds it from `/proc`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use plimsoll_analysis::{
    DetectorConfig, LeakDetector, LeakEventKind, LeakStatus, Level, LevelConfig, LevelTracker,
    Observation,
};
use plimsoll_http::TargetStatus;
use plimsoll_probe::{Pid, Probe, SampleDepth};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::shutdown::Shutdown;
use crate::GuardError;

/// How the monitor samples and judges.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// The name of this service in `/health` and `/metrics` (the `target` label).
    pub name: String,
    /// The memory budget, bytes; `None` takes the cgroup limit when there is one.
    pub budget_bytes: Option<u64>,
    /// Level marks and holds, as fractions of the budget.
    pub levels: LevelConfig,
    /// The leak detector's settings.
    pub detector: DetectorConfig,
    /// Time between two samples.
    pub interval: Duration,
}

/// The variable `plimsoll run` sets to the target's budget, bytes.
pub const BUDGET_ENV: &str = "PLIMSOLL_BUDGET_BYTES";

impl MonitorConfig {
    /// The binary's defaults: warn at 75 % held 2 min, critical at 85 % held 5 min, the
    /// recommended leak detector, one sample a second; the budget `plimsoll run` gives in
    /// `PLIMSOLL_BUDGET_BYTES`, else the cgroup limit.
    pub fn recommended(name: &str) -> MonitorConfig {
        MonitorConfig {
            name: name.to_owned(),
            budget_bytes: budget_from_env(),
            levels: LevelConfig::recommended(),
            detector: DetectorConfig::recommended(),
            interval: Duration::from_secs(1),
        }
    }
}

/// The budget of `PLIMSOLL_BUDGET_BYTES`, when it is a number of bytes above zero (anything
/// else is ignored with a warning: the cgroup limit still applies).
fn budget_from_env() -> Option<u64> {
    let text = std::env::var(BUDGET_ENV).ok()?;
    match text.trim().parse::<u64>() {
        Ok(bytes) if bytes > 0 => Some(bytes),
        _ => {
            tracing::warn!(value = %text, "ignoring {BUDGET_ENV}: not a number of bytes above zero");
            None
        }
    }
}

/// Allocator figures of one reading, bytes (jemalloc's `stats.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocFigures {
    /// Bytes the program has allocated and not freed.
    pub allocated_bytes: u64,
    /// Bytes in pages the allocator has in use for them.
    pub active_bytes: u64,
    /// Bytes of the allocator's pages resident in memory.
    pub resident_bytes: u64,
}

/// One reading of the process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Seconds on the monitor's clock; non-decreasing.
    pub t_s: f64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// The memory limit of the process's cgroup, bytes, when it has one.
    pub cgroup_limit_bytes: Option<u64>,
    /// The allocator's figures, when jemalloc is the allocator in use.
    pub alloc: Option<AllocFigures>,
}

impl Reading {
    /// A reading of RSS alone at `t_s` (no cgroup limit, no allocator figures), for services
    /// that measure themselves and for tests.
    pub fn rss(t_s: f64, rss_bytes: u64) -> Reading {
        Reading {
            t_s,
            rss_bytes,
            cgroup_limit_bytes: None,
            alloc: None,
        }
    }
}

/// What the monitor last concluded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pressure {
    /// The budget level: ok, warn, critical (breach when RSS reaches the budget).
    pub level: Level,
    /// RSS at the last reading, bytes: what the marks are compared with.
    pub used_bytes: u64,
    /// The budget in force, bytes, once known.
    pub budget_bytes: Option<u64>,
    /// The allocator's figures at the last reading.
    pub alloc: Option<AllocFigures>,
    /// The leak detector's view.
    pub leak: LeakStatus,
    /// Projected seconds until the budget is reached, while a leak is suspected or confirmed.
    pub time_to_budget_s: Option<f64>,
    /// Readings taken so far.
    pub readings: u64,
}

impl Pressure {
    /// RSS as a fraction of the budget, once the budget is known.
    pub fn ratio(&self) -> Option<f64> {
        self.budget_bytes
            .filter(|&b| b > 0)
            .map(|b| self.used_bytes as f64 / b as f64)
    }
}

/// The pure part of the monitor: the level tracker and the leak detector over readings.
#[derive(Debug, Clone)]
pub struct PressureTracker {
    budget_bytes: Option<u64>,
    levels: LevelTracker,
    detector: LeakDetector,
    last: Pressure,
}

impl PressureTracker {
    /// A tracker with no reading yet.
    pub fn new(config: &MonitorConfig) -> PressureTracker {
        let detector = LeakDetector::new(config.detector.clone());
        let last = Pressure {
            level: Level::Ok,
            used_bytes: 0,
            budget_bytes: config.budget_bytes,
            alloc: None,
            leak: detector.status(),
            time_to_budget_s: None,
            readings: 0,
        };
        PressureTracker {
            budget_bytes: config.budget_bytes,
            levels: LevelTracker::new(config.levels),
            detector,
            last,
        }
    }

    /// Takes one reading; returns the pressure after it.
    pub fn observe(&mut self, reading: &Reading) -> Pressure {
        if self.budget_bytes.is_none() {
            self.budget_bytes = reading.cgroup_limit_bytes;
        }
        if let Some(budget) = self.budget_bytes {
            if let Some(change) = self.levels.update(reading.t_s, reading.rss_bytes, budget) {
                tracing::info!(
                    from = change.from.as_str(),
                    to = change.to.as_str(),
                    rss_bytes = reading.rss_bytes,
                    budget_bytes = budget,
                    "memory level changed"
                );
            }
        }
        let observation = Observation {
            t_s: reading.t_s,
            rss_bytes: reading.rss_bytes,
            heap_used_after_gc_bytes: None,
        };
        if let Some(event) = self.detector.push(&observation) {
            let growth = event.growth_bytes_per_s;
            match event.kind {
                LeakEventKind::Suspected => {
                    tracing::warn!(growth_bytes_per_s = growth, "memory leak suspected")
                }
                LeakEventKind::Confirmed => {
                    tracing::warn!(growth_bytes_per_s = growth, "memory leak confirmed")
                }
                LeakEventKind::Cleared => tracing::info!("memory growth stopped: leak cleared"),
            }
        }
        self.last = Pressure {
            level: self.levels.level(),
            used_bytes: reading.rss_bytes,
            budget_bytes: self.budget_bytes,
            alloc: reading.alloc,
            leak: self.detector.status(),
            time_to_budget_s: self
                .budget_bytes
                .and_then(|b| self.detector.time_to_budget_s(b)),
            readings: self.last.readings + 1,
        };
        self.last
    }

    /// The pressure after the last reading.
    pub fn pressure(&self) -> Pressure {
        self.last
    }

    /// The level marks and holds in force.
    pub fn levels(&self) -> LevelConfig {
        self.levels.config()
    }

    /// Replaces the level marks and holds (the thresholds admin action).
    pub fn set_levels(&mut self, levels: LevelConfig) {
        self.levels.set_config(levels);
    }

    /// Forgets the leak history (the `DELETE /api/v1/leaks` admin action).
    pub fn reset_leak_history(&mut self) {
        self.detector = LeakDetector::new(self.detector.config().clone());
        self.last.leak = self.detector.status();
        self.last.time_to_budget_s = None;
    }
}

/// The running monitor: a task sampling the own process until the token is cancelled. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Monitor {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    name: String,
    pid: u32,
    started_unix_ms: i64,
    tracker: Mutex<PressureTracker>,
    publish: watch::Sender<Pressure>,
}

impl Monitor {
    /// Starts sampling on the current tokio runtime, as a task of `shutdown`. Fails when the
    /// own process cannot be read (no `/proc`), or the config is unusable.
    pub fn start(config: MonitorConfig, shutdown: &Shutdown) -> Result<Monitor, GuardError> {
        if config.interval.is_zero() {
            return Err(GuardError::Config(format!(
                "invalid interval '{:?}' (expected more than zero)",
                config.interval
            )));
        }
        if config.budget_bytes == Some(0) {
            return Err(GuardError::Config(
                "invalid budget '0' (expected a number of bytes above zero)".to_owned(),
            ));
        }
        let pid = std::process::id();
        let mut probe = Probe::new(Pid(pid)).map_err(GuardError::Probe)?;
        let monitor = Monitor::detached(&config, pid);
        let mut first = true;
        let started = Instant::now();
        let mut read = move || {
            // The cgroup is read on the first sample only: its limit does not change under a
            // running service often enough to pay for reading it every second.
            let sample = if first {
                probe.sample(SampleDepth::Fast)
            } else {
                probe.sample_with_last_cgroup(SampleDepth::Fast)
            };
            first = false;
            sample.map(|sample| Reading {
                t_s: started.elapsed().as_secs_f64(),
                rss_bytes: sample.rss.0,
                cgroup_limit_bytes: sample.cgroup.as_ref().and_then(|c| c.limit).map(|b| b.0),
                alloc: alloc_figures(),
            })
        };
        let this = monitor.clone();
        let interval = config.interval;
        shutdown.spawn_until_shutdown(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
            loop {
                ticks.tick().await;
                match read() {
                    Ok(reading) => {
                        this.observe(&reading);
                    }
                    Err(error) => tracing::warn!(%error, "cannot read the own process's memory"),
                }
            }
        });
        Ok(monitor)
    }

    /// A monitor that samples nothing by itself: readings come from [`Monitor::observe`] (tests,
    /// or a service that measures itself another way).
    pub fn detached(config: &MonitorConfig, pid: u32) -> Monitor {
        let tracker = PressureTracker::new(config);
        let publish = watch::Sender::new(tracker.pressure());
        Monitor {
            inner: Arc::new(Shared {
                name: config.name.clone(),
                pid,
                started_unix_ms: plimsoll_http::now_unix_ms(),
                tracker: Mutex::new(tracker),
                publish,
            }),
        }
    }

    /// Takes one reading and publishes the pressure after it.
    pub fn observe(&self, reading: &Reading) -> Pressure {
        let pressure = self.with_tracker(|tracker| tracker.observe(reading));
        self.inner.publish.send_replace(pressure);
        pressure
    }

    /// The latest pressure.
    pub fn pressure(&self) -> Pressure {
        *self.inner.publish.borrow()
    }

    /// A receiver that sees every new pressure (`changed().await`).
    pub fn subscribe(&self) -> watch::Receiver<Pressure> {
        self.inner.publish.subscribe()
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The level marks and holds in force.
    pub fn levels(&self) -> LevelConfig {
        self.with_tracker(|tracker| tracker.levels())
    }

    /// Replaces the level marks and holds.
    pub fn set_levels(&self, levels: LevelConfig) {
        self.with_tracker(|tracker| tracker.set_levels(levels));
    }

    /// Forgets the leak history; returns the pressure after it.
    pub fn reset_leak_history(&self) -> Pressure {
        let pressure = self.with_tracker(|tracker| {
            tracker.reset_leak_history();
            tracker.pressure()
        });
        self.inner.publish.send_replace(pressure);
        pressure
    }

    /// This service as `/health` and `/metrics` show it.
    pub fn status(&self) -> TargetStatus {
        let (pressure, levels) = self.with_tracker(|t| (t.pressure(), t.levels()));
        let mut status = TargetStatus::new(&self.inner.name, levels, true);
        status.pid = Some(self.inner.pid);
        status.started_unix_ms = Some(self.inner.started_unix_ms);
        if pressure.readings > 0 {
            status.rss_bytes = Some(pressure.used_bytes);
            status.leak = Some(pressure.leak);
        }
        status.heap_used_bytes = pressure.alloc.map(|a| a.allocated_bytes);
        status.budget_bytes = pressure.budget_bytes;
        status.level = pressure.level;
        status.time_to_budget_s = pressure.time_to_budget_s;
        status
    }

    fn with_tracker<T>(&self, f: impl FnOnce(&mut PressureTracker) -> T) -> T {
        // Held only for a synchronous update, never across an await; a panic inside cannot
        // leave the tracker half-written in a way a later reading does not repair.
        let mut tracker = self
            .inner
            .tracker
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut tracker)
    }
}

/// jemalloc's figures, when it is the allocator in use.
#[cfg(feature = "jemalloc")]
fn alloc_figures() -> Option<AllocFigures> {
    if !crate::alloc::in_use() {
        return None;
    }
    crate::alloc::stats().ok().map(|s| AllocFigures {
        allocated_bytes: s.allocated_bytes.0,
        active_bytes: s.active_bytes.0,
        resident_bytes: s.resident_bytes.0,
    })
}

#[cfg(not(feature = "jemalloc"))]
fn alloc_figures() -> Option<AllocFigures> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use plimsoll_analysis::LeakState;

    const MIB: u64 = 1 << 20;

    fn config() -> MonitorConfig {
        MonitorConfig {
            budget_bytes: Some(1000 * MIB),
            ..MonitorConfig::recommended("svc")
        }
    }

    fn reading(t_s: f64, rss_bytes: u64) -> Reading {
        Reading::rss(t_s, rss_bytes)
    }

    #[test]
    fn levels_follow_the_binarys_marks_and_holds() {
        let mut tracker = PressureTracker::new(&config());
        // 80 % is above the warn mark (75 %) but must hold for 120 s first.
        for t in 0..120 {
            assert_eq!(
                tracker.observe(&reading(f64::from(t), 800 * MIB)).level,
                Level::Ok
            );
        }
        assert_eq!(
            tracker.observe(&reading(121.0, 800 * MIB)).level,
            Level::Warn
        );
        // Hysteresis: 72 % is below the mark but within 5 % of it: still warn.
        assert_eq!(
            tracker.observe(&reading(122.0, 720 * MIB)).level,
            Level::Warn
        );
        assert_eq!(tracker.observe(&reading(123.0, 690 * MIB)).level, Level::Ok);
        // At the budget: breach at once.
        let pressure = tracker.observe(&reading(124.0, 1000 * MIB));
        assert_eq!(pressure.level, Level::Breach);
        assert_eq!(pressure.ratio(), Some(1.0));
        assert_eq!(pressure.readings, 124);
    }

    #[test]
    fn the_cgroup_limit_is_the_budget_when_none_is_given() {
        let mut tracker = PressureTracker::new(&MonitorConfig {
            budget_bytes: None,
            ..MonitorConfig::recommended("svc")
        });
        let mut first = reading(0.0, 10 * MIB);
        assert_eq!(tracker.observe(&first).budget_bytes, None);
        first.cgroup_limit_bytes = Some(64 * MIB);
        assert_eq!(tracker.observe(&first).budget_bytes, Some(64 * MIB));
    }

    #[test]
    fn a_steady_leak_is_suspected_and_can_be_forgotten() {
        let mut tracker = PressureTracker::new(&config());
        let mut pressure = tracker.pressure();
        for t in 0..600u32 {
            pressure = tracker.observe(&reading(f64::from(t), 100 * MIB + u64::from(t) * MIB / 2));
        }
        assert_ne!(pressure.leak.state, LeakState::Clear, "{pressure:?}");
        assert!(pressure.time_to_budget_s.is_some());
        tracker.reset_leak_history();
        assert_eq!(tracker.pressure().leak.state, LeakState::Clear);
    }

    #[tokio::test]
    async fn a_detached_monitor_publishes_and_shows_its_status() {
        let monitor = Monitor::detached(&config(), 42);
        let mut receiver = monitor.subscribe();
        monitor.observe(&reading(0.0, 300 * MIB));
        receiver.changed().await.expect("published");
        assert_eq!(receiver.borrow().used_bytes, 300 * MIB);
        let status = monitor.status();
        assert_eq!(
            (
                status.name.as_str(),
                status.pid,
                status.rss_bytes,
                status.budget_bytes
            ),
            ("svc", Some(42), Some(300 * MIB), Some(1000 * MIB))
        );
        assert!(status.owned);
    }

    #[tokio::test]
    async fn the_running_monitor_reads_this_process_and_stops_at_shutdown() {
        let shutdown = Shutdown::new();
        let config = MonitorConfig {
            interval: Duration::from_millis(10),
            ..config()
        };
        let monitor = Monitor::start(config, &shutdown).expect("start");
        let mut receiver = monitor.subscribe();
        let deadline = Duration::from_secs(10);
        tokio::time::timeout(deadline, receiver.wait_for(|p| p.readings >= 3))
            .await
            .expect("three readings within the deadline")
            .expect("the monitor is alive");
        assert!(
            monitor.pressure().used_bytes > MIB,
            "this process has some RSS"
        );
        let report = shutdown.shutdown(Duration::from_secs(10)).await;
        assert!(report.tasks_stopped, "{report:?}");
    }

    #[test]
    fn unusable_configs_are_refused_with_the_value() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let _guard = runtime.enter();
        let zero = MonitorConfig {
            interval: Duration::ZERO,
            ..config()
        };
        let error = Monitor::start(zero, &Shutdown::new()).expect_err("zero interval");
        assert!(error.to_string().contains("'0ns'"), "{error}");
        let no_budget = MonitorConfig {
            budget_bytes: Some(0),
            ..config()
        };
        let error = Monitor::start(no_budget, &Shutdown::new()).expect_err("zero budget");
        assert!(error.to_string().contains("'0'"), "{error}");
    }
}
