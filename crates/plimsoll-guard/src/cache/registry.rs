//! The registry of a process's caches: clears them all on an operator's request, shrinks them
//! all under critical memory pressure and lists their statistics for `/metrics`.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use super::bounded::check_fraction;
use super::CacheError;

/// A cache the registry can clear, shrink and report on. Object safe, so caches of any key
/// and value types (and caches not built in this crate) sit in one registry.
pub trait RegisteredCache: Send + Sync {
    /// The name the cache is registered under, unique in its registry.
    fn name(&self) -> &str;

    /// Entries, bytes, bounds and hit/miss counts, as of now (called once per scrape).
    fn stats(&self) -> CacheStats;

    /// Drops every entry and says how many entries and bytes that was.
    fn clear(&self) -> Dropped;

    /// Drops entries until the cache holds at most `fraction` (checked to be from 0 to 1) of
    /// its byte bound, and says what it dropped.
    fn shrink_to(&self, fraction: f64) -> Dropped;
}

/// One cache's figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheStats {
    /// The name the cache is registered under.
    pub name: String,
    /// Entries held.
    pub entries: u64,
    /// Bytes charged against the byte bound (each entry at least `max_bytes / max_entries`).
    pub bytes: u64,
    /// The byte bound, in bytes.
    pub max_bytes: u64,
    /// The entry bound.
    pub max_entries: u64,
    /// Reads that found a value, since the cache was built.
    pub hits: u64,
    /// Reads that found none, since the cache was built.
    pub misses: u64,
}

/// What one cache dropped when it was cleared or shrunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Entries dropped.
    pub entries: u64,
    /// Bytes those entries were charged, in bytes.
    pub bytes: u64,
}

/// What [`CacheRegistry::clear_all`] or [`CacheRegistry::shrink_all`] dropped, summed over the
/// caches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClearReport {
    /// Caches visited (every live cache of the registry).
    pub caches: usize,
    /// Entries dropped.
    pub entries: u64,
    /// Bytes those entries were charged, in bytes.
    pub bytes: u64,
}

/// The caches of a process, by name. Cloning is cheap and shares the registry.
///
/// It holds its caches weakly: a cache leaves the registry when its last handle is dropped,
/// and its name is free again.
#[derive(Clone, Default)]
pub struct CacheRegistry {
    caches: Arc<Mutex<BTreeMap<String, Weak<dyn RegisteredCache>>>>,
}

impl CacheRegistry {
    /// An empty registry.
    pub fn new() -> CacheRegistry {
        CacheRegistry::default()
    }

    /// Registers `cache` under its name; [`BoundedCache`](super::BoundedCache)s do this when
    /// built. The registry keeps a weak reference.
    pub fn register<C: RegisteredCache + 'static>(&self, cache: &Arc<C>) -> Result<(), CacheError> {
        let name = cache.name();
        if name.is_empty() {
            return Err(CacheError::EmptyName);
        }
        let weak: Weak<C> = Arc::downgrade(cache);
        let weak: Weak<dyn RegisteredCache> = weak;
        let mut caches = self.lock();
        caches.retain(|_, cache| cache.strong_count() > 0);
        match caches.entry(name.to_owned()) {
            Entry::Occupied(_) => Err(CacheError::DuplicateName {
                name: name.to_owned(),
            }),
            Entry::Vacant(entry) => {
                entry.insert(weak);
                Ok(())
            }
        }
    }

    /// Empties every cache now (the operator's "clear caches") and says what was dropped.
    pub fn clear_all(&self) -> ClearReport {
        let report = self.each(|cache| cache.clear());
        tracing::info!(
            caches = report.caches,
            entries = report.entries,
            bytes = report.bytes,
            "cleared caches"
        );
        report
    }

    /// Under critical memory pressure: evicts from every cache until it holds at most
    /// `fraction` (0 to 1) of its byte bound, and says what was dropped. moka cannot lower a
    /// cache's capacity, so this removes entries one by one in hash-table order, which is
    /// neither least-recently nor least-frequently used: the point is to free memory now. The
    /// caches keep their bounds and fill up again afterwards.
    pub fn shrink_all(&self, fraction: f64) -> Result<ClearReport, CacheError> {
        check_fraction(fraction)?;
        let report = self.each(|cache| cache.shrink_to(fraction));
        tracing::info!(
            fraction,
            caches = report.caches,
            entries = report.entries,
            bytes = report.bytes,
            "shrank caches"
        );
        Ok(report)
    }

    /// The figures of every live cache, by name.
    pub fn stats(&self) -> Vec<CacheStats> {
        self.live().iter().map(|cache| cache.stats()).collect()
    }

    /// Runs `action` on every live cache, outside the registry's lock, and sums what it
    /// dropped.
    fn each(&self, action: impl Fn(&dyn RegisteredCache) -> Dropped) -> ClearReport {
        let caches = self.live();
        let mut report = ClearReport {
            caches: caches.len(),
            ..ClearReport::default()
        };
        for cache in &caches {
            let dropped = action(cache.as_ref());
            report.entries += dropped.entries;
            report.bytes += dropped.bytes;
        }
        report
    }

    /// Strong references to the live caches, in name order; forgets the dropped ones.
    fn live(&self) -> Vec<Arc<dyn RegisteredCache>> {
        let mut caches = self.lock();
        caches.retain(|_, cache| cache.strong_count() > 0);
        caches.values().filter_map(Weak::upgrade).collect()
    }

    /// The map survives a panic elsewhere while it was locked: every change to it is a single
    /// call.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Weak<dyn RegisteredCache>>> {
        self.caches.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for CacheRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let caches = self.lock();
        let live = caches
            .iter()
            .filter(|(_, cache)| cache.strong_count() > 0)
            .map(|(name, _)| name);
        f.debug_set().entries(live).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A cache of `n` entries of one byte each, to see what the registry calls.
    struct Counted {
        name: &'static str,
        entries: AtomicU64,
    }

    impl RegisteredCache for Counted {
        fn name(&self) -> &str {
            self.name
        }
        fn stats(&self) -> CacheStats {
            let entries = self.entries.load(Ordering::Relaxed);
            CacheStats {
                name: self.name.to_owned(),
                entries,
                bytes: entries,
                max_bytes: 100,
                max_entries: 100,
                hits: 0,
                misses: 0,
            }
        }
        fn clear(&self) -> Dropped {
            let entries = self.entries.swap(0, Ordering::Relaxed);
            Dropped {
                entries,
                bytes: entries,
            }
        }
        fn shrink_to(&self, fraction: f64) -> Dropped {
            let keep = (100.0 * fraction) as u64;
            let before = self.entries.load(Ordering::Relaxed);
            let entries = before.saturating_sub(keep);
            self.entries.store(before - entries, Ordering::Relaxed);
            Dropped {
                entries,
                bytes: entries,
            }
        }
    }

    fn counted(name: &'static str, entries: u64) -> Arc<Counted> {
        Arc::new(Counted {
            name,
            entries: AtomicU64::new(entries),
        })
    }

    #[test]
    fn registers_by_unique_name_and_forgets_dropped_caches() {
        let registry = CacheRegistry::new();
        let a = counted("a", 1);
        let b = counted("b", 2);
        registry.register(&b).expect("free name");
        registry.register(&a).expect("free name");
        assert!(matches!(
            registry.register(&counted("a", 0)),
            Err(CacheError::DuplicateName { name }) if name == "a"
        ));
        assert!(matches!(
            registry.register(&counted("", 0)),
            Err(CacheError::EmptyName)
        ));
        let names = |registry: &CacheRegistry| {
            registry
                .stats()
                .into_iter()
                .map(|stats| stats.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&registry), ["a", "b"]);
        assert_eq!(format!("{registry:?}"), r#"{"a", "b"}"#);
        drop(a);
        assert_eq!(names(&registry), ["b"]);
        // A temporary registers and leaves at once.
        registry.register(&counted("a", 0)).expect("free name");
        let again = counted("a", 0);
        registry.register(&again).expect("free name");
        assert_eq!(names(&registry.clone()), ["a", "b"]);
    }

    #[test]
    fn clear_all_and_shrink_all_sum_what_the_caches_dropped() {
        let registry = CacheRegistry::new();
        let a = counted("a", 80);
        let b = counted("b", 30);
        registry.register(&a).expect("free name");
        registry.register(&b).expect("free name");
        assert_eq!(
            registry.shrink_all(0.5).expect("valid fraction"),
            ClearReport {
                caches: 2,
                entries: 30,
                bytes: 30
            }
        );
        assert!(matches!(
            registry.shrink_all(-0.1),
            Err(CacheError::Fraction { .. })
        ));
        assert_eq!(
            registry.clear_all(),
            ClearReport {
                caches: 2,
                entries: 80,
                bytes: 80
            }
        );
        assert!(registry.stats().iter().all(|stats| stats.entries == 0));
    }
}
