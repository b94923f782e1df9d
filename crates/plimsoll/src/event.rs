//! Events: what happened to a target, as every sink (store, event stream, log, hooks,
//! webhook, metrics) receives it. One closed enum; its JSON is the wire format of all sinks.

use serde_json::{json, Value};

use crate::units::{human_bytes, human_seconds};

/// Something that happened to one target.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    /// Milliseconds since the Unix epoch.
    pub(crate) t_unix_ms: i64,
    /// The target's name.
    pub(crate) target: String,
    /// What happened.
    pub(crate) kind: EventKind,
}

/// The kinds of events (DESIGN.md, "Event").
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EventKind {
    /// The target's process was started.
    Started {
        pid: u32,
        command: Vec<String>,
        /// How an owned target is contained (`cgroup-v2`, …); `None` for a watched process.
        containment: Option<&'static str>,
    },
    /// The target's process exited; `code` or `signal` says how.
    Exited {
        pid: u32,
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// The target is being restarted, after `attempt` restarts within the crash-loop window.
    Restarted {
        reason: RestartReason,
        attempt: u32,
        delay_ms: u64,
    },
    /// The crash-loop limit was reached: no more restarts.
    GaveUp { restarts: u32, window_s: f64 },
    /// The budget level moved.
    LevelChanged {
        from: &'static str,
        to: &'static str,
        rss_bytes: u64,
        budget_bytes: u64,
    },
    /// The budget was crossed: a graceful restart follows when the target is owned.
    BudgetBreach { rss_bytes: u64, budget_bytes: u64 },
    /// The leak detector changed its mind.
    Leak(LeakChange),
    /// A heap snapshot was written.
    SnapshotWritten { path: String, bytes: u64 },
    /// The leak investigation after a confirmed leak named its suspects.
    LeakSuspects { snapshot: String, suspects: Value },
    /// Watching a cgroup began (`watch --cgroup`, `--containers`): named `started`, with the
    /// cgroup's path in its hierarchy instead of a pid.
    CgroupStarted {
        cgroup: String,
        identity: crate::watch::Identity,
    },
    /// A watched cgroup was removed: named `exited`.
    CgroupExited { cgroup: String },
    /// The kernel's OOM killer killed `kills` processes of a watched cgroup since the last
    /// sample (its counter moved to `oom_kills_total`).
    OomKilled {
        kills: u64,
        oom_kills_total: u64,
        working_set_bytes: u64,
        limit_bytes: Option<u64>,
    },
    /// A watched cgroup's working set came near its memory limit, with the projected seconds
    /// until it reaches it at the recent pace (`None` when it is not growing).
    NearLimit {
        working_set_bytes: u64,
        limit_bytes: u64,
        time_to_limit_s: Option<f64>,
    },
}

/// Why a target is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestartReason {
    /// It crossed its budget.
    Budget,
    /// It exited on its own (a crash).
    Crash,
    /// An admin asked for it.
    Admin,
}

/// A leak state change with the detector's figures.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LeakChange {
    /// `suspected`, `confirmed` or `cleared`.
    pub(crate) state: &'static str,
    /// Growth rate of the retained floor, bytes per second.
    pub(crate) growth_bytes_per_s: f64,
    /// Confidence, 0 to 1.
    pub(crate) confidence: f64,
    /// Projected seconds until the budget is reached, when there is a budget and growth.
    pub(crate) time_to_budget_s: Option<f64>,
    /// The series that showed it: `rss` or `heap_used_after_gc`.
    pub(crate) signal: &'static str,
}

impl EventKind {
    /// The event's name in JSON, metrics and hooks.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            EventKind::Started { .. } => "started",
            EventKind::Exited { .. } => "exited",
            EventKind::Restarted { .. } => "restarted",
            EventKind::GaveUp { .. } => "gave-up",
            EventKind::LevelChanged { .. } => "level-changed",
            EventKind::BudgetBreach { .. } => "budget-breach",
            EventKind::SnapshotWritten { .. } => "snapshot-written",
            EventKind::LeakSuspects { .. } => "leak-suspects",
            EventKind::CgroupStarted { .. } => "started",
            EventKind::CgroupExited { .. } => "exited",
            EventKind::OomKilled { .. } => "oom-killed",
            EventKind::NearLimit { .. } => "near-limit",
            EventKind::Leak(change) => match change.state {
                "suspected" => "leak-suspected",
                "confirmed" => "leak-confirmed",
                _ => "leak-cleared",
            },
        }
    }
}

impl Event {
    /// One line for people, for the log: `budget-breach: rss 68.4 MiB over budget 64.0 MiB`.
    pub(crate) fn describe(&self) -> String {
        let name = self.kind.name();
        let mib = |b: u64| human_bytes(b as f64);
        match &self.kind {
            EventKind::Started {
                pid,
                containment: Some(containment),
                ..
            } => format!("{name}: pid {pid}, contained by {containment}"),
            EventKind::Started { pid, .. } => format!("{name}: pid {pid}"),
            EventKind::Exited { pid, code, signal } => match (code, signal) {
                (Some(code), _) => format!("{name}: pid {pid} with code {code}"),
                (None, Some(signal)) => format!("{name}: pid {pid} killed by signal {signal}"),
                (None, None) => format!("{name}: pid {pid}"),
            },
            EventKind::Restarted {
                reason,
                attempt,
                delay_ms,
            } => {
                format!(
                    "{name}: after {} (restart {attempt} in the window, in {delay_ms} ms)",
                    reason.as_str()
                )
            }
            EventKind::GaveUp { restarts, window_s } => {
                format!("{name}: {restarts} restarts within {window_s:.0} s of run time; not restarting again")
            }
            EventKind::LevelChanged {
                from,
                to,
                rss_bytes,
                budget_bytes,
            } => {
                format!(
                    "{name}: {from} -> {to} (rss {} of budget {})",
                    mib(*rss_bytes),
                    mib(*budget_bytes)
                )
            }
            EventKind::BudgetBreach {
                rss_bytes,
                budget_bytes,
            } => {
                format!(
                    "{name}: rss {} over budget {}",
                    mib(*rss_bytes),
                    mib(*budget_bytes)
                )
            }
            EventKind::SnapshotWritten { path, bytes } => {
                format!("{name}: {} ({})", path, mib(*bytes))
            }
            EventKind::LeakSuspects { suspects, .. } => {
                // The first named suspect (the app's constructors before V8's internals).
                let top = &suspects["top"][0];
                format!(
                    "{name}: {} objects; first suspect: {} +{} ({}) via {}",
                    suspects["suspects"],
                    top["constructor"].as_str().unwrap_or("-"),
                    top["count_growth"],
                    mib(top["bytes_growth"].as_u64().unwrap_or(0)),
                    top["retainer_path"].as_str().unwrap_or("-")
                )
            }
            EventKind::CgroupStarted { cgroup, .. } | EventKind::CgroupExited { cgroup } => {
                format!("{name}: cgroup {cgroup}")
            }
            EventKind::OomKilled {
                kills,
                working_set_bytes,
                limit_bytes,
                ..
            } => {
                let limit = limit_bytes.map_or_else(|| "no limit".to_owned(), &mib);
                format!(
                    "{name}: the kernel killed {kills} process(es) (working set {}, limit {limit})",
                    mib(*working_set_bytes)
                )
            }
            EventKind::NearLimit {
                working_set_bytes,
                limit_bytes,
                time_to_limit_s,
            } => {
                let when = time_to_limit_s
                    .map(|t| format!(", reached in about {}", human_seconds(t)))
                    .unwrap_or_default();
                format!(
                    "{name}: working set {} of limit {}{when}",
                    mib(*working_set_bytes),
                    mib(*limit_bytes)
                )
            }
            EventKind::Leak(change) => {
                let ttb = change
                    .time_to_budget_s
                    .map(|t| format!(", budget reached in about {}", human_seconds(t)))
                    .unwrap_or_default();
                format!(
                    "{name}: {}/min on {} (confidence {:.0} %){ttb}",
                    human_bytes(change.growth_bytes_per_s * 60.0),
                    change.signal,
                    change.confidence * 100.0
                )
            }
        }
    }
}

impl RestartReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RestartReason::Budget => "budget",
            RestartReason::Crash => "crash",
            RestartReason::Admin => "admin",
        }
    }
}

impl Event {
    /// The event as one JSON object: `t_unix_ms`, `target`, `event` (the kind's name) and the
    /// kind's own fields, flat.
    pub(crate) fn to_json(&self) -> Value {
        let mut object = json!({
            "t_unix_ms": self.t_unix_ms,
            "target": self.target,
            "event": self.kind.name(),
        });
        let fields = match &self.kind {
            EventKind::Started {
                pid,
                command,
                containment: None,
            } => json!({ "pid": pid, "command": command }),
            EventKind::Started {
                pid,
                command,
                containment: Some(containment),
            } => json!({ "pid": pid, "command": command, "containment": containment }),
            EventKind::Exited { pid, code, signal } => {
                json!({ "pid": pid, "code": code, "signal": signal })
            }
            EventKind::Restarted {
                reason,
                attempt,
                delay_ms,
            } => {
                json!({ "reason": reason.as_str(), "attempt": attempt, "delay_ms": delay_ms })
            }
            EventKind::GaveUp { restarts, window_s } => {
                json!({ "restarts": restarts, "window_s": window_s })
            }
            EventKind::LevelChanged {
                from,
                to,
                rss_bytes,
                budget_bytes,
            } => {
                json!({ "from": from, "to": to, "rss_bytes": rss_bytes, "budget_bytes": budget_bytes })
            }
            EventKind::BudgetBreach {
                rss_bytes,
                budget_bytes,
            } => {
                json!({ "rss_bytes": rss_bytes, "budget_bytes": budget_bytes })
            }
            EventKind::SnapshotWritten { path, bytes } => json!({ "path": path, "bytes": bytes }),
            EventKind::LeakSuspects { snapshot, suspects } => {
                json!({ "snapshot": snapshot, "suspects": suspects })
            }
            EventKind::CgroupStarted { cgroup, identity } => json!({
                "cgroup": cgroup,
                "runtime": identity.runtime.as_str(),
                "container_id": identity.container_id,
                "pod_uid": identity.pod_uid,
                "qos_class": identity.qos_class,
            }),
            EventKind::CgroupExited { cgroup } => json!({ "cgroup": cgroup }),
            EventKind::OomKilled {
                kills,
                oom_kills_total,
                working_set_bytes,
                limit_bytes,
            } => json!({
                "kills": kills,
                "oom_kills_total": oom_kills_total,
                "working_set_bytes": working_set_bytes,
                "limit_bytes": limit_bytes,
            }),
            EventKind::NearLimit {
                working_set_bytes,
                limit_bytes,
                time_to_limit_s,
            } => json!({
                "working_set_bytes": working_set_bytes,
                "limit_bytes": limit_bytes,
                "time_to_limit_s": time_to_limit_s.map(|t| (t * 10.0).round() / 10.0),
            }),
            EventKind::Leak(change) => json!({
                "growth_bytes_per_s": change.growth_bytes_per_s,
                "confidence": change.confidence,
                "time_to_budget_s": change.time_to_budget_s,
                "signal": change.signal,
            }),
        };
        if let (Some(object), Value::Object(fields)) = (object.as_object_mut(), fields) {
            object.extend(fields);
        }
        object
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_flat_with_the_kind_name() {
        let event = Event {
            t_unix_ms: 1_700_000_000_000,
            target: "api".to_owned(),
            kind: EventKind::BudgetBreach {
                rss_bytes: 600,
                budget_bytes: 512,
            },
        };
        assert_eq!(
            event.to_json(),
            json!({"t_unix_ms": 1_700_000_000_000i64, "target": "api", "event": "budget-breach",
                   "rss_bytes": 600, "budget_bytes": 512})
        );
    }

    #[test]
    fn leak_changes_are_named_by_state() {
        let change = |state| {
            EventKind::Leak(LeakChange {
                state,
                growth_bytes_per_s: 1.0,
                confidence: 0.9,
                time_to_budget_s: None,
                signal: "rss",
            })
        };
        assert_eq!(change("suspected").name(), "leak-suspected");
        assert_eq!(change("confirmed").name(), "leak-confirmed");
        assert_eq!(change("cleared").name(), "leak-cleared");
    }
}
