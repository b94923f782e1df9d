//! The loop's side of one watched cgroup: its figures made a sample for the same `Monitor` as
//! a process (levels and the leak detector on the working set, the budget its limit), plus
//! what only a cgroup has: the kernel's OOM kills (`oom-killed`) and the approach of its limit
//! (`near-limit`, with the time to reach it at the recent pace).

use std::collections::VecDeque;
use std::path::Path;

use plimsoll_analysis::theil_sen;
use plimsoll_http::CgroupStatus;
use plimsoll_probe::{Bytes, CgroupFigures, CgroupMemory, CgroupVersion, Detail, Pid, Sample};

use super::cgroups::Identity;
use crate::event::EventKind;
use crate::supervise::monitor::Monitor;

/// `near-limit` when the working set reaches this share of the limit…
const NEAR_MARK: f64 = 0.9;
/// …and again only after it went back under this share.
const NEAR_REARM: f64 = 0.8;
/// How many recent samples the time-to-limit projection looks at.
const RECENT: usize = 30;

/// One watched cgroup in the loop.
#[derive(Debug)]
pub(super) struct CgroupTarget {
    pub(super) name: String,
    pub(super) monitor: Monitor,
    pub(super) path: String,
    pub(super) identity: Identity,
    /// Its last read failed (logged once until a read succeeds again).
    pub(super) failing: bool,
    /// The OOM-kill counter at the last sample.
    oom_kills: Option<u64>,
    /// Whether the next crossing of the near mark is an event.
    near_armed: bool,
    /// Recent (t_s, working set) points.
    recent: VecDeque<(f64, f64)>,
}

impl CgroupTarget {
    pub(super) fn new(name: String, monitor: Monitor, path: String, identity: Identity) -> Self {
        CgroupTarget {
            name,
            monitor,
            path,
            identity,
            failing: false,
            oom_kills: None,
            near_armed: true,
            recent: VecDeque::with_capacity(RECENT),
        }
    }

    /// The events only a cgroup has, from one sample at `t_s`: the OOM-kill counter moved, or
    /// the working set came near the limit.
    pub(super) fn events(&mut self, t_s: f64, figures: &CgroupFigures) -> Vec<EventKind> {
        let mut events = Vec::new();
        let working_set = figures.working_set.0;
        let limit = figures.limit.map(|l| l.0);
        if let (Some(before), Some(now)) = (self.oom_kills, figures.oom_kill) {
            if now > before {
                events.push(EventKind::OomKilled {
                    kills: now - before,
                    oom_kills_total: now,
                    working_set_bytes: working_set,
                    limit_bytes: limit,
                });
            }
        }
        if figures.oom_kill.is_some() {
            self.oom_kills = figures.oom_kill;
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((t_s, working_set as f64));
        if let Some(limit) = limit.filter(|&l| l > 0) {
            let share = working_set as f64 / limit as f64;
            if self.near_armed && share >= NEAR_MARK {
                self.near_armed = false;
                events.push(EventKind::NearLimit {
                    working_set_bytes: working_set,
                    limit_bytes: limit,
                    time_to_limit_s: self.time_to_limit(working_set, limit),
                });
            } else if share < NEAR_REARM {
                self.near_armed = true;
            }
        }
        events
    }

    /// Seconds until the working set reaches `limit` at the pace of the recent samples (their
    /// Theil–Sen slope); `None` when it is not growing.
    fn time_to_limit(&self, working_set: u64, limit: u64) -> Option<f64> {
        let points: Vec<(f64, f64)> = self.recent.iter().copied().collect();
        let slope = theil_sen(&points)?;
        (slope > 0.0).then(|| limit.saturating_sub(working_set) as f64 / slope)
    }
}

/// A cgroup's figures as a `Sample` for the `Monitor`: `rss` is the working set (what the
/// levels and the leak detector use: page cache the kernel can drop is not a leak), the
/// anon/file/shmem split is the cgroup's, and `cgroup` carries usage, limit and OOM kills.
pub(super) fn sample_of(dir: &Path, path: &str, figures: &CgroupFigures) -> Sample {
    Sample {
        root: Pid(0),
        taken_at: std::time::SystemTime::now(),
        processes: Vec::new(),
        rss: figures.working_set,
        pss: None,
        uss: None,
        swap: Bytes(0),
        anon: figures.anon,
        file: figures.file,
        shmem: figures.shmem,
        detail: Detail::StatusOnly,
        cgroup: Some(CgroupMemory {
            version: figures.version,
            path: path.to_owned(),
            dir: dir.to_owned(),
            usage: figures.usage,
            limit: figures.limit,
            oom: None,
            oom_kill: figures.oom_kill,
        }),
        psi: figures.psi,
    }
}

/// What `/health` and `/metrics` show of a cgroup target.
pub(super) fn status_of(path: &str, identity: &Identity, figures: &CgroupFigures) -> CgroupStatus {
    CgroupStatus {
        path: path.to_owned(),
        version: match figures.version {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        },
        runtime: identity.runtime.as_str(),
        container_id: identity.container_id.clone(),
        pod_uid: identity.pod_uid.clone(),
        qos_class: identity.qos_class,
        usage_bytes: figures.usage.0,
        working_set_bytes: figures.working_set.0,
        anon_bytes: figures.anon.0,
        file_bytes: figures.file.0,
        shmem_bytes: figures.shmem.0,
        limit_bytes: figures.limit.map(|l| l.0),
        oom_kills: figures.oom_kill,
        psi_some_avg10: figures.psi.map(|p| p.some_avg10),
        psi_full_avg10: figures.psi.map(|p| p.full_avg10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plimsoll_analysis::{DetectorConfig, LevelConfig};

    fn figures(working_set: u64, limit: Option<u64>, oom_kill: Option<u64>) -> CgroupFigures {
        CgroupFigures {
            version: CgroupVersion::V1,
            usage: Bytes(working_set),
            working_set: Bytes(working_set),
            anon: Bytes(working_set),
            file: Bytes(0),
            shmem: Bytes(0),
            inactive_file: Bytes(0),
            limit: limit.map(Bytes),
            oom_kill,
            psi: None,
        }
    }

    fn target() -> CgroupTarget {
        let monitor = Monitor::new(
            "c",
            None,
            LevelConfig::recommended(),
            std::time::Duration::ZERO,
            DetectorConfig::recommended(),
        );
        CgroupTarget::new(
            "c".into(),
            monitor,
            "/c".into(),
            super::super::cgroups::identify_given("/c"),
        )
    }

    #[test]
    fn a_moving_oom_counter_is_an_event_the_first_reading_is_not() {
        let mut target = target();
        assert!(target
            .events(0.0, &figures(10, Some(100), Some(4)))
            .is_empty());
        assert!(target
            .events(1.0, &figures(10, Some(100), Some(4)))
            .is_empty());
        let events = target.events(2.0, &figures(5, Some(100), Some(6)));
        assert_eq!(
            events,
            [EventKind::OomKilled {
                kills: 2,
                oom_kills_total: 6,
                working_set_bytes: 5,
                limit_bytes: Some(100)
            }]
        );
        // A kernel that does not count keeps the last count.
        assert!(target.events(3.0, &figures(5, Some(100), None)).is_empty());
        assert_eq!(target.events(4.0, &figures(5, Some(100), Some(7))).len(), 1);
    }

    #[test]
    fn near_limit_projects_the_recent_pace_once_per_approach() {
        let mut target = target();
        let limit = 1000;
        for t in 0..9 {
            assert!(target
                .events(
                    f64::from(t),
                    &figures(800 + 10 * t as u64, Some(limit), None)
                )
                .is_empty());
        }
        // 900 of 1000 at 10 per second: 10 s to go.
        let events = target.events(9.0, &figures(890 + 10, Some(limit), None));
        let [EventKind::NearLimit {
            time_to_limit_s: Some(t),
            ..
        }] = events.as_slice()
        else {
            panic!("{events:?}");
        };
        assert!((t - 10.0).abs() < 1e-9, "{t}");
        assert!(
            target
                .events(10.0, &figures(950, Some(limit), None))
                .is_empty(),
            "once"
        );
        assert!(target
            .events(11.0, &figures(700, Some(limit), None))
            .is_empty());
        let again = target.events(12.0, &figures(950, Some(limit), None));
        assert!(
            matches!(again.as_slice(), [EventKind::NearLimit { .. }]),
            "{again:?}"
        );
        // No limit, no approach.
        let mut unlimited = super::tests::target();
        assert!(unlimited
            .events(0.0, &figures(u64::MAX / 2, None, None))
            .is_empty());
    }
}
