//! Remote targets: samples that browser pages (and other reporters) POST to `/api/v1/ingest`.
//! Each (target, instance) runs through its own [`Monitor`] — the same levels and leak detector
//! as a process — and its samples and events go to the store under `TARGET.INSTANCE`. What the
//! HTTP server shows is per target: one aggregate entry in `/health` (the worst instance's
//! level and leak), instance counts per leak state and heap quantiles in `/metrics`, never a
//! series per browser tab.
//!
//! Bounded everywhere: samples per request (`body.rs`), live instances per target and targets
//! (idle instances expire), requests per second per instance (a token bucket). The state is
//! behind one sync lock, held only while a request's samples are fed (no await inside): the
//! detector costs a few comparisons per sample and the outputs never block.

pub(crate) mod body;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Result;
use plimsoll_analysis::{DetectorConfig, LeakStatus, LevelConfig};
use plimsoll_http::metrics::{leak_number, Family, Kind};
use plimsoll_http::TargetStatus;
use plimsoll_probe::{Bytes, Detail, Pid, Sample};
use serde_json::{json, Value};

use crate::agent::HeapFigures;
use crate::outputs::Outputs;
use crate::sinks::SinkConfig;
use crate::supervise::monitor::Monitor;
use body::{store_name, Batch, RemoteSample};

/// An instance that sent nothing for this long is forgotten.
pub(crate) const IDLE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// The most remote targets at once.
pub(crate) const MAX_TARGETS: usize = 64;
/// The most live instances over all remote targets (about 12 KiB each: `bench/ingest.sh`).
pub(crate) const MAX_INSTANCES_TOTAL: usize = 10_000;
/// Requests per second an instance may send, sustained, and its burst.
const RATE_PER_S: f64 = 2.0;
const BURST: f64 = 10.0;
/// How often idle instances are swept out (at most).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// How remote targets are judged and bounded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RemoteConfig {
    /// Each instance's budget, bytes; `None`: no levels beyond ok.
    pub(crate) budget: Option<u64>,
    /// The level marks and holds.
    pub(crate) levels: LevelConfig,
    /// The leak detector's time scale (1: the documented windows).
    pub(crate) time_scale: f64,
    /// The most live instances of one target.
    pub(crate) max_instances: usize,
}

impl RemoteConfig {
    /// No budget, the recommended levels and detector, 500 instances per target.
    pub(crate) fn recommended() -> RemoteConfig {
        RemoteConfig {
            budget: None,
            levels: LevelConfig::recommended(),
            time_scale: 1.0,
            max_instances: 500,
        }
    }
}

/// Why a batch was refused, beyond its body: each is a label of
/// `plimsoll_ingest_rejected_total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The instance sends too often (429).
    Rate(String),
    /// Its target has as many live instances as it may, or there are as many targets as there
    /// may be (429).
    Full(String),
    /// The server is stopping (503).
    Stopping,
}

/// Counted refusals, by the reason label.
pub(crate) const REASONS: [&str; 7] = [
    "token",
    "origin",
    "too_large",
    "malformed",
    "rate",
    "full",
    "stopping",
];

/// The remote targets of one server.
#[derive(Debug)]
pub(crate) struct Ingest {
    config: RemoteConfig,
    detector: DetectorConfig,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    targets: BTreeMap<String, Remote>,
    /// `None` once closed.
    outputs: Option<Outputs>,
    samples_total: u64,
    dropped_total: u64,
    rejected: [u64; REASONS.len()],
    last_sweep: Instant,
}

/// One remote target.
#[derive(Debug)]
struct Remote {
    instances: HashMap<String, Instance>,
    first_seen_unix_ms: i64,
    /// Sums over every instance ever (counters: they survive expiry).
    long_tasks_total: u64,
    long_task_ms_total: f64,
}

/// One instance of a remote target.
#[derive(Debug)]
struct Instance {
    monitor: Monitor,
    /// Its first sample's time: the origin of its detector's clock.
    first_t_unix_ms: i64,
    /// The newest sample taken in; older ones are dropped.
    last: Option<RemoteSample>,
    last_seen: Instant,
    /// Requests it may still send now (token bucket).
    tokens: f64,
    /// The monitor's leak status after the last batch: what readers show (reading it from
    /// every detector at each scrape took 0.41 s for 10,000 instances).
    leak: LeakStatus,
}

/// The aggregate of one remote target, for `/health`, `/api/v1/targets` and the dashboard.
#[derive(Debug, Clone)]
pub(crate) struct RemoteView {
    /// Name, the worst instance's level and leak, the largest heap.
    pub(crate) status: TargetStatus,
    /// `{"instances", "leak_states", "heap_used_bytes_p50", …, "chart"}`.
    pub(crate) remote: Value,
    /// One object per live instance.
    pub(crate) instances: Vec<Value>,
}

impl Ingest {
    /// Opens the outputs of the remote targets (the store in `data_dir`, and `sinks`).
    pub(crate) fn open(
        data_dir: &Path,
        sinks: &SinkConfig,
        config: RemoteConfig,
    ) -> Result<Ingest> {
        let outputs = Outputs::open(data_dir, sinks)?;
        Ok(Ingest {
            config,
            detector: DetectorConfig::recommended().time_scaled(config.time_scale),
            state: Mutex::new(State {
                targets: BTreeMap::new(),
                outputs: Some(outputs),
                samples_total: 0,
                dropped_total: 0,
                rejected: [0; REASONS.len()],
                last_sweep: Instant::now(),
            }),
        })
    }

    /// Delivers what is queued and closes the outputs; later batches get [`Refusal::Stopping`].
    pub(crate) fn close(&self) {
        let outputs = self.lock().outputs.take();
        if let Some(outputs) = outputs {
            outputs.close();
        }
    }

    /// Counts a refusal of the HTTP layer (token, origin, body) under `reason` of [`REASONS`].
    pub(crate) fn count_refusal(&self, reason: &str) {
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.lock().rejected[i] += 1;
        }
    }

    /// Takes in one batch: admission (targets, instances, rate), then every sample newer than
    /// the instance's last through its monitor. Returns how many samples were taken in (older
    /// or repeated ones are dropped and counted).
    pub(crate) fn accept(&self, batch: &Batch, now: Instant) -> Result<usize, Refusal> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let refused = |state: &mut State, refusal: Refusal| {
            let reason = match refusal {
                Refusal::Rate(_) => "rate",
                Refusal::Full(_) => "full",
                Refusal::Stopping => "stopping",
            };
            if let Some(i) = REASONS.iter().position(|r| *r == reason) {
                state.rejected[i] += 1;
            }
            Err(refusal)
        };
        if state.outputs.is_none() {
            return refused(state, Refusal::Stopping);
        }
        if now.saturating_duration_since(state.last_sweep) >= SWEEP_EVERY {
            sweep(&mut state.targets, now);
            state.last_sweep = now;
        }
        if !state.targets.contains_key(&batch.target) && state.targets.len() >= MAX_TARGETS {
            sweep(&mut state.targets, now);
            if state.targets.len() >= MAX_TARGETS {
                let refusal = Refusal::Full(format!(
                    "{MAX_TARGETS} remote targets are live (at most {MAX_TARGETS}; instances \
                     idle for {} s expire): target '{}' is refused",
                    IDLE_EXPIRY.as_secs(),
                    batch.target
                ));
                return refused(state, refusal);
            }
        }
        let is_new = !state
            .targets
            .get(&batch.target)
            .is_some_and(|remote| remote.instances.contains_key(&batch.instance));
        if is_new {
            let total: usize = state.targets.values().map(|r| r.instances.len()).sum();
            if total >= MAX_INSTANCES_TOTAL {
                let refusal = Refusal::Full(format!(
                    "{total} remote instances are live (at most {MAX_INSTANCES_TOTAL} over all \
                     targets; instances idle for {} s expire): instance '{}' of '{}' is refused",
                    IDLE_EXPIRY.as_secs(),
                    batch.instance,
                    batch.target
                ));
                return refused(state, refusal);
            }
        }
        let remote = state
            .targets
            .entry(batch.target.clone())
            .or_insert_with(|| Remote {
                instances: HashMap::new(),
                first_seen_unix_ms: crate::supervise::now_unix_ms(),
                long_tasks_total: 0,
                long_task_ms_total: 0.0,
            });
        if is_new {
            if remote.instances.len() >= self.config.max_instances {
                remote
                    .instances
                    .retain(|_, i| now.saturating_duration_since(i.last_seen) < IDLE_EXPIRY);
            }
            if remote.instances.len() >= self.config.max_instances {
                let refusal = Refusal::Full(format!(
                    "target '{}' has {} live instances (at most {}; instances idle for {} s \
                     expire): instance '{}' is refused",
                    batch.target,
                    remote.instances.len(),
                    self.config.max_instances,
                    IDLE_EXPIRY.as_secs(),
                    batch.instance
                ));
                return refused(state, refusal);
            }
            let name = store_name(&batch.target, &batch.instance);
            let monitor = Monitor::new(
                &name,
                self.config.budget,
                self.config.levels,
                Duration::ZERO,
                self.detector.clone(),
            );
            remote.instances.insert(
                batch.instance.clone(),
                Instance {
                    leak: monitor.leak(),
                    monitor,
                    first_t_unix_ms: batch.samples[0].t_unix_ms,
                    last: None,
                    last_seen: now,
                    tokens: BURST,
                },
            );
        }
        let Some(instance) = remote.instances.get_mut(&batch.instance) else {
            return refused(state, Refusal::Stopping);
        };
        let elapsed = now
            .saturating_duration_since(instance.last_seen)
            .as_secs_f64();
        instance.tokens = (instance.tokens + elapsed * RATE_PER_S).min(BURST);
        instance.last_seen = now;
        if instance.tokens < 1.0 {
            let refusal = Refusal::Rate(format!(
                "instance '{}' of target '{}' sends more than {RATE_PER_S} requests per second \
                 (bursts of {BURST}): batch more samples per request",
                batch.instance, batch.target
            ));
            return refused(state, refusal);
        }
        instance.tokens -= 1.0;
        let Some(outputs) = state.outputs.as_mut() else {
            return refused(state, Refusal::Stopping);
        };
        let mut taken = 0;
        for sample in &batch.samples {
            if instance
                .last
                .is_some_and(|last| sample.t_unix_ms <= last.t_unix_ms)
            {
                state.dropped_total += 1;
                continue;
            }
            let t_s = (sample.t_unix_ms - instance.first_t_unix_ms) as f64 / 1000.0;
            let (probe, heap) = as_sample(sample);
            instance
                .monitor
                .observe_at(t_s, sample.t_unix_ms, &probe, Some(&heap), outputs);
            remote.long_tasks_total += sample.long_tasks;
            remote.long_task_ms_total += sample.long_task_ms;
            instance.last = Some(*sample);
            taken += 1;
        }
        if taken > 0 {
            instance.leak = instance.monitor.leak();
        }
        state.samples_total += taken as u64;
        Ok(taken)
    }

    /// Whether `name` is the series of a live instance (`TARGET.INSTANCE`).
    pub(crate) fn is_live_series(&self, name: &str) -> bool {
        let state = self.lock();
        name.match_indices('.').any(|(at, _)| {
            state
                .targets
                .get(&name[..at])
                .is_some_and(|remote| remote.instances.contains_key(&name[at + 1..]))
        })
    }

    /// Every remote target's aggregate, by name, with its instances listed when `listed`
    /// (`/api/v1/targets`; `/health` and `/metrics` need only the aggregate); idle instances are
    /// swept out first.
    pub(crate) fn views(&self, now: Instant, listed: bool) -> Vec<RemoteView> {
        let mut state = self.lock();
        sweep(&mut state.targets, now);
        state
            .targets
            .iter()
            .map(|(name, remote)| self.view(name, remote, now, listed))
            .collect()
    }

    /// The families of `/metrics` beyond the per-target ones: instances per leak state, heap and
    /// DOM quantiles, long tasks, and ingest's own counters. Labels: `target` (at most
    /// [`MAX_TARGETS`]), `leak_state` (3), `quantile` (3), `reason` (7).
    pub(crate) fn families(&self, views: &[RemoteView]) -> Vec<Family> {
        let mut instances = Vec::new();
        let mut heap = Vec::new();
        let mut dom = Vec::new();
        let mut long_tasks = Vec::new();
        let mut long_task_s = Vec::new();
        let state = self.lock();
        for view in views {
            let name = &view.status.name;
            for (label, key) in [
                ("clear", "clear"),
                ("suspected", "suspected"),
                ("confirmed", "confirmed"),
            ] {
                let count = view.remote["leak_states"][key].as_f64().unwrap_or(0.0);
                instances.push((
                    vec![("target", name.clone()), ("leak_state", label.to_owned())],
                    count,
                ));
            }
            for (quantile, key) in [("0.5", "p50"), ("0.9", "p90"), ("1", "max")] {
                if let Some(v) = view.remote["heap_used_bytes"][key].as_f64() {
                    heap.push((
                        vec![("target", name.clone()), ("quantile", quantile.to_owned())],
                        v,
                    ));
                }
                if let Some(v) = view.remote["dom_nodes"][key].as_f64() {
                    dom.push((
                        vec![("target", name.clone()), ("quantile", quantile.to_owned())],
                        v,
                    ));
                }
            }
            if let Some(remote) = state.targets.get(name) {
                long_tasks.push((
                    vec![("target", name.clone())],
                    remote.long_tasks_total as f64,
                ));
                long_task_s.push((
                    vec![("target", name.clone())],
                    remote.long_task_ms_total / 1000.0,
                ));
            }
        }
        let rejected = REASONS
            .iter()
            .zip(state.rejected)
            .map(|(reason, n)| (vec![("reason", (*reason).to_owned())], n as f64))
            .collect();
        vec![
            Family {
                name: "plimsoll_remote_instances",
                help: "Live instances of a remote target (browser pages), by leak state.",
                kind: Kind::Gauge,
                series: instances,
            },
            Family {
                name: "plimsoll_remote_heap_used_bytes",
                help: "Memory of a remote target's live instances at their last sample: median, 90th percentile, max.",
                kind: Kind::Gauge,
                series: heap,
            },
            Family {
                name: "plimsoll_remote_dom_nodes",
                help: "DOM nodes of a remote target's live instances at their last sample: median, 90th percentile, max.",
                kind: Kind::Gauge,
                series: dom,
            },
            Family {
                name: "plimsoll_remote_long_tasks_total",
                help: "Long tasks (over 50 ms) reported by a remote target's instances.",
                kind: Kind::Counter,
                series: long_tasks,
            },
            Family {
                name: "plimsoll_remote_long_task_seconds_total",
                help: "Time spent in long tasks reported by a remote target's instances.",
                kind: Kind::Counter,
                series: long_task_s,
            },
            Family {
                name: "plimsoll_ingest_samples_total",
                help: "Samples taken in by /api/v1/ingest.",
                kind: Kind::Counter,
                series: vec![(Vec::new(), state.samples_total as f64)],
            },
            Family {
                name: "plimsoll_ingest_dropped_samples_total",
                help: "Samples dropped by /api/v1/ingest for being no newer than their instance's last.",
                kind: Kind::Counter,
                series: vec![(Vec::new(), state.dropped_total as f64)],
            },
            Family {
                name: "plimsoll_ingest_rejected_total",
                help: "Requests to /api/v1/ingest refused, by reason.",
                kind: Kind::Counter,
                series: rejected,
            },
        ]
    }

    fn view(&self, name: &str, remote: &Remote, now: Instant, listed: bool) -> RemoteView {
        let mut status = TargetStatus::new(name, self.config.levels, false);
        status.started_unix_ms = Some(remote.first_seen_unix_ms);
        status.budget_bytes = self.config.budget;
        let mut states = [0u64; 3];
        let mut heaps = Vec::new();
        let mut doms = Vec::new();
        // The instance the dashboard charts: the worst leak, then the largest heap.
        let mut worst: Option<(&String, &Instance)> = None;
        let rank = |i: &Instance| {
            let leak = i.leak;
            (
                leak_number(leak.state),
                i.last.map_or(0, |s| s.heap_used_bytes),
            )
        };
        let mut instances: Vec<Value> = Vec::new();
        for (id, instance) in &remote.instances {
            let leak = instance.leak;
            states[leak_number(leak.state).clamp(0, 2) as usize] += 1;
            status.level = status.level.max(instance.monitor.level());
            if let Some(last) = instance.last {
                heaps.push(last.heap_used_bytes);
                if let Some(d) = last.dom_nodes {
                    doms.push(d);
                }
            }
            if worst.is_none_or(|(_, w)| rank(instance) > rank(w)) {
                worst = Some((id, instance));
            }
            if !listed {
                continue;
            }
            instances.push(json!({
                "instance": id,
                "name": store_name(name, id),
                "level": instance.monitor.level().as_str(),
                "leak": {
                    "state": leak.state.as_str(),
                    "verdict": leak.verdict.as_str(),
                    "growth_bytes_per_s": (leak.growth_bytes_per_s * 100.0).round() / 100.0,
                    "reason": leak.reason.to_string(),
                },
                "heap_used_bytes": instance.last.map(|s| s.heap_used_bytes),
                "heap_total_bytes": instance.last.and_then(|s| s.heap_total_bytes),
                "dom_nodes": instance.last.and_then(|s| s.dom_nodes),
                "last_unix_ms": instance.last.map(|s| s.t_unix_ms),
                "idle_s": now.saturating_duration_since(instance.last_seen).as_secs(),
            }));
        }
        instances.sort_by(|a, b| a["instance"].as_str().cmp(&b["instance"].as_str()));
        if let Some((id, instance)) = worst {
            status.leak = Some(instance.leak);
            status.time_to_budget_s = instance.monitor.time_to_budget_s();
            status.heap_used_bytes = heaps.iter().copied().max();
            let remote_json = json!({
                "instances": remote.instances.len(),
                "leak_states": {
                    "clear": states[0],
                    "suspected": states[1],
                    "confirmed": states[2],
                },
                "heap_used_bytes": quantiles(&mut heaps),
                "dom_nodes": quantiles(&mut doms),
                "chart": store_name(name, id),
            });
            return RemoteView {
                status,
                remote: remote_json,
                instances,
            };
        }
        RemoteView {
            status,
            remote: json!({ "instances": 0, "leak_states": {"clear": 0, "suspected": 0, "confirmed": 0} }),
            instances,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Updates are whole statements on plain data: a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Forgets instances idle for [`IDLE_EXPIRY`], and targets left with none.
fn sweep(targets: &mut BTreeMap<String, Remote>, now: Instant) {
    for remote in targets.values_mut() {
        remote
            .instances
            .retain(|_, i| now.saturating_duration_since(i.last_seen) < IDLE_EXPIRY);
    }
    targets.retain(|_, remote| !remote.instances.is_empty());
}

/// `{"p50", "p90", "max"}` of `values` (nearest rank), or null when there are none.
fn quantiles(values: &mut [u64]) -> Value {
    if values.is_empty() {
        return Value::Null;
    }
    values.sort_unstable();
    let at =
        |q: f64| values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
    json!({ "p50": at(0.5), "p90": at(0.9), "max": values[values.len() - 1] })
}

/// A remote sample in the shapes a [`Monitor`] takes: its memory plays the part of RSS (levels,
/// the detector's RSS channel, the stored `rss_bytes`) and is the heap used too.
fn as_sample(sample: &RemoteSample) -> (Sample, HeapFigures) {
    let probe = Sample {
        root: Pid(0),
        taken_at: std::time::UNIX_EPOCH
            + Duration::from_millis(u64::try_from(sample.t_unix_ms).unwrap_or(0)),
        processes: Vec::new(),
        rss: Bytes(sample.heap_used_bytes),
        pss: None,
        uss: None,
        swap: Bytes(0),
        anon: Bytes(0),
        file: Bytes(0),
        shmem: Bytes(0),
        detail: Detail::StatusOnly,
        cgroup: None,
        psi: None,
    };
    let heap = HeapFigures {
        processes: 1,
        heap_used_bytes: sample.heap_used_bytes,
        heap_total_bytes: sample.heap_total_bytes.unwrap_or(sample.heap_used_bytes),
        external_bytes: 0,
        heap_used_after_gc_bytes: None,
    };
    (probe, heap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn batch(target: &str, instance: &str, from_s: i64, seconds: i64, mib_per_s: u64) -> Batch {
        Batch {
            target: target.to_owned(),
            instance: instance.to_owned(),
            samples: (from_s..from_s + seconds)
                .map(|s| RemoteSample {
                    t_unix_ms: NOW + s * 1000,
                    heap_used_bytes: (50 << 20) + (s as u64) * (mib_per_s << 20),
                    heap_total_bytes: None,
                    dom_nodes: Some(100),
                    long_tasks: 1,
                    long_task_ms: 60.0,
                })
                .collect(),
        }
    }

    fn ingest(dir: &Path, max_instances: usize) -> Ingest {
        let sinks = SinkConfig {
            events: None,
            on_event: None,
            webhook: None,
            hook_timeout: Duration::from_secs(1),
        };
        let config = RemoteConfig {
            max_instances,
            time_scale: 0.05,
            ..RemoteConfig::recommended()
        };
        Ingest::open(dir, &sinks, config).expect("open")
    }

    #[test]
    fn a_leaking_instance_is_detected_and_aggregated_per_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ingest = ingest(dir.path(), 10);
        let start = Instant::now();
        // 60 s of samples at 1 Hz on a clock scaled by 0.05 (20 minutes' worth).
        for chunk in 0..6 {
            let now = start + Duration::from_secs(chunk);
            let leak = batch("web", "leaky", chunk as i64 * 10, 10, 2);
            assert_eq!(ingest.accept(&leak, now), Ok(10));
            let flat = batch("web", "flat", chunk as i64 * 10, 10, 0);
            assert_eq!(ingest.accept(&flat, now), Ok(10));
        }
        let views = ingest.views(start + Duration::from_secs(6), true);
        assert_eq!(views.len(), 1);
        let view = &views[0];
        assert_eq!(view.status.name, "web");
        assert_eq!(view.remote["instances"], 2);
        assert_eq!(view.remote["chart"], "web.leaky", "{}", view.remote);
        let leaky = view
            .instances
            .iter()
            .find(|i| i["instance"] == "leaky")
            .expect("leaky");
        let flat = view
            .instances
            .iter()
            .find(|i| i["instance"] == "flat")
            .expect("flat");
        assert_ne!(leaky["leak"]["state"], "clear", "{leaky}");
        assert_eq!(flat["leak"]["state"], "clear", "{flat}");
        let families = ingest.families(&views);
        let long = families
            .iter()
            .find(|f| f.name == "plimsoll_remote_long_tasks_total")
            .expect("family");
        assert_eq!(long.series[0].1, 120.0);
        ingest.close();
        assert_eq!(
            ingest.accept(&batch("web", "x", 0, 1, 0), start),
            Err(Refusal::Stopping)
        );
    }

    #[test]
    fn instances_are_capped_expire_when_idle_and_are_rate_limited() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ingest = ingest(dir.path(), 2);
        let start = Instant::now();
        assert!(ingest.accept(&batch("web", "a", 0, 1, 0), start).is_ok());
        assert!(ingest.accept(&batch("web", "b", 0, 1, 0), start).is_ok());
        match ingest.accept(&batch("web", "c", 0, 1, 0), start) {
            Err(Refusal::Full(message)) => {
                assert!(
                    message.contains("at most 2") && message.contains("'c'"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
        // Once the others are idle past the expiry, a new instance gets their room.
        let later = start + IDLE_EXPIRY + Duration::from_secs(1);
        assert!(ingest.accept(&batch("web", "c", 10, 1, 0), later).is_ok());
        assert_eq!(ingest.views(later, true)[0].remote["instances"], 1);
        // A burst, then the bucket is empty; old samples are dropped, not fed.
        let mut rate_limited = false;
        for i in 0..20 {
            match ingest.accept(&batch("web", "c", 20 + i, 1, 0), later) {
                Ok(_) => {}
                Err(Refusal::Rate(message)) => {
                    assert!(message.contains("requests per second"), "{message}");
                    rate_limited = true;
                    break;
                }
                Err(other) => panic!("{other:?}"),
            }
        }
        assert!(rate_limited);
        let again = later + Duration::from_secs(5);
        assert_eq!(ingest.accept(&batch("web", "c", 0, 5, 0), again), Ok(0));
        ingest.close();
    }
}
