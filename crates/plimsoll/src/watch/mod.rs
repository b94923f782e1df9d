//! `plimsoll watch PID…|--match REGEX`: the sampling, levels, leak detector, events, store and
//! sinks of `run`, for processes plimsoll does not own. It never signals them: a breach is an
//! event, not a restart, and a watched process that exits is an event, not an error.
//!
//! For `watch`, `started` means "watching began" (its `command` is the process's command
//! line) and `exited` means the process is gone (`code` and `signal` are null: only a parent
//! learns them). Each watched pid is sampled with its descendants; `--match` leaves out
//! matches inside an already watched tree (counted there) and plimsoll's own processes. With
//! PIDs only, `watch` ends with status 0 once all of them are gone; with `--match` it runs
//! until SIGINT or SIGTERM, picking up new matches within a few seconds.
//!
//! A cgroup (`--cgroup PATH`…, `--containers`) is a target of another kind: its own files are
//! read every tick (`cgroups.rs`), its working set is what the levels and the detector see, its
//! limit is the budget unless `--budget` says otherwise, and the kernel's OOM kills and the
//! approach of the limit are events of their own (`cgroup_target.rs`). `started` and `exited`
//! of a cgroup carry its path instead of a pid.

mod batch;
mod cgroup_target;
mod cgroups;
mod process;
mod scan;

pub(crate) use cgroups::Identity;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use plimsoll_analysis::DetectorConfig;
use regex_lite::Regex;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::cli::WatchArgs;
use crate::common::{http_settings, sink_config, Common};
use crate::event::{Event, EventKind};
use crate::http;
use crate::outputs::Outputs;
use crate::registry::{Registry, TargetView};
use crate::supervise::monitor::Monitor;
use crate::supervise::{now_unix_ms, EventOutput};
use crate::units::human_bytes;
use batch::{Batch, Report, RESCAN_EVERY};
use cgroup_target::CgroupTarget;
use cgroups::{CgroupReport, CgroupSet};
use scan::Scanner;

/// Where processes are read.
const PROC: &str = "/proc";

pub(crate) fn run(args: &WatchArgs) -> Result<u8> {
    let common = Common::resolve(&args.monitor)?;
    let pattern = args
        .pattern
        .as_deref()
        .map(|text| Regex::new(text).with_context(|| format!("invalid --match regex '{text}'")))
        .transpose()?;
    let ending = if pattern.is_some() || args.containers {
        Ending::OnSignal
    } else {
        Ending::WhenAllGone
    };
    let scanner = pattern.map(|pattern| Scanner::new(PROC, pattern, std::process::id()));
    let cgroup_set = open_cgroups(args)?;
    let mut batch = Batch::new(PROC, scanner, common.interval, cgroup_set);
    // Past the open-file limit's room, pids are skipped and said so, not fatal (fds.rs).
    let mut skipped = Vec::new();
    for &pid in &args.pids {
        if !batch.has_room() {
            skipped.push(pid);
            continue;
        }
        match batch.add(pid) {
            Ok(()) => {}
            Err(error) if crate::fds::probe_exhausted(&error) => skipped.push(pid),
            Err(error) => return Err(error).with_context(|| format!("cannot watch pid {pid}")),
        }
    }
    if batch.len() == 0 && !skipped.is_empty() {
        bail!(
            "cannot watch any of the {} pids: out of file descriptors (open-file limit {}; raise it, ulimit -n)",
            skipped.len(),
            crate::fds::limit()
        );
    }
    let http_settings = http_settings(&args.monitor.output)?;
    // Take the port before watching starts: a taken one fails here.
    let bound = http::bind_configured(&http_settings)?;
    let registry = Registry::new();
    let mut output = Outputs::open(&common.data_dir, &sink_config(&args.monitor))?;
    crate::logging::init();
    if let Some(budget) = common.budget {
        tracing::info!(
            budget_bytes = budget,
            "budget {} ({budget} bytes) for each watched process tree",
            human_bytes(budget as f64)
        );
    }
    if !args.pids.is_empty() {
        tracing::info!(
            processes = batch.len(),
            "watching the processes given by pid"
        );
    }
    if !skipped.is_empty() {
        let shown: Vec<String> = skipped.iter().take(10).map(u32::to_string).collect();
        let more = if skipped.len() > shown.len() {
            ", …"
        } else {
            ""
        };
        tracing::warn!(
            watching = batch.len(),
            skipped = skipped.len(),
            fd_limit = crate::fds::limit(),
            "out of file descriptors: not watching {} of the {} pids given (skipped {}{more}; raise the open-file limit, ulimit -n)",
            skipped.len(),
            args.pids.len(),
            shown.join(", ")
        );
    }
    if !args.cgroups.is_empty() {
        tracing::info!(cgroups = args.cgroups.len(), "watching the cgroups given");
    }
    if args.containers {
        tracing::info!(
            rescan_s = cgroups::DISCOVER_EVERY.as_secs_f64(),
            "watching every container and service cgroup, and new ones as they appear"
        );
    }
    if let Some(text) = &args.pattern {
        tracing::info!(
            pattern = %text,
            rescan_s = RESCAN_EVERY.as_secs_f64(),
            "watching processes whose command line matches"
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let status = runtime.block_on(async {
        let server = http::start(bound, &http_settings, &registry, &common.data_dir)?;
        let detector = DetectorConfig::recommended().time_scaled(args.time_scale);
        let status = watch(batch, &common, &detector, ending, &registry, &mut output).await;
        http::stop(server).await;
        status
    });
    output.close();
    status
}

/// The cgroups to watch: those given (each must exist: else an error naming it), and the
/// walk of `--containers`.
fn open_cgroups(args: &WatchArgs) -> Result<CgroupSet> {
    if args.cgroups.is_empty() && !args.containers {
        if let Some(root) = &args.cgroup_root {
            bail!(
                "--cgroup-root '{}' needs --cgroup or --containers",
                root.display()
            );
        }
        return Ok(CgroupSet::new(None));
    }
    let hierarchies = cgroups::hierarchies(args.cgroup_root.as_deref())?;
    let mut set = CgroupSet::new(args.containers.then(|| hierarchies.clone()));
    for given in &args.cgroups {
        let (hierarchy, dir) = cgroups::resolve(given, &hierarchies)?;
        set.add(hierarchy, dir)
            .with_context(|| format!("cannot watch cgroup '{}'", given.display()))?;
    }
    Ok(set)
}

/// When `watch` stops on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Explicit PIDs only: once none of them is left.
    WhenAllGone,
    /// `--match`: new processes may come, so only on a signal.
    OnSignal,
}

/// The messages of the loop: one closed set.
#[derive(Debug)]
enum Message {
    /// What one tick of the sampler saw.
    Tick(Box<Report>),
    /// The sampler stopped (a panic in the blocking batch): nothing more will come.
    SamplerFailed(String),
}

/// The loop's state for one watched process.
#[derive(Debug)]
struct Target {
    name: String,
    monitor: Monitor,
    /// Its last sample failed (logged once as a warning until a sample succeeds again).
    failing: bool,
}

/// Watches until the end `ending` names, or a signal; returns the exit status.
async fn watch(
    batch: Batch,
    common: &Common,
    detector: &DetectorConfig,
    ending: Ending,
    registry: &Registry,
    output: &mut dyn EventOutput,
) -> Result<u8> {
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let (sender, mut receiver) = mpsc::channel::<Message>(4);
    let clock = Instant::now();
    let sampler = batch::spawn(batch, common.interval, sender);
    let mut targets: HashMap<u32, Target> = HashMap::new();
    let mut cgroup_targets = CgroupTargets::default();
    let stopped_by = loop {
        tokio::select! {
            message = receiver.recv() => match message {
                Some(Message::Tick(mut report)) => {
                    let cgroups = std::mem::take(&mut report.cgroups);
                    let t_s = report.taken.saturating_duration_since(clock).as_secs_f64();
                    handle(*report, clock, common, detector, &mut targets, registry, output);
                    cgroup_targets.handle(cgroups, t_s, common, detector, registry, output);
                    if ending == Ending::WhenAllGone
                        && targets.is_empty()
                        && cgroup_targets.targets.is_empty()
                    {
                        tracing::info!("no watched process is left; stopping");
                        break None;
                    }
                }
                Some(Message::SamplerFailed(error)) => {
                    bail!("the sampler stopped: {error}");
                }
                None => bail!("the sampler stopped"),
            },
            _ = interrupt.recv() => break Some("SIGINT"),
            _ = terminate.recv() => break Some("SIGTERM"),
        }
    };
    sampler.abort();
    if let Some(signal) = stopped_by {
        tracing::info!(
            watched = targets.len() + cgroup_targets.targets.len(),
            "{signal}: stopping (the watched processes go on)"
        );
    }
    Ok(crate::exit::OK)
}

/// Turns one tick into events: new targets, samples through their monitors, exits.
/// A new watched target (a process, or a cgroup without `pid`): its monitor, and its view
/// published with no admin channel (a watched target takes no admin actions).
fn published(
    name: &str,
    pid: Option<u32>,
    common: &Common,
    detector: &DetectorConfig,
    registry: &Registry,
) -> Monitor {
    let mut view = TargetView::new(name, common.levels, false);
    view.status.pid = pid;
    view.status.started_unix_ms = Some(now_unix_ms());
    view.status.budget_bytes = common.budget;
    registry.insert(view);
    Monitor::new(
        name,
        common.budget,
        common.levels,
        common.warmup,
        detector.clone(),
    )
}

fn handle(
    report: Report,
    clock: Instant,
    common: &Common,
    detector: &DetectorConfig,
    targets: &mut HashMap<u32, Target>,
    registry: &Registry,
    output: &mut dyn EventOutput,
) {
    let t_s = report.taken.saturating_duration_since(clock).as_secs_f64();
    for found in report.found {
        // A process names itself (`comm`: any bytes but NUL, up to 15): made a valid name, as
        // `run` does for default names, with room for the pid.
        let name = format!(
            "{}-{}",
            crate::name::sanitize(&found.name, "process")
                .chars()
                .take(crate::name::MAX_NAME_CHARS - 11)
                .collect::<String>(),
            found.pid
        );
        output.emit(&Event {
            t_unix_ms: now_unix_ms(),
            target: name.clone(),
            kind: EventKind::Started {
                pid: found.pid,
                command: found.command,
                containment: None,
            },
        });
        let monitor = published(&name, Some(found.pid), common, detector, registry);
        targets.insert(
            found.pid,
            Target {
                name,
                monitor,
                failing: false,
            },
        );
    }
    for (pid, sample) in &report.samples {
        let Some(target) = targets.get_mut(pid) else {
            continue;
        };
        target.failing = false;
        // A breach is only an event here (Monitor emits it): the process is not ours.
        target.monitor.observe(t_s, sample, None, output);
        // Published like `run` publishes: /health and /metrics show it.
        target.monitor.publish(registry, sample, None);
    }
    for (pid, error) in &report.failed {
        let Some(target) = targets.get_mut(pid) else {
            continue;
        };
        if target.failing {
            tracing::debug!(target_name = %target.name, %error, "sample failed");
        } else {
            tracing::warn!(target_name = %target.name, %error, "cannot sample; retrying every interval");
            target.failing = true;
        }
    }
    for pid in report.gone {
        let Some(target) = targets.remove(&pid) else {
            continue;
        };
        registry.remove(&target.name);
        output.emit(&Event {
            t_unix_ms: now_unix_ms(),
            target: target.name,
            kind: EventKind::Exited {
                pid,
                code: None,
                signal: None,
            },
        });
    }
}

/// The loop's cgroup targets, by directory.
#[derive(Debug, Default)]
struct CgroupTargets {
    targets: HashMap<PathBuf, CgroupTarget>,
    /// Reads that failed so far, and cgroups found but skipped (unreadable, gone at once).
    failures: u64,
    skipped: u64,
}

impl CgroupTargets {
    /// Turns one tick's cgroup readings into events and published views.
    fn handle(
        &mut self,
        report: CgroupReport,
        t_s: f64,
        common: &Common,
        detector: &DetectorConfig,
        registry: &Registry,
        output: &mut dyn EventOutput,
    ) {
        if report.skipped > 0 {
            let first = self.skipped == 0;
            self.skipped += report.skipped as u64;
            if first {
                tracing::warn!(
                    skipped = report.skipped,
                    "cgroups skipped: unreadable, or gone before their first read (counted; \
                     the next ones are logged at debug level)"
                );
            } else {
                tracing::debug!(
                    skipped = report.skipped,
                    total = self.skipped,
                    "cgroups skipped"
                );
            }
        }
        for found in report.found {
            let identity = cgroups::identify_given(&found.path);
            let mut name = identity.name(&found.path);
            // Two cgroups may make the same name (two `job` cgroups in different places).
            let mut n = 2;
            while registry.get(&name).is_some() {
                let base: String = identity
                    .name(&found.path)
                    .chars()
                    .take(crate::name::MAX_NAME_CHARS - 4)
                    .collect();
                name = format!("{base}-{n}");
                n += 1;
            }
            output.emit(&Event {
                t_unix_ms: now_unix_ms(),
                target: name.clone(),
                kind: EventKind::CgroupStarted {
                    cgroup: found.path.clone(),
                    identity: identity.clone(),
                },
            });
            let monitor = published(&name, None, common, detector, registry);
            self.targets.insert(
                found.dir,
                CgroupTarget::new(name, monitor, found.path, identity),
            );
        }
        for (dir, figures) in &report.samples {
            let Some(target) = self.targets.get_mut(dir) else {
                continue;
            };
            target.failing = false;
            let sample = cgroup_target::sample_of(dir, &target.path, figures);
            target.monitor.observe(t_s, &sample, None, output);
            for kind in target.events(t_s, figures) {
                output.emit(&Event {
                    t_unix_ms: now_unix_ms(),
                    target: target.name.clone(),
                    kind,
                });
            }
            target.monitor.publish(registry, &sample, None);
            let status = cgroup_target::status_of(&target.path, &target.identity, figures);
            registry.update(&target.name, |view| view.status.cgroup = Some(status));
        }
        for (dir, error) in &report.failed {
            let Some(target) = self.targets.get_mut(dir) else {
                continue;
            };
            self.failures += 1;
            if target.failing {
                tracing::debug!(target_name = %target.name, error = %error, failures = self.failures, "cgroup read failed");
            } else {
                tracing::warn!(target_name = %target.name, error = %error, failures = self.failures, "cannot read the cgroup; skipped, retrying every interval");
                target.failing = true;
            }
        }
        for dir in report.gone {
            let Some(target) = self.targets.remove(&dir) else {
                continue;
            };
            registry.remove(&target.name);
            output.emit(&Event {
                t_unix_ms: now_unix_ms(),
                target: target.name,
                kind: EventKind::CgroupExited {
                    cgroup: target.path,
                },
            });
        }
    }
}
