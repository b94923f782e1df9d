//! The pieces wired together: [`Guard::start`] starts the monitor and a reaction task that
//! feeds the admission gate with each reading and, on the blocking pool, shrinks the registered
//! caches when the level turns critical; [`Guard::router`] serves it all over HTTP.

use std::path::PathBuf;
use std::sync::Arc;

use plimsoll_analysis::Level;
use plimsoll_http::AdminToken;

use crate::admission::Gate;
use crate::cache::CacheRegistry;
use crate::monitor::{Monitor, MonitorConfig, Pressure};
use crate::shutdown::Shutdown;
use crate::GuardError;

/// What a guarded service runs with.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// The monitor: name, budget, marks, interval.
    pub monitor: MonitorConfig,
    /// Above this RSS the gate pauses new work, bytes; `None` puts it at the warn mark of the
    /// budget once the budget is known.
    pub soft_limit_bytes: Option<u64>,
    /// When the level turns critical, each registered cache is shrunk to this fraction of its
    /// byte bound (0 empties them).
    pub shrink_to: f64,
    /// The bearer token of the admin routes; `None` turns them off.
    pub admin_token: AdminToken,
    /// Where the snapshot admin action writes heap profiles.
    pub profile_dir: PathBuf,
}

impl GuardConfig {
    /// The binary's marks and detector, a soft limit at the warn mark, caches halved when
    /// critical, the admin token of `PLIMSOLL_ADMIN_TOKEN`, profiles in the temp dir.
    pub fn recommended(name: &str) -> GuardConfig {
        GuardConfig {
            monitor: MonitorConfig::recommended(name),
            soft_limit_bytes: None,
            shrink_to: 0.5,
            admin_token: AdminToken::from_env(),
            profile_dir: std::env::temp_dir(),
        }
    }
}

/// A guarded service: its monitor, gate, caches and shutdown. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Guard {
    pub(crate) monitor: Monitor,
    pub(crate) gate: Arc<Gate>,
    pub(crate) caches: CacheRegistry,
    pub(crate) shutdown: Shutdown,
    pub(crate) admin_token: AdminToken,
    #[cfg_attr(not(feature = "pprof"), allow(dead_code))]
    pub(crate) profile_dir: PathBuf,
}

impl Guard {
    /// Starts the monitor and the reaction task on the current tokio runtime.
    pub fn start(config: GuardConfig) -> Result<Guard, GuardError> {
        let shutdown = Shutdown::new();
        let monitor = Monitor::start(config.monitor.clone(), &shutdown)?;
        Guard::with_monitor(config, monitor, shutdown)
    }

    /// A guard around a monitor made elsewhere (a [`Monitor::detached`] one in tests).
    pub fn with_monitor(
        config: GuardConfig,
        monitor: Monitor,
        shutdown: Shutdown,
    ) -> Result<Guard, GuardError> {
        if !(0.0..=1.0).contains(&config.shrink_to) {
            return Err(GuardError::Config(format!(
                "invalid shrink fraction '{}' (expected 0 to 1)",
                config.shrink_to
            )));
        }
        // Until the budget is known, the gate has nothing to compare with: it stays open.
        let gate = Arc::new(Gate::new(config.soft_limit_bytes.unwrap_or(u64::MAX))?);
        let guard = Guard {
            monitor,
            gate,
            caches: CacheRegistry::new(),
            shutdown,
            admin_token: config.admin_token,
            profile_dir: config.profile_dir,
        };
        let mut react = Reaction {
            guard: guard.clone(),
            explicit_soft_limit: config.soft_limit_bytes.is_some(),
            shrink_to: config.shrink_to,
            level: Level::Ok,
        };
        let mut pressure = guard.monitor.subscribe();
        guard.shutdown.spawn_until_shutdown(async move {
            let mut relief: Option<tokio::task::JoinHandle<()>> = None;
            while pressure.changed().await.is_ok() {
                let now = *pressure.borrow_and_update();
                if !react.to(&now) {
                    continue;
                }
                // Shrinking caches and purging the allocator take locks and walk memory: on
                // the blocking pool, so the service's async threads go on serving; one relief
                // at a time.
                if relief.as_ref().is_none_or(|running| running.is_finished()) {
                    let caches = react.guard.caches.clone();
                    let shrink_to = react.shrink_to;
                    relief = Some(tokio::task::spawn_blocking(move || {
                        relieve(&caches, shrink_to, now.level);
                    }));
                }
            }
        });
        Ok(guard)
    }

    /// The monitor.
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// The admission gate, fed by the monitor.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// The registry to build bounded caches in.
    pub fn caches(&self) -> &CacheRegistry {
        &self.caches
    }

    /// The service's shutdown.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }
}

/// What the guard does with each new pressure.
#[derive(Debug)]
struct Reaction {
    guard: Guard,
    explicit_soft_limit: bool,
    shrink_to: f64,
    level: Level,
}

impl Reaction {
    /// Feeds the gate with `pressure`; whether the level just turned critical (then the caller
    /// relieves the memory, off the async threads).
    fn to(&mut self, pressure: &Pressure) -> bool {
        let gate = &self.guard.gate;
        if !self.explicit_soft_limit {
            if let Some(budget) = pressure.budget_bytes {
                let warn = self.guard.monitor.levels().warn;
                gate.set_soft_limit_bytes((budget as f64 * warn) as u64);
            }
        }
        gate.observe(pressure.used_bytes);
        let was_critical = self.level >= Level::Critical;
        self.level = pressure.level;
        pressure.level >= Level::Critical && !was_critical
    }
}

/// Shrinks every cache of `caches` to `shrink_to` of its bound and returns freed memory to the
/// OS (with jemalloc): blocking work, run on the blocking pool.
fn relieve(caches: &CacheRegistry, shrink_to: f64, level: Level) {
    // The fraction was checked when the guard was made.
    let report = caches.shrink_all(shrink_to).unwrap_or_default();
    tracing::warn!(
        level = level.as_str(),
        caches = report.caches,
        entries = report.entries,
        bytes = report.bytes,
        "memory critical: caches shrunk"
    );
    #[cfg(feature = "jemalloc")]
    if crate::alloc::in_use() {
        if let Err(error) = crate::alloc::purge() {
            tracing::warn!(%error, "cannot return freed memory to the OS");
        }
    }
}
