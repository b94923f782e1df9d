//! A set of processed keys bounded by count and age, so that "have I seen this record?"
//! does not grow forever: a key is remembered for at most the maximum age, and when the set is
//! full the oldest insertion is forgotten.
//!
//! A `HashMap` answers membership and a `VecDeque` keeps the insertion order. A key is in the
//! queue exactly once, from its (first) insertion until it expires or is evicted: inserting a
//! key already remembered changes nothing (it does not renew its age), and expired keys are
//! purged from the front before every insertion, so the queue never holds more records than
//! the map. Every operation is amortised O(1). Time is passed in (`now`), so tests drive a
//! fake clock.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// What is wrong with a dedupe set's limits.
#[derive(Debug, thiserror::Error)]
pub enum DedupeError {
    /// The entry bound is zero: the set could remember nothing.
    #[error("max_entries of a dedupe set is 0 (expected at least 1)")]
    ZeroEntries,
    /// The maximum age is zero: every key would be forgotten at once.
    #[error("max_age of a dedupe set is {max_age:?} (expected more than 0s)")]
    ZeroAge {
        /// The age given.
        max_age: Duration,
    },
}

/// Remembers keys for at most `max_age` and at most `max_entries` of them.
pub struct DedupeSet<K> {
    /// Each remembered key and when it was inserted.
    seen: HashMap<K, Instant>,
    /// The same keys in insertion order (oldest at the front).
    order: VecDeque<(K, Instant)>,
    max_entries: usize,
    max_age: Duration,
    evicted: u64,
    /// The latest `now` seen: insertions are stamped with no earlier time, so the queue stays
    /// in age order even if a caller's clock readings cross.
    latest: Option<Instant>,
}

impl<K: Hash + Eq + Clone> DedupeSet<K> {
    /// An empty set remembering at most `max_entries` keys for at most `max_age`.
    pub fn new(max_entries: usize, max_age: Duration) -> Result<DedupeSet<K>, DedupeError> {
        if max_entries == 0 {
            return Err(DedupeError::ZeroEntries);
        }
        if max_age.is_zero() {
            return Err(DedupeError::ZeroAge { max_age });
        }
        Ok(DedupeSet {
            seen: HashMap::new(),
            order: VecDeque::new(),
            max_entries,
            max_age,
            evicted: 0,
            latest: None,
        })
    }

    /// Remembers `key` as seen at `now`; `true` if it is new (not seen within the maximum
    /// age), `false` for a duplicate, which leaves the set as it was (the key's age is not
    /// renewed). A new key in a full set makes it forget the oldest insertion.
    pub fn insert(&mut self, key: K, now: Instant) -> bool {
        let now = self.advance(now);
        self.expire(now);
        if self.seen.contains_key(&key) {
            return false;
        }
        if self.order.len() >= self.max_entries {
            if let Some((oldest, _)) = self.order.pop_front() {
                self.seen.remove(&oldest);
                self.evicted += 1;
            }
        }
        self.seen.insert(key.clone(), now);
        self.order.push_back((key, now));
        true
    }

    /// Whether `key` was inserted no longer than the maximum age before `now` (and not
    /// forgotten since to make room).
    pub fn contains(&self, key: &K, now: Instant) -> bool {
        self.seen
            .get(key)
            .is_some_and(|&at| now.saturating_duration_since(at) <= self.max_age)
    }

    /// Forgets the keys older than the maximum age at `now` (insertions do it too) and
    /// returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some((_, at)) = self.order.front() {
            if now.saturating_duration_since(*at) <= self.max_age {
                break;
            }
            if let Some((key, _)) = self.order.pop_front() {
                self.seen.remove(&key);
                expired += 1;
            }
        }
        expired
    }

    /// Keys remembered (some may have expired since the last insertion or
    /// [`expire`](Self::expire)).
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Keys forgotten before their age to make room: each one is a duplicate that may be let
    /// through as new. If this grows, the entry bound is too small for the maximum age.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Forgets every key.
    pub fn clear(&mut self) {
        self.seen.clear();
        self.order.clear();
    }

    fn advance(&mut self, now: Instant) -> Instant {
        let now = self.latest.map_or(now, |latest| latest.max(now));
        self.latest = Some(now);
        now
    }
}

impl<K> fmt::Debug for DedupeSet<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DedupeSet")
            .field("len", &self.seen.len())
            .field("max_entries", &self.max_entries)
            .field("max_age", &self.max_age)
            .field("evicted", &self.evicted)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn zero_limits_are_errors_naming_the_value() {
        let error = |max_entries, max_age| {
            DedupeSet::<u32>::new(max_entries, max_age)
                .expect_err("invalid settings")
                .to_string()
        };
        assert_eq!(
            error(0, SECOND),
            "max_entries of a dedupe set is 0 (expected at least 1)"
        );
        assert_eq!(
            error(1, Duration::ZERO),
            "max_age of a dedupe set is 0ns (expected more than 0s)"
        );
    }

    #[test]
    fn new_keys_are_true_and_duplicates_false_until_they_expire() {
        let start = Instant::now();
        let mut set = DedupeSet::new(10, 10 * SECOND).expect("valid limits");
        assert!(set.insert("a", start));
        assert!(!set.insert("a", start + 5 * SECOND));
        assert!(
            set.contains(&"a", start + 10 * SECOND),
            "exactly max_age is kept"
        );
        assert!(!set.contains(&"a", start + 11 * SECOND));
        // The duplicate did not renew the age: "a" expires 10 s after its first insertion.
        assert!(set.insert("a", start + 11 * SECOND));
        assert_eq!(set.len(), 1);
        assert_eq!(set.expire(start + 30 * SECOND), 1);
        assert!(set.is_empty());
    }

    #[test]
    fn a_full_set_forgets_the_oldest_insertion() {
        let now = Instant::now();
        let mut set = DedupeSet::new(2, 10 * SECOND).expect("valid limits");
        assert!(set.insert(1, now));
        assert!(set.insert(2, now));
        assert!(!set.insert(1, now));
        assert!(set.insert(3, now));
        assert!(!set.contains(&1, now));
        assert!(set.contains(&2, now) && set.contains(&3, now));
        assert_eq!((set.len(), set.evicted()), (2, 1));
        set.clear();
        assert!(set.is_empty() && set.order.is_empty());
    }

    #[test]
    fn reinserting_the_same_keys_does_not_grow_the_queue() {
        let start = Instant::now();
        let mut set = DedupeSet::new(100, SECOND).expect("valid limits");
        for round in 0..1000u32 {
            let now = start + Duration::from_millis(u64::from(round) * 300);
            for key in 0..10u32 {
                set.insert(key, now);
            }
            assert!(set.order.len() <= 10, "round {round}: {}", set.order.len());
            assert_eq!(set.order.len(), set.seen.len());
        }
        // Many more keys than fit, re-inserted again and again: bounded by max_entries.
        for round in 0..50u64 {
            for key in 0..300u32 {
                set.insert(key, start + Duration::from_millis(round));
            }
            assert!(set.order.len() <= 100);
            assert_eq!(set.order.len(), set.seen.len());
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert { key: u8, after_ms: u64 },
        Contains { key: u8 },
        Expire { after_ms: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0u8..40, 0u64..300).prop_map(|(key, after_ms)| Op::Insert { key, after_ms }),
            2 => (0u8..40).prop_map(|key| Op::Contains { key }),
            1 => (0u64..3000).prop_map(|after_ms| Op::Expire { after_ms }),
        ]
    }

    proptest! {
        /// Checked against a model that scans a list of (key, inserted at), oldest first.
        #[test]
        fn keeps_its_bounds_and_agrees_with_a_plain_list(
            max_entries in 1usize..20,
            max_age_ms in 1u64..2000,
            ops in proptest::collection::vec(op(), 0..300),
        ) {
            let max_age = Duration::from_millis(max_age_ms);
            let mut set = DedupeSet::new(max_entries, max_age).expect("valid limits");
            let mut model: Vec<(u8, Instant)> = Vec::new();
            let mut now = Instant::now();
            for op in ops {
                match op {
                    Op::Insert { key, after_ms } => {
                        now += Duration::from_millis(after_ms);
                        model.retain(|&(_, at)| now - at <= max_age);
                        let new = !model.iter().any(|&(k, _)| k == key);
                        if new {
                            if model.len() >= max_entries {
                                model.remove(0);
                            }
                            model.push((key, now));
                        }
                        prop_assert_eq!(set.insert(key, now), new);
                    }
                    Op::Contains { key } => {
                        let expected = model.iter().any(|&(k, at)| k == key && now - at <= max_age);
                        prop_assert_eq!(set.contains(&key, now), expected);
                    }
                    Op::Expire { after_ms } => {
                        now += Duration::from_millis(after_ms);
                        model.retain(|&(_, at)| now - at <= max_age);
                        set.expire(now);
                        prop_assert_eq!(set.len(), model.len());
                    }
                }
                prop_assert!(set.len() <= max_entries);
                prop_assert_eq!(set.order.len(), set.seen.len());
            }
        }
    }
}
