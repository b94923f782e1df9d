//! One target as the HTTP server shows it: [`TargetStatus`] is the plain data a server keeps
//! per target, [`target_json`] its JSON in `/health` and `/api/v1/targets`, [`health`] the
//! whole `/health` answer.

use axum::http::StatusCode;
use plimsoll_analysis::{LeakStatus, Level, LevelConfig};
use serde_json::{json, Value};

/// What is known of one target right now.
#[derive(Debug, Clone)]
pub struct TargetStatus {
    /// The target's name.
    pub name: String,
    /// The root of its process tree, while it runs.
    pub pid: Option<u32>,
    /// When the current run started (or watching began), milliseconds since the Unix epoch.
    pub started_unix_ms: Option<i64>,
    /// RSS of the tree at the last sample, bytes.
    pub rss_bytes: Option<u64>,
    /// Runtime heap in use at the last report (the V8 heap, or jemalloc's allocated bytes),
    /// bytes.
    pub heap_used_bytes: Option<u64>,
    /// Runtime heap in use after the last major GC, bytes.
    pub heap_used_after_gc_bytes: Option<u64>,
    /// The budget in force, bytes.
    pub budget_bytes: Option<u64>,
    /// The budget level.
    pub level: Level,
    /// Marks and holds of the levels in force.
    pub levels: LevelConfig,
    /// The leak detector's view.
    pub leak: Option<LeakStatus>,
    /// Projected seconds until the budget is reached, while a leak is suspected or confirmed.
    pub time_to_budget_s: Option<f64>,
    /// Restarts so far.
    pub restarts: u32,
    /// Whether the server owns the process (run, up, a guarded service) or only watches it.
    pub owned: bool,
    /// How an owned target is kept from outliving its supervisor (`cgroup-v2`, `cgroup-v1`,
    /// `subreaper+pgroup`), once started; shown only when known.
    pub containment: Option<&'static str>,
    /// For a cgroup watched as a target (`watch --cgroup`, `--containers`): its figures and
    /// identity. Its `rss_bytes` is then the working set, which the levels use.
    pub cgroup: Option<CgroupStatus>,
}

/// A watched cgroup at its last sample, and who it is (from its path alone).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupStatus {
    /// Its path inside its hierarchy (`/kubepods.slice/…/cri-containerd-ID.scope`).
    pub path: String,
    /// `v1` or `v2`.
    pub version: &'static str,
    /// What made it: `kubernetes`, `docker`, `containerd`, `podman`, `cri-o`, `systemd`, or
    /// `cgroup` when its path says nothing.
    pub runtime: &'static str,
    /// The container's id (64 hex digits for Docker and containerd).
    pub container_id: Option<String>,
    /// The Kubernetes pod's uid (with dashes, as `kube_pod_info` has it).
    pub pod_uid: Option<String>,
    /// The Kubernetes QoS class: `guaranteed`, `burstable` or `besteffort`.
    pub qos_class: Option<&'static str>,
    /// Memory charged to it, page cache included, bytes.
    pub usage_bytes: u64,
    /// Usage less the inactive file cache, bytes (what the levels and the kubelet use).
    pub working_set_bytes: u64,
    /// Anonymous memory, bytes.
    pub anon_bytes: u64,
    /// File cache (shared memory excluded), bytes.
    pub file_bytes: u64,
    /// Shared memory and tmpfs, bytes.
    pub shmem_bytes: u64,
    /// Its memory limit (the smallest of its own and its ancestors'), bytes; `None`: no limit.
    pub limit_bytes: Option<u64>,
    /// Processes the kernel's OOM killer killed in it, as the kernel counts; `None` where the
    /// kernel does not count them.
    pub oom_kills: Option<u64>,
    /// Memory pressure (PSI) of the cgroup: percent of the last 10 s some / all tasks stalled.
    pub psi_some_avg10: Option<f64>,
    /// See `psi_some_avg10`.
    pub psi_full_avg10: Option<f64>,
}

/// The `cgroup` object of a target in `/health` and `/api/v1/targets`.
fn cgroup_json(cgroup: &CgroupStatus) -> Value {
    json!({
        "path": cgroup.path,
        "version": cgroup.version,
        "runtime": cgroup.runtime,
        "container_id": cgroup.container_id,
        "pod_uid": cgroup.pod_uid,
        "qos_class": cgroup.qos_class,
        "usage_bytes": cgroup.usage_bytes,
        "working_set_bytes": cgroup.working_set_bytes,
        "anon_bytes": cgroup.anon_bytes,
        "file_bytes": cgroup.file_bytes,
        "shmem_bytes": cgroup.shmem_bytes,
        "limit_bytes": cgroup.limit_bytes,
        "oom_kills": cgroup.oom_kills,
        "psi_some_avg10": cgroup.psi_some_avg10,
        "psi_full_avg10": cgroup.psi_full_avg10,
    })
}

impl TargetStatus {
    /// A target before its first sample.
    pub fn new(name: &str, levels: LevelConfig, owned: bool) -> TargetStatus {
        TargetStatus {
            name: name.to_owned(),
            pid: None,
            started_unix_ms: None,
            rss_bytes: None,
            heap_used_bytes: None,
            heap_used_after_gc_bytes: None,
            budget_bytes: None,
            level: Level::Ok,
            levels,
            leak: None,
            time_to_budget_s: None,
            restarts: 0,
            owned,
            containment: None,
            cgroup: None,
        }
    }
}

/// `/health`: 200 while no target is critical, else 503, with every target.
pub fn health<'a>(
    targets: impl IntoIterator<Item = &'a TargetStatus>,
    now_unix_ms: i64,
) -> (StatusCode, Value) {
    let mut worst = Level::Ok;
    let mut shown = Vec::new();
    for target in targets {
        worst = worst.max(target.level);
        shown.push(target_json(target, now_unix_ms));
    }
    let status = match worst {
        Level::Ok => "ok",
        Level::Warn => "warn",
        Level::Critical | Level::Breach => "critical",
    };
    let code = if worst >= Level::Critical {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, json!({ "status": status, "targets": shown }))
}

/// One target as `/health` and `/api/v1/targets` show it.
pub fn target_json(target: &TargetStatus, now_unix_ms: i64) -> Value {
    let leak = target.leak.map(|leak| {
        json!({
            "state": leak.state.as_str(),
            "verdict": leak.verdict.as_str(),
            "growth_bytes_per_s": round2(leak.growth_bytes_per_s),
            "time_to_budget_s": target.time_to_budget_s.map(round2),
            "confidence": round2(leak.confidence),
            "signal": leak.signal.as_str(),
            "needs_more_s": leak.needs_more_s.map(round2),
            "reason": leak.reason.to_string(),
        })
    });
    let mut shown = json!({
        "name": target.name,
        "owned": target.owned,
        "pid": target.pid,
        "rss_bytes": target.rss_bytes,
        "heap_used_bytes": target.heap_used_bytes,
        "heap_used_after_gc_bytes": target.heap_used_after_gc_bytes,
        "budget_bytes": target.budget_bytes,
        "level": target.level.as_str(),
        "warn_percent": round2(target.levels.warn * 100.0),
        "critical_percent": round2(target.levels.critical * 100.0),
        "leak": leak,
        "restarts": target.restarts,
        "uptime_s": target
            .started_unix_ms
            .map(|start| round2((now_unix_ms - start).max(0) as f64 / 1000.0)),
    });
    if let Some(containment) = target.containment {
        shown["containment"] = json!(containment);
    }
    if let Some(cgroup) = &target.cgroup {
        shown["cgroup"] = cgroup_json(cgroup);
    }
    shown
}

/// The answer of a done admin action: `{"target", "action", "result"}`.
pub fn action_reply(target: &str, action: &str, result: Value) -> Value {
    json!({ "target": target, "action": action, "result": result })
}

/// The leak verdict object of DESIGN.md (`analyze --json`, `leak-check`), with a few more
/// fields after the named ones.
pub fn verdict_json(
    status: &LeakStatus,
    budget_bytes: Option<u64>,
    time_to_budget_s: Option<f64>,
) -> Value {
    json!({
        "verdict": status.verdict.as_str(),
        "detected_after_s": status.detected_after_s,
        "suspected_after_s": status.suspected_after_s,
        "growth_bytes_per_s": round2(status.growth_bytes_per_s),
        "time_to_budget_s": time_to_budget_s.map(round2),
        "samples": status.samples,
        "duration_s": round2(status.observed_s),
        "confidence": round2(status.confidence),
        "signal": status.signal.as_str(),
        "needs_more_s": status.needs_more_s.map(round2),
        "reason": status.reason.to_string(),
        "budget_bytes": budget_bytes,
    })
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use plimsoll_analysis::{DetectorConfig, LeakDetector, Observation};

    #[test]
    fn the_leak_object_says_why_and_how_much_longer() {
        let mut detector = LeakDetector::new(DetectorConfig::recommended());
        for i in 0..120u32 {
            detector.push(&Observation {
                t_s: f64::from(i),
                rss_bytes: 100 << 20,
                heap_used_after_gc_bytes: None,
            });
        }
        let mut target = TargetStatus::new("web", LevelConfig::recommended(), true);
        target.leak = Some(detector.status());
        let json = target_json(&target, 0);
        assert_eq!(json["leak"]["verdict"], "inconclusive", "{json}");
        assert!(json["leak"]["needs_more_s"]
            .as_f64()
            .is_some_and(|s| s > 0.0));
        let reason = json["leak"]["reason"].as_str().expect("reason");
        assert!(reason.starts_with("too short"), "{reason}");
    }
}
