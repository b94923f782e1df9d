//! Integration tests of the bounded caches through the public API: bounds under random
//! workloads, TTL on moka's real clock, and the registry's clear, shrink and statistics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plimsoll_guard::cache::{BoundedCache, CacheRegistry, ClearReport};
use proptest::prelude::*;

const HOUR: Duration = Duration::from_secs(3600);

type Blob = Arc<[u8]>;

fn blob(len: usize) -> Blob {
    Arc::from(vec![0; len])
}

/// A cache of byte blobs weighing their length plus 8 bytes for the key.
fn blobs(
    name: &str,
    max_bytes: u64,
    max_entries: u64,
    ttl: Duration,
    registry: &CacheRegistry,
) -> BoundedCache<u64, Blob> {
    BoundedCache::builder(name)
        .max_bytes(max_bytes)
        .max_entries(max_entries)
        .ttl(ttl)
        .weigher(weigh)
        .build(registry)
        .expect("valid settings")
}

fn weigh(_key: &u64, value: &Blob) -> u64 {
    8 + value.len() as u64
}

/// Polls `done` until it holds or `deadline` passes; whether it held.
fn poll_until(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if done() {
            return true;
        }
        std::thread::yield_now();
    }
    done()
}

#[derive(Clone, Debug)]
enum Op {
    Insert { key: u64, size: usize },
    Get { key: u64 },
    Invalidate { key: u64 },
}

fn op(max_bytes: u64) -> impl Strategy<Value = Op> {
    let size = max_bytes as usize;
    prop_oneof![
        6 => (0u64..64, 0..size / 4).prop_map(|(key, size)| Op::Insert { key, size }),
        1 => (0u64..64, size..size * 2).prop_map(|(key, size)| Op::Insert { key, size }),
        3 => (0u64..64).prop_map(|key| Op::Get { key }),
        1 => (0u64..64).prop_map(|key| Op::Invalidate { key }),
    ]
}

fn workload() -> impl Strategy<Value = (u64, u64, Vec<Op>)> {
    (64u64..4096, 1u64..40).prop_flat_map(|(max_bytes, max_entries)| {
        (
            Just(max_bytes),
            Just(max_entries),
            proptest::collection::vec(op(max_bytes), 1..300),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_workloads_stay_within_both_bounds((max_bytes, max_entries, ops) in workload()) {
        let registry = CacheRegistry::new();
        let cache = blobs("random", max_bytes, max_entries, HOUR, &registry);
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Insert { key, size } => cache.insert(key, blob(size)),
                // Between maintenance runs an oversized value can still be read back.
                Op::Get { key } => drop(cache.get(&key)),
                Op::Invalidate { key } => cache.invalidate(&key),
            }
            if step % 16 == 15 {
                check_bounds(&cache, max_bytes, max_entries)?;
            }
        }
        check_bounds(&cache, max_bytes, max_entries)?;
        let stats = cache.stats();
        prop_assert_eq!((stats.max_bytes, stats.max_entries), (max_bytes, max_entries));
    }
}

fn check_bounds(
    cache: &BoundedCache<u64, Blob>,
    max_bytes: u64,
    max_entries: u64,
) -> Result<(), TestCaseError> {
    cache.run_pending_tasks();
    prop_assert!(
        cache.weighted_bytes() <= max_bytes,
        "{} > {max_bytes}",
        cache.weighted_bytes()
    );
    prop_assert!(
        cache.entry_count() <= max_entries,
        "{} > {max_entries}",
        cache.entry_count()
    );
    let (mut count, mut bytes) = (0u64, 0u64);
    for (key, value) in cache.iter() {
        count += 1;
        bytes += weigh(&key, &value);
    }
    prop_assert!(count <= max_entries, "iterated {count} > {max_entries}");
    prop_assert!(bytes <= max_bytes, "iterated {bytes} bytes > {max_bytes}");
    prop_assert_eq!(count, cache.entry_count());
    Ok(())
}

#[test]
fn entries_expire_after_their_ttl() {
    let registry = CacheRegistry::new();
    let ttl = Duration::from_millis(100);
    let cache = blobs("ttl", 1000, 10, ttl, &registry);
    let inserted = Instant::now();
    cache.insert(1, blob(1));
    let present = cache.get(&1).is_some();
    // Sound on a loaded machine: if less than the TTL passed, the entry must still be there.
    if inserted.elapsed() < ttl {
        assert!(present);
    }
    assert!(poll_until(Duration::from_secs(10), || cache
        .get(&1)
        .is_none()));
    assert!(inserted.elapsed() >= ttl);
    cache.run_pending_tasks();
    assert_eq!(cache.entry_count(), 0);
}

#[test]
fn entries_expire_when_idle_before_their_ttl() {
    let registry = CacheRegistry::new();
    let idle = Duration::from_millis(100);
    let cache: BoundedCache<u64, Blob> = BoundedCache::builder("idle")
        .max_bytes(1000)
        .max_entries(10)
        .ttl(HOUR)
        .time_to_idle(idle)
        .weigher(weigh)
        .build(&registry)
        .expect("valid settings");
    let inserted = Instant::now();
    cache.insert(1, blob(1));
    // Polled without reading the entry, which would keep it from going idle.
    assert!(poll_until(Duration::from_secs(10), || {
        cache.run_pending_tasks();
        cache.entry_count() == 0
    }));
    assert!(inserted.elapsed() >= idle);
}

#[test]
fn clear_all_empties_every_cache_and_reports_what_it_dropped() {
    let registry = CacheRegistry::new();
    // Thousands of entries: more than one batch of moka's maintenance.
    let numbers = blobs("numbers", 1_000_000, 10_000, HOUR, &registry);
    let names: BoundedCache<String, String> = BoundedCache::builder("names")
        .max_bytes(10_000)
        .max_entries(1000)
        .ttl(HOUR)
        .weigher(|key: &String, value: &String| (key.len() + value.len()) as u64)
        .build(&registry)
        .expect("valid settings");
    for key in 0..5000 {
        numbers.insert(key, blob(92));
    }
    for key in 0..20 {
        names.insert(format!("k{key:02}"), "v".repeat(97));
    }
    numbers.run_pending_tasks();
    names.run_pending_tasks();
    let (numbers_before, names_before) = (numbers.entry_count(), names.entry_count());
    assert_eq!((numbers_before, names_before), (5000, 20));

    let report = registry.clear_all();
    assert_eq!(
        report,
        ClearReport {
            caches: 2,
            entries: numbers_before + names_before,
            bytes: (numbers_before + names_before) * 100,
        }
    );
    for stats in registry.stats() {
        assert_eq!((stats.entries, stats.bytes), (0, 0), "{stats:?}");
    }
    assert_eq!(numbers.get(&1), None);
    assert_eq!(names.get("k01"), None);
    assert_eq!(
        registry.clear_all(),
        ClearReport {
            caches: 2,
            entries: 0,
            bytes: 0
        }
    );
}

#[test]
fn shrink_all_leaves_each_cache_at_most_at_the_fraction_of_its_bound() {
    let registry = CacheRegistry::new();
    let caches: Vec<_> = [(1000, 100), (5000, 10), (777, 7)]
        .into_iter()
        .enumerate()
        .map(|(i, (max_bytes, max_entries))| {
            let cache = blobs(&format!("c{i}"), max_bytes, max_entries, HOUR, &registry);
            for key in 0..200 {
                cache.insert(key, blob((key % 50) as usize));
                if key % 10 == 0 {
                    cache.run_pending_tasks();
                }
            }
            cache.run_pending_tasks();
            (cache, max_bytes)
        })
        .collect();
    let before: u64 = caches.iter().map(|(cache, _)| cache.entry_count()).sum();

    let report = registry.shrink_all(0.5).expect("valid fraction");
    assert_eq!(report.caches, 3);
    let mut after = 0;
    for (cache, max_bytes) in &caches {
        cache.run_pending_tasks();
        assert!(cache.weighted_bytes() <= max_bytes / 2, "{cache:?}");
        let iterated: u64 = cache.iter().map(|(key, value)| weigh(&key, &value)).sum();
        assert!(iterated <= max_bytes / 2, "{cache:?}: {iterated}");
        after += cache.entry_count();
    }
    assert_eq!(report.entries, before - after);
    assert!(report.bytes > 0);
    assert!(registry.shrink_all(2.0).is_err());
}

#[test]
fn a_dropped_cache_leaves_the_registry_and_frees_its_name() {
    let registry = CacheRegistry::new();
    let kept = blobs("kept", 1000, 10, HOUR, &registry);
    let dropped = blobs("dropped", 1000, 10, HOUR, &registry);
    let clone = dropped.clone();
    assert!(matches!(
        BoundedCache::<u64, Blob>::builder("dropped")
            .max_bytes(1)
            .max_entries(1)
            .ttl(HOUR)
            .weigher(weigh)
            .build(&registry),
        Err(plimsoll_guard::cache::CacheError::DuplicateName { .. })
    ));
    drop(dropped);
    assert_eq!(registry.stats().len(), 2, "a clone keeps it registered");
    drop(clone);
    let names: Vec<_> = registry
        .stats()
        .into_iter()
        .map(|stats| stats.name)
        .collect();
    assert_eq!(names, [kept.name()]);
    let _again = blobs("dropped", 1000, 10, HOUR, &registry);
    assert_eq!(registry.stats().len(), 2);
}

#[test]
fn statistics_count_hits_and_misses_across_threads() {
    let registry = CacheRegistry::new();
    let cache = blobs("shared", 100_000, 1000, HOUR, &registry);
    cache.insert(0, blob(0));
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                for key in 0..1000 {
                    let _ = cache.get(&(key % 2));
                }
            });
        }
    });
    let stats = &registry.stats()[0];
    assert_eq!((stats.hits, stats.misses), (1000, 1000));
}
