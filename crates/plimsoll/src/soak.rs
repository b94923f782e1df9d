//! `plimsoll soak -- CMD…`: the CI gate. Runs CMD under the supervisor (agent, keeper, store)
//! and the load command beside it for a fixed duration, feeds the samples after the warm-up
//! to the leak detector, then prints the verdict and exits 0 no leak / 1 leak, budget exceeded,
//! load or target failed / 3 inconclusive.
//!
//! The supervisor is reused as it is: the soak wraps its outputs (every sample and event goes
//! through [`SoakOutput`] on its way to the store) and, to end the run, cancels the
//! supervisor's token, which its loop answers with a graceful stop of the target.

use std::cell::RefCell;
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use plimsoll_analysis::{
    DetectorConfig, LeakDetector, LeakState, LeakStatus, Level, Observation, Reason, Signal,
    SteadyVerdict, Verdict,
};
use plimsoll_probe::Sample;
use serde_json::{json, Value};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{interval, sleep, Instant, MissedTickBehavior};

use crate::agent::HeapFigures;
use crate::cli::{Listen, MonitorArgs, OutputArgs, SoakArgs};
use crate::common::{sink_config, Common};
use crate::event::{Event, EventKind};
use crate::exit;
use crate::outputs::Outputs;
use crate::registry::AdminReply;
use crate::report::{self, ReportInput};
use crate::soak_heap::{self, ForcedGc};
use crate::stdout::{errln, outln};
use crate::supervise::finished;
use crate::supervise::investigate::Findings;
use crate::supervise::{self, now_unix_ms, EventOutput, Inputs, Settings};
use crate::units::{human_bytes, human_seconds};
use plimsoll_http::verdict_json;
use tokio_util::sync::CancellationToken;

/// Progress lines off a terminal come this often.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// The progress bar on a terminal is redrawn this often.
const BAR_PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// How often the soak looks at its state (stop requests, fail-fast).
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// How often the soak asks the steady-state verdict whether to name a leak.
const STEADY_CHECK_EVERY: Duration = Duration::from_secs(1);
/// A full GC is forced this often by default (`--gc-every`), at full time scale.
const DEFAULT_GC_EVERY: Duration = Duration::from_secs(15);
/// The load command's group gets this long after SIGTERM before SIGKILL.
const LOAD_GRACE: Duration = Duration::from_secs(5);

pub(crate) fn run(args: &SoakArgs) -> Result<u8> {
    // Where the verdict goes is checked before the soak, not after it.
    if let Some(path) = &args.report {
        report::check_destination(path)?;
    }
    let plan = Plan::resolve(args)?;
    let mut outputs = Outputs::open(&plan.data_dir, &sink_config(&plan.monitor))?;
    // On a terminal the progress bar has the last line: the log keeps to warnings there (the
    // events are in the store, the report and the final verdict).
    if std::io::stderr().is_terminal() {
        crate::logging::init_with_default(tracing::level_filters::LevelFilter::WARN);
    } else {
        crate::logging::init();
    }
    let budget_text = plan.settings.budget.map_or_else(
        || "none (the cgroup limit, if any)".to_owned(),
        |b| format!("{} ({b} bytes)", human_bytes(b as f64)),
    );
    errln!(
        "plimsoll soak: {} for {} (warm-up {}), budget {budget_text}{}",
        plan.settings.name,
        human_seconds(plan.duration.as_secs_f64()),
        human_seconds(plan.warmup.as_secs_f64()),
        if plan.time_scale == 1.0 {
            String::new()
        } else {
            format!(", detector time scale {}", plan.time_scale)
        }
    );
    // With --json, standard output carries the verdict only: the target and the load command
    // write to standard error meanwhile.
    let saved_stdout = if args.json {
        let saved = nix::unistd::dup(std::io::stdout()).context("cannot save standard output")?;
        nix::unistd::dup2_stdout(std::io::stderr()).context("cannot redirect standard output")?;
        Some(saved)
    } else {
        None
    };
    let state = Rc::new(RefCell::new(SoakState::new(&plan)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let outcome = {
        let mut output = SoakOutput {
            inner: &mut outputs,
            state: state.clone(),
        };
        runtime.block_on(soak(&plan, &mut output, &state))
    };
    // A snapshot diff given up at the end may still run on the blocking pool: not waited for.
    runtime.shutdown_timeout(Duration::from_millis(100));
    // The soak's own events that no later sample carried out.
    for (kind, snapshot) in std::mem::take(&mut state.borrow_mut().pending) {
        let t_unix_ms = now_unix_ms();
        let name = &plan.settings.name;
        outputs.emit(&Event {
            t_unix_ms,
            target: name.clone(),
            kind,
        });
        if let Some(snapshot) = snapshot {
            outputs.incident(name, t_unix_ms, "leak-investigation", Some(&snapshot));
        }
    }
    outputs.close();
    if let Some(saved) = saved_stdout {
        let _ = std::io::stdout().flush();
        nix::unistd::dup2_stdout(&saved).context("cannot restore standard output")?;
    }
    let outcome = outcome?;
    let state = state.borrow();
    let verdict = Finding::of(&plan, &state, &outcome);
    if let Some(path) = &args.report {
        let input = report_input(&plan, &state, &verdict)?;
        report::write(path, &input)?;
        errln!("plimsoll soak: report written to {}", path.display());
    }
    let printed = if args.json {
        outln!("{}", verdict.json)
    } else {
        verdict.print_human(&plan)
    };
    Ok(crate::stdout::verdict_code(verdict.exit_code, printed)?)
}

/// The soak's settings, resolved from the command line.
#[derive(Debug)]
struct Plan {
    settings: Settings,
    monitor: MonitorArgs,
    data_dir: PathBuf,
    duration: Duration,
    warmup: Duration,
    load: Option<String>,
    fail_fast: bool,
    time_scale: f64,
    detector: DetectorConfig,
    /// A full GC forced this often through the agent (Node targets, unless `--no-forced-gc`).
    forced_gc: Option<Duration>,
    /// When the soak started, milliseconds since the Unix epoch.
    started_unix_ms: i64,
}

impl Plan {
    fn resolve(args: &SoakArgs) -> Result<Plan> {
        if args.duration.is_zero() {
            bail!("--duration 0s: give how long to soak, e.g. 15m");
        }
        if args.warmup >= args.duration {
            bail!(
                "--warmup {} is not shorter than --duration {}: nothing would count",
                human_seconds(args.warmup.as_secs_f64()),
                human_seconds(args.duration.as_secs_f64())
            );
        }
        if !(args.time_scale > 0.0 && args.time_scale <= 1.0) {
            bail!(
                "invalid --time-scale '{}' (expected a factor above 0 and at most 1, e.g. 0.05)",
                args.time_scale
            );
        }
        if let Some(load) = &args.load {
            if load.trim().is_empty() {
                bail!("--load '{load}' is empty");
            }
        }
        let monitor = MonitorArgs {
            budget: args.budget,
            warn: 0.75,
            critical: 0.85,
            interval: args.interval,
            warmup: args.warmup,
            output: OutputArgs {
                data_dir: args.data_dir.clone(),
                events: args.events.clone(),
                on_event: None,
                webhook: None,
                listen: Listen::Off,
                no_http: true,
                admin_token_file: None,
                read_token_file: None,
                ingest_token_file: None,
                cors_origins: Vec::new(),
            },
        };
        let common = Common::resolve(&monitor)?;
        let mut settings = crate::run::target_settings(
            &common,
            &crate::run::Target {
                name: args.name.as_deref(),
                command: &args.command,
                grace: Duration::from_secs(5),
                max_restarts: 10,
                restart_window: Duration::from_secs(60),
                oom_score_adj: None,
                time_scale: args.time_scale,
                agent: !args.no_agent,
            },
        )?;
        // The soak names a leak by its own steady-state verdict, in time to end on time
        // (soak_heap.rs), not at the online detector's confirmation.
        settings.investigation_spacing = None;
        // On a compressed clock the default spacing is compressed too (at least 100 ms): the
        // heap channel needs as many readings per window as at full scale.
        let gc_every = args.gc_every.unwrap_or_else(|| {
            DEFAULT_GC_EVERY
                .mul_f64(args.time_scale)
                .max(Duration::from_millis(100))
        });
        let forced_gc = (!args.no_forced_gc && settings.agent.is_some()).then_some(gc_every);
        Ok(Plan {
            monitor,
            data_dir: common.data_dir,
            duration: args.duration,
            warmup: args.warmup,
            load: args.load.clone(),
            fail_fast: args.fail_fast,
            time_scale: args.time_scale,
            detector: DetectorConfig {
                exact_heap: forced_gc.is_some(),
                ..DetectorConfig::recommended().time_scaled(args.time_scale)
            },
            forced_gc,
            started_unix_ms: now_unix_ms(),
            settings,
        })
    }
}

/// What the soak saw, updated by [`SoakOutput`] at every sample and event.
#[derive(Debug)]
struct SoakState {
    /// When the soak started, on the monotonic clock: sample times are measured from it, so a
    /// wall-clock step (NTP, a suspended VM) cannot bend the series the detector sees.
    clock: std::time::Instant,
    warmup_s: f64,
    detector: LeakDetector,
    /// The budget in force (from the command line or the cgroup limit).
    budget: Option<u64>,
    /// Samples seen, warm-up included.
    samples: u64,
    rss: Option<u64>,
    heap_used: Option<u64>,
    heap_after_gc: Option<u64>,
    /// The highest RSS after the warm-up, bytes.
    peak_rss: u64,
    /// The first time (seconds into the soak) the RSS reached the budget after the warm-up.
    budget_exceeded_at_s: Option<f64>,
    /// The target has been started at least once.
    started: bool,
    /// The soak asked the supervisor to stop the target.
    stopping: bool,
    /// Exits of the target that the soak did not ask for, for people.
    unexpected_exits: Vec<String>,
    /// Restarts by the supervisor.
    restarts: u32,
    /// The Node target's total heap (all processes), bytes: what a snapshot needs room for.
    heap_total: u64,
    /// The forced GCs, when the soak forces them.
    forced: Option<ForcedGc>,
    /// How many of their readings the detector has had: each goes in once, with the next
    /// sample (the heap channel is one point per forced GC, not a staircase).
    forced_fed: u64,
    /// The leak investigation of the soak.
    investigation: Investigation,
    /// When the steady-state verdict first said leak, seconds into the soak.
    steady_leak_at_s: Option<f64>,
    /// The series that rose like a leak then.
    steady_leak_signal: Option<Signal>,
    /// The floor's growth rate it gave then, bytes per second.
    steady_leak_rate: f64,
    /// Events of the soak's own (the suspects) to emit with the next sample, and the snapshot
    /// each keeps as an incident.
    pending: Vec<(EventKind, Option<String>)>,
}

/// Where the soak's leak investigation stands.
#[derive(Debug)]
enum Investigation {
    /// Not needed (yet).
    Idle,
    /// Three snapshots are being taken, spaced from what the first cost.
    Running,
    /// The diff named the suspects.
    Named(Findings),
    /// It could not name them, and why.
    NotNamed(String),
}

impl SoakState {
    fn new(plan: &Plan) -> SoakState {
        SoakState {
            clock: std::time::Instant::now(),
            warmup_s: plan.warmup.as_secs_f64(),
            detector: LeakDetector::new(plan.detector.clone()),
            budget: plan.settings.budget,
            samples: 0,
            rss: None,
            heap_used: None,
            heap_after_gc: None,
            peak_rss: 0,
            budget_exceeded_at_s: None,
            started: false,
            stopping: false,
            unexpected_exits: Vec::new(),
            restarts: 0,
            heap_total: 0,
            forced: plan.forced_gc.map(ForcedGc::new),
            forced_fed: 0,
            investigation: Investigation::Idle,
            steady_leak_at_s: None,
            steady_leak_signal: None,
            steady_leak_rate: 0.0,
            pending: Vec::new(),
        }
    }

    /// Seconds since the soak started, on the monotonic clock (samples and events reach the
    /// soak as they happen).
    fn elapsed_s(&self) -> f64 {
        self.clock.elapsed().as_secs_f64()
    }
}

/// The supervisor's outputs, with the soak listening in.
struct SoakOutput<'a> {
    inner: &'a mut Outputs,
    state: Rc<RefCell<SoakState>>,
}

impl EventOutput for SoakOutput<'_> {
    fn emit(&mut self, event: &Event) {
        {
            let mut state = self.state.borrow_mut();
            match &event.kind {
                EventKind::Started { .. } => state.started = true,
                EventKind::Exited { code, signal, .. } if !state.stopping => {
                    let how = match (code, signal) {
                        (Some(code), _) => format!("code {code}"),
                        (None, Some(signal)) => format!("signal {signal}"),
                        (None, None) => "an unknown status".to_owned(),
                    };
                    let at = state.elapsed_s();
                    state
                        .unexpected_exits
                        .push(format!("exited with {how} after {}", human_seconds(at)));
                }
                EventKind::Restarted { .. } => state.restarts += 1,
                EventKind::BudgetBreach { .. } => {
                    let at = state.elapsed_s();
                    state.budget_exceeded_at_s.get_or_insert(at);
                }
                _ => {}
            }
        }
        self.inner.emit(event);
    }

    fn sample(
        &mut self,
        name: &str,
        t_unix_ms: i64,
        sample: &Sample,
        heap: Option<&HeapFigures>,
        budget: Option<u64>,
        level: Level,
    ) {
        let mut figures = heap.copied();
        let pending = {
            let mut state = self.state.borrow_mut();
            let t_s = state.elapsed_s();
            let rss = sample.rss.0;
            state.samples += 1;
            state.rss = Some(rss);
            state.heap_used = heap.map(|h| h.heap_used_bytes);
            state.heap_total = heap.map_or(0, |h| h.heap_total_bytes);
            // With forced GCs the heap channel is the heap right after the last one (the live
            // heap, no sawtooth), in the verdict and in the store alike.
            if let (Some(forced), Some(figures)) = (&state.forced, figures.as_mut()) {
                figures.heap_used_after_gc_bytes = forced.heap_after;
            }
            state.heap_after_gc = figures.and_then(|h| h.heap_used_after_gc_bytes);
            let heap_channel = match &state.forced {
                Some(forced) if forced.count > state.forced_fed => {
                    let reading = forced.heap_after;
                    state.forced_fed = forced.count;
                    reading
                }
                Some(_) => None,
                None => state.heap_after_gc,
            };
            if budget.is_some() {
                state.budget = budget;
            }
            if t_s >= state.warmup_s && !state.stopping {
                state.peak_rss = state.peak_rss.max(rss);
                if state.budget.is_some_and(|b| rss >= b) {
                    state.budget_exceeded_at_s.get_or_insert(t_s);
                }
                let observation = Observation {
                    t_s,
                    rss_bytes: rss,
                    heap_used_after_gc_bytes: heap_channel,
                };
                state.detector.push(&observation);
            }
            std::mem::take(&mut state.pending)
        };
        self.inner
            .sample(name, t_unix_ms, sample, figures.as_ref(), budget, level);
        for (kind, snapshot) in pending {
            let event = Event {
                t_unix_ms,
                target: name.to_owned(),
                kind,
            };
            self.inner.emit(&event);
            if let Some(snapshot) = snapshot {
                self.inner
                    .incident(name, t_unix_ms, "leak-investigation", Some(&snapshot));
            }
        }
    }

    fn incident(&mut self, name: &str, t_unix_ms: i64, reason: &str, snapshot: Option<&str>) {
        self.inner.incident(name, t_unix_ms, reason, snapshot);
    }
}

/// Why the soak ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The duration is over.
    Done,
    /// `--fail-fast` and the detector confirmed a leak.
    LeakConfirmed,
    /// `--fail-fast` and the budget was reached.
    BudgetExceeded,
    /// The load command failed.
    LoadFailed,
    /// The target stopped for good by itself.
    TargetStopped,
    /// SIGINT or SIGTERM from outside.
    Interrupted,
}

/// How the soak went, apart from the samples.
#[derive(Debug)]
struct Outcome {
    stop: Stop,
    /// Seconds the soak ran.
    ran_s: f64,
    /// The load command's failure, for people.
    load_failure: Option<String>,
    /// The target's exit status when it stopped for good by itself.
    target_status: Option<u8>,
}

/// The soak's loop: the supervisor, the load command, the timer and the progress, together.
async fn soak(
    plan: &Plan,
    output: &mut SoakOutput<'_>,
    state: &Rc<RefCell<SoakState>>,
) -> Result<Outcome> {
    // A stop from outside cancels the supervisor, like the soak's own end does.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let clock = Instant::now();
    let mut load = match &plan.load {
        Some(command) => Some(spawn_load(command)?),
        None => None,
    };
    let cancel = CancellationToken::new();
    let inputs = Inputs::new(cancel.clone());
    // Forced GCs and snapshots go through the loop's admin channel: it runs them as tasks.
    let admin = inputs.admin_sender();
    let supervisor = supervise::supervise(plan.settings.clone(), output, inputs);
    tokio::pin!(supervisor);
    let deadline = sleep(plan.duration);
    tokio::pin!(deadline);
    let mut check = interval(CHECK_EVERY);
    check.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut progress = Progress::new(plan.duration);
    let mut stop: Option<Stop> = None;
    let mut signalled = false;
    let mut load_failure = None;
    let mut next_gc = clock;
    let mut gc_pending: Option<oneshot::Receiver<AdminReply>> = None;
    let mut investigation: Option<JoinHandle<Result<Findings>>> = None;
    let mut next_steady_check = clock + plan.warmup;
    let status = loop {
        tokio::select! {
            status = &mut supervisor => break status?,
            answer = answered(&mut gc_pending), if gc_pending.is_some() => {
                gc_pending = None;
                let answer = answer.unwrap_or_else(|_| AdminReply::Failed("the supervisor stopped".to_owned()));
                let mut state = state.borrow_mut();
                let (t_s, warmup_s) = (state.elapsed_s(), state.warmup_s);
                if let Some(forced) = state.forced.as_mut() {
                    forced.record(t_s, warmup_s, &answer);
                }
            }
            found = finished(&mut investigation), if investigation.is_some() => {
                investigation = None;
                let mut state = state.borrow_mut();
                state.investigation = match found {
                    Ok(findings) => {
                        let snapshot = findings.snapshot.display().to_string();
                        state.pending.push((
                            EventKind::LeakSuspects { snapshot: snapshot.clone(), suspects: findings.suspects.clone() },
                            Some(snapshot),
                        ));
                        Investigation::Named(findings)
                    }
                    Err(error) => {
                        tracing::warn!(error = %format!("{error:#}"), "soak: the leak investigation failed");
                        Investigation::NotNamed(format!("{error:#}"))
                    }
                };
            }
            () = &mut deadline, if stop.is_none() => stop = Some(Stop::Done),
            status = wait_load(&mut load), if load.is_some() => {
                load = None;
                let at = human_seconds(clock.elapsed().as_secs_f64());
                match status {
                    Ok(status) if status.success() => {
                        errln!("plimsoll soak: the load command finished (exit 0) after {at}; the soak goes on");
                    }
                    Ok(status) => {
                        let how = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
                            (Some(code), _) => format!("exit code {code}"),
                            (None, Some(signal)) => format!("signal {signal}"),
                            (None, None) => "an unknown status".to_owned(),
                        };
                        if stop.is_none() {
                            load_failure = Some(format!("the load command '{}' failed with {how} after {at}", plan.load.as_deref().unwrap_or_default()));
                            stop = Some(Stop::LoadFailed);
                        }
                    }
                    Err(error) => {
                        load_failure = Some(format!("the load command '{}' could not be waited for: {error}", plan.load.as_deref().unwrap_or_default()));
                        stop.get_or_insert(Stop::LoadFailed);
                    }
                }
            }
            _ = check.tick() => {
                let elapsed = clock.elapsed();
                {
                    let state = state.borrow();
                    if plan.fail_fast && stop.is_none() {
                        if state.detector.status().verdict == Verdict::Leak {
                            stop = Some(Stop::LeakConfirmed);
                        } else if state.budget_exceeded_at_s.is_some() {
                            stop = Some(Stop::BudgetExceeded);
                        }
                    }
                    progress.maybe_show(elapsed, &state, plan, stop.is_some());
                }
                let now = Instant::now();
                if stop.is_none() {
                    let mut state = state.borrow_mut();
                    // A forced GC is due, and an agent has reported (the target's Node
                    // process is up).
                    if state.forced.is_some() && gc_pending.is_none() && now >= next_gc && state.heap_total > 0 {
                        if let Some(answer) = soak_heap::request_gc(&admin) {
                            gc_pending = Some(answer);
                            next_gc = now + jittered(plan.forced_gc.unwrap_or(PLAIN_PROGRESS_EVERY));
                        }
                    }
                    // Name the leak while there is time: the steady state rises like a leak.
                    // Until the snapshots start: a leak seen in RSS alone beside a live heap
                    // is looked at again, the heap may follow.
                    let watching = state.steady_leak_at_s.is_none() || (state.steady_leak_signal == Some(Signal::Rss) && matches!(state.investigation, Investigation::Idle));
                    if watching && now >= next_steady_check {
                        next_steady_check = now + STEADY_CHECK_EVERY;
                        let steady = state.detector.steady_state_verdict();
                        if steady.verdict == Verdict::Leak {
                            state.steady_leak_at_s.get_or_insert(elapsed.as_secs_f64());
                            state.steady_leak_signal = steady.signal;
                            state.steady_leak_rate = match steady.reason {
                                Reason::SteadyRamp { rate_bytes_per_s, .. } | Reason::Confirmed { rate_bytes_per_s, .. } => rate_bytes_per_s,
                                _ => 0.0,
                            };
                        }
                    }
                    // Heap snapshots name what the JS heap holds: not taken while the leak is
                    // seen in RSS beside a flat live heap (native memory, which they cannot
                    // show, and whose RSS they would raise themselves).
                    if plan.settings.agent.is_some() && matches!(state.investigation, Investigation::Idle) && state.steady_leak_at_s.is_some() && !(state.steady_leak_signal == Some(Signal::Rss) && state.detector.live_heap_flat()) {
                        {
                            let remaining = plan.duration.saturating_sub(elapsed);
                            // The room the snapshots need on disk and in memory goes with the
                            // heap's total; their cost is measured on the first.
                            state.investigation = match (state.heap_total, plan.settings.agent.as_ref()) {
                                (0, _) | (_, None) => Investigation::NotNamed("no Node.js process of the target connected its agent".to_owned()),
                                (heap, Some(agent)) => match soak_heap::can_start(remaining) {
                                    Ok(()) => {
                                        errln!("plimsoll soak: the floor rises like a leak: three heap snapshots to name it");
                                        // The snapshots' own native memory stays in RSS.
                                        state.detector.rss_disturbed();
                                        let end = (clock + plan.duration).into_std();
                                        investigation = Some(tokio::spawn(soak_heap::investigate(admin.clone(), agent.snapshot_dir.clone(), heap, end, state.steady_leak_rate)));
                                        Investigation::Running
                                    }
                                    Err(why) => Investigation::NotNamed(why),
                                },
                            };
                        }
                    }
                }
                if stop.is_some() && !signalled && state.borrow().started {
                    // Cancelling the supervisor stops the target gracefully.
                    state.borrow_mut().stopping = true;
                    signalled = true;
                    cancel.cancel();
                }
            }
            _ = interrupt.recv() => { stop.get_or_insert(Stop::Interrupted); state.borrow_mut().stopping = true; signalled = true; cancel.cancel(); }
            _ = terminate.recv() => { stop.get_or_insert(Stop::Interrupted); state.borrow_mut().stopping = true; signalled = true; cancel.cancel(); },
        }
    };
    progress.finish();
    if let Some(task) = investigation.take() {
        // The soak ends on time: snapshots still being taken are given up.
        task.abort();
        if let Investigation::Running = state.borrow().investigation {
            tracing::warn!("soak: the leak investigation did not finish before the end");
        }
        state.borrow_mut().investigation = Investigation::NotNamed(
            "the heap snapshots did not finish before the end of the soak".to_owned(),
        );
    }
    if let Some(child) = load.take() {
        stop_load(child).await;
    }
    let stop = match stop {
        Some(stop) => stop,
        None => Stop::TargetStopped,
    };
    Ok(Outcome {
        stop,
        ran_s: clock.elapsed().as_secs_f64(),
        load_failure,
        target_status: (stop == Stop::TargetStopped).then_some(status),
    })
}

/// Starts `sh -c CMD` under a keeper (its own process group and cgroup: nothing of it outlives
/// the soak), its standard output on our standard error.
fn spawn_load(command: &str) -> Result<tokio::process::Child> {
    let stdout = nix::unistd::dup(std::io::stderr()).context("cannot set up the load command")?;
    supervise::keeper_command(&["sh", "-c", command], LOAD_GRACE)?
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(stdout))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start the load command '{command}'"))
}

/// The answer to a pending forced GC.
async fn answered(
    pending: &mut Option<oneshot::Receiver<AdminReply>>,
) -> Result<AdminReply, oneshot::error::RecvError> {
    match pending {
        Some(answer) => answer.await,
        None => std::future::pending().await,
    }
}

async fn wait_load(
    load: &mut Option<tokio::process::Child>,
) -> std::io::Result<std::process::ExitStatus> {
    match load {
        Some(child) => child.wait().await,
        None => std::future::pending().await,
    }
}

/// SIGTERM to the load command's group, then SIGKILL after a grace; always reaped.
async fn stop_load(mut child: tokio::process::Child) {
    use nix::sys::signal::{killpg, Signal};
    let Some(pid) = child.id() else { return };
    let group = nix::unistd::Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    // The keeper SIGKILLs what is left after the grace; this is for a keeper that cannot.
    if tokio::time::timeout(LOAD_GRACE + supervise::KEEPER_MARGIN, child.wait())
        .await
        .is_err()
    {
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    } else {
        // The shell is gone; what it started may not be.
        let _ = killpg(group, Signal::SIGKILL);
    }
}

/// The progress display: a bar redrawn in place on a terminal, plain lines elsewhere.
struct Progress {
    terminal: bool,
    total: Duration,
    last: Option<Duration>,
    drawn: bool,
}

impl Progress {
    fn new(total: Duration) -> Progress {
        Progress {
            // The bar is redrawn with escape codes: not with NO_COLOR set (plain lines then).
            terminal: crate::logging::colour(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            ),
            total,
            last: None,
            drawn: false,
        }
    }

    fn maybe_show(&mut self, elapsed: Duration, state: &SoakState, plan: &Plan, stopping: bool) {
        let every = if self.terminal {
            BAR_PROGRESS_EVERY
        } else {
            PLAIN_PROGRESS_EVERY
        };
        if stopping || self.last.is_some_and(|last| elapsed < last + every) {
            return;
        }
        if self.last.is_none() && !self.terminal {
            // The first plain line after one period, not at 0 s.
            self.last = Some(elapsed);
            return;
        }
        self.last = Some(elapsed);
        let elapsed = elapsed.min(self.total);
        let mut figures = format!(
            "{}/{}  rss {}",
            clock_text(elapsed.as_secs_f64()),
            clock_text(self.total.as_secs_f64()),
            state
                .rss
                .map_or_else(|| "-".to_owned(), |b| human_bytes(b as f64))
        );
        if let Some(heap) = state.heap_used {
            figures.push_str(&format!("  heap {}", human_bytes(heap as f64)));
        }
        let running = running_verdict(state, plan, elapsed.as_secs_f64());
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let width = 24;
            let done = ((elapsed.as_secs_f64() / self.total.as_secs_f64()) * width as f64) as usize;
            let bar = format!(
                "{}{}",
                "#".repeat(done.min(width)),
                "-".repeat(width - done.min(width))
            );
            let _ = write!(stderr, "\r\x1b[2Ksoak [{bar}] {figures}  {running}");
            self.drawn = true;
        } else {
            let _ = writeln!(stderr, "plimsoll soak: {figures}  {running}");
        }
        let _ = stderr.flush();
    }

    fn finish(&mut self) {
        if self.drawn {
            let _ = writeln!(std::io::stderr());
            self.drawn = false;
        }
    }
}

/// `m:ss`.
fn clock_text(seconds: f64) -> String {
    let total = seconds.max(0.0) as u64;
    format!("{}:{:02}", total / 60, total % 60)
}

/// The detector's view so far, in a few words.
fn running_verdict(state: &SoakState, plan: &Plan, elapsed_s: f64) -> String {
    if elapsed_s < plan.warmup.as_secs_f64() {
        return "warming up".to_owned();
    }
    let status = state.detector.status();
    let rate = |bytes_per_s: f64| format!("{}/min", human_bytes(bytes_per_s * 60.0));
    if status.verdict == Verdict::Leak {
        return format!("LEAK confirmed ({})", rate(status.growth_bytes_per_s));
    }
    // The soak's own verdict so far (the steady state after the warm-up), not production's
    // 12-minute rule: its "needs" is what this soak is waiting for.
    let steady = state.detector.steady_state_verdict();
    match (steady.verdict, steady.reason, status.state) {
        (
            Verdict::Leak,
            Reason::SteadyRamp {
                rate_bytes_per_s, ..
            },
            _,
        ) => {
            format!("LEAK: rising {} since the warm-up", rate(rate_bytes_per_s))
        }
        (Verdict::Leak, _, _) => "LEAK".to_owned(),
        (Verdict::NoLeak, _, _) => "no leak so far".to_owned(),
        (_, _, LeakState::Suspected) => {
            format!("leak suspected ({})", rate(status.growth_bytes_per_s))
        }
        _ => format!(
            "no verdict yet (it needs about {} more)",
            human_seconds(steady.needs_more_s.unwrap_or(0.0))
        ),
    }
}

/// The soak's verdict: the detector's, the budget's, the load's and the target's, with the
/// exit code they make together.
#[derive(Debug)]
struct Finding {
    status: LeakStatus,
    /// The verdict over the steady state (the samples after the declared warm-up).
    steady: SteadyVerdict,
    /// Why, for people: the steady verdict's reason, with the warm-up caveat where it applies.
    reason: String,
    time_to_budget_s: Option<f64>,
    /// Why the soak failed, for people; empty when it did not.
    failures: Vec<String>,
    /// The leak's suspects named during the soak (`soak_heap::named`'s list), when it rose.
    suspects: Option<Value>,
    /// Why the suspects were not named, when the soak tried.
    suspects_missing: Option<String>,
    /// The forced GCs, for people.
    forced_gc: Option<String>,
    json: Value,
    exit_code: u8,
}

impl Finding {
    fn of(plan: &Plan, state: &SoakState, outcome: &Outcome) -> Finding {
        let status = state.detector.status();
        let steady = state.detector.steady_state_verdict();
        let mut reason = steady_reason(&steady, plan.warmup);
        // A floor that rose like a leak after the declared warm-up and then levelled off is a
        // longer warm-up: passed, but said.
        if let (Verdict::NoLeak, Some(at)) = (steady.verdict, state.steady_leak_at_s) {
            reason.push_str(&format!(
                "; it rose like a leak until after {} and levelled off: a warm-up longer than --warmup {}",
                human_seconds(at),
                human_seconds(plan.warmup.as_secs_f64())
            ));
        }
        let time_to_budget_s = state
            .budget
            .and_then(|b| state.detector.time_to_budget_s(b));
        let mut failures = Vec::new();
        if steady.verdict == Verdict::Leak {
            failures.push(format!("leak: {reason}"));
        }
        if let (Some(at), Some(budget)) = (state.budget_exceeded_at_s, state.budget) {
            failures.push(format!(
                "budget exceeded: {} reached after {} (peak rss {})",
                human_bytes(budget as f64),
                human_seconds(at),
                human_bytes(state.peak_rss as f64)
            ));
        }
        if let Some(failure) = &outcome.load_failure {
            failures.push(failure.clone());
        }
        if outcome.stop == Stop::TargetStopped {
            failures.push(format!(
                "the target stopped before the soak ended (exit status {})",
                outcome.target_status.unwrap_or(1)
            ));
        } else if !state.unexpected_exits.is_empty() && state.budget_exceeded_at_s.is_none() {
            failures.push(format!(
                "the target crashed and was restarted: {}",
                state.unexpected_exits.join("; ")
            ));
        }
        let exit_code = if !failures.is_empty() {
            exit::LEAK
        } else if steady.verdict == Verdict::NoLeak {
            exit::OK
        } else {
            exit::INCONCLUSIVE
        };
        // Suspects are named only for a floor that did not come out flat.
        let (suspects, suspects_missing) = match &state.investigation {
            _ if steady.verdict == Verdict::NoLeak => (None, None),
            Investigation::Named(findings) => (Some(findings.suspects["top"].clone()), None),
            Investigation::NotNamed(why) => (None, Some(why.clone())),
            Investigation::Idle
                if steady.verdict == Verdict::Leak
                    && steady.signal == Some(Signal::Rss)
                    && state.detector.live_heap_flat() =>
            {
                let why = "the growth is in RSS alone, beside a flat live heap: native memory, which a heap snapshot does not show";
                (None, Some(why.to_owned()))
            }
            Investigation::Idle | Investigation::Running => (None, None),
        };
        let forced_gc = state.forced.as_ref().map(|f| f.describe(outcome.ran_s));
        let mut json = verdict_json(&status, state.budget, time_to_budget_s);
        if let Some(object) = json.as_object_mut() {
            let extra = json!({
                "verdict": steady.verdict.as_str(),
                "reason": reason,
                "needs_more_s": steady.needs_more_s.map(|s| (s * 100.0).round() / 100.0),
                "leak_seen_after_s": state.steady_leak_at_s.map(|s| (s * 10.0).round() / 10.0),
                "budget_exceeded": state.budget_exceeded_at_s.is_some(),
                "budget_exceeded_after_s": state.budget_exceeded_at_s,
                "load_failed": outcome.load_failure.is_some(),
                "load_error": outcome.load_failure,
                "target_crashed": !state.unexpected_exits.is_empty(),
                "restarts": state.restarts,
                "peak_rss_bytes": (state.peak_rss > 0).then_some(state.peak_rss),
                "soak_s": (outcome.ran_s * 100.0).round() / 100.0,
                "warmup_s": plan.warmup.as_secs_f64(),
                "time_scale": plan.time_scale,
                "stopped": stop_name(outcome.stop),
                "passed": exit_code == exit::OK,
                "failures": failures,
                "heap_channel": match (&state.forced, plan.settings.agent.is_some()) {
                    (Some(_), _) => Some("forced-gc"),
                    (None, true) => Some("major-gc"),
                    (None, false) => None,
                },
                "forced_gc": state.forced.as_ref().map(|f| f.json(outcome.ran_s)),
                "suspects": suspects,
                "suspects_snapshot": match &state.investigation {
                    Investigation::Named(findings) if suspects.is_some() => Some(findings.snapshot.display().to_string()),
                    _ => None,
                },
                "suspects_missing": suspects_missing,
            });
            if let Value::Object(extra) = extra {
                object.extend(extra);
            }
        }
        Finding {
            status,
            steady,
            reason,
            time_to_budget_s,
            failures,
            suspects,
            suspects_missing,
            forced_gc,
            json,
            exit_code,
        }
    }

    fn print_human(&self, plan: &Plan) -> Result<(), crate::stdout::StdoutError> {
        let status = &self.status;
        let headline = match (self.exit_code, self.steady.verdict) {
            (exit::OK, _) => "PASSED: no leak",
            (exit::INCONCLUSIVE, _) => "INCONCLUSIVE",
            (_, Verdict::Leak) => "FAILED: leak",
            _ => "FAILED",
        };
        // The exit line names the first suspect: what a CI log shows first.
        let named = self
            .suspects
            .as_ref()
            .and_then(|s| s.get(0))
            .map(|top| format!(" ({})", suspect_text(top)))
            .unwrap_or_default();
        outln!("soak of {}: {headline}{named}", plan.settings.name)?;
        for failure in &self.failures {
            outln!("  failed         {failure}")?;
        }
        outln!(
            "  observed       {} samples over {} after a warm-up of {}",
            status.samples,
            human_seconds(status.observed_s),
            human_seconds(plan.warmup.as_secs_f64())
        )?;
        outln!("  verdict        {}", self.steady.verdict.as_str())?;
        outln!("  why            {}", self.reason)?;
        outln!(
            "  growth         {}/min of the retained floor ({})",
            human_bytes(status.growth_bytes_per_s * 60.0),
            status.signal.as_str()
        )?;
        if let Some(t) = status.suspected_after_s {
            outln!("  suspected      after {}", human_seconds(t))?;
        }
        if let Some(t) = status.detected_after_s {
            outln!("  confirmed      after {}", human_seconds(t))?;
        }
        if let Some(t) = self.time_to_budget_s {
            outln!("  budget         reached in about {}", human_seconds(t))?;
        }
        if let Some(forced) = &self.forced_gc {
            outln!("  forced GC      {forced}")?;
        }
        for suspect in self
            .suspects
            .iter()
            .flat_map(|s| s.as_array().into_iter().flatten())
        {
            outln!("  suspect        {}", suspect_text(suspect))?;
            outln!(
                "                 held by {}",
                suspect["retainer_path"].as_str().unwrap_or("-")
            )?;
        }
        if let Some(why) = &self.suspects_missing {
            outln!("  suspects       not named: {why}")?;
        }
        if let Some(more) = self
            .steady
            .needs_more_s
            .filter(|_| self.exit_code == exit::INCONCLUSIVE)
        {
            outln!(
                "  needs          about {} more of observation: run with --duration {}",
                human_seconds(more),
                human_seconds(plan.duration.as_secs_f64() + more + 1.0)
            )?;
        }
        Ok(())
    }
}

/// A suspect for people: `LeakyRecord: +7000 objects, 2.6 MiB`.
fn suspect_text(suspect: &Value) -> String {
    format!(
        "{}: +{} objects, {}",
        suspect["constructor"].as_str().unwrap_or("-"),
        suspect["count_growth"],
        human_bytes(suspect["bytes_growth"].as_u64().unwrap_or(0) as f64)
    )
}

/// The steady verdict's reason for people: a floor still rising after the declared warm-up
/// may be a warm-up that outlasts it, and the soak says so rather than pass it.
fn steady_reason(steady: &SteadyVerdict, warmup: Duration) -> String {
    let warmup = human_seconds(warmup.as_secs_f64());
    match steady.reason {
        Reason::SteadyRamp { .. } => format!(
            "{} (a leak, or a warm-up longer than --warmup {warmup})",
            steady.reason
        ),
        Reason::SteadyUnsettled { .. } => format!(
            "still rising at the end: a leak, or a warm-up longer than --warmup {warmup} ({})",
            steady.reason
        ),
        // A flat verdict says which series was flat: the live heap after forced GCs, or RSS.
        Reason::Flat { .. } if steady.signal == Some(Signal::HeapAfterGc) => {
            format!(
                "live heap {}",
                steady.reason.to_string().replacen("floor ", "", 1)
            )
        }
        reason => reason.to_string(),
    }
}

/// `every` give or take up to 30 %, at random: a forced GC that kept step with the app's own
/// timers would find the same in-flight objects alive at every reading for minutes on end, a
/// level that is no more retained than the next.
fn jittered(every: Duration) -> Duration {
    // The clock's nanoseconds are random enough to spread a few dozen GCs.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    jittered_by(every, f64::from(nanos % 1_000_000) / 1_000_000.0)
}

/// `every` scaled into 70–130 % by `unit`, a number in [0, 1).
fn jittered_by(every: Duration, unit: f64) -> Duration {
    every.mul_f64(0.7 + 0.6 * unit.clamp(0.0, 1.0))
}

fn stop_name(stop: Stop) -> &'static str {
    match stop {
        Stop::Done => "duration",
        Stop::LeakConfirmed => "leak-confirmed",
        Stop::BudgetExceeded => "budget-exceeded",
        Stop::LoadFailed => "load-failed",
        Stop::TargetStopped => "target-stopped",
        Stop::Interrupted => "interrupted",
    }
}

/// What the report of this soak shows: the samples and events since it started.
fn report_input(plan: &Plan, state: &SoakState, finding: &Finding) -> Result<ReportInput> {
    let (samples, events) =
        report::load(&plan.data_dir, &plan.settings.name, plan.started_unix_ms)?;
    // The soak's own investigation, or nothing: a diff of leftover snapshots here would make
    // the soak end late.
    let suspects = match &state.investigation {
        Investigation::Named(findings) => Some(findings.suspects.clone()),
        _ => None,
    };
    let settings = vec![
        ("command".to_owned(), plan.settings.command.join(" ")),
        (
            "duration".to_owned(),
            human_seconds(plan.duration.as_secs_f64()),
        ),
        (
            "warm-up".to_owned(),
            human_seconds(plan.warmup.as_secs_f64()),
        ),
        (
            "budget".to_owned(),
            state
                .budget
                .map_or_else(|| "none".to_owned(), |b| human_bytes(b as f64)),
        ),
        (
            "interval".to_owned(),
            format!("{:?}", plan.settings.interval),
        ),
        (
            "load command".to_owned(),
            plan.load.clone().unwrap_or_else(|| "none".to_owned()),
        ),
        (
            "detector time scale".to_owned(),
            plan.time_scale.to_string(),
        ),
        ("data dir".to_owned(), plan.data_dir.display().to_string()),
    ];
    Ok(ReportInput {
        title: format!("Soak of {}", plan.settings.name),
        target: plan.settings.name.clone(),
        verdict: finding.json.clone(),
        samples,
        events,
        settings,
        suspects,
        warmup_end_unix_ms: (!plan.warmup.is_zero())
            .then(|| plan.started_unix_ms + plan.warmup.as_millis() as i64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_still_rising_after_the_warm_up_names_the_warm_up() {
        let unsettled = SteadyVerdict {
            verdict: Verdict::Inconclusive,
            reason: Reason::SteadyUnsettled {
                rate_bytes_per_s: 70_000.0,
                over_s: 270.0,
                end_rate_bytes_per_s: 20_000.0,
                end_s: 120.0,
                signal: Signal::Rss,
            },
            needs_more_s: Some(270.0),
            signal: Some(Signal::Rss),
        };
        let text = steady_reason(&unsettled, Duration::from_secs(60));
        assert!(
            text.starts_with(
                "still rising at the end: a leak, or a warm-up longer than --warmup 1m"
            ),
            "{text}"
        );
        let ramp = SteadyVerdict {
            verdict: Verdict::Leak,
            reason: Reason::SteadyRamp {
                rate_bytes_per_s: 70_000.0,
                window_s: 480.0,
                signal: Signal::Rss,
            },
            needs_more_s: None,
            signal: Some(Signal::Rss),
        };
        let text = steady_reason(&ramp, Duration::from_secs(60));
        assert!(text.contains("0.07 MB/s"), "{text}");
        assert!(text.contains("warm-up longer than --warmup 1m"), "{text}");
    }

    #[test]
    fn forced_gcs_are_spaced_with_jitter() {
        let every = Duration::from_secs(15);
        assert_eq!(jittered_by(every, 0.0), Duration::from_millis(10_500));
        assert_eq!(jittered_by(every, 0.5), every);
        assert!(jittered_by(every, 0.999_999) <= Duration::from_millis(19_500));
        // Out of range: clamped, never a negative or runaway spacing.
        assert_eq!(jittered_by(every, -3.0), Duration::from_millis(10_500));
        assert_eq!(jittered_by(every, 7.0), Duration::from_millis(19_500));
        let drawn = jittered(every);
        assert!(drawn >= Duration::from_millis(10_500) && drawn <= Duration::from_millis(19_500));
    }

    #[test]
    fn a_flat_live_heap_is_named_as_such() {
        let flat = SteadyVerdict {
            verdict: Verdict::NoLeak,
            reason: Reason::Flat {
                growth_bytes: 400_000.0,
                stretch_s: 228.0,
            },
            needs_more_s: None,
            signal: Some(Signal::HeapAfterGc),
        };
        let text = steady_reason(&flat, Duration::from_secs(60));
        assert_eq!(text, "live heap flat within 0.4 MB over the last 3.8 min");
        let rss = SteadyVerdict {
            signal: Some(Signal::Rss),
            ..flat
        };
        let text = steady_reason(&rss, Duration::from_secs(60));
        assert_eq!(text, "floor flat within 0.4 MB over the last 3.8 min");
    }
}
