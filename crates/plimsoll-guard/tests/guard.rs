//! The guard's reactions to the monitor's readings: the gate follows the soft limit (the warn
//! mark of the budget unless given), and entering critical shrinks the registered caches.

use std::time::Duration;

use plimsoll_guard::admission::GateState;
use plimsoll_guard::cache::BoundedCache;
use plimsoll_guard::monitor::{Monitor, MonitorConfig, Reading};
use plimsoll_guard::shutdown::Shutdown;
use plimsoll_guard::{Guard, GuardConfig};

const MIB: u64 = 1 << 20;
const WITHIN: Duration = Duration::from_secs(10);

fn reading(t_s: f64, rss_bytes: u64) -> Reading {
    Reading::rss(t_s, rss_bytes)
}

fn guard(soft_limit_bytes: Option<u64>) -> Guard {
    let monitor_config = MonitorConfig {
        budget_bytes: Some(1000 * MIB),
        ..MonitorConfig::recommended("svc")
    };
    let monitor = Monitor::detached(&monitor_config, std::process::id());
    let config = GuardConfig {
        monitor: monitor_config,
        soft_limit_bytes,
        ..GuardConfig::recommended("svc")
    };
    Guard::with_monitor(config, monitor, Shutdown::new()).expect("guard")
}

async fn gate_becomes(guard: &Guard, state: GateState) {
    let mut gate = guard.gate().subscribe();
    tokio::time::timeout(WITHIN, gate.wait_for(|s| *s == state))
        .await
        .unwrap_or_else(|_| panic!("the gate did not become {state:?}"))
        .expect("the gate is alive");
}

#[tokio::test]
async fn the_gate_follows_readings_at_the_warn_mark_of_the_budget() {
    let guard = guard(None);
    guard.monitor().observe(&reading(0.0, 700 * MIB));
    // The budget is known from the first reading: the soft limit is 75 % of it.
    tokio::time::timeout(WITHIN, async {
        while guard.gate().soft_limit_bytes() != 750 * MIB {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the soft limit moves to the warn mark");
    assert_eq!(guard.gate().state(), GateState::Open);
    guard.monitor().observe(&reading(1.0, 760 * MIB));
    gate_becomes(&guard, GateState::Paused).await;
    // Below the soft limit but above 80 % of it (600 MiB): still paused.
    guard.monitor().observe(&reading(2.0, 650 * MIB));
    tokio::task::yield_now().await;
    assert_eq!(guard.gate().state(), GateState::Paused);
    guard.monitor().observe(&reading(3.0, 590 * MIB));
    gate_becomes(&guard, GateState::Open).await;
    assert_eq!(guard.gate().pauses(), 1);
}

#[tokio::test]
async fn an_explicit_soft_limit_is_kept() {
    let guard = guard(Some(100 * MIB));
    guard.monitor().observe(&reading(0.0, 101 * MIB));
    gate_becomes(&guard, GateState::Paused).await;
    assert_eq!(guard.gate().soft_limit_bytes(), 100 * MIB);
}

#[tokio::test]
async fn entering_critical_shrinks_the_registered_caches_to_half() {
    let guard = guard(None);
    let cache: BoundedCache<u64, Vec<u8>> = BoundedCache::builder("blobs")
        .max_bytes(1 << 20)
        .max_entries(1000)
        .ttl(Duration::from_secs(600))
        .weigher(|_, v: &Vec<u8>| v.len() as u64)
        .build(guard.caches())
        .expect("cache");
    for key in 0..200 {
        cache.insert(key, vec![0u8; 4096]);
    }
    let full = cache.exact_weighted_bytes();
    assert!(full > 700 << 10, "the cache filled up: {full}");
    // At the budget: breach, which is above critical.
    guard.monitor().observe(&reading(0.0, 1000 * MIB));
    tokio::time::timeout(WITHIN, async {
        while cache.exact_weighted_bytes() > (1 << 20) / 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the cache was shrunk to half its bound");
}

/// A cache that notes the thread each shrink runs on.
struct ThreadNoting {
    shrunk_on: std::sync::Mutex<Vec<std::thread::ThreadId>>,
}

impl plimsoll_guard::cache::RegisteredCache for ThreadNoting {
    fn name(&self) -> &str {
        "noting"
    }

    fn stats(&self) -> plimsoll_guard::cache::CacheStats {
        plimsoll_guard::cache::CacheStats {
            name: "noting".to_owned(),
            entries: 0,
            bytes: 0,
            max_bytes: 1,
            max_entries: 1,
            hits: 0,
            misses: 0,
        }
    }

    fn clear(&self) -> plimsoll_guard::cache::Dropped {
        plimsoll_guard::cache::Dropped::default()
    }

    fn shrink_to(&self, _fraction: f64) -> plimsoll_guard::cache::Dropped {
        if let Ok(mut threads) = self.shrunk_on.lock() {
            threads.push(std::thread::current().id());
        }
        plimsoll_guard::cache::Dropped::default()
    }
}

#[tokio::test]
async fn critical_pressure_shrinks_the_caches_off_the_async_thread() {
    let guard = guard(None);
    let cache = std::sync::Arc::new(ThreadNoting {
        shrunk_on: std::sync::Mutex::new(Vec::new()),
    });
    guard.caches().register(&cache).expect("register");
    guard.monitor().observe(&reading(0.0, 1000 * MIB));
    let shrunk_on = tokio::time::timeout(WITHIN, async {
        loop {
            if let Some(&thread) = cache.shrunk_on.lock().expect("lock").first() {
                return thread;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the caches were shrunk");
    // This test's runtime has one thread, this one: the shrink ran on the blocking pool.
    assert_ne!(shrunk_on, std::thread::current().id());
}
