//! The sampling side of `watch`: every watched process tree sampled in one blocking batch per
//! tick (one trip to the blocking pool, not one task per process), each with its own `Probe`
//! made once and reused; with `--match`, a rescan for new processes every few seconds. Each
//! batch goes to the loop as one immutable report.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use plimsoll_probe::{Pid, Probe, ProbeError, Sample, SampleDepth};
use tokio::sync::mpsc;
use tokio::time::{interval, MissedTickBehavior};

use super::cgroups::{CgroupReport, CgroupSet};
use super::scan::Scanner;
use super::{process, Message};
use crate::fds::{self, Burst};

/// How often `--match` looks for new processes, at most (and at least once per tick).
pub(super) const RESCAN_EVERY: Duration = Duration::from_secs(2);
/// How often a watched tree's cgroup and PSI figures are read again. Reading a cgroup costs
/// more than reading a small process tree, and watched processes mostly share a few
/// cgroups; in between, a sample carries the last figures. Targets take turns, so the cost
/// is spread over the ticks.
pub(super) const CGROUP_EVERY: Duration = Duration::from_secs(10);
/// At most one warning per this long about matches left unwatched for want of descriptors.
const SKIPPED_WARN_EVERY: Duration = Duration::from_secs(60);

/// A process that started being watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Found {
    pub(super) pid: u32,
    /// Its name as the kernel keeps it (`comm`).
    pub(super) name: String,
    /// Its command line, one string per argument.
    pub(super) command: Vec<String>,
}

/// What one tick saw, in the order the loop handles it.
#[derive(Debug)]
pub(super) struct Report {
    /// When the batch began: the time of all its samples on the watcher's clock.
    pub(super) taken: Instant,
    /// Processes watched from this tick on.
    pub(super) found: Vec<Found>,
    /// A sample of each watched tree that could be read, by the root's pid.
    pub(super) samples: Vec<(u32, Sample)>,
    /// Trees that could not be read this time (their process still exists).
    pub(super) failed: Vec<(u32, ProbeError)>,
    /// Processes that exited; they are no longer watched.
    pub(super) gone: Vec<u32>,
    /// What the watched cgroups gave.
    pub(super) cgroups: CgroupReport,
}

#[derive(Debug)]
struct Watched {
    pid: u32,
    probe: Probe,
}

/// Everything the sampling side keeps between ticks.
#[derive(Debug)]
pub(super) struct Batch {
    proc_root: PathBuf,
    watched: Vec<Watched>,
    pids: HashSet<u32>,
    /// Opened before the first tick (the PIDs given on the command line), not yet reported.
    pending: Vec<Found>,
    scanner: Option<Scanner>,
    last_scan: Option<Instant>,
    ticks: u64,
    /// Ticks between two reads of a tree's cgroup.
    cgroup_every: u64,
    /// How many trees may be watched at once: each probe holds a descriptor open, and the
    /// open-file limit must leave room for the rest (`fds::probe_room`).
    max_watched: usize,
    /// Matches not watched for want of descriptors, not yet logged (once per burst).
    skipped: Burst,
    /// The cgroups watched as targets of their own.
    cgroups: CgroupSet,
}

impl Batch {
    /// An empty batch sampled every `interval`; with a `scanner`, it adds the processes that
    /// match.
    pub(super) fn new(
        proc_root: impl Into<PathBuf>,
        scanner: Option<Scanner>,
        interval: Duration,
        cgroups: CgroupSet,
    ) -> Batch {
        let cgroup_every = CGROUP_EVERY.as_secs_f64() / interval.as_secs_f64().max(1e-3);
        Batch {
            proc_root: proc_root.into(),
            watched: Vec::new(),
            pids: HashSet::new(),
            pending: Vec::new(),
            scanner,
            last_scan: None,
            ticks: 0,
            cgroup_every: (cgroup_every.ceil() as u64).max(1),
            max_watched: watchable(),
            skipped: Burst::new(SKIPPED_WARN_EVERY),
            cgroups,
        }
    }

    /// Whether one more tree may be watched within the open-file limit.
    pub(super) fn has_room(&self) -> bool {
        self.watched.len() < self.max_watched
    }

    /// Starts watching `pid`: fails, naming it, when there is no such process (or it has
    /// exited and waits to be reaped) or when its memory may not be read.
    pub(super) fn add(&mut self, pid: u32) -> Result<(), ProbeError> {
        if self.pids.contains(&pid) {
            return Ok(());
        }
        let (watched, found) = open(&self.proc_root, pid)?;
        self.pids.insert(pid);
        self.watched.push(watched);
        self.pending.push(found);
        Ok(())
    }

    /// How many processes and cgroups are watched.
    pub(super) fn len(&self) -> usize {
        self.watched.len() + self.cgroups.len()
    }

    /// One tick: rescans when due, then samples every watched tree.
    pub(super) fn tick(&mut self) -> Report {
        let taken = Instant::now();
        let mut found = std::mem::take(&mut self.pending);
        if self
            .last_scan
            .is_none_or(|last| taken.duration_since(last) >= RESCAN_EVERY)
        {
            self.rescan(taken, &mut found);
        }
        let mut samples = Vec::with_capacity(self.watched.len());
        let mut failed = Vec::new();
        let mut gone = Vec::new();
        self.ticks += 1;
        for (index, watched) in self.watched.iter_mut().enumerate() {
            let sampled = if (self.ticks + index as u64).is_multiple_of(self.cgroup_every) {
                watched.probe.sample(SampleDepth::Fast)
            } else {
                watched.probe.sample_with_last_cgroup(SampleDepth::Fast)
            };
            match sampled {
                Ok(sample) if !is_zombie(&self.proc_root, &sample) => {
                    samples.push((watched.pid, sample));
                }
                Ok(_) | Err(ProbeError::ProcessGone(_)) => gone.push(watched.pid),
                Err(error) => failed.push((watched.pid, error)),
            }
        }
        if !gone.is_empty() {
            self.watched.retain(|w| !gone.contains(&w.pid));
            for pid in &gone {
                self.pids.remove(pid);
            }
            if let Some(scanner) = &mut self.scanner {
                scanner.forget_covered();
            }
        }
        Report {
            taken,
            found,
            samples,
            failed,
            gone,
            cgroups: self.cgroups.tick(taken),
        }
    }

    fn rescan(&mut self, now: Instant, found: &mut Vec<Found>) {
        let Some(scanner) = &mut self.scanner else {
            return;
        };
        self.last_scan = Some(now);
        let matches = match scanner.scan(&self.pids) {
            Ok(matches) => matches,
            Err(error) => {
                tracing::warn!(%error, proc_root = %self.proc_root.display(), "cannot list processes");
                return;
            }
        };
        tracing::debug!(
            matched = matches.len(),
            remembered = scanner.remembered(),
            "rescanned processes"
        );
        let mut skipped = 0;
        for matched in matches {
            if !self.has_room() {
                skipped += 1;
                continue;
            }
            let probe = match Probe::with_proc_root(Pid(matched.pid), &self.proc_root) {
                Ok(probe) => probe,
                Err(error) if fds::probe_exhausted(&error) => {
                    skipped += 1;
                    continue;
                }
                Err(_) => continue, // Exited since the scan.
            };
            let Ok(name) = process::name(&self.proc_root, matched.pid) else {
                continue;
            };
            self.pids.insert(matched.pid);
            self.watched.push(Watched {
                pid: matched.pid,
                probe,
            });
            found.push(Found {
                pid: matched.pid,
                name,
                command: matched.command,
            });
        }
        if skipped > 0 {
            if let Some(times) = self.skipped.hit(now) {
                tracing::warn!(
                    watching = self.watched.len(),
                    skipped,
                    times,
                    fd_limit = fds::limit(),
                    "out of file descriptors: not watching {skipped} more matching processes \
                     (raise the open-file limit, ulimit -n)"
                );
            }
        }
    }
}

/// How many trees this process may watch: the descriptors left under the open-file limit
/// after those open now, the HTTP server's share and a reserve.
fn watchable() -> usize {
    let limit = fds::limit();
    fds::probe_room(limit, fds::open_now().unwrap_or(limit))
}

/// Opens a probe for `pid` and reads it once, so that a process that cannot be watched is
/// refused at once.
fn open(proc_root: &Path, pid: u32) -> Result<(Watched, Found), ProbeError> {
    let gone = |_| ProbeError::ProcessGone(Pid(pid));
    let mut probe = Probe::with_proc_root(Pid(pid), proc_root)?;
    let sample = probe.sample(SampleDepth::Fast)?;
    if is_zombie(proc_root, &sample) {
        return Err(ProbeError::ProcessGone(Pid(pid)));
    }
    let name = process::name(proc_root, pid).map_err(gone)?;
    let command = process::command(proc_root, pid).map_err(gone)?;
    Ok((Watched { pid, probe }, Found { pid, name, command }))
}

/// Whether the root of `sample` has exited but is not reaped yet: the probe reads a zombie
/// as a process with no memory map. Only then is `stat` read.
fn is_zombie(proc_root: &Path, sample: &Sample) -> bool {
    sample.processes.first().is_none_or(|root| root.rss.0 == 0)
        && process::exited(proc_root, sample.root.0)
}

/// Starts the sampling task: a batch every `every` on the blocking pool, its report to the
/// loop. It ends when the loop hangs up.
pub(super) fn spawn(
    mut batch: Batch,
    every: Duration,
    sender: mpsc::Sender<Message>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = interval(every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let joined = tokio::task::spawn_blocking(move || {
                let report = batch.tick();
                (batch, report)
            })
            .await;
            let message = match joined {
                Ok((kept, report)) => {
                    batch = kept;
                    Message::Tick(Box::new(report))
                }
                Err(error) => {
                    let _ = sender.send(Message::SamplerFailed(error.to_string())).await;
                    return;
                }
            };
            if sender.send(message).await.is_err() {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command};

    use super::*;

    /// A `sleep` child, killed and reaped at the end of the test whatever happens.
    struct Sleeper(Child);

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A `sleep 30` child, once its exec is complete (its command line is set).
    fn sleeper() -> Sleeper {
        let sleeper = Sleeper(
            Command::new("sleep")
                .arg("30")
                .spawn()
                .expect("spawn sleep"),
        );
        let pid = sleeper.0.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while process::command(Path::new("/proc"), pid).map_or(true, |c| c.len() != 2) {
            assert!(Instant::now() < deadline, "sleep did not start");
            std::thread::park_timeout(Duration::from_millis(5));
        }
        sleeper
    }

    #[test]
    fn a_watched_process_is_sampled_until_it_exits_even_unreaped() {
        let mut child = sleeper();
        let pid = child.0.id();
        let mut batch = Batch::new("/proc", None, Duration::from_secs(1), CgroupSet::new(None));
        batch.add(pid).expect("watch the sleep");
        batch.add(pid).expect("twice is once");
        assert_eq!(batch.len(), 1);
        let report = batch.tick();
        assert_eq!(report.found.len(), 1);
        assert_eq!(report.found[0].name, "sleep");
        assert_eq!(report.found[0].command, ["sleep", "30"]);
        assert_eq!(report.samples.len(), 1);
        assert!(report.samples[0].1.rss.0 > 0);
        assert!(report.gone.is_empty());

        // Killed but not reaped: a zombie has exited.
        child.0.kill().expect("kill");
        let deadline = Instant::now() + Duration::from_secs(10);
        let report = loop {
            let report = batch.tick();
            if !report.gone.is_empty() || Instant::now() > deadline {
                break report;
            }
            std::thread::park_timeout(Duration::from_millis(10));
        };
        assert_eq!(report.gone, [pid]);
        assert!(report.found.is_empty());
        assert_eq!(batch.len(), 0);
        let _ = child.0.wait();
        assert!(batch.tick().gone.is_empty());
    }

    #[test]
    fn a_process_that_does_not_exist_is_refused_naming_it() {
        let mut child = sleeper();
        let pid = child.0.id();
        child.0.kill().expect("kill");
        child.0.wait().expect("reap");
        let mut batch = Batch::new("/proc", None, Duration::from_secs(1), CgroupSet::new(None));
        let error = batch.add(pid).expect_err("gone");
        assert_eq!(error.to_string(), format!("no process with pid {pid}"));
        assert_eq!(batch.len(), 0);
    }
}
