//! The retained floor of a memory series in bounded state: block minima, their suffix minimum
//! (the least memory held from each moment up to now), and a tracker of GC/allocator cycles
//! that says how much of the recent past is still an unfinished sawtooth tooth.

use std::collections::VecDeque;

/// One closed block of samples.
#[derive(Debug, Clone, Copy)]
struct Block {
    /// Start of the block, seconds.
    t_s: f64,
    /// Least value seen in the block, bytes.
    min: f64,
    /// Largest value seen in the block, bytes.
    max: f64,
    /// Least value held from this block up to the newest closed block, bytes (suffix minimum).
    floor: f64,
}

/// The open block that samples are folded into until its time is up.
#[derive(Debug, Clone, Copy)]
struct OpenBlock {
    t_s: f64,
    min: f64,
    max: f64,
}

/// Block minima over a bounded horizon with their suffix minimum, maintained in amortised O(1)
/// per block: a new block lowers only the trailing floors that lie above it, and floors are
/// non-decreasing in time, so the scan stops at the first one that does not.
#[derive(Debug, Clone)]
pub(crate) struct FloorSeries {
    block_s: f64,
    capacity: usize,
    blocks: VecDeque<Block>,
    open: Option<OpenBlock>,
}

impl FloorSeries {
    pub(crate) fn new(block_s: f64, horizon_s: f64) -> Self {
        let capacity = ((horizon_s / block_s).ceil() as usize).max(8);
        FloorSeries {
            block_s,
            capacity,
            blocks: VecDeque::with_capacity(capacity),
            open: None,
        }
    }

    /// Folds one value in; returns true when a block closed (time to re-evaluate).
    pub(crate) fn push(&mut self, t_s: f64, value: f64) -> bool {
        let mut closed = false;
        if let Some(open) = self.open {
            if t_s < open.t_s + self.block_s {
                self.open = Some(OpenBlock {
                    t_s: open.t_s,
                    min: open.min.min(value),
                    max: open.max.max(value),
                });
                return false;
            }
            self.close(open);
            closed = true;
        }
        // Blocks are aligned to the first block's start so that their times stay regular.
        let start = match self.blocks.back() {
            Some(last) => {
                let steps = ((t_s - last.t_s) / self.block_s).floor().max(1.0);
                last.t_s + steps * self.block_s
            }
            None => t_s,
        };
        self.open = Some(OpenBlock {
            t_s: start,
            min: value,
            max: value,
        });
        closed
    }

    /// Closes the open block now: for a series whose every value is exact and sparse (one
    /// reading per forced GC), a reading is a block of its own and counts at once.
    pub(crate) fn seal(&mut self) {
        if let Some(open) = self.open.take() {
            self.close(open);
        }
    }

    fn close(&mut self, open: OpenBlock) {
        for block in self.blocks.iter_mut().rev() {
            if block.floor <= open.min {
                break;
            }
            block.floor = open.min;
        }
        if self.blocks.len() == self.capacity {
            self.blocks.pop_front();
        }
        self.blocks.push_back(Block {
            t_s: open.t_s,
            min: open.min,
            max: open.max,
            floor: open.min,
        });
    }

    /// How many blocks it holds at most.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of closed blocks held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Start of the oldest block still held, seconds.
    pub(crate) fn oldest_s(&self) -> Option<f64> {
        self.blocks.front().map(|b| b.t_s)
    }

    /// End of the newest closed block, seconds.
    pub(crate) fn newest_end_s(&self) -> Option<f64> {
        self.blocks.back().map(|b| b.t_s + self.block_s)
    }

    /// The floor at time `t_s`: the least value held from the block containing `t_s` up to now.
    /// In a gap between blocks (a sparse series: samples further apart than a block), the
    /// floors of the blocks on either side interpolated linearly, so that a ramp sampled once
    /// a minute reads as a ramp at any mark, not as steps of a sample each.
    pub(crate) fn floor_at(&self, t_s: f64) -> Option<f64> {
        let index = self.blocks.partition_point(|b| b.t_s + self.block_s <= t_s);
        let next = self.blocks.get(index)?;
        match index.checked_sub(1).and_then(|i| self.blocks.get(i)) {
            Some(previous) if t_s < next.t_s => {
                let share = (t_s - previous.t_s) / (next.t_s - previous.t_s);
                Some(previous.floor + (next.floor - previous.floor) * share)
            }
            _ => Some(next.floor),
        }
    }

    /// The start of the newest block before `before_s` whose least value was at or below
    /// `level`; the oldest block's start when none was. Scans back from the newest block, so
    /// it costs as many blocks as it goes back.
    pub(crate) fn last_at_or_below(&self, level: f64, before_s: f64) -> Option<f64> {
        let mut found = self.oldest_s()?;
        for block in self.blocks.iter().rev() {
            if block.t_s < before_s && block.min <= level {
                found = block.t_s;
                break;
            }
        }
        Some(found)
    }

    /// The earliest time from which the floor stays within `within` of its value at `end_s`:
    /// the start of the first block whose floor is at least `floor_at(end_s) - within` (floors
    /// rise with time, so a binary search finds it).
    pub(crate) fn flat_since(&self, end_s: f64, within: f64) -> Option<f64> {
        let level = self.floor_at(end_s)? - within;
        let index = self.blocks.partition_point(|b| b.floor < level);
        self.blocks.get(index).map(|b| b.t_s)
    }

    /// The longest stretch of `[start_s, end_s]` without a block of samples (closed or still
    /// open), seconds; the whole span when it holds none: how sparse the series is there.
    pub(crate) fn largest_gap(&self, start_s: f64, end_s: f64) -> f64 {
        let first = self
            .blocks
            .partition_point(|b| b.t_s + self.block_s <= start_s);
        let mut gap: f64 = 0.0;
        let mut covered = start_s;
        let open = self.open.map(|o| o.t_s);
        for t_s in self.blocks.iter().skip(first).map(|b| b.t_s).chain(open) {
            if t_s >= end_s {
                break;
            }
            gap = gap.max(t_s - covered);
            covered = covered.max(t_s + self.block_s);
        }
        gap.max(end_s - covered)
    }

    /// How many closed blocks start in `[start_s, end_s)`: the samples there, for a sparse
    /// series (each sample a block of its own).
    pub(crate) fn count_between(&self, start_s: f64, end_s: f64) -> usize {
        let first = self.blocks.partition_point(|b| b.t_s < start_s);
        let end = self.blocks.partition_point(|b| b.t_s < end_s);
        end.saturating_sub(first)
    }

    /// Least value of the closed blocks that start in `[start_s, end_s)`; `None` when none does.
    pub(crate) fn min_between(&self, start_s: f64, end_s: f64) -> Option<f64> {
        let first = self.blocks.partition_point(|b| b.t_s < start_s);
        self.blocks
            .range(first..)
            .take_while(|b| b.t_s < end_s)
            .map(|b| b.min)
            .reduce(f64::min)
    }

    /// Largest value of the closed blocks that start in `[start_s, end_s)`; `None` when none
    /// does.
    pub(crate) fn max_between(&self, start_s: f64, end_s: f64) -> Option<f64> {
        let first = self.blocks.partition_point(|b| b.t_s < start_s);
        self.blocks
            .range(first..)
            .take_while(|b| b.t_s < end_s)
            .map(|b| b.max)
            .reduce(f64::max)
    }

    /// Median of the least values of the closed blocks that start in `[start_s, end_s)` (of
    /// the readings themselves, for a series sealed at each reading); `None` when none does.
    pub(crate) fn median_between(&self, start_s: f64, end_s: f64) -> Option<f64> {
        let first = self.blocks.partition_point(|b| b.t_s < start_s);
        let mut values: Vec<f64> = self
            .blocks
            .range(first..)
            .take_while(|b| b.t_s < end_s)
            .map(|b| b.min)
            .collect();
        crate::robust::median(&mut values)
    }

    /// Largest value over the newest `span_s` seconds of closed blocks.
    pub(crate) fn recent_max(&self, span_s: f64) -> Option<f64> {
        let end = self.newest_end_s()?;
        self.blocks
            .iter()
            .rev()
            .take_while(|b| b.t_s + self.block_s > end - span_s)
            .map(|b| b.max)
            .reduce(f64::max)
    }
}

/// How many recent cycles the tracker remembers.
const CYCLES_KEPT: usize = 64;

/// A drop that has just ended: the series rose to a peak, fell, and is rising again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Drop {
    /// When the peak was reached, seconds.
    pub(crate) peak_t_s: f64,
    /// When the trough was reached, seconds.
    pub(crate) trough_t_s: f64,
    /// The trough, bytes.
    pub(crate) trough: f64,
    /// The value of the sample after the trough, bytes.
    pub(crate) after_trough: f64,
    /// How far a value must move to count, bytes.
    pub(crate) threshold: f64,
}

/// One completed cycle.
#[derive(Debug, Clone, Copy)]
struct Cycle {
    /// When the trough that ended the cycle was reached, seconds.
    trough_t_s: f64,
    /// Seconds since the series was last as low as this trough: how long memory took to be
    /// handed back. A GC cycle on a slow leak returns to a level it left a cycle ago; a
    /// periodic clear returns to the level it left when the last clear happened.
    period_s: f64,
    /// The trough, bytes.
    trough: f64,
    /// How much the series rose in the one sample after the trough, bytes: the sampled trough of
    /// a steep tooth can sit anywhere up to this far above the true one, and drift slowly
    /// across that range when the tooth's period beats against the sampling interval.
    rise: f64,
}

/// How uncertain the troughs of the recent cycles are, bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TroughNoise {
    /// Median rise in the sample after a trough (the aliasing range of the sampled trough).
    pub(crate) alias: f64,
    /// Median deviation of the change from one trough to the next from its median (their
    /// jitter, with the trend taken out).
    pub(crate) jitter: f64,
}

/// How many of the newest cycles the noise estimate looks at.
const NOISE_CYCLES: usize = 16;

/// Peak/trough detection with hysteresis, to learn the length of GC, allocator or clear cycles
/// online. A drop is a fall of more than `max(min_drop, drop_ratio × peak)` below the highest
/// value since the last trough; it ends when the series rises that much above its trough.
#[derive(Debug, Clone)]
pub(crate) struct CycleTracker {
    min_drop: f64,
    drop_ratio: f64,
    falling: bool,
    peak: f64,
    peak_t_s: f64,
    trough: f64,
    trough_t_s: f64,
    after_trough: Option<f64>,
    cycles: VecDeque<Cycle>,
}

impl CycleTracker {
    pub(crate) fn new(min_drop: f64, drop_ratio: f64) -> Self {
        CycleTracker {
            min_drop,
            drop_ratio,
            falling: false,
            peak: f64::NEG_INFINITY,
            peak_t_s: 0.0,
            trough: f64::INFINITY,
            trough_t_s: 0.0,
            after_trough: None,
            cycles: VecDeque::with_capacity(CYCLES_KEPT),
        }
    }

    /// Folds one value in; returns the drop that just ended, if one did. The caller measures
    /// its period against the floor and hands it back through [`CycleTracker::record`].
    pub(crate) fn push(&mut self, t_s: f64, value: f64) -> Option<Drop> {
        let threshold = self.min_drop.max(self.drop_ratio * self.peak.abs());
        if self.falling {
            if value < self.trough {
                self.trough = value;
                self.trough_t_s = t_s;
                self.after_trough = None;
                return None;
            }
            let after_trough = *self.after_trough.get_or_insert(value);
            if value > self.trough + threshold {
                self.falling = false;
                let drop = Drop {
                    peak_t_s: self.peak_t_s,
                    trough_t_s: self.trough_t_s,
                    trough: self.trough,
                    after_trough,
                    threshold,
                };
                self.peak = value;
                self.peak_t_s = t_s;
                return Some(drop);
            }
        } else if value > self.peak {
            self.peak = value;
            self.peak_t_s = t_s;
        } else if value < self.peak - threshold {
            self.falling = true;
            self.trough = value;
            self.trough_t_s = t_s;
            self.after_trough = None;
        }
        None
    }

    /// Remembers a completed cycle.
    pub(crate) fn record(&mut self, drop: &Drop, period_s: f64) {
        if self.cycles.len() == CYCLES_KEPT {
            self.cycles.pop_front();
        }
        self.cycles.push_back(Cycle {
            trough_t_s: drop.trough_t_s,
            period_s: period_s.max(0.0),
            trough: drop.trough,
            rise: (drop.after_trough - drop.trough).max(0.0),
        });
    }

    /// The longest period among the cycles whose trough came at or after `since_s`, seconds.
    pub(crate) fn longest_period_since(&self, since_s: f64) -> Option<f64> {
        self.cycles
            .iter()
            .filter(|c| c.trough_t_s >= since_s)
            .map(|c| c.period_s)
            .reduce(f64::max)
    }

    /// The uncertainty of the newest troughs; zero before two cycles were seen.
    #[cfg(test)]
    pub(crate) fn noise(&self) -> TroughNoise {
        self.noise_since(f64::NEG_INFINITY)
    }

    /// [`CycleTracker::noise`] over the recent cycles whose trough came at or after `since_s`
    /// only, so that an old step or warm-up does not count as noise of the present.
    pub(crate) fn noise_since(&self, since_s: f64) -> TroughNoise {
        let newest = self.cycles.len().saturating_sub(NOISE_CYCLES);
        let recent: Vec<&Cycle> = self
            .cycles
            .range(newest..)
            .filter(|c| c.trough_t_s >= since_s)
            .collect();
        let mut rises: Vec<f64> = recent.iter().map(|c| c.rise).collect();
        let mut changes: Vec<f64> = recent
            .windows(2)
            .map(|w| w[1].trough - w[0].trough)
            .collect();
        // The trend of the troughs (a leak moves them all the same way) is not jitter.
        let trend = crate::robust::median(&mut changes).unwrap_or(0.0);
        let mut deviations: Vec<f64> = changes.iter().map(|c| (c - trend).abs()).collect();
        // Twice the lower quartile rather than the median: a transient spike that ends half-way
        // up a tooth leaves a trough that is no floor at all, and such pseudo-troughs can spoil
        // more than half of the changes.
        TroughNoise {
            alias: crate::robust::median(&mut rises).unwrap_or(0.0),
            jitter: 2.0 * crate::robust::quantile(&mut deviations, 0.25).unwrap_or(0.0),
        }
    }

    /// How much of the recent past is still an unfinished tooth, seconds: one and a half of the
    /// longest cycle among those that ended within the last `2 × max_s` (or three of their own
    /// periods, for cycles longer than that), clamped to
    /// `[min_s, max_s]`. When the process has not cycled for three of its cycle lengths, only
    /// `min_s`.
    pub(crate) fn unsettled_s(&self, now_s: f64, min_s: f64, max_s: f64) -> f64 {
        // A cycle is recent for three of its own periods, and for at least `2 × max_s`: a clear
        // every 640 s, forgotten after 600 s, let the next tooth's 10.7-minute climb (from the
        // last clear's trough) read as a 12-minute ramp.
        let recent = self
            .cycles
            .iter()
            .filter(|c| now_s - c.trough_t_s <= (2.0 * max_s).max(3.0 * c.period_s));
        let Some(longest) = recent.map(|c| c.period_s).reduce(f64::max) else {
            return min_s;
        };
        let last = self.cycles.back().map_or(now_s, |c| c.trough_t_s);
        if now_s - last > 3.0 * longest.max(min_s) {
            return min_s;
        }
        (1.5 * longest).clamp(min_s, max_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(floor: &mut FloorSeries, values: impl IntoIterator<Item = (f64, f64)>) {
        for (t, v) in values {
            floor.push(t, v);
        }
    }

    #[test]
    fn floor_is_the_least_value_held_from_then_on() {
        let mut floor = FloorSeries::new(1.0, 100.0);
        series(
            &mut floor,
            [
                (0.0, 5.0),
                (1.0, 9.0),
                (2.0, 7.0),
                (3.0, 8.0),
                (4.0, 10.0),
                (5.0, 0.0),
            ],
        );
        assert_eq!(floor.floor_at(0.0), Some(5.0));
        assert_eq!(floor.floor_at(1.5), Some(7.0));
        assert_eq!(floor.floor_at(3.0), Some(8.0));
        assert_eq!(floor.floor_at(4.0), Some(10.0));
        assert_eq!(floor.newest_end_s(), Some(5.0));
    }

    #[test]
    fn between_sparse_samples_the_floor_is_interpolated() {
        let mut floor = FloorSeries::new(5.0, 3600.0);
        for (t, v) in [(0.0, 100.0), (60.0, 160.0), (120.0, 220.0)] {
            floor.push(t, v);
            floor.seal();
        }
        // Inside a block, its floor; in the gap after it, the way to the next block's floor.
        assert_eq!(floor.floor_at(2.0), Some(100.0));
        assert_eq!(floor.floor_at(30.0), Some(130.0));
        assert_eq!(floor.floor_at(90.0), Some(190.0));
        assert_eq!(floor.floor_at(121.0), Some(220.0));
        assert_eq!(floor.count_between(0.0, 120.0), 2);
        assert_eq!(floor.count_between(0.0, 121.0), 3);
        assert_eq!(floor.count_between(130.0, 200.0), 0);
    }

    #[test]
    fn a_drop_lowers_every_earlier_floor() {
        let mut floor = FloorSeries::new(1.0, 100.0);
        series(&mut floor, (0..10).map(|i| (i as f64, 100.0 + i as f64)));
        assert_eq!(floor.floor_at(8.0), Some(108.0));
        series(&mut floor, [(10.0, 50.0), (11.0, 60.0)]);
        assert_eq!(floor.floor_at(0.0), Some(50.0));
        assert_eq!(floor.floor_at(9.0), Some(50.0));
    }

    #[test]
    fn state_is_bounded_by_the_horizon() {
        let mut floor = FloorSeries::new(5.0, 60.0);
        series(&mut floor, (0..100_000).map(|i| (i as f64, i as f64)));
        assert!(floor.blocks.len() <= 12);
        assert!(floor.oldest_s().expect("blocks") > 99_000.0);
    }

    #[test]
    fn gaps_keep_blocks_aligned() {
        let mut floor = FloorSeries::new(5.0, 600.0);
        series(
            &mut floor,
            [
                (0.0, 1.0),
                (1.0, 1.0),
                (23.0, 2.0),
                (24.0, 2.0),
                (31.0, 3.0),
            ],
        );
        let starts: Vec<f64> = floor.blocks.iter().map(|b| b.t_s).collect();
        assert_eq!(starts, vec![0.0, 20.0]);
    }

    /// Feeds `values` (one a second) to a floor and a tracker wired as the detector wires them.
    fn cycles(values: impl IntoIterator<Item = f64>, min_drop: f64) -> (FloorSeries, CycleTracker) {
        let mut floor = FloorSeries::new(1.0, 10_000.0);
        let mut tracker = CycleTracker::new(min_drop, 0.0);
        for (i, v) in values.into_iter().enumerate() {
            let t = i as f64;
            floor.push(t, v);
            if let Some(drop) = tracker.push(t, v) {
                let since = floor.last_at_or_below(drop.trough + drop.threshold, drop.peak_t_s);
                tracker.record(&drop, drop.trough_t_s - since.unwrap_or(drop.trough_t_s));
            }
        }
        (floor, tracker)
    }

    #[test]
    fn tracker_learns_the_sawtooth_period() {
        let (_, tracker) = cycles((0..600).map(|i| (i % 30) as f64), 1.0);
        // Cycles of 30 s (the trough is back within the drop threshold 29 s after it was
        // last there): the unsettled tail is one and a half of that.
        assert_eq!(tracker.unsettled_s(600.0, 5.0, 300.0), 1.5 * 29.0);
        // Once the process stops cycling, the tail shrinks back.
        assert_eq!(tracker.unsettled_s(1000.0, 5.0, 300.0), 5.0);
    }

    #[test]
    fn a_periodic_clear_is_one_long_cycle_under_a_fast_sawtooth() {
        // Rises 1 a second with a 10-second sawtooth of height 5, cleared every 200 s.
        let (_, tracker) = cycles(
            (0..1000).map(|i| (i % 200) as f64 + (i % 10) as f64 * 0.5),
            2.0,
        );
        // The clear returns to a level last seen 199 s earlier; the 10-second teeth are shorter.
        assert_eq!(tracker.unsettled_s(1000.0, 5.0, 1000.0), 1.5 * 199.0);
    }

    #[test]
    fn a_steep_tooth_makes_its_sampled_trough_uncertain() {
        // Teeth of 80 rising over 8 samples: a sampled trough is only known to within 10.
        let (_, tracker) = cycles((0..400).map(|i| (i % 8) as f64 * 10.0), 5.0);
        assert_eq!(
            tracker.noise(),
            TroughNoise {
                alias: 10.0,
                jitter: 0.0
            }
        );
    }

    #[test]
    fn noise_below_the_threshold_is_not_a_cycle() {
        let (_, tracker) = cycles((0..600).map(|i| 100.0 + (i % 3) as f64), 10.0);
        assert_eq!(tracker.unsettled_s(600.0, 5.0, 300.0), 5.0);
        assert!(tracker.cycles.is_empty());
    }
}
