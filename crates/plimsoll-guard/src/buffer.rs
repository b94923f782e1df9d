//! A FIFO bounded by items, bytes and age, for what must wait while its destination is away
//! (a logger's records while its sink is down) without taking the process's memory with it.
//!
//! Time is passed in (`now`), so tests drive a fake clock and callers read the clock once per
//! batch. The buffer is a plain struct with `&mut self` methods: wrap it in a `Mutex` to share
//! it.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// What is wrong with a buffer's limits.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// A limit is zero: the buffer could hold nothing.
    #[error("{limit} of a bounded buffer is 0 (expected at least 1)")]
    Zero {
        /// `max_items` or `max_bytes`.
        limit: &'static str,
    },
    /// The maximum age is zero: every item would expire at once.
    #[error("max_age of a bounded buffer is {max_age:?} (expected more than 0s)")]
    ZeroAge {
        /// The age given.
        max_age: Duration,
    },
}

/// The bounds of a [`BoundedBuffer`]; all three hold at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferLimits {
    /// The most items held.
    pub max_items: usize,
    /// The most bytes the items may weigh together, as the weigher counts them.
    pub max_bytes: u64,
    /// Items older than this are dropped by [`BoundedBuffer::expire`] and on every push.
    pub max_age: Duration,
}

/// One buffered item, with what it weighed and when it was pushed.
struct Slot<T> {
    item: T,
    bytes: u64,
    pushed_at: Instant,
}

/// A FIFO bounded by item count, total bytes and age. When full, a push drops the oldest
/// items to make room, and counts them in [`dropped`](Self::dropped).
pub struct BoundedBuffer<T> {
    slots: VecDeque<Slot<T>>,
    limits: BufferLimits,
    weigher: Box<dyn Fn(&T) -> u64 + Send + Sync>,
    bytes: u64,
    dropped: u64,
    /// The latest `now` seen: pushes are stamped with no earlier time, so the queue stays in
    /// age order even if a caller's clock readings cross.
    latest: Option<Instant>,
}

impl<T> BoundedBuffer<T> {
    /// An empty buffer with `limits`, weighing items with `weigher` (called once per push; it
    /// should be cheap, e.g. a length).
    pub fn new(
        limits: BufferLimits,
        weigher: impl Fn(&T) -> u64 + Send + Sync + 'static,
    ) -> Result<BoundedBuffer<T>, BufferError> {
        if limits.max_items == 0 {
            return Err(BufferError::Zero { limit: "max_items" });
        }
        if limits.max_bytes == 0 {
            return Err(BufferError::Zero { limit: "max_bytes" });
        }
        if limits.max_age.is_zero() {
            return Err(BufferError::ZeroAge {
                max_age: limits.max_age,
            });
        }
        Ok(BoundedBuffer {
            slots: VecDeque::new(),
            limits,
            weigher: Box::new(weigher),
            bytes: 0,
            dropped: 0,
            latest: None,
        })
    }

    /// Appends `item`, pushed at `now`. Drops expired items first, then the oldest ones until
    /// the new item fits. An item heavier than the whole byte bound is refused and handed back
    /// (`Err(item)`), and the buffer is left as it was rather than emptied for nothing.
    pub fn push(&mut self, item: T, now: Instant) -> Result<(), T> {
        let bytes = (self.weigher)(&item);
        if bytes > self.limits.max_bytes {
            return Err(item);
        }
        let now = self.advance(now);
        self.expire(now);
        while self.slots.len() >= self.limits.max_items
            || self.bytes + bytes > self.limits.max_bytes
        {
            if self.pop_front().is_none() {
                break;
            }
            self.dropped += 1;
        }
        self.bytes += bytes;
        self.slots.push_back(Slot {
            item,
            bytes,
            pushed_at: now,
        });
        Ok(())
    }

    /// Drops the items older than the maximum age at `now` and returns how many.
    pub fn expire(&mut self, now: Instant) -> u64 {
        let mut expired = 0;
        while let Some(front) = self.slots.front() {
            if now.saturating_duration_since(front.pushed_at) <= self.limits.max_age {
                break;
            }
            self.pop_front();
            expired += 1;
        }
        self.dropped += expired;
        expired
    }

    /// Removes and yields up to `max` of the oldest items, oldest first. The items are
    /// removed even if the iterator is not run to the end. Call [`expire`](Self::expire)
    /// first not to flush items past their age.
    pub fn drain(&mut self, max: usize) -> impl Iterator<Item = T> + '_ {
        let count = max.min(self.slots.len());
        let bytes: u64 = self.slots.range(..count).map(|slot| slot.bytes).sum();
        self.bytes -= bytes;
        self.slots.drain(..count).map(|slot| slot.item)
    }

    /// Removes and yields every item, oldest first.
    pub fn drain_all(&mut self) -> impl Iterator<Item = T> + '_ {
        self.drain(usize::MAX)
    }

    /// Items held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no item is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes held, as the weigher counted them.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Items dropped since the buffer was made: the oldest ones, to make room, and the
    /// expired ones. Refused items are not counted (the caller got them back).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The bounds the buffer was made with.
    pub fn limits(&self) -> BufferLimits {
        self.limits
    }

    fn pop_front(&mut self) -> Option<T> {
        let slot = self.slots.pop_front()?;
        self.bytes -= slot.bytes;
        Some(slot.item)
    }

    fn advance(&mut self, now: Instant) -> Instant {
        let now = self.latest.map_or(now, |latest| latest.max(now));
        self.latest = Some(now);
        now
    }
}

impl<T> fmt::Debug for BoundedBuffer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedBuffer")
            .field("limits", &self.limits)
            .field("len", &self.slots.len())
            .field("bytes", &self.bytes)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn limits(max_items: usize, max_bytes: u64, max_age: Duration) -> BufferLimits {
        BufferLimits {
            max_items,
            max_bytes,
            max_age,
        }
    }

    fn buffer(max_items: usize, max_bytes: u64) -> BoundedBuffer<String> {
        BoundedBuffer::new(
            limits(max_items, max_bytes, 10 * SECOND),
            |item: &String| item.len() as u64,
        )
        .expect("valid limits")
    }

    #[test]
    fn zero_limits_are_errors_naming_the_limit() {
        let weigh = |item: &u8| u64::from(*item);
        let error = |limits| {
            BoundedBuffer::new(limits, weigh)
                .expect_err("invalid settings")
                .to_string()
        };
        assert_eq!(
            error(limits(0, 1, SECOND)),
            "max_items of a bounded buffer is 0 (expected at least 1)"
        );
        assert_eq!(
            error(limits(1, 0, SECOND)),
            "max_bytes of a bounded buffer is 0 (expected at least 1)"
        );
        assert_eq!(
            error(limits(1, 1, Duration::ZERO)),
            "max_age of a bounded buffer is 0ns (expected more than 0s)"
        );
    }

    #[test]
    fn drops_the_oldest_when_full_of_items_or_bytes() {
        let now = Instant::now();
        let mut buffer = buffer(3, 10);
        for item in ["a", "b", "c", "d"] {
            buffer.push(item.to_owned(), now).expect("fits the bounds");
        }
        assert_eq!(buffer.drain_all().collect::<Vec<_>>(), ["b", "c", "d"]);
        assert_eq!(buffer.dropped(), 1);
        buffer
            .push("12345".to_owned(), now)
            .expect("fits the bounds");
        buffer
            .push("1234".to_owned(), now)
            .expect("fits the bounds");
        buffer.push("123".to_owned(), now).expect("fits the bounds");
        assert_eq!(buffer.bytes(), 7);
        assert_eq!(buffer.len(), 2);
        assert_eq!(buffer.dropped(), 2);
    }

    #[test]
    fn refuses_an_item_heavier_than_the_bound_and_keeps_the_rest() {
        let now = Instant::now();
        let mut buffer = buffer(3, 10);
        buffer
            .push("kept".to_owned(), now)
            .expect("fits the bounds");
        assert_eq!(buffer.push("x".repeat(11), now), Err("x".repeat(11)));
        assert_eq!((buffer.len(), buffer.bytes(), buffer.dropped()), (1, 4, 0));
        buffer.push("y".repeat(10), now).expect("fits the bounds");
        assert_eq!((buffer.len(), buffer.bytes(), buffer.dropped()), (1, 10, 1));
    }

    #[test]
    fn expires_by_age_on_a_fake_clock() {
        let start = Instant::now();
        let mut buffer = buffer(10, 100);
        buffer
            .push("old".to_owned(), start)
            .expect("fits the bounds");
        buffer
            .push("new".to_owned(), start + 5 * SECOND)
            .expect("fits the bounds");
        assert_eq!(
            buffer.expire(start + 10 * SECOND),
            0,
            "exactly max_age is kept"
        );
        assert_eq!(buffer.expire(start + 11 * SECOND), 1);
        assert_eq!(buffer.drain(5).collect::<Vec<_>>(), ["new"]);
        assert_eq!((buffer.len(), buffer.bytes(), buffer.dropped()), (0, 0, 1));
        // A push expires too, and a clock reading from before does not jump the queue.
        buffer
            .push("a".to_owned(), start + 20 * SECOND)
            .expect("fits the bounds");
        buffer.push("b".to_owned(), start).expect("fits the bounds");
        buffer
            .push("c".to_owned(), start + 31 * SECOND)
            .expect("fits the bounds");
        assert_eq!(buffer.drain_all().collect::<Vec<_>>(), ["c"]);
    }

    #[test]
    fn drain_takes_the_oldest_and_updates_bytes_even_if_not_consumed() {
        let now = Instant::now();
        let mut buffer = buffer(10, 100);
        for item in ["a", "bb", "ccc"] {
            buffer.push(item.to_owned(), now).expect("fits the bounds");
        }
        drop(buffer.drain(2));
        assert_eq!((buffer.len(), buffer.bytes()), (1, 3));
        assert_eq!(buffer.drain(usize::MAX).collect::<Vec<_>>(), ["ccc"]);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Push { size: u64, after_ms: u64 },
        Expire { after_ms: u64 },
        Drain { max: usize },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u64..150, 0u64..400).prop_map(|(size, after_ms)| Op::Push { size, after_ms }),
            1 => (0u64..3000).prop_map(|after_ms| Op::Expire { after_ms }),
            1 => (0usize..5).prop_map(|max| Op::Drain { max }),
        ]
    }

    proptest! {
        #[test]
        fn keeps_its_bounds_and_accounts_for_every_item(
            max_items in 1usize..20,
            max_bytes in 1u64..500,
            max_age_ms in 1u64..2000,
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let max_age = Duration::from_millis(max_age_ms);
            let mut buffer = BoundedBuffer::new(
                limits(max_items, max_bytes, max_age),
                |item: &(u64, Instant)| item.0,
            ).expect("valid limits");
            let mut now = Instant::now();
            let (mut pushed, mut drained) = (0u64, 0u64);
            for op in ops {
                match op {
                    Op::Push { size, after_ms } => {
                        now += Duration::from_millis(after_ms);
                        let before = (buffer.len(), buffer.bytes(), buffer.dropped());
                        match buffer.push((size, now), now) {
                            Ok(()) => pushed += 1,
                            Err(item) => {
                                prop_assert!(item.0 > max_bytes);
                                prop_assert_eq!(before, (buffer.len(), buffer.bytes(), buffer.dropped()));
                            }
                        }
                    }
                    Op::Expire { after_ms } => {
                        now += Duration::from_millis(after_ms);
                        buffer.expire(now);
                        for slot in &buffer.slots {
                            prop_assert!(now - slot.item.1 <= max_age);
                        }
                    }
                    Op::Drain { max } => {
                        let taken: Vec<_> = buffer.drain(max).collect();
                        prop_assert!(taken.windows(2).all(|pair| pair[0].1 <= pair[1].1));
                        drained += taken.len() as u64;
                    }
                }
                prop_assert!(buffer.len() <= max_items);
                prop_assert!(buffer.bytes() <= max_bytes);
                prop_assert_eq!(buffer.bytes(), buffer.slots.iter().map(|slot| slot.bytes).sum::<u64>());
                prop_assert_eq!(pushed, buffer.len() as u64 + buffer.dropped() + drained);
            }
        }
    }
}
