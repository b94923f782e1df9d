//! `/metrics`: the registry's views as Prometheus text, built at scrape time. One series per
//! target and metric (label `target`), so the cardinality is the number of targets; names start
//! `plimsoll_`, byte gauges end `_bytes`, counters `_total`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use plimsoll_analysis::{LeakState, Level};

use crate::{CgroupStatus, TargetStatus};

/// The content type of the exposition: the classic Prometheus text format (the `# UNIT` lines
/// prometheus-client writes are comments there).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The names of every metric family `/metrics` exposes, as scraped (for the Grafana check).
pub const FAMILIES: &[&str] = &[
    "plimsoll_targets",
    "plimsoll_rss_bytes",
    "plimsoll_budget_bytes",
    "plimsoll_heap_used_bytes",
    "plimsoll_heap_used_after_gc_bytes",
    "plimsoll_level",
    "plimsoll_level_warn_ratio",
    "plimsoll_level_critical_ratio",
    "plimsoll_leak_state",
    "plimsoll_leak_growth_bytes_per_second",
    "plimsoll_time_to_budget_seconds",
    "plimsoll_restarts_total",
    "plimsoll_uptime_seconds",
    "plimsoll_cgroup_info",
    "plimsoll_cgroup_usage_bytes",
    "plimsoll_cgroup_working_set_bytes",
    "plimsoll_cgroup_anon_bytes",
    "plimsoll_cgroup_file_bytes",
    "plimsoll_cgroup_shmem_bytes",
    "plimsoll_cgroup_limit_bytes",
    "plimsoll_cgroup_oom_kills_total",
    "plimsoll_cgroup_pressure_some_ratio",
    "plimsoll_cgroup_pressure_full_ratio",
];

/// The exposition of `views`, taken at `now_unix_ms`.
pub fn render(views: Vec<TargetStatus>, now_unix_ms: i64) -> Result<String, std::fmt::Error> {
    render_with(views, now_unix_ms, Vec::new())
}

/// The exposition of `views` followed by the server's own `extra` families (a guarded
/// service's caches and admission gate, say).
pub fn render_with(
    views: Vec<TargetStatus>,
    now_unix_ms: i64,
    extra: Vec<Family>,
) -> Result<String, std::fmt::Error> {
    let mut registry = prometheus_client::registry::Registry::default();
    let labels = views.iter().map(|v| escape_label(&v.name)).collect();
    registry.register_collector(Box::new(Scrape {
        views,
        labels,
        now_unix_ms,
    }));
    registry.register_collector(Box::new(Extra(extra)));
    let mut text = String::with_capacity(4096);
    prometheus_client::encoding::text::encode_registry(&mut text, &registry)?;
    Ok(text)
}

/// What a series counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A level that goes up and down.
    Gauge,
    /// A count of things that happened (the name ends `_total`).
    Counter,
}

/// One metric family a server adds: its full name as scraped (`plimsoll_cache_bytes`), help,
/// kind, and its series as (label pairs, value). Label values are escaped when written.
#[derive(Debug, Clone)]
pub struct Family {
    /// The full name, with its unit suffix.
    pub name: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Gauge or counter.
    pub kind: Kind,
    /// The series: labels and value.
    pub series: Vec<(Vec<(&'static str, String)>, f64)>,
}

#[derive(Debug)]
struct Extra(Vec<Family>);

impl Collector for Extra {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            let metric_type = match family.kind {
                Kind::Gauge => ConstGauge::new(0i64).metric_type(),
                Kind::Counter => ConstCounter::new(0u64).metric_type(),
            };
            // The full name and no unit: written as is, like `plimsoll_restarts_total`.
            let mut encoded =
                encoder.encode_descriptor(family.name, family.help, None, metric_type)?;
            if let [(labels, value)] = family.series.as_slice() {
                if labels.is_empty() {
                    // One series without labels: `name value`, not `name{} value`.
                    ConstGauge::new(*value).encode(encoded)?;
                    continue;
                }
            }
            for (labels, value) in &family.series {
                let escaped: Vec<(&str, String)> =
                    labels.iter().map(|(k, v)| (*k, escape_label(v))).collect();
                let pairs: Vec<(&str, &str)> =
                    escaped.iter().map(|(k, v)| (*k, v.as_str())).collect();
                ConstGauge::new(*value).encode(encoded.encode_family(&pairs)?)?;
            }
        }
        Ok(())
    }
}

/// The level as a number: 0 ok, 1 warn, 2 critical, 3 breach.
pub fn level_number(level: Level) -> i64 {
    match level {
        Level::Ok => 0,
        Level::Warn => 1,
        Level::Critical => 2,
        Level::Breach => 3,
    }
}

/// The leak state as a number: 0 clear, 1 suspected, 2 confirmed.
pub fn leak_number(state: LeakState) -> i64 {
    match state {
        LeakState::Clear => 0,
        LeakState::Suspected => 1,
        LeakState::Confirmed => 2,
    }
}

/// One scrape's worth of views.
#[derive(Debug)]
struct Scrape {
    views: Vec<TargetStatus>,
    /// The views' names as label values, escaped (the encoder writes them as they are).
    labels: Vec<String>,
    now_unix_ms: i64,
}

/// A label value in the text format: backslash, double quote and newline escaped.
fn escape_label(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A byte count as a gauge value (no process has 8 EiB).
fn gauge_bytes(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

impl Scrape {
    /// One gauge family: `value` of each view that has one.
    fn gauge<N: prometheus_client::encoding::EncodeGaugeValue + Copy>(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        value: impl Fn(&TargetStatus) -> Option<N>,
    ) -> Result<(), std::fmt::Error> {
        let mut family =
            encoder.encode_descriptor(name, help, unit, ConstGauge::new(0i64).metric_type())?;
        for (view, label) in self.views.iter().zip(&self.labels) {
            if let Some(value) = value(view) {
                let labels = [("target", label.as_str())];
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

impl Scrape {
    /// One gauge family of the cgroup targets, each series with the target's identity labels
    /// (`container_id`, `pod_uid`, `qos_class` where known) so that PromQL can join them with
    /// kube-state-metrics.
    fn cgroup_gauge<N: prometheus_client::encoding::EncodeGaugeValue + Copy>(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        (name, help, unit): (&str, &str, Option<&Unit>),
        kind: Kind,
        value: impl Fn(&CgroupStatus) -> Option<N>,
    ) -> Result<(), std::fmt::Error> {
        let metric_type = match kind {
            Kind::Gauge => ConstGauge::new(0i64).metric_type(),
            Kind::Counter => ConstCounter::new(0u64).metric_type(),
        };
        let mut family = encoder.encode_descriptor(name, help, unit, metric_type)?;
        for (view, label) in self.views.iter().zip(&self.labels) {
            let Some(cgroup) = &view.cgroup else {
                continue;
            };
            let Some(value) = value(cgroup) else {
                continue;
            };
            let identity = identity_labels(cgroup);
            let mut labels = vec![("target", label.as_str())];
            labels.extend(identity.iter().map(|(k, v)| (*k, v.as_str())));
            ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn cgroup_families(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let bytes = Some(&Unit::Bytes);
        let gauge = Kind::Gauge;
        let info = |c: &CgroupStatus| Some(1i64).filter(|_| !c.path.is_empty());
        {
            // The info series carries the path and runtime too (one per target).
            let mut family = e.encode_descriptor(
                "plimsoll_cgroup_info",
                "A watched cgroup's identity: 1 per target, labels cgroup, runtime, container_id, pod_uid, qos_class.",
                None,
                ConstGauge::new(0i64).metric_type(),
            )?;
            for (view, label) in self.views.iter().zip(&self.labels) {
                let Some(cgroup) = &view.cgroup else { continue };
                let Some(value) = info(cgroup) else { continue };
                let identity = identity_labels(cgroup);
                let path = escape_label(&cgroup.path);
                let mut labels = vec![
                    ("target", label.as_str()),
                    ("cgroup", path.as_str()),
                    ("runtime", cgroup.runtime),
                ];
                labels.extend(identity.iter().map(|(k, v)| (*k, v.as_str())));
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        let b = |v: u64| Some(gauge_bytes(v));
        self.cgroup_gauge(
            e,
            (
                "plimsoll_cgroup_usage",
                "Memory charged to the cgroup, page cache included.",
                bytes,
            ),
            gauge,
            |c| b(c.usage_bytes),
        )?;
        self.cgroup_gauge(e, ("plimsoll_cgroup_working_set", "The cgroup's usage less its inactive file cache (what the kubelet evicts on; the levels use it).", bytes), gauge, |c| b(c.working_set_bytes))?;
        self.cgroup_gauge(
            e,
            (
                "plimsoll_cgroup_anon",
                "Anonymous memory of the cgroup.",
                bytes,
            ),
            gauge,
            |c| b(c.anon_bytes),
        )?;
        self.cgroup_gauge(
            e,
            (
                "plimsoll_cgroup_file",
                "File cache of the cgroup, shared memory excluded.",
                bytes,
            ),
            gauge,
            |c| b(c.file_bytes),
        )?;
        self.cgroup_gauge(
            e,
            (
                "plimsoll_cgroup_shmem",
                "Shared memory and tmpfs of the cgroup.",
                bytes,
            ),
            gauge,
            |c| b(c.shmem_bytes),
        )?;
        self.cgroup_gauge(
            e,
            (
                "plimsoll_cgroup_limit",
                "The cgroup's memory limit (the smallest of its own and its ancestors').",
                bytes,
            ),
            gauge,
            |c| c.limit_bytes.map(gauge_bytes),
        )?;
        self.cgroup_gauge(e, ("plimsoll_cgroup_oom_kills_total", "Processes of the cgroup the kernel's OOM killer killed, as the kernel counts them.", None), Kind::Counter, |c| c.oom_kills.map(gauge_bytes))?;
        self.cgroup_gauge(
            e,
            (
                "plimsoll_cgroup_pressure_some_ratio",
                "Share of the last 10 s in which some task of the cgroup stalled on memory (PSI).",
                None,
            ),
            gauge,
            |c| c.psi_some_avg10.map(|p| p / 100.0),
        )?;
        self.cgroup_gauge(
            e,
            (
                "plimsoll_cgroup_pressure_full_ratio",
                "Share of the last 10 s in which all tasks of the cgroup stalled on memory (PSI).",
                None,
            ),
            gauge,
            |c| c.psi_full_avg10.map(|p| p / 100.0),
        )?;
        Ok(())
    }
}

/// The identity labels of a cgroup target that are known, values escaped.
fn identity_labels(cgroup: &CgroupStatus) -> Vec<(&'static str, String)> {
    let mut labels = Vec::with_capacity(3);
    if let Some(id) = &cgroup.container_id {
        labels.push(("container_id", escape_label(id)));
    }
    if let Some(uid) = &cgroup.pod_uid {
        labels.push(("pod_uid", escape_label(uid)));
    }
    if let Some(qos) = cgroup.qos_class {
        labels.push(("qos_class", qos.to_owned()));
    }
    labels
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let count = i64::try_from(self.views.len()).unwrap_or(i64::MAX);
        let targets = encoder.encode_descriptor(
            "plimsoll_targets",
            "Targets this plimsoll runs or watches.",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        ConstGauge::new(count).encode(targets)?;
        let e = &mut encoder;
        let bytes = Some(&Unit::Bytes);
        let seconds = Some(&Unit::Seconds);
        self.gauge(
            e,
            "plimsoll_rss",
            "Resident set size of the target's process tree at the last sample.",
            bytes,
            |v| v.rss_bytes.map(gauge_bytes),
        )?;
        self.gauge(
            e,
            "plimsoll_budget",
            "The memory budget in force for the target.",
            bytes,
            |v| v.budget_bytes.map(gauge_bytes),
        )?;
        self.gauge(
            e,
            "plimsoll_heap_used",
            "Runtime heap in use, as the runtime agent last reported.",
            bytes,
            |v| v.heap_used_bytes.map(gauge_bytes),
        )?;
        self.gauge(
            e,
            "plimsoll_heap_used_after_gc",
            "Runtime heap in use right after the last major GC.",
            bytes,
            |v| v.heap_used_after_gc_bytes.map(gauge_bytes),
        )?;
        self.gauge(
            e,
            "plimsoll_level",
            "Budget level: 0 ok, 1 warn, 2 critical, 3 breach.",
            None,
            |v| Some(level_number(v.level)),
        )?;
        self.gauge(
            e,
            "plimsoll_level_warn_ratio",
            "The warn mark, as a share of the budget.",
            None,
            |v| Some(v.levels.warn),
        )?;
        self.gauge(
            e,
            "plimsoll_level_critical_ratio",
            "The critical mark, as a share of the budget.",
            None,
            |v| Some(v.levels.critical),
        )?;
        self.gauge(
            e,
            "plimsoll_leak_state",
            "Leak detector state: 0 clear, 1 suspected, 2 confirmed.",
            None,
            |v| Some(v.leak.map_or(0, |leak| leak_number(leak.state))),
        )?;
        self.gauge(
            e,
            "plimsoll_leak_growth_bytes_per_second",
            "Robust growth rate of the retained memory floor.",
            None,
            |v| v.leak.map(|leak| leak.growth_bytes_per_s),
        )?;
        self.gauge(
            e,
            "plimsoll_time_to_budget",
            "Projected time until the budget is reached, while a leak is suspected or confirmed.",
            seconds,
            |v| v.time_to_budget_s,
        )?;
        // A counter under its full name, its value written as is: the classic text format that
        // Prometheus parses for `text/plain` (OpenMetrics would name the family without
        // `_total` and append it to the sample, which the classic parser takes for another
        // family).
        let mut restarts = encoder.encode_descriptor(
            "plimsoll_restarts_total",
            "Restarts of the target (memory, crash or admin) since plimsoll started.",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (view, label) in self.views.iter().zip(&self.labels) {
            let labels = [("target", label.as_str())];
            ConstGauge::new(u64::from(view.restarts)).encode(restarts.encode_family(&labels)?)?;
        }
        self.gauge(
            &mut encoder,
            "plimsoll_uptime",
            "Time since the target's current run started (or watching began).",
            seconds,
            |v| {
                v.started_unix_ms
                    .map(|start| (self.now_unix_ms - start).max(0) as f64 / 1000.0)
            },
        )?;
        self.cgroup_families(&mut encoder)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plimsoll_analysis::LevelConfig;

    fn view(name: &str) -> TargetStatus {
        let mut view = TargetStatus::new(name, LevelConfig::recommended(), true);
        view.rss_bytes = Some(1 << 20);
        view.budget_bytes = Some(1 << 30);
        view.restarts = 2;
        view.started_unix_ms = Some(1_000);
        view.level = Level::Critical;
        view
    }

    #[test]
    fn one_series_per_target_with_the_documented_names() {
        let text = render(vec![view("api"), view("worker")], 11_000).expect("render");
        assert!(
            text.contains("plimsoll_rss_bytes{target=\"api\"} 1048576\n"),
            "{text}"
        );
        assert!(
            text.contains("plimsoll_restarts_total{target=\"worker\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("plimsoll_level{target=\"api\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("plimsoll_uptime_seconds{target=\"api\"} 10.0\n"),
            "{text}"
        );
        assert!(text.contains("plimsoll_targets 2\n"), "{text}");
        assert!(
            !text.contains("plimsoll_heap_used_bytes{"),
            "unknown heap: no series"
        );
        let rss_lines = text
            .lines()
            .filter(|l| l.starts_with("plimsoll_rss_bytes{"))
            .count();
        assert_eq!(rss_lines, 2);
    }

    fn container(name: &str) -> TargetStatus {
        let mut view = view(name);
        view.cgroup = Some(CgroupStatus {
            path: "/kubepods/burstable/pod1-2/abc".to_owned(),
            version: "v2",
            runtime: "kubernetes",
            container_id: Some("abc".to_owned()),
            pod_uid: Some("1-2".to_owned()),
            qos_class: Some("burstable"),
            usage_bytes: 100,
            working_set_bytes: 80,
            limit_bytes: Some(1000),
            oom_kills: Some(3),
            psi_some_avg10: Some(12.5),
            ..CgroupStatus::default()
        });
        view
    }

    #[test]
    fn cgroup_targets_carry_their_identity_labels() {
        let text = render(vec![view("proc"), container("k8s-abc")], 0).expect("render");
        let labels = r#"{target="k8s-abc",container_id="abc",pod_uid="1-2",qos_class="burstable"}"#;
        for line in [
            format!("plimsoll_cgroup_working_set_bytes{labels} 80\n"),
            format!("plimsoll_cgroup_limit_bytes{labels} 1000\n"),
            format!("plimsoll_cgroup_oom_kills_total{labels} 3\n"),
            format!("plimsoll_cgroup_pressure_some_ratio{labels} 0.125\n"),
            "plimsoll_cgroup_info{target=\"k8s-abc\",cgroup=\"/kubepods/burstable/pod1-2/abc\",runtime=\"kubernetes\",container_id=\"abc\",pod_uid=\"1-2\",qos_class=\"burstable\"} 1\n".to_owned(),
        ] {
            assert!(text.contains(&line), "{line}: {text}");
        }
        assert!(!text.contains("target=\"proc\",container_id"), "{text}");
        assert!(
            !text.contains("plimsoll_cgroup_pressure_full_ratio{"),
            "unknown: no series"
        );
        let plain = render(vec![view("proc")], 0).expect("render");
        assert!(
            !plain.lines().any(|l| l.starts_with("plimsoll_cgroup")),
            "no cgroup target, no series (the families are declared): {plain}"
        );
    }

    #[test]
    fn every_family_of_the_list_is_exposed() {
        let text = render(vec![container("api")], 0).expect("render");
        for family in FAMILIES {
            assert!(
                text.contains(&format!("# TYPE {family}"))
                    || text.contains(&format!("# TYPE {}", family.trim_end_matches("_total"))),
                "{family}: {text}"
            );
        }
    }

    #[test]
    fn extra_families_follow_the_target_families() {
        let extra = vec![
            Family {
                name: "plimsoll_cache_bytes",
                help: "Bytes held by the cache.",
                kind: Kind::Gauge,
                series: vec![(vec![("cache", "us\"ers".to_owned())], 1024.0)],
            },
            Family {
                name: "plimsoll_cache_hits_total",
                help: "Cache hits.",
                kind: Kind::Counter,
                series: vec![(vec![("cache", "users".to_owned())], 7.0)],
            },
        ];
        let text = render_with(vec![view("api")], 0, extra).expect("render");
        assert!(
            text.contains("# TYPE plimsoll_cache_bytes gauge\n"),
            "{text}"
        );
        assert!(
            text.contains(r#"plimsoll_cache_bytes{cache="us\"ers"} 1024"#),
            "{text}"
        );
        assert!(
            text.contains("# TYPE plimsoll_cache_hits_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("plimsoll_cache_hits_total{cache=\"users\"} 7"),
            "{text}"
        );
        assert!(text.find("plimsoll_rss_bytes") < text.find("plimsoll_cache_bytes"));
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(vec![view("a\"b\\c")], 0).expect("render");
        assert!(text.contains(r#"target="a\"b\\c""#), "{text}");
    }
}
