//! The soak's work on a Node target's heap, through the supervisor's admin channel (the loop
//! runs each agent action as a task, so none of this blocks it): a full GC forced every
//! `--gc-every` whose post-GC heap is the verdict's heap channel, with the pauses it cost the
//! app; and, when the steady state rises like a leak, three heap snapshots spaced through the
//! time that is left, diffed to name the suspects before the soak ends.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use plimsoll_heap::Census;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::registry::{AdminAction, AdminReply, AdminRequest};
use crate::stdout::errln;
use crate::supervise::investigate::{self, Findings};
use crate::units::{human_bytes, human_seconds};

/// The longest spacing between the snapshots of a soak's investigation (the automatic
/// investigation's own).
pub(crate) const MAX_SPACING: Duration = crate::supervise::INVESTIGATION_SPACING;
/// The shortest spacing taken: objects of a few seconds' life born between the first two
/// snapshots must be dead by the third.
const MIN_SPACING: Duration = Duration::from_secs(5);
/// What the leak should add between two snapshots for its objects to stand well above those
/// the app keeps anyway (a heap read after a forced GC moves by a few MB at most).
const GROWTH_BETWEEN: f64 = 20e6;
/// The plan counts the measured cost of the first snapshot this many times over (a loaded
/// machine, a heap that grows).
const COST_MARGIN: f64 = 1.5;
/// The diff after the third snapshot costs about this many readings of one snapshot (the
/// third's reading and dominators; the first two are read while waiting).
const DIFF_PER_READING: f64 = 3.0;
/// Time kept free at the end of the soak besides the snapshots and the diff.
const RESERVE: Duration = Duration::from_secs(5);

/// What the forced GCs found and cost.
#[derive(Debug)]
pub(crate) struct ForcedGc {
    /// Between two forced GCs.
    pub(crate) every: Duration,
    /// The target's heap used right after the last forced GC plus the external memory of its
    /// ArrayBuffers and Buffers then, summed over its Node processes.
    pub(crate) heap_after: Option<u64>,
    /// The first reading after the warm-up and the last, `(seconds into the soak, bytes)`.
    first_steady: Option<(f64, u64)>,
    last: Option<(f64, u64)>,
    /// Forced GCs answered.
    pub(crate) count: u64,
    /// Forced GCs that failed (no agent yet, a busy agent, …).
    failed: u64,
    /// The pause of each GC in each process, milliseconds (what `gc()` took on the app's
    /// thread).
    pauses_ms: Vec<f64>,
}

impl ForcedGc {
    pub(crate) fn new(every: Duration) -> ForcedGc {
        ForcedGc {
            every,
            heap_after: None,
            first_steady: None,
            last: None,
            count: 0,
            failed: 0,
            pauses_ms: Vec::new(),
        }
    }

    /// Takes the loop's answer to a forced GC at `t_s` seconds into the soak.
    pub(crate) fn record(&mut self, t_s: f64, warmup_s: f64, answer: &AdminReply) {
        let AdminReply::Done(reply) = answer else {
            self.failed += 1;
            return;
        };
        let processes = reply["processes"].as_array().cloned().unwrap_or_default();
        let mut heap = 0u64;
        for process in &processes {
            let Some(after) = process["heap_used_after_bytes"].as_u64() else {
                self.failed += 1;
                return;
            };
            // The live heap and what its Buffers hold outside it: both are what the app
            // retains (an agent of an older release reports the heap alone).
            let external = process["external_after_bytes"].as_u64().unwrap_or(0);
            heap = heap.saturating_add(after).saturating_add(external);
        }
        if processes.is_empty() {
            self.failed += 1;
            return;
        }
        self.pauses_ms.extend(
            processes
                .iter()
                .filter_map(|p| p["pause_ms"].as_f64())
                .filter(|p| p.is_finite() && *p >= 0.0),
        );
        self.count += 1;
        self.heap_after = Some(heap);
        if t_s >= warmup_s && self.first_steady.is_none() {
            self.first_steady = Some((t_s, heap));
        }
        self.last = Some((t_s, heap));
    }

    /// The pauses' median, 95th percentile, largest and mean, milliseconds.
    fn pause_stats(&self) -> Option<[f64; 4]> {
        if self.pauses_ms.is_empty() {
            return None;
        }
        let mut sorted = self.pauses_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
        Some([at(0.5), at(0.95), sorted[sorted.len() - 1], mean])
    }

    /// The verdict's `forced_gc` object; `soak_s` is how long the soak ran.
    pub(crate) fn json(&self, soak_s: f64) -> Value {
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        let stats = self.pause_stats();
        let paused_ms: f64 = self.pauses_ms.iter().sum();
        json!({
            "every_s": self.every.as_secs_f64(),
            "count": self.count,
            "failed": self.failed,
            "pause_ms": stats.map(|[median, p95, max, mean]| json!({
                "median": round(median), "p95": round(p95), "max": round(max), "mean": round(mean),
            })),
            "paused_fraction": (soak_s > 0.0).then(|| (paused_ms / 1000.0 / soak_s * 1e6).round() / 1e6),
            "heap_after_gc_bytes": {
                "first_steady": self.first_steady.map(|(_, b)| b),
                "first_steady_at_s": self.first_steady.map(|(t, _)| round(t)),
                "last": self.last.map(|(_, b)| b),
                "last_at_s": self.last.map(|(t, _)| round(t)),
            },
        })
    }

    /// One line for people: how often, how many, what they cost.
    pub(crate) fn describe(&self, soak_s: f64) -> String {
        let every = human_seconds(self.every.as_secs_f64());
        let mut text = format!("every {every}: {} GCs", self.count);
        if self.failed > 0 {
            text.push_str(&format!(" ({} failed)", self.failed));
        }
        if let Some([median, _, max, _]) = self.pause_stats() {
            let paused_s: f64 = self.pauses_ms.iter().sum::<f64>() / 1000.0;
            text.push_str(&format!(
                ", pause {median:.1} ms median, {max:.1} ms max ({:.3} % of the time)",
                if soak_s > 0.0 {
                    paused_s / soak_s * 100.0
                } else {
                    0.0
                }
            ));
        }
        if let (Some((_, first)), Some((_, last))) = (self.first_steady, self.last) {
            text.push_str(&format!(
                "; live heap {} → {}",
                human_bytes(first as f64),
                human_bytes(last as f64)
            ));
        }
        text
    }
}

/// Asks the loop for a full GC; the answer comes on the returned receiver. `None` when the
/// channel is full (the loop is busy: try at the next tick).
pub(crate) fn request_gc(
    admin: &mpsc::Sender<AdminRequest>,
) -> Option<oneshot::Receiver<AdminReply>> {
    let (reply, answer) = oneshot::channel();
    admin
        .try_send(AdminRequest {
            action: AdminAction::Gc,
            reply,
        })
        .ok()
        .map(|()| answer)
}

/// Whether an investigation can start with `remaining` of the soak left: room for the first
/// snapshot and two of the shortest spacings; `Err` with the reason when not.
pub(crate) fn can_start(remaining: Duration) -> Result<(), String> {
    let needed = RESERVE + 2 * MIN_SPACING;
    if remaining < needed {
        return Err(format!(
            "too little of the soak left for three heap snapshots ({} left, {} needed)",
            human_seconds(remaining.as_secs_f64()),
            human_seconds(needed.as_secs_f64())
        ));
    }
    Ok(())
}

/// What the first snapshot cost: the time the app took to write it and the time to read it
/// (its census).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cost {
    pub(crate) write: Duration,
    pub(crate) read: Duration,
}

/// The spacing of the next two snapshots, planned from the measured cost of the first with
/// `remaining` of the soak left after it: long enough for a leak growing `rate` bytes per second
/// to add [`GROWTH_BETWEEN`] (between [`MIN_SPACING`] and [`MAX_SPACING`]), short enough that two
/// more snapshots and the diff end before the soak; `Err` with the reason when that does not fit.
pub(crate) fn spacing(remaining: Duration, cost: Cost, rate: f64) -> Result<Duration, String> {
    let work =
        (2.0 * cost.write.as_secs_f64() + DIFF_PER_READING * cost.read.as_secs_f64()) * COST_MARGIN;
    let free = remaining.as_secs_f64() - RESERVE.as_secs_f64() - work;
    let fits = Duration::from_secs_f64((free / 2.0).max(0.0));
    if fits < MIN_SPACING {
        return Err(format!(
            "too little of the soak left for two more heap snapshots ({} left; the first took {:.1}s to write and {:.1}s to read)",
            human_seconds(remaining.as_secs_f64()),
            cost.write.as_secs_f64(),
            cost.read.as_secs_f64()
        ));
    }
    let wanted = if rate > 0.0 && rate.is_finite() {
        Duration::from_secs_f64((GROWTH_BETWEEN / rate).min(MAX_SPACING.as_secs_f64()))
    } else {
        MAX_SPACING
    };
    Ok(wanted.clamp(MIN_SPACING, MAX_SPACING).min(fits))
}

/// Takes three heap snapshots through the loop into `dir` and diffs them (the automatic
/// investigation's method): the first at once, the next two spaced by [`spacing`] from what the
/// first cost, so that all ends by `end`, the soak's end, for a leak growing `rate` bytes per
/// second. Each snapshot is read while the next is awaited.
pub(crate) async fn investigate(
    admin: mpsc::Sender<AdminRequest>,
    dir: PathBuf,
    heap_bytes: u64,
    end: Instant,
    rate: f64,
) -> Result<Findings> {
    investigate::check_room(&dir, heap_bytes)?;
    // Deleted if the soak ends first and drops this future.
    let mut paths = Unfinished(Vec::with_capacity(3));
    let started = Instant::now();
    let first = snapshot(&admin, 1).await?;
    let written = Instant::now();
    paths.0.push(first.clone());
    let baseline = read(first).await?;
    let cost = Cost {
        write: written - started,
        read: written.elapsed(),
    };
    let spacing =
        spacing(end.saturating_duration_since(written), cost, rate).map_err(anyhow::Error::msg)?;
    errln!(
        "plimsoll soak: heap snapshot 1 of 3 took {:.1}s to write and {:.1}s to read: the next two {:.1}s apart",
        cost.write.as_secs_f64(),
        cost.read.as_secs_f64(),
        spacing.as_secs_f64()
    );
    tokio::time::sleep_until((written + spacing).into()).await;
    let second = snapshot(&admin, 2).await?;
    let written = Instant::now();
    paths.0.push(second.clone());
    let target = tokio::spawn(read(second));
    tokio::time::sleep_until((written + spacing).into()).await;
    let third = snapshot(&admin, 3).await?;
    paths.0.push(third);
    let target = target.await.context("reading the second snapshot")??;
    let files = paths.0.clone();
    let diff = tokio::task::spawn_blocking(move || {
        crate::heap::three_way_json_of(
            baseline,
            target,
            [files[0].as_path(), files[1].as_path(), files[2].as_path()],
            investigate::TOP,
        )
    })
    .await
    .context("the snapshot diff")??;
    let found = investigate::kept(&paths.0, &diff);
    // The first two are deleted; the last stays as evidence.
    paths.0.clear();
    Ok(found)
}

/// Snapshot `n` of 3, through the loop: its path.
async fn snapshot(admin: &mpsc::Sender<AdminRequest>, n: usize) -> Result<PathBuf> {
    let (reply, answer) = oneshot::channel();
    admin
        .send(AdminRequest {
            action: AdminAction::Snapshot,
            reply,
        })
        .await
        .context("the supervisor stopped")?;
    match answer.await.context("the supervisor stopped")? {
        AdminReply::Done(done) => match done["path"].as_str() {
            Some(path) => Ok(PathBuf::from(path)),
            None => bail!("the snapshot's reply has no path: {done}"),
        },
        AdminReply::Failed(why) | AdminReply::Unsupported(why) => {
            bail!("snapshot {n} of 3: {why}")
        }
    }
}

/// The census of a snapshot, read on the blocking pool.
async fn read(path: PathBuf) -> Result<Census> {
    tokio::task::spawn_blocking(move || crate::heap::census(&path))
        .await
        .context("reading a heap snapshot")?
}

/// Snapshots of an investigation that did not get to its end: deleted when dropped.
struct Unfinished(Vec<PathBuf>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_gc_readings_count_the_buffers_held_outside_the_heap() {
        let mut gc = ForcedGc::new(Duration::from_secs(15));
        gc.record(
            20.0,
            10.0,
            &AdminReply::Done(json!({"processes": [{
                "heap_used_after_bytes": 30_000_000u64,
                "external_after_bytes": 5_000_000u64,
                "pause_ms": 3.0,
            }]})),
        );
        assert_eq!(gc.heap_after, Some(35_000_000));
    }

    #[test]
    fn forced_gc_readings_sum_processes_and_time_their_pauses() {
        let mut gc = ForcedGc::new(Duration::from_secs(15));
        let done = |heaps: &[(u64, f64)]| {
            AdminReply::Done(json!({"processes": heaps.iter().map(|(h, p)| json!({
                "heap_used_after_bytes": h, "pause_ms": p,
            })).collect::<Vec<_>>()}))
        };
        gc.record(5.0, 10.0, &done(&[(10_000_000, 2.0)]));
        gc.record(15.0, 10.0, &done(&[(12_000_000, 4.0), (1_000_000, 1.0)]));
        gc.record(
            30.0,
            10.0,
            &AdminReply::Failed("no agent connected".to_owned()),
        );
        gc.record(45.0, 10.0, &AdminReply::Done(json!({"processes": [{}]})));
        assert_eq!(gc.heap_after, Some(13_000_000));
        assert_eq!(gc.count, 2);
        let json = gc.json(100.0);
        assert_eq!(json["failed"], 2);
        assert_eq!(json["pause_ms"]["median"], 2.0);
        assert_eq!(json["pause_ms"]["max"], 4.0);
        assert_eq!(json["heap_after_gc_bytes"]["first_steady"], 13_000_000);
        assert_eq!(json["heap_after_gc_bytes"]["first_steady_at_s"], 15.0);
        // 7 ms paused over 100 s.
        assert_eq!(json["paused_fraction"], 0.00007);
        assert!(
            gc.describe(100.0).contains("2 GCs (2 failed)"),
            "{}",
            gc.describe(100.0)
        );
        assert_eq!(
            ForcedGc::new(Duration::from_secs(1)).json(0.0)["pause_ms"],
            Value::Null
        );
    }

    #[test]
    fn the_snapshots_are_spaced_from_what_the_first_cost_and_fit_before_the_end() {
        // Measured: node-fast-leak's 374 MiB heap (48 KB records) writes in 2 s as a 6.3 MB
        // snapshot, read in under 1 s.
        let fast = Cost {
            write: Duration::from_secs(2),
            read: Duration::from_secs(1),
        };
        // A fast leak (2.17 MB/s) seen at 191 s of 600: short spacing, 20 MB grown between.
        let got = spacing(Duration::from_secs(407), fast, 2.17e6).expect("fits");
        assert!((got.as_secs_f64() - 20e6 / 2.17e6).abs() < 1e-6, "{got:?}");
        // A slow leak (28 KB/s) seen at 439 s of 600: the longest spacing still fits.
        assert_eq!(
            spacing(Duration::from_secs(159), fast, 28e3),
            Ok(MAX_SPACING)
        );
        // Seen later still: what is left after the reserve and the work, split in two.
        let got = spacing(Duration::from_secs(60), fast, 28e3).expect("fits");
        let work = (2.0 * 2.0 + DIFF_PER_READING * 1.0) * COST_MARGIN;
        assert!(
            (got.as_secs_f64() - (60.0 - 5.0 - work) / 2.0).abs() < 1e-6,
            "{got:?}"
        );
        // Never closer than the shortest spacing, however fast the leak.
        assert_eq!(
            spacing(Duration::from_secs(400), fast, 1e9),
            Ok(MIN_SPACING)
        );
        assert_eq!(
            spacing(Duration::from_secs(400), fast, 0.0),
            Ok(MAX_SPACING)
        );
        // A heap whose snapshot costs a minute to write: it does not fit in two minutes.
        let slow = Cost {
            write: Duration::from_secs(60),
            read: Duration::from_secs(10),
        };
        let refused = spacing(Duration::from_secs(120), slow, 1e6).expect_err("no room");
        assert!(
            refused.contains("the first took 60.0s to write"),
            "{refused}"
        );
        assert!(can_start(Duration::from_secs(10)).is_err());
        assert!(can_start(Duration::from_secs(20)).is_ok());
    }
}
