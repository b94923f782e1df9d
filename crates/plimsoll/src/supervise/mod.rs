//! The supervisor: one event loop over a closed enum of messages (samples, the target's exit,
//! signals, the end of a restart delay) that turns samples into levels, leak verdicts and
//! events, and restarts the target on breach or crash.

mod backoff;
mod child;
pub(crate) mod contain;
pub(crate) mod investigate;
pub(crate) mod keeper;
pub(crate) mod monitor;
mod sampler;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use plimsoll_analysis::{DetectorConfig, LeakState, Level, LevelConfig};
use plimsoll_probe::Sample;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub(crate) use backoff::RestartPolicy;
use backoff::{Decision, RestartHistory};
use child::Child;
pub(crate) use child::ChildExit;
pub(crate) use child::{keeper_command, KEEPER_MARGIN};
pub(crate) use contain::containment_of;
use monitor::Monitor;
use std::future::Future;
use std::pin::Pin;

use crate::agent::node::{self, AgentSetup};
use crate::agent::{AgentHub, HeapFigures};
use crate::event::{Event, EventKind, RestartReason};
use crate::registry::{AdminAction, AdminReply, AdminRequest, Registry, TargetView};

/// What `run` runs with, resolved from the command line.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The target's name in events and metrics.
    pub(crate) name: String,
    /// The command and its arguments.
    pub(crate) command: Vec<String>,
    /// The budget; `None` means the cgroup limit, read from the first sample.
    pub(crate) budget: Option<u64>,
    /// Marks and holds of the levels.
    pub(crate) levels: LevelConfig,
    /// Time between samples.
    pub(crate) interval: Duration,
    /// After each start, samples count neither as breaches nor leaks for this long.
    pub(crate) warmup: Duration,
    /// Between SIGTERM and SIGKILL.
    pub(crate) grace: Duration,
    /// Backoff and crash-loop limit.
    pub(crate) policy: RestartPolicy,
    /// The target's OOM score adjustment; `None` resets a negative one inherited to 0, so the
    /// supervisor can protect itself without protecting its targets.
    pub(crate) oom_score_adj: Option<i32>,
    /// Where the Node agent's socket goes.
    pub(crate) run_dir: PathBuf,
    /// Variables added to the target's environment.
    pub(crate) env: Vec<(String, String)>,
    /// The target's working directory; `None` keeps plimsoll's.
    pub(crate) cwd: Option<PathBuf>,
    /// Shared by the instances of one app: a memory restart holds it from the stop until the
    /// new instance has been sampled, so instances restart one at a time (rolling).
    pub(crate) rolling: Option<Arc<Semaphore>>,
    /// Where the loop publishes what it knows and takes admin requests from.
    pub(crate) registry: Option<Arc<Registry>>,
    /// The Node.js agent to preload, for Node targets.
    pub(crate) agent: Option<AgentSetup>,
    /// The leak detector's settings.
    pub(crate) detector: DetectorConfig,
    /// Between the heap snapshots of the leak investigation that a confirmed leak starts
    /// (Node targets); `None`: none (`soak` investigates by its own verdict).
    pub(crate) investigation_spacing: Option<Duration>,
}

/// The documented spacing of the heap snapshots of a leak investigation.
pub(crate) const INVESTIGATION_SPACING: Duration = Duration::from_secs(60);

/// Where events go: the log always, plus whatever the caller plugged in.
pub(crate) trait EventOutput {
    /// Delivers one event; must not block.
    fn emit(&mut self, event: &Event);
    /// Delivers one sample; must not block.
    fn sample(
        &mut self,
        name: &str,
        t_unix_ms: i64,
        sample: &Sample,
        heap: Option<&HeapFigures>,
        budget: Option<u64>,
        level: Level,
    );
    /// Keep the evidence of the last minutes (at a restart, or after a leak investigation),
    /// with the heap snapshot that goes with it.
    fn incident(&mut self, name: &str, t_unix_ms: i64, reason: &str, snapshot: Option<&str>);
}

/// The messages of the loop: one closed set. Slow work (agent actions, the rolling permit, a
/// leak investigation) runs in tasks of its own and comes back as one of these.
#[derive(Debug)]
enum Message {
    /// A sample of the target's tree, from the run `generation`.
    Sample {
        generation: u64,
        sample: Box<Sample>,
    },
    /// The sampler of run `generation` could not read the tree.
    SampleFailed { generation: u64, error: String },
    /// An agent action finished (or failed): the reply to pass on, and the event it makes.
    Answered {
        reply: oneshot::Sender<AdminReply>,
        answer: AdminReply,
        event: Option<EventKind>,
    },
    /// The rolling-restart permit asked for by run `generation` after a breach.
    Permit {
        generation: u64,
        permit: OwnedSemaphorePermit,
    },
}

/// State of one run of the target.
struct Run {
    generation: u64,
    child: Box<dyn Running>,
    monitor: Monitor,
    /// Whether a leak investigation was started for this run (at most one).
    investigated: bool,
    /// Whether a breach is waiting for the rolling permit.
    awaiting_permit: bool,
    sampler: tokio::task::JoinHandle<()>,
    /// Cancelled when the run ends: its pending agent actions and permit requests give up.
    ended: CancellationToken,
    /// When it started: the restart policy counts run time, not backoff time.
    started: Instant,
}

impl Drop for Run {
    fn drop(&mut self) {
        self.sampler.abort();
        self.ended.cancel();
    }
}

pub(crate) use plimsoll_http::now_unix_ms;

/// The ways into a supervisor from outside its loop: what injects it into `run`, `up`, `soak`
/// or a test.
#[derive(Debug)]
pub(crate) struct Inputs {
    /// Cancelled to stop the target gracefully and end the loop (on a signal, or when `soak`
    /// is done).
    pub(crate) cancel: CancellationToken,
    /// Admin requests into the loop; the sender is published in the registry (when there is
    /// one).
    pub(crate) admin: mpsc::Receiver<AdminRequest>,
    admin_sender: mpsc::Sender<AdminRequest>,
    /// Starts each run: the keeper, unless a test puts in its own.
    spawner: Box<dyn Spawner>,
}

impl std::fmt::Debug for dyn Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Spawner")
    }
}

/// A future the supervisor's traits return (the loop runs on one thread: no `Send`).
pub(crate) type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Starts the runs of a target.
pub(crate) trait Spawner {
    /// Starts one run with `env` added to the environment.
    fn spawn<'a>(
        &'a self,
        settings: &'a Settings,
        env: &'a [(String, String)],
    ) -> Pending<'a, Result<Box<dyn Running>>>;
}

/// One run of the target, as the loop sees it.
pub(crate) trait Running {
    /// The pid of the tree's root, which is sampled.
    fn pid(&self) -> u32;
    /// Waits for the run to end by itself.
    fn wait(&mut self) -> Pending<'_, ChildExit>;
    /// Stops it gracefully: SIGTERM, up to `grace`, SIGKILL.
    fn stop(&mut self, grace: Duration) -> Pending<'_, ChildExit>;
    /// How it is kept from outliving the supervisor (`cgroup-v2`, …), when known.
    fn containment(&self) -> Option<&'static str> {
        None
    }
}

/// The production spawner: each run under a keeper process (child.rs).
struct Keeper;

impl Spawner for Keeper {
    fn spawn<'a>(
        &'a self,
        settings: &'a Settings,
        env: &'a [(String, String)],
    ) -> Pending<'a, Result<Box<dyn Running>>> {
        Box::pin(async move {
            let child = Child::spawn(settings, env).await?;
            Ok(Box::new(child) as Box<dyn Running>)
        })
    }
}

impl Running for Child {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn wait(&mut self) -> Pending<'_, ChildExit> {
        Box::pin(Child::wait(self))
    }

    fn stop(&mut self, grace: Duration) -> Pending<'_, ChildExit> {
        Box::pin(Child::stop(self, grace))
    }

    fn containment(&self) -> Option<&'static str> {
        Some(self.containment.as_str())
    }
}

impl Inputs {
    /// Inputs stopped by `cancel`, with a fresh admin channel.
    pub(crate) fn new(cancel: CancellationToken) -> Inputs {
        let (admin_sender, admin) = mpsc::channel(8);
        Inputs {
            cancel,
            admin,
            admin_sender,
            spawner: Box::new(Keeper),
        }
    }

    /// The same, starting runs with `spawner`.
    #[cfg(test)]
    pub(crate) fn with_spawner(self, spawner: Box<dyn Spawner>) -> Inputs {
        Inputs { spawner, ..self }
    }

    /// A sender into the loop's admin channel (`soak` forces GCs and takes snapshots through
    /// it).
    pub(crate) fn admin_sender(&self) -> mpsc::Sender<AdminRequest> {
        self.admin_sender.clone()
    }
}

/// Cancels `cancel` on the first SIGINT or SIGTERM (logged); for `run` and `up`.
pub(crate) fn cancel_on_signals(cancel: CancellationToken) -> Result<()> {
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    tokio::spawn(async move {
        let why = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
            () = cancel.cancelled() => return,
        };
        tracing::info!("{why}: stopping");
        cancel.cancel();
    });
    Ok(())
}

/// How long a restarted instance may hold the rolling permit without being sampled: the
/// restart delay, the keeper's start timeout and two intervals. Past it the next instance may
/// go, whether or not this one came back.
fn permit_deadline(delay: Duration, interval: Duration) -> Duration {
    delay + START_ALLOWANCE + interval * 2
}

/// How long a start may take: the keeper's own limit for reporting the target's pid.
const START_ALLOWANCE: Duration = Duration::from_secs(10);

/// Supervises the target until it stops for good or `inputs.cancel` is cancelled; returns its
/// exit status. Nothing slow is awaited in the loop itself: agent actions and the rolling
/// permit run as tasks that answer with a message.
pub(crate) async fn supervise(
    settings: Settings,
    output: &mut dyn EventOutput,
    inputs: Inputs,
) -> Result<u8> {
    let Inputs {
        cancel,
        mut admin,
        admin_sender,
        spawner,
    } = inputs;
    let (sender, mut receiver) = mpsc::channel::<Message>(16);
    let clock = Instant::now();
    let mut history = RestartHistory::default();
    let mut budget = settings.budget;
    let mut levels = settings.levels;
    let mut generation = 0;
    if let Some(registry) = &settings.registry {
        let mut view = TargetView::new(&settings.name, levels, true);
        view.admin = Some(admin_sender);
        registry.insert(view);
    } else {
        drop(admin_sender);
    }
    let hub = match &settings.agent {
        Some(_) => {
            // Short whatever the name (up to 64 characters) and data dir: a unix socket path
            // must fit in 108 bytes. One per supervisor loop of this process.
            static AGENT_SOCKETS: std::sync::atomic::AtomicU64 =
                std::sync::atomic::AtomicU64::new(0);
            let socket = settings.run_dir.join(format!(
                "agent-{}-{}.sock",
                std::process::id(),
                AGENT_SOCKETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            Some(AgentHub::listen(&socket)?)
        }
        None => None,
    };
    let _socket = hub.as_ref().map(AgentHub::remove_on_drop);
    let mut investigation: Option<tokio::task::JoinHandle<Result<investigate::Findings>>> = None;
    let mut run = Some(
        start(
            spawner.as_ref(),
            &settings,
            hub.as_ref(),
            &sender,
            &mut generation,
            budget,
            levels,
            output,
        )
        .await?,
    );
    let mut restart_at: Option<Instant> = None;
    // Held (not read) while this instance restarts: dropping it lets the next one go. Released
    // at the restarted run's first sample, at its deadline, or when the loop ends.
    let mut rolling: Option<(OwnedSemaphorePermit, Instant)> = None;

    loop {
        tokio::select! {
            Some(message) = receiver.recv() => {
                let (generation, sample) = match message {
                    Message::Answered { reply, answer, event } => {
                        if let Some(kind) = event {
                            output.emit(&Event { t_unix_ms: now_unix_ms(), target: settings.name.clone(), kind });
                        }
                        let _ = reply.send(answer);
                        continue;
                    }
                    Message::Permit { generation, permit } => {
                        let Some(current) = run.take_if(|r| r.generation == generation) else {
                            // That run is gone: the permit goes straight back.
                            continue;
                        };
                        match restart(&settings, current, RestartReason::Budget, &mut history, output).await {
                            Ok(delay) => {
                                restart_at = Some(Instant::now() + delay);
                                rolling = Some((permit, Instant::now() + permit_deadline(delay, settings.interval)));
                            }
                            Err(exit) => return Ok(exit.shell_status()),
                        }
                        continue;
                    }
                    Message::SampleFailed { generation, error } => {
                        if run.as_ref().is_some_and(|r| r.generation == generation) {
                            tracing::debug!(target_name = %settings.name, %error, "sample failed");
                        }
                        continue;
                    }
                    Message::Sample { generation, sample } => (generation, sample),
                };
                let Some(current) = run.as_mut().filter(|r| r.generation == generation) else { continue };
                // The new instance is up: the next one of the app may restart.
                rolling = None;
                let heap = hub.as_ref().and_then(AgentHub::figures);
                let breach = current.monitor.observe(clock.elapsed().as_secs_f64(), &sample, heap.as_ref(), output);
                budget = current.monitor.budget();
                if let Some(registry) = &settings.registry {
                    current.monitor.publish(registry, &sample, heap.as_ref());
                }
                if let (Some(hub), Some(agent), Some(spacing), None, false) = (&hub, &settings.agent, settings.investigation_spacing, &investigation, current.investigated) {
                    if current.monitor.leak().state == LeakState::Confirmed {
                        if let Some(&pid) = hub.pids().first() {
                            current.investigated = true;
                            tracing::info!(target_name = %settings.name, pid, "leak confirmed: taking heap snapshots to find the suspects");
                            investigation = Some(tokio::spawn(investigate::investigate(
                                hub.clone(),
                                pid,
                                agent.snapshot_dir.clone(),
                                settings.name.clone(),
                                spacing,
                            )));
                        }
                    }
                }
                if breach {
                    match &settings.rolling {
                        // One instance of the app at a time: the restart waits for the permit
                        // in a task; this run goes on being sampled meanwhile.
                        Some(group) => {
                            if !current.awaiting_permit {
                                current.awaiting_permit = true;
                                request_permit(group.clone(), current.generation, current.ended.clone(), sender.clone());
                            }
                        }
                        None => {
                            let run_now = run.take().context("no run")?;
                            match restart(&settings, run_now, RestartReason::Budget, &mut history, output).await {
                                Ok(delay) => restart_at = Some(Instant::now() + delay),
                                Err(exit) => return Ok(exit.shell_status()),
                            }
                        }
                    }
                }
            }
            Some(request) = admin.recv() => {
                let reply = match request.action {
                    AdminAction::Restart => match run.take() {
                        Some(current) => {
                            match restart(&settings, current, RestartReason::Admin, &mut history, output).await {
                                Ok(delay) => {
                                    restart_at = Some(Instant::now() + delay);
                                    AdminReply::Done(serde_json::json!({ "restarting_in_ms": delay.as_millis() as u64 }))
                                }
                                Err(exit) => {
                                    let _ = request.reply.send(AdminReply::Failed("the crash-loop limit is reached: not restarting".to_owned()));
                                    return Ok(exit.shell_status());
                                }
                            }
                        }
                        None => AdminReply::Failed(format!("target '{}' is between two runs; it restarts by itself", settings.name)),
                    },
                    AdminAction::Thresholds(config) => {
                        levels = config;
                        if let Some(current) = run.as_mut() {
                            current.monitor.set_levels(config);
                        }
                        // What /health, /metrics and the next PUT read.
                        if let Some(registry) = &settings.registry {
                            registry.update(&settings.name, |view| view.status.levels = config);
                        }
                        AdminReply::Done(serde_json::json!({ "warn": config.warn, "critical": config.critical }))
                    }
                    AdminAction::LeakCheck => match run.as_ref() {
                        Some(current) => AdminReply::Done(plimsoll_http::verdict_json(&current.monitor.leak(), budget, current.monitor.time_to_budget_s())),
                        None => AdminReply::Failed(format!("target '{}' is between two runs", settings.name)),
                    },
                    AdminAction::Snapshot | AdminAction::Gc | AdminAction::ClearCache => match (&hub, run.as_ref()) {
                        (Some(hub), Some(current)) => {
                            // Answered later, by the task, through the loop.
                            spawn_agent_action(&settings, hub, current.ended.clone(), request, sender.clone());
                            continue;
                        }
                        (Some(_), None) => AdminReply::Failed(format!("target '{}' is between two runs", settings.name)),
                        (None, _) => AdminReply::Unsupported(format!(
                            "target '{}' has no runtime agent (only Node.js targets have one)",
                            settings.name
                        )),
                    },
                };
                let _ = request.reply.send(reply);
            }
            exit = wait(&mut run) => {
                let ended = run.take().context("no run")?;
                emit_exit(&settings, &ended, exit, output);
                let ran = ended.started.elapsed();
                drop(ended);
                if exit.code == Some(0) {
                    tracing::info!(target_name = %settings.name, "target exited cleanly; stopping");
                    return Ok(0);
                }
                output.incident(&settings.name, now_unix_ms(), RestartReason::Crash.as_str(), None);
                match decide(&settings, RestartReason::Crash, &mut history, ran, output) {
                    Some(delay) => restart_at = Some(Instant::now() + delay),
                    None => return Ok(exit.shell_status()),
                }
            }
            findings = finished(&mut investigation) => {
                investigation = None;
                match findings {
                    Ok(findings) => {
                        let snapshot = findings.snapshot.display().to_string();
                        let t_unix_ms = now_unix_ms();
                        output.emit(&Event {
                            t_unix_ms,
                            target: settings.name.clone(),
                            kind: EventKind::LeakSuspects { snapshot: snapshot.clone(), suspects: findings.suspects },
                        });
                        output.incident(&settings.name, t_unix_ms, "leak-investigation", Some(&snapshot));
                    }
                    Err(error) => tracing::warn!(target_name = %settings.name, error = %format!("{error:#}"), "leak investigation"),
                }
            }
            () = sleep_until(restart_at) => {
                restart_at = None;
                match start(spawner.as_ref(), &settings, hub.as_ref(), &sender, &mut generation, budget, levels, output).await {
                    Ok(started) => run = Some(started),
                    Err(error) => {
                        // A start that fails is one more crash: back off, or give up.
                        tracing::error!(target_name = %settings.name, error = %format!("{error:#}"), "cannot restart");
                        match decide(&settings, RestartReason::Crash, &mut history, Duration::ZERO, output) {
                            Some(delay) => restart_at = Some(Instant::now() + delay),
                            None => return Ok(127),
                        }
                    }
                }
            }
            () = sleep_until(rolling.as_ref().map(|(_, until)| *until)) => {
                tracing::warn!(target_name = %settings.name, "the restarted instance was not sampled in time; the next instance may restart");
                rolling = None;
            }
            () = cancel.cancelled() => return Ok(shutdown(&settings, run, output).await),
        }
    }
}

/// Asks for the rolling permit in a task; it comes back as [`Message::Permit`], unless the run
/// ends first.
fn request_permit(
    group: Arc<Semaphore>,
    generation: u64,
    ended: CancellationToken,
    sender: mpsc::Sender<Message>,
) {
    tokio::spawn(async move {
        let permit = tokio::select! {
            // An ended run never takes the permit, even when both are ready.
            biased;
            () = ended.cancelled() => return,
            permit = group.acquire_owned() => permit,
        };
        if let Ok(permit) = permit {
            let _ = sender.send(Message::Permit { generation, permit }).await;
        }
    });
}

/// Runs an agent action in a task; its answer comes back as [`Message::Answered`]. It fails at
/// once when the run ends (a restart, a crash) or the agent disconnects.
fn spawn_agent_action(
    settings: &Settings,
    hub: &AgentHub,
    ended: CancellationToken,
    request: AdminRequest,
    sender: mpsc::Sender<Message>,
) {
    let hub = hub.clone();
    let name = settings.name.clone();
    let snapshot_dir = settings.agent.as_ref().map(|a| a.snapshot_dir.clone());
    tracing::info!(target_name = %name, action = ?request.action, "agent action pending");
    tokio::spawn(async move {
        let AdminRequest { action, reply } = request;
        let (answer, event) = tokio::select! {
            done = agent_action(&name, &hub, snapshot_dir, &action) => done,
            () = ended.cancelled() => (
                AdminReply::Failed(format!("target '{name}' stopped while the {action:?} was pending")),
                None,
            ),
        };
        let _ = sender
            .send(Message::Answered {
                reply,
                answer,
                event,
            })
            .await;
    });
}

/// The variable that tells the target its budget, bytes (read by plimsoll-guard).
pub(crate) const BUDGET_ENV: &str = "PLIMSOLL_BUDGET_BYTES";

#[allow(clippy::too_many_arguments)]
async fn start(
    spawner: &dyn Spawner,
    settings: &Settings,
    hub: Option<&AgentHub>,
    sender: &mpsc::Sender<Message>,
    generation: &mut u64,
    budget: Option<u64>,
    levels: LevelConfig,
    output: &mut dyn EventOutput,
) -> Result<Run> {
    *generation += 1;
    let mut env = match (&settings.agent, hub) {
        (Some(agent), Some(hub)) => agent_env(settings, agent, hub, budget),
        _ => Vec::new(),
    };
    // A service that guards itself in-process (plimsoll-guard) takes the same budget.
    if let Some(budget) = budget {
        env.push((BUDGET_ENV.to_owned(), budget.to_string()));
    }
    let child = spawner.spawn(settings, &env).await?;
    let pid = child.pid();
    if let Some(registry) = &settings.registry {
        registry.update(&settings.name, |view| {
            view.status.pid = Some(pid);
            view.status.started_unix_ms = Some(now_unix_ms());
            view.status.restarts = (*generation - 1) as u32;
            view.status.levels = levels;
            view.status.containment = child.containment();
        });
    }
    output.emit(&Event {
        t_unix_ms: now_unix_ms(),
        target: settings.name.clone(),
        kind: EventKind::Started {
            pid,
            command: settings.command.clone(),
            containment: child.containment(),
        },
    });
    let sampler = sampler::spawn(pid, settings.interval, *generation, sender.clone());
    Ok(Run {
        generation: *generation,
        awaiting_permit: false,
        ended: CancellationToken::new(),
        started: Instant::now(),
        child,
        monitor: Monitor::new(
            &settings.name,
            budget,
            levels,
            settings.warmup,
            settings.detector.clone(),
        ),
        investigated: false,
        sampler,
    })
}

/// The environment that preloads the agent into a Node target.
fn agent_env(
    settings: &Settings,
    agent: &AgentSetup,
    hub: &AgentHub,
    budget: Option<u64>,
) -> Vec<(String, String)> {
    let user = settings
        .env
        .iter()
        .find(|(k, _)| k == "NODE_OPTIONS")
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var("NODE_OPTIONS").ok());
    vec![
        (
            "PLIMSOLL_AGENT_SOCKET".to_owned(),
            hub.socket().display().to_string(),
        ),
        (
            "PLIMSOLL_AGENT_INTERVAL_MS".to_owned(),
            settings.interval.as_millis().to_string(),
        ),
        (
            "NODE_OPTIONS".to_owned(),
            node::node_options(user.as_deref(), &agent.script, budget, &agent.snapshot_dir),
        ),
    ]
}

/// Runs a snapshot, gc or clear-caches through the agents of the target's Node processes; the
/// reply, and the event to emit.
async fn agent_action(
    name: &str,
    hub: &AgentHub,
    snapshot_dir: Option<PathBuf>,
    action: &AdminAction,
) -> (AdminReply, Option<EventKind>) {
    let pids = hub.pids();
    let Some(&first) = pids.first() else {
        return (
            AdminReply::Failed(format!(
                "no Node.js process of target '{name}' has connected its agent yet"
            )),
            None,
        );
    };
    match action {
        AdminAction::Snapshot => {
            let Some(dir) = snapshot_dir else {
                return (AdminReply::Unsupported("no agent".to_owned()), None);
            };
            let path = dir.join(format!("{name}-{first}-{}.heapsnapshot", now_unix_ms()));
            let command =
                serde_json::json!({ "cmd": "snapshot", "path": path.display().to_string() });
            match hub.command(first, command).await {
                Ok(reply) => {
                    let path = reply["path"].as_str().unwrap_or_default().to_owned();
                    let bytes = reply["bytes"].as_u64().unwrap_or(0);
                    let event = EventKind::SnapshotWritten {
                        path: path.clone(),
                        bytes,
                    };
                    (
                        AdminReply::Done(
                            serde_json::json!({ "pid": first, "path": path, "bytes": bytes }),
                        ),
                        Some(event),
                    )
                }
                Err(error) => (AdminReply::Failed(format!("{error:#}")), None),
            }
        }
        _ => {
            let command = if *action == AdminAction::Gc {
                "gc"
            } else {
                "clear-caches"
            };
            let mut replies = Vec::new();
            for pid in pids {
                match hub
                    .command(pid, serde_json::json!({ "cmd": command }))
                    .await
                {
                    Ok(reply) => replies.push(reply),
                    Err(error) => return (AdminReply::Failed(format!("{error:#}")), None),
                }
            }
            (
                AdminReply::Done(serde_json::json!({ "processes": replies })),
                None,
            )
        }
    }
}

/// Stops the run for a restart, records the incident, and decides what comes next: the delay
/// before the next start, or the exit of the last run when the crash-loop limit is reached.
async fn restart(
    settings: &Settings,
    mut run: Run,
    reason: RestartReason,
    history: &mut RestartHistory,
    output: &mut dyn EventOutput,
) -> Result<Duration, ChildExit> {
    run.sampler.abort();
    run.ended.cancel();
    output.incident(&settings.name, now_unix_ms(), reason.as_str(), None);
    let exit = run.child.stop(settings.grace).await;
    emit_exit(settings, &run, exit, output);
    let ran = run.started.elapsed();
    decide(settings, reason, history, ran, output).ok_or(exit)
}

/// Asks the restart policy about a run that lasted `ran`; emits `restarted` or `gave-up`.
fn decide(
    settings: &Settings,
    reason: RestartReason,
    history: &mut RestartHistory,
    ran: Duration,
    output: &mut dyn EventOutput,
) -> Option<Duration> {
    let t_unix_ms = now_unix_ms();
    match history.decide(&settings.policy, ran) {
        Decision::Restart { attempt, delay } => {
            output.emit(&Event {
                t_unix_ms,
                target: settings.name.clone(),
                kind: EventKind::Restarted {
                    reason,
                    attempt,
                    delay_ms: delay.as_millis() as u64,
                },
            });
            Some(delay)
        }
        Decision::GiveUp { restarts } => {
            tracing::error!(target_name = %settings.name, restarts, "crash loop: giving up");
            output.emit(&Event {
                t_unix_ms,
                target: settings.name.clone(),
                kind: EventKind::GaveUp {
                    restarts,
                    window_s: settings.policy.window.as_secs_f64(),
                },
            });
            None
        }
    }
}

fn emit_exit(settings: &Settings, run: &Run, exit: ChildExit, output: &mut dyn EventOutput) {
    output.emit(&Event {
        t_unix_ms: now_unix_ms(),
        target: settings.name.clone(),
        kind: EventKind::Exited {
            pid: run.child.pid(),
            code: exit.code,
            signal: exit.signal,
        },
    });
}

/// Stops the target gracefully when the supervisor is cancelled; returns its exit status.
async fn shutdown(settings: &Settings, run: Option<Run>, output: &mut dyn EventOutput) -> u8 {
    tracing::info!(target_name = %settings.name, "stopping the target");
    let Some(mut run) = run else { return 0 };
    run.sampler.abort();
    run.ended.cancel();
    let exit = run.child.stop(settings.grace).await;
    emit_exit(settings, &run, exit, output);
    exit.shell_status()
}

async fn wait(run: &mut Option<Run>) -> ChildExit {
    match run {
        Some(run) => run.child.wait().await,
        None => std::future::pending().await,
    }
}

/// Waits for a leak investigation, if one runs (the supervisor's, or a soak's).
pub(crate) async fn finished(
    task: &mut Option<tokio::task::JoinHandle<Result<investigate::Findings>>>,
) -> Result<investigate::Findings> {
    match task {
        Some(task) => task
            .await
            .map_err(anyhow::Error::from)
            .and_then(|found| found),
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Settings for tests: target `app` running `true`, run dir `dir`, a Node agent set up there.
#[cfg(test)]
pub(crate) fn test_settings(dir: &std::path::Path) -> Settings {
    use std::time::Duration;
    Settings {
        name: "app".to_owned(),
        command: vec!["true".to_owned()],
        budget: None,
        levels: LevelConfig::recommended(),
        interval: Duration::from_millis(100),
        warmup: Duration::ZERO,
        grace: Duration::from_secs(1),
        policy: RestartPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_restarts: 3,
            window: Duration::from_secs(60),
        },
        oom_score_adj: None,
        run_dir: dir.to_path_buf(),
        env: Vec::new(),
        cwd: None,
        rolling: None,
        registry: None,
        agent: Some(AgentSetup {
            script: dir.join("agent.js"),
            snapshot_dir: dir.to_path_buf(),
        }),
        detector: DetectorConfig::recommended(),
        investigation_spacing: Some(INVESTIGATION_SPACING),
    }
}

#[cfg(test)]
mod tests {
    //! The tasks the loop hands slow work to, against real sockets: they answer through the
    //! loop's channel, and give up as soon as their run ends.

    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::UnixStream;

    use super::*;

    #[tokio::test]
    async fn a_pending_snapshot_fails_at_once_when_its_run_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = AgentHub::listen(&dir.path().join("agent.sock")).expect("listen");
        // An agent that says hello and never answers (a blocked event loop).
        let mut agent = UnixStream::connect(hub.socket()).await.expect("connect");
        agent
            .write_all(b"{\"type\":\"hello\",\"pid\":5}\n")
            .await
            .expect("hello");
        while hub.pids().is_empty() {
            tokio::task::yield_now().await;
        }
        let (sender, mut receiver) = mpsc::channel(4);
        let (reply, answer) = oneshot::channel();
        let ended = CancellationToken::new();
        let request = AdminRequest {
            action: AdminAction::Snapshot,
            reply,
        };
        spawn_agent_action(
            &test_settings(dir.path()),
            &hub,
            ended.clone(),
            request,
            sender,
        );
        // The loop is free meanwhile: nothing comes back while the agent is silent.
        let silent = tokio::time::timeout(Duration::from_millis(200), receiver.recv()).await;
        assert!(silent.is_err(), "answered while the agent was silent");
        ended.cancel();
        let message = tokio::time::timeout(Duration::from_secs(2), receiver.recv())
            .await
            .expect("answered at once once the run ended")
            .expect("a message");
        let Message::Answered {
            reply,
            answer: why,
            event,
        } = message
        else {
            panic!("not an answer: {message:?}");
        };
        assert!(event.is_none());
        assert!(
            matches!(&why, AdminReply::Failed(text) if text.contains("stopped while")),
            "{why:?}"
        );
        reply.send(why).expect("the requester still waits");
        assert!(matches!(answer.await, Ok(AdminReply::Failed(_))));
    }

    #[tokio::test]
    async fn a_permit_comes_back_as_a_message_and_is_not_taken_for_an_ended_run() {
        let group = Arc::new(Semaphore::new(1));
        let held = group.clone().acquire_owned().await.expect("permit");
        let (sender, mut receiver) = mpsc::channel(4);
        let first = CancellationToken::new();
        request_permit(group.clone(), 1, first.clone(), sender.clone());
        let second = CancellationToken::new();
        request_permit(group.clone(), 2, second.clone(), sender);
        // Run 1 ends while waiting: its request goes away without the permit.
        first.cancel();
        tokio::task::yield_now().await;
        drop(held);
        let message = tokio::time::timeout(Duration::from_secs(2), receiver.recv())
            .await
            .expect("the permit in time")
            .expect("a message");
        let Message::Permit { generation, permit } = message else {
            panic!("not a permit: {message:?}");
        };
        assert_eq!(generation, 2);
        assert_eq!(group.available_permits(), 0);
        drop(permit);
        assert_eq!(group.available_permits(), 1);
    }

    /// Runs that end only when stopped, counted. Their pid is this test's process, so the
    /// sampler reads a real tree.
    #[derive(Clone, Default)]
    struct Fake {
        starts: Arc<std::sync::atomic::AtomicUsize>,
        stops: Arc<std::sync::atomic::AtomicUsize>,
    }

    struct FakeRun(Arc<std::sync::atomic::AtomicUsize>);

    impl Running for FakeRun {
        fn pid(&self) -> u32 {
            std::process::id()
        }

        fn wait(&mut self) -> Pending<'_, ChildExit> {
            Box::pin(std::future::pending())
        }

        fn stop(&mut self, _grace: Duration) -> Pending<'_, ChildExit> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async {
                ChildExit {
                    code: None,
                    signal: Some(15),
                }
            })
        }
    }

    impl Spawner for Fake {
        fn spawn<'a>(
            &'a self,
            _settings: &'a Settings,
            _env: &'a [(String, String)],
        ) -> Pending<'a, Result<Box<dyn Running>>> {
            self.starts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let stops = self.stops.clone();
            Box::pin(async move { Ok(Box::new(FakeRun(stops)) as Box<dyn Running>) })
        }
    }

    /// The names of the events emitted.
    #[derive(Default)]
    struct Recorder(Vec<&'static str>);

    impl EventOutput for Recorder {
        fn emit(&mut self, event: &Event) {
            self.0.push(event.kind.name());
        }

        fn sample(
            &mut self,
            _name: &str,
            _t_unix_ms: i64,
            _sample: &Sample,
            _heap: Option<&HeapFigures>,
            _budget: Option<u64>,
            _level: Level,
        ) {
        }

        fn incident(&mut self, _: &str, _: i64, _: &str, _: Option<&str>) {}
    }

    /// On paused time, with an injected spawner: a snapshot waits on a silent agent; the warm-up
    /// ends, the tree (this process) breaches its 1-byte budget and is restarted without waiting
    /// for the agent, and the snapshot fails with the run.
    #[tokio::test(start_paused = true)]
    async fn the_loop_restarts_on_breach_while_a_snapshot_is_pending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = test_settings(dir.path());
        settings.budget = Some(1);
        settings.warmup = Duration::from_secs(5);
        let warmup = settings.warmup;
        let fake = Fake::default();
        let cancel = CancellationToken::new();
        let inputs = Inputs::new(cancel.clone()).with_spawner(Box::new(fake.clone()));
        let admin = inputs.admin_sender();
        let prefix = format!("agent-{}-", std::process::id());
        let find_socket = || {
            std::fs::read_dir(dir.path())
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                })
        };
        let mut output = Recorder::default();
        let clock = Instant::now();
        let driver = async {
            // Bounded: 1,000 tries of 10 ms of the paused clock.
            let mut tries = 0..1000;
            let socket = loop {
                match find_socket() {
                    Some(socket) => break socket,
                    None if tries.next().is_some() => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    None => panic!("no agent socket in {}", dir.path().display()),
                }
            };
            let mut agent = UnixStream::connect(&socket).await.expect("connect");
            agent
                .write_all(b"{\"type\":\"hello\",\"pid\":5}\n")
                .await
                .expect("hello");
            // Asked until the hub knows the agent; then the request waits on it.
            let answer = loop {
                let (reply, answer) = oneshot::channel();
                let request = AdminRequest {
                    action: AdminAction::Snapshot,
                    reply,
                };
                admin.send(request).await.expect("the loop takes requests");
                match answer.await.expect("an answer") {
                    AdminReply::Failed(why) if why.contains("connected its agent yet") => {
                        assert!(tries.next().is_some(), "the agent never connected: {why}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    answer => break answer,
                }
            };
            let answered = clock.elapsed();
            cancel.cancel();
            drop(agent);
            (answer, answered)
        };
        let (status, (answer, answered)) =
            tokio::join!(supervise(settings, &mut output, inputs), driver);
        assert!(
            matches!(&answer, AdminReply::Failed(why) if why.contains("stopped while")),
            "{answer:?}"
        );
        // Answered at the breach after the warm-up, not at the agent's 120 s timeout.
        assert!(answered >= warmup, "answered after {answered:?}");
        assert!(
            answered < warmup + Duration::from_secs(2),
            "answered after {answered:?}"
        );
        assert!(output.0.contains(&"budget-breach"), "{:?}", output.0);
        assert!(output.0.contains(&"restarted"), "{:?}", output.0);
        assert!(fake.starts.load(std::sync::atomic::Ordering::SeqCst) >= 1);
        assert!(fake.stops.load(std::sync::atomic::Ordering::SeqCst) >= 1);
        status.expect("the loop ends when cancelled");
    }

    #[test]
    fn a_held_permit_has_a_deadline_past_the_restart() {
        let deadline = permit_deadline(Duration::from_secs(3), Duration::from_secs(1));
        assert_eq!(deadline, Duration::from_secs(3 + 10 + 2));
    }
}
