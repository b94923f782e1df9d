//! `BoundedCache`: a moka cache whose single weighted capacity carries both the byte and the
//! entry bound, with its builder and its hit/miss counters.
//!
//! moka has one capacity. Both bounds fit in it by charging every entry at least
//! `ceil(max_bytes / max_entries)`: the charged weights must sum to at most `max_bytes`, so
//! `entries * ceil(max_bytes / max_entries) <= max_bytes`, hence `entries <= max_entries`; and
//! as no entry is charged less than it weighs, the true bytes stay under `max_bytes` too. The
//! price is that a cache of small entries is full at `max_entries` (which is the point).
//!
//! moka weighs in `u32`. Up to 4 GiB of `max_bytes` one unit is one byte and weights are
//! clamped to `u32::MAX`, which is more than the capacity, so an entry heavier than that is
//! still rejected. A larger cache counts in units of `2^shift` bytes (rounded up per entry,
//! the capacity rounded down), which keeps both guarantees at a coarser grain.
//!
//! Two faults of moka 0.12.16 are worked around here, both covered by tests: a replacement
//! heavier than the capacity makes moka evict every other entry (so `insert` weighs first and
//! refuses it), and a replacement removed before moka's maintenance has applied it leaves the
//! weighted size off for good (so `invalidate` of a present key runs the maintenance first).

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::registry::{CacheRegistry, CacheStats, Dropped, RegisteredCache};
use super::CacheError;

/// The longest time to live or idle moka accepts (its builder panics above it).
const MAX_DURATION: Duration = Duration::from_secs(1000 * 365 * 24 * 3600);

/// Shrinking evicts, re-measures and goes again while concurrent inserts refill the cache, but
/// no more often than this.
const SHRINK_PASSES: usize = 4;

/// A cache bounded by bytes, entries and time to live (and optionally time to idle), on
/// [`moka::sync::Cache`].
///
/// Cloning is cheap and gives another handle on the same cache. The cache leaves its registry
/// when the last handle is dropped.
///
/// Bounds are enforced by moka's maintenance, which runs every few dozen operations and at
/// least every 300 ms while the cache is used: between two runs the cache can briefly hold more than its bounds, and an
/// entry heavier than the whole byte bound can be read back until the next run rejects it.
/// [`run_pending_tasks`](Self::run_pending_tasks) runs it now. moka's admission policy
/// (TinyLFU) may also decline a new entry in favour of more frequently used ones when full.
pub struct BoundedCache<K, V> {
    inner: Arc<Inner<K, V>>,
}

/// The cache proper; the registry holds it weakly as a [`RegisteredCache`].
struct Inner<K, V> {
    cache: moka::sync::Cache<K, V>,
    counters: Counters,
    name: String,
    max_bytes: u64,
    max_entries: u64,
    units: Units,
    /// The user's weigher, shared with the closure moka calls; read here to refuse entries
    /// heavier than the capacity and to shrink.
    weigher: Arc<Weigher<K, V>>,
}

/// How many bytes an entry holds, as the user measures it.
type Weigher<K, V> = dyn Fn(&K, &V) -> u64 + Send + Sync;

/// Hits and misses, on a cache line of their own so that counting does not slow down the
/// threads that only read the fields next to them.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
}

/// The conversion of weights in bytes into moka's `u32` units (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Units {
    /// A unit is `2^shift` bytes; 0 for bounds under 4 GiB.
    shift: u32,
    /// `2^shift - 1`, to round up.
    mask: u64,
    /// The least charge of an entry, in units: `ceil(capacity / max_entries)`.
    floor: u32,
    /// moka's capacity, in units: `max_bytes >> shift`, less than `u32::MAX`.
    capacity: u64,
}

impl Units {
    fn new(max_bytes: u64, max_entries: u64) -> Units {
        let mut shift = 0;
        while max_bytes >> shift >= u64::from(u32::MAX) {
            shift += 1;
        }
        let capacity = max_bytes >> shift;
        // At most `capacity`, which is below `u32::MAX`.
        let floor = u32::try_from(capacity.div_ceil(max_entries.max(1))).unwrap_or(u32::MAX);
        Units {
            shift,
            mask: (1 << shift) - 1,
            floor,
            capacity,
        }
    }

    /// What an entry of `bytes` is charged, in units.
    #[inline]
    fn charge(self, bytes: u64) -> u32 {
        let units = bytes.saturating_add(self.mask) >> self.shift;
        u32::try_from(units).unwrap_or(u32::MAX).max(self.floor)
    }

    fn to_bytes(self, units: u64) -> u64 {
        units.saturating_mul(1 << self.shift)
    }
}

/// Placeholder for the weigher until [`BoundedCacheBuilder::weigher`] is called: `build` needs
/// a weigher, so a builder without one does not compile.
#[derive(Clone, Copy, Debug)]
pub struct NoWeigher;

/// Settings of a [`BoundedCache`]; made by [`BoundedCache::builder`]. `max_bytes`,
/// `max_entries`, `ttl` and `weigher` are required, `time_to_idle` is optional.
pub struct BoundedCacheBuilder<K, V, W = NoWeigher> {
    name: String,
    max_bytes: Option<u64>,
    max_entries: Option<u64>,
    ttl: Option<Duration>,
    time_to_idle: Option<Duration>,
    weigher: W,
    types: PhantomData<fn(&K, &V)>,
}

impl<K, V, W> fmt::Debug for BoundedCacheBuilder<K, V, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedCacheBuilder")
            .field("name", &self.name)
            .field("max_bytes", &self.max_bytes)
            .field("max_entries", &self.max_entries)
            .field("ttl", &self.ttl)
            .field("time_to_idle", &self.time_to_idle)
            .finish_non_exhaustive()
    }
}

impl<K, V, W> BoundedCacheBuilder<K, V, W> {
    /// The most bytes the entries may weigh together, as the weigher counts them.
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = Some(max_bytes);
        self
    }

    /// The most entries the cache may hold.
    pub fn max_entries(mut self, max_entries: u64) -> Self {
        self.max_entries = Some(max_entries);
        self
    }

    /// How long an entry lives after it was inserted (or replaced).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// How long an entry lives after it was last read or written; optional.
    pub fn time_to_idle(mut self, time_to_idle: Duration) -> Self {
        self.time_to_idle = Some(time_to_idle);
        self
    }

    /// How many bytes an entry holds, key and value, heap included as far as it matters. It
    /// runs on every insert, so it should be cheap (a length, not a serialisation).
    pub fn weigher<F>(self, weigher: F) -> BoundedCacheBuilder<K, V, F>
    where
        F: Fn(&K, &V) -> u64 + Send + Sync + 'static,
    {
        BoundedCacheBuilder {
            name: self.name,
            max_bytes: self.max_bytes,
            max_entries: self.max_entries,
            ttl: self.ttl,
            time_to_idle: self.time_to_idle,
            weigher,
            types: PhantomData,
        }
    }
}

impl<K, V, W> BoundedCacheBuilder<K, V, W>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    W: Fn(&K, &V) -> u64 + Send + Sync + 'static,
{
    /// Checks the settings, builds the cache and registers it under its name.
    pub fn build(self, registry: &CacheRegistry) -> Result<BoundedCache<K, V>, CacheError> {
        let name = self.name;
        if name.is_empty() {
            return Err(CacheError::EmptyName);
        }
        let missing = |setting| CacheError::MissingSetting {
            name: name.clone(),
            setting,
        };
        let max_bytes = self.max_bytes.ok_or_else(|| missing("max_bytes"))?;
        let max_entries = self.max_entries.ok_or_else(|| missing("max_entries"))?;
        let ttl = self.ttl.ok_or_else(|| missing("ttl"))?;
        for (setting, value) in [("max_bytes", max_bytes), ("max_entries", max_entries)] {
            if value == 0 {
                return Err(CacheError::Zero {
                    name: name.clone(),
                    setting,
                });
            }
        }
        check_duration(&name, "ttl", ttl)?;
        if let Some(time_to_idle) = self.time_to_idle {
            check_duration(&name, "time_to_idle", time_to_idle)?;
        }

        let units = Units::new(max_bytes, max_entries);
        let weigher = Arc::new(self.weigher);
        let charge = Arc::clone(&weigher);
        let mut builder = moka::sync::Cache::builder()
            .name(&name)
            .max_capacity(units.capacity)
            .time_to_live(ttl)
            .weigher(move |key: &K, value: &V| units.charge(charge(key, value)));
        if let Some(time_to_idle) = self.time_to_idle {
            builder = builder.time_to_idle(time_to_idle);
        }
        let inner = Arc::new(Inner {
            cache: builder.build(),
            counters: Counters::default(),
            name,
            max_bytes,
            max_entries,
            units,
            weigher,
        });
        registry.register(&inner)?;
        Ok(BoundedCache { inner })
    }
}

fn check_duration(name: &str, setting: &'static str, value: Duration) -> Result<(), CacheError> {
    if value.is_zero() || value > MAX_DURATION {
        return Err(CacheError::Duration {
            name: name.to_owned(),
            setting,
            value,
        });
    }
    Ok(())
}

impl<K, V> BoundedCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Starts the settings of a cache named `name` (unique in its registry; it labels the
    /// cache's statistics).
    pub fn builder(name: impl Into<String>) -> BoundedCacheBuilder<K, V> {
        BoundedCacheBuilder {
            name: name.into(),
            max_bytes: None,
            max_entries: None,
            ttl: None,
            time_to_idle: None,
            weigher: NoWeigher,
            types: PhantomData,
        }
    }

    /// A clone of the value cached for `key`, if any; counts a hit or a miss.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let value = self.inner.cache.get(key);
        let counter = match value {
            Some(_) => &self.inner.counters.hits,
            None => &self.inner.counters.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        value
    }

    /// Caches `value` for `key`, replacing what was there. An entry heavier than the whole
    /// byte bound is not stored, and the key's old value is removed: moka would store it, and
    /// as a replacement evict every other entry to make room before rejecting it.
    #[inline]
    pub fn insert(&self, key: K, value: V) {
        let inner = &*self.inner;
        if u64::from(inner.units.charge((inner.weigher)(&key, &value))) > inner.units.capacity {
            self.invalidate(&key);
            return;
        }
        inner.cache.insert(key, value);
    }

    /// The value cached for `key`, or the one `init` computes on a miss, which is then
    /// cached. Concurrent calls for the same missing key run `init` once and share its value
    /// (they count as hits).
    pub fn get_with(&self, key: K, init: impl FnOnce() -> V) -> V {
        let mut missed = false;
        let value = self.inner.cache.get_with(key, || {
            missed = true;
            init()
        });
        let counter = match missed {
            true => &self.inner.counters.misses,
            false => &self.inner.counters.hits,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        value
    }

    /// Removes the entry for `key`, if any.
    ///
    /// Removing a present key runs moka's pending maintenance first (taking its maintenance
    /// lock), because of a fault of moka 0.12.16: a replacement that is removed before the
    /// maintenance has applied it leaves moka's weighted size off by the difference of the
    /// two weights, for good, so the byte bound would drift. Removing an absent key costs a
    /// lookup. A replacement made by another thread between the two steps, or one whose TTL
    /// ran out before the maintenance, can still drift.
    pub fn invalidate<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let cache = &self.inner.cache;
        if cache.contains_key(key) {
            cache.run_pending_tasks();
            cache.invalidate(key);
        }
    }

    /// Drops every entry now and says how many entries and bytes that was.
    pub fn clear(&self) -> Dropped {
        self.inner.clear()
    }

    /// Evicts entries until the cache holds at most `fraction` (0 to 1) of its byte bound; see
    /// [`CacheRegistry::shrink_all`].
    pub fn shrink_to(&self, fraction: f64) -> Result<Dropped, CacheError> {
        check_fraction(fraction)?;
        Ok(self.inner.shrink_to(fraction))
    }

    /// The number of entries as of moka's last maintenance: cheap, but it may lag behind
    /// recent writes. Call [`run_pending_tasks`](Self::run_pending_tasks) first for an exact
    /// figure.
    pub fn entry_count(&self) -> u64 {
        self.inner.cache.entry_count()
    }

    /// The bytes charged against the byte bound as of moka's last maintenance: cheap, but it
    /// may lag behind recent writes; see [`exact_weighted_bytes`](Self::exact_weighted_bytes).
    /// Every entry is charged at least `ceil(max_bytes / max_entries)` (see the module docs),
    /// so this is at least what the weigher says.
    pub fn weighted_bytes(&self) -> u64 {
        self.inner.units.to_bytes(self.inner.cache.weighted_size())
    }

    /// [`weighted_bytes`](Self::weighted_bytes) after running moka's pending maintenance, so
    /// every write made before the call is counted (and evictions it causes are done). It
    /// takes moka's maintenance lock: for reports and tests, not for every request.
    pub fn exact_weighted_bytes(&self) -> u64 {
        self.inner.cache.run_pending_tasks();
        self.weighted_bytes()
    }

    /// Runs moka's pending maintenance now: applies buffered writes, evicts to the bounds and
    /// drops expired entries. After it, [`entry_count`](Self::entry_count) and
    /// [`weighted_bytes`](Self::weighted_bytes) are exact until the next write.
    pub fn run_pending_tasks(&self) {
        self.inner.cache.run_pending_tasks();
    }

    /// The entries: the key and a clone of the value, in no particular order. Entries written
    /// during the iteration may or may not be seen.
    pub fn iter(&self) -> impl Iterator<Item = (Arc<K>, V)> + '_ {
        self.inner.cache.iter()
    }

    /// The name the cache is registered under.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Entries, bytes, bounds and hit/miss counts, after running moka's pending maintenance
    /// (for scrapes and reports, not for every request).
    pub fn stats(&self) -> CacheStats {
        self.inner.stats()
    }
}

/// Checks that a shrink fraction is a number from 0 to 1.
pub(super) fn check_fraction(fraction: f64) -> Result<(), CacheError> {
    if (0.0..=1.0).contains(&fraction) {
        Ok(())
    } else {
        Err(CacheError::Fraction { fraction })
    }
}

impl<K, V> Clone for BoundedCache<K, V> {
    fn clone(&self) -> Self {
        BoundedCache {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V> fmt::Debug for BoundedCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedCache")
            .field("name", &self.inner.name)
            .field("max_bytes", &self.inner.max_bytes)
            .field("max_entries", &self.inner.max_entries)
            .field("entries", &self.inner.cache.entry_count())
            .finish_non_exhaustive()
    }
}

impl<K, V> RegisteredCache for Inner<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn stats(&self) -> CacheStats {
        // A scrape or a report: once in a while, so the figures may as well be exact.
        self.cache.run_pending_tasks();
        CacheStats {
            name: self.name.clone(),
            entries: self.cache.entry_count(),
            bytes: self.units.to_bytes(self.cache.weighted_size()),
            max_bytes: self.max_bytes,
            max_entries: self.max_entries,
            hits: self.counters.hits.load(Ordering::Relaxed),
            misses: self.counters.misses.load(Ordering::Relaxed),
        }
    }

    /// Measures, then invalidates everything and runs maintenance so that the values are
    /// dropped now rather than on later operations. Entries written concurrently may survive
    /// or be dropped without being counted.
    fn clear(&self) -> Dropped {
        self.cache.run_pending_tasks();
        let dropped = Dropped {
            entries: self.cache.entry_count(),
            bytes: self.units.to_bytes(self.cache.weighted_size()),
        };
        self.cache.invalidate_all();
        self.cache.run_pending_tasks();
        dropped
    }

    /// moka cannot lower its capacity, so this removes entries one by one, in the order of
    /// moka's hash table (neither LRU nor LFU: under critical pressure the point is to free
    /// memory now), until the charged bytes are at most `fraction` of the bound.
    fn shrink_to(&self, fraction: f64) -> Dropped {
        // `as` saturates; `fraction` is in 0..=1, so the target is at most the capacity.
        let target = (self.units.capacity as f64 * fraction) as u64;
        let mut dropped = Dropped::default();
        for _ in 0..SHRINK_PASSES {
            self.cache.run_pending_tasks();
            let Some(mut excess) = self.cache.weighted_size().checked_sub(target) else {
                break;
            };
            if excess == 0 {
                break;
            }
            // The iterator hands out clones of the values (one at a time; moka values are
            // usually `Arc`s): weigh that one rather than ask `remove` for another.
            for (key, value) in self.cache.iter() {
                self.cache.invalidate(&*key);
                let units = u64::from(self.units.charge((self.weigher)(&key, &value)));
                dropped.entries += 1;
                dropped.bytes += self.units.to_bytes(units);
                excess = excess.saturating_sub(units);
                if excess == 0 {
                    break;
                }
            }
        }
        self.cache.run_pending_tasks();
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> CacheRegistry {
        CacheRegistry::new()
    }

    fn strings(name: &str, registry: &CacheRegistry) -> BoundedCache<u32, String> {
        BoundedCache::builder(name)
            .max_bytes(1000)
            .max_entries(10)
            .ttl(Duration::from_secs(3600))
            .weigher(|_: &u32, value: &String| value.len() as u64)
            .build(registry)
            .expect("valid settings")
    }

    #[test]
    fn units_charge_at_least_the_per_entry_share_of_the_bytes() {
        let units = Units::new(1000, 10);
        assert_eq!(units.shift, 0);
        assert_eq!(units.capacity, 1000);
        assert_eq!(units.charge(0), 100);
        assert_eq!(units.charge(99), 100);
        assert_eq!(units.charge(101), 101);
        assert_eq!(units.charge(u64::MAX), u32::MAX);
        // The share is rounded up: 3 entries of 34 cannot fit in 100 bytes.
        assert_eq!(Units::new(100, 3).charge(1), 34);
        // More entries than bytes: one byte each, the byte bound binds first.
        assert_eq!(Units::new(5, 1000).charge(0), 1);
    }

    #[test]
    fn units_keep_both_bounds_above_4_gib() {
        let max_bytes = 10 << 30;
        let units = Units::new(max_bytes, 2);
        assert!(units.shift > 0);
        assert!(units.capacity < u64::from(u32::MAX));
        assert!(units.to_bytes(units.capacity) <= max_bytes);
        // Three entries at the floor do not fit, two do.
        assert!(3 * u64::from(units.charge(1)) > units.capacity);
        assert!(2 * u64::from(units.charge(1)) <= units.capacity);
        // An entry over the bound is charged more than the capacity, even clamped.
        assert!(u64::from(units.charge(max_bytes + 1)) > units.capacity);
        assert!(u64::from(units.charge(u64::MAX)) > units.capacity);
        // Rounded up: a byte is charged a whole unit, never less than it weighs.
        let small = Units::new(u64::MAX, u64::MAX);
        assert_eq!(small.charge(1), 1);
        assert!(small.to_bytes(u64::from(small.charge(12345))) >= 12345);
    }

    #[test]
    fn bad_settings_are_errors_naming_the_value() {
        let registry = registry();
        let base = || {
            BoundedCache::<u32, String>::builder("c")
                .max_bytes(1000)
                .max_entries(10)
                .ttl(Duration::from_secs(1))
        };
        let weigh = |_: &u32, value: &String| value.len() as u64;
        let check = |result: Result<BoundedCache<u32, String>, CacheError>, expected: &str| {
            assert_eq!(result.expect_err("invalid settings").to_string(), expected);
        };
        check(
            BoundedCache::builder("")
                .max_bytes(1)
                .max_entries(1)
                .ttl(Duration::from_secs(1))
                .weigher(weigh)
                .build(&registry),
            "cache name is empty (expected e.g. 'sessions')",
        );
        check(
            base().max_bytes(0).weigher(weigh).build(&registry),
            "max_bytes of cache 'c' is 0 (expected at least 1)",
        );
        check(
            base().max_entries(0).weigher(weigh).build(&registry),
            "max_entries of cache 'c' is 0 (expected at least 1)",
        );
        check(
            base().ttl(Duration::ZERO).weigher(weigh).build(&registry),
            "ttl of cache 'c' is 0ns (expected more than 0s and at most 1000 years)",
        );
        check(
            base()
                .time_to_idle(Duration::from_secs(u64::MAX))
                .weigher(weigh)
                .build(&registry),
            "time_to_idle of cache 'c' is 18446744073709551615s (expected more than 0s and at \
             most 1000 years)",
        );
        check(
            BoundedCache::builder("c")
                .max_bytes(1)
                .ttl(Duration::from_secs(1))
                .weigher(weigh)
                .build(&registry),
            "cache 'c' has no max_entries (expected a call to .max_entries(..))",
        );
        let _first = base()
            .weigher(weigh)
            .build(&registry)
            .expect("valid settings");
        check(
            base().weigher(weigh).build(&registry),
            "cache name 'c' is already registered",
        );
        assert_eq!(
            check_fraction(1.5)
                .expect_err("invalid settings")
                .to_string(),
            "shrink fraction 1.5 is out of range (expected 0 to 1, e.g. 0.5)"
        );
    }

    #[test]
    fn get_insert_invalidate_and_count_hits_and_misses() {
        let registry = registry();
        let cache = strings("c", &registry);
        assert_eq!(cache.get(&1), None);
        cache.insert(1, "one".to_owned());
        assert_eq!(cache.get(&1).as_deref(), Some("one"));
        assert_eq!(cache.get_with(1, || unreachable!("1 is cached")), "one");
        assert_eq!(cache.get_with(2, || "two".to_owned()), "two");
        assert_eq!(cache.get(&2).as_deref(), Some("two"));
        cache.invalidate(&1);
        assert_eq!(cache.get(&1), None);
        cache.run_pending_tasks();
        let stats = cache.stats();
        assert_eq!(
            (stats.hits, stats.misses, stats.entries),
            (3, 3, 1),
            "{stats:?}"
        );
        // Charged the per-entry share of 100 bytes, not the 3 it weighs.
        assert_eq!(cache.exact_weighted_bytes(), 100);
        assert_eq!(cache.name(), "c");
    }

    #[test]
    fn entry_bound_holds_for_small_entries_and_byte_bound_for_large_ones() {
        let registry = registry();
        let cache = strings("c", &registry);
        for key in 0..100 {
            cache.insert(key, "x".to_owned());
            cache.run_pending_tasks();
        }
        assert!(cache.entry_count() <= 10, "{}", cache.entry_count());
        cache.clear();
        for key in 0..100 {
            cache.insert(key, "y".repeat(300));
            cache.run_pending_tasks();
        }
        assert!(cache.entry_count() <= 3, "{}", cache.entry_count());
        assert!(cache.weighted_bytes() <= 1000);
    }

    /// A new key, and a replacement (which bare moka answers by evicting every other entry).
    #[test]
    fn an_entry_heavier_than_the_bound_is_rejected_and_the_rest_stays() {
        for replacing in [false, true] {
            let registry = registry();
            let cache = strings("c", &registry);
            cache.insert(1, "small".to_owned());
            if replacing {
                cache.insert(2, "old".to_owned());
            }
            cache.run_pending_tasks();
            cache.insert(2, "z".repeat(1001));
            cache.run_pending_tasks();
            assert_eq!(cache.get(&2), None, "replacing: {replacing}");
            assert_eq!(
                cache.get(&1).as_deref(),
                Some("small"),
                "replacing: {replacing}"
            );
        }
    }

    /// moka 0.12.16 alone: weighted size 800 while 1000 bytes are held, or 1200; see
    /// `BoundedCache::insert`.
    #[test]
    fn a_replacement_removed_before_maintenance_keeps_the_byte_count_exact() {
        let registry = registry();
        let cache: BoundedCache<u32, String> = BoundedCache::builder("c")
            .max_bytes(10_000)
            .max_entries(10_000)
            .ttl(Duration::from_secs(3600))
            .weigher(|_: &u32, value: &String| value.len() as u64)
            .build(&registry)
            .expect("valid settings");
        cache.insert(1, "a".repeat(1000));
        for (old, new) in [(100, 300), (300, 100)] {
            cache.insert(2, "b".repeat(old));
            cache.run_pending_tasks();
            cache.insert(2, "c".repeat(new));
            cache.invalidate(&2);
            assert_eq!(cache.exact_weighted_bytes(), 1000, "{old} -> {new}");
        }
        cache.invalidate(&1);
        assert_eq!(cache.exact_weighted_bytes(), 0);
    }

    #[test]
    fn clear_and_shrink_report_what_they_dropped() {
        let registry = registry();
        let cache = strings("c", &registry);
        for key in 0..8 {
            cache.insert(key, "v".repeat(120));
        }
        cache.run_pending_tasks();
        let before = cache.entry_count();
        assert!(before >= 6, "{before}");
        let dropped = cache.shrink_to(0.5).expect("valid fraction");
        assert!(cache.weighted_bytes() <= 500, "{}", cache.weighted_bytes());
        assert_eq!(dropped.entries, before - cache.entry_count());
        assert_eq!(dropped.bytes, dropped.entries * 120);
        let rest = cache.entry_count();
        assert_eq!(
            cache.clear(),
            Dropped {
                entries: rest,
                bytes: rest * 120
            }
        );
        assert_eq!(cache.entry_count(), 0);
        assert_eq!(
            cache.shrink_to(0.0).expect("valid fraction"),
            Dropped::default()
        );
        assert!(cache.shrink_to(f64::NAN).is_err());
    }
}
