//! `bench_supervisor`: what supervision costs and how fast a budget breach is acted on, measured
//! on real processes, each table against a baseline measured in the same run.
//!
//! 1. Idle supervision at 1 Hz: `plimsoll run` (the supervisor and its keeper) on a steady
//!    Python process; RSS (VmRSS, VmHWM) and CPU share (utime + stime over the window). Reference
//!    rows: a bare `sleep`, the supervised process itself, and the hand-written baseline, a
//!    Python loop that reads the target's `/proc` status and children once a second.
//! 2. `plimsoll watch` of 1,000 `sleep` processes at 1 Hz against the same Python loop over the
//!    same 1,000 pids.
//! 3. PM2 side by side (installed from npm into `bench/out/pm2`): its daemon's RSS and CPU while
//!    it supervises the same steady process (measured in the same window as 1), and, with a
//!    200 MiB budget on a Python process that grows 8 MB/s, the time from the moment the
//!    process's RSS first exceeded the budget to its restart and how far over the budget it got,
//!    polled from here at 20 Hz, cross-checked against Plimsoll's events and PM2's log.
//!
//! Every process started here is stopped at the end, on error and on Ctrl-C too: each is owned
//! by a guard, PM2 gets `pm2 kill`, and a last sweep kills whatever still carries this run's tag.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{sysconf, Pid, SysconfVar};
use plimsoll_bench::interrupt::{catch_signals, check_interrupted, interrupted};
use plimsoll_bench::table::{Align, Table};

/// The bars from the issue.
const BAR_RSS_MIB: f64 = 8.0;
const BAR_CPU_PERCENT: f64 = 0.2;
const BAR_WATCH_CPU_PERCENT: f64 = 5.0;
/// Plimsoll's default `--grace`; the breach bar is one sample interval plus the grace.
const GRACE_S: f64 = 5.0;
const INTERVAL_S: f64 = 1.0;
/// How often the breach test reads the workloads' RSS.
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Parser)]
#[command(about = "Cost of supervision, watch at scale, and budget restarts against PM2")]
struct Args {
    /// Length of each measuring window (idle supervision, watch), in seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Processes for the `plimsoll watch` benchmark.
    #[arg(long, default_value_t = 1000)]
    watch_count: usize,
    /// Budget restarts to observe for each supervisor in the breach test.
    #[arg(long, default_value_t = 3)]
    restarts: usize,
    /// Growth of the breach workload, in MB/s (10^6 bytes).
    #[arg(long, default_value_t = 8.0)]
    growth_mb_s: f64,
    /// Budget of the breach test, in MiB (PM2's `200M`, Plimsoll's `200MiB`).
    #[arg(long, default_value_t = 200)]
    budget_mib: u64,
    /// The plimsoll binary to measure.
    #[arg(long, default_value = "target/release/plimsoll")]
    plimsoll: PathBuf,
    /// PM2's command (`npm install --prefix bench/out/pm2 pm2@latest`).
    #[arg(long, default_value = "bench/out/pm2/node_modules/.bin/pm2")]
    pm2: PathBuf,
    /// Leave PM2 out.
    #[arg(long)]
    no_pm2: bool,
    /// Leave out the `watch` benchmark.
    #[arg(long)]
    no_watch: bool,
    /// Leave out the breach test.
    #[arg(long)]
    no_breach: bool,
    /// Keep the temporary directory (logs, events, PM2_HOME) and print its path.
    #[arg(long)]
    keep: bool,
    /// Python 3 for the workloads and the baseline poller.
    #[arg(long, default_value = "python3")]
    python: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(error) = catch_signals("bench_supervisor") {
        eprintln!("bench_supervisor: {error:#}");
        return ExitCode::FAILURE;
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench_supervisor: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sleeps for `duration`, waking every 50 ms to notice an interruption.
fn pause(duration: Duration) -> Result<()> {
    let end = Instant::now() + duration;
    loop {
        check_interrupted()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

// ---------------------------------------------------------------------------------------------
// /proc

/// Resident memory of one live process, in KiB.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
}

/// VmRSS and VmHWM of a live process; `None` when it is gone or a zombie.
fn memory(pid: u32) -> Option<Memory> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:").unwrap_or(0),
    })
}

/// User + system CPU of a process (all its threads, live and exited), in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Proportional set size (shared pages divided among the processes that map them), in KiB.
fn pss_kib(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("Pss:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn clock_ticks_per_s() -> f64 {
    sysconf(SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

/// Direct children of a process (of all its threads).
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return found;
    };
    for task in tasks.flatten() {
        if let Ok(text) = fs::read_to_string(task.path().join("children")) {
            found.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    found
}

/// Every descendant of a process, depth first.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut stack = children(pid);
    while let Some(next) = stack.pop() {
        if found.contains(&next) {
            continue;
        }
        found.push(next);
        stack.extend(children(next));
    }
    found
}

fn cmdline(pid: u32) -> Option<String> {
    let bytes = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&bytes).replace('\0', " "))
}

/// Whether a command line is the workload tagged `needle`, not the keeper that runs it (whose
/// command line holds the workload's after `__keep --`).
fn is_workload(command: &str, needle: &str) -> bool {
    command.contains(needle) && !command.contains(" __keep ")
}

/// Waits up to `limit` for a live descendant of `root` that `matches` by command line.
fn find_descendant(root: u32, matches: impl Fn(&str) -> bool, limit: Duration) -> Result<u32> {
    let end = Instant::now() + limit;
    loop {
        let found = descendants(root)
            .into_iter()
            .find(|&p| cmdline(p).is_some_and(|c| matches(&c)) && memory(p).is_some());
        if let Some(pid) = found {
            return Ok(pid);
        }
        if Instant::now() > end {
            bail!("the expected process did not appear under pid {root} within {limit:?}");
        }
        pause(Duration::from_millis(20))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Processes started here, and how they are stopped

/// A child process stopped when the guard is dropped: `signal`, up to `patience`, then SIGKILL.
struct Guard {
    child: Child,
    signal: Signal,
    patience: Duration,
}

impl Guard {
    fn spawn(command: &mut Command, signal: Signal, patience: Duration) -> Result<Guard> {
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {command:?}"))?;
        Ok(Guard {
            child,
            signal,
            patience,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, when it has already exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        stop(&mut self.child, self.signal, self.patience);
    }
}

fn stop(child: &mut Child, signal: Signal, patience: Duration) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, signal);
    let end = Instant::now() + patience;
    while Instant::now() < end {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(pid, Signal::SIGKILL);
    let _ = child.wait();
}

/// Many children (the `sleep`s that `watch` watches), all killed and reaped on drop.
struct Fleet(Vec<Child>);

impl Drop for Fleet {
    fn drop(&mut self) {
        for child in &self.0 {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

/// The last resort, dropped last: kills every process whose command line carries this run's
/// tag (the workloads and the pollers; the supervisors name their command after `--`).
struct Sweep(String);

impl Drop for Sweep {
    fn drop(&mut self) {
        let me = std::process::id();
        let Ok(entries) = fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != me && cmdline(pid).is_some_and(|c| c.contains(&self.0)) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
}

/// Runs a short command to completion, within `limit`.
fn run_bounded(command: &mut Command, limit: Duration) -> Result<ExitStatus> {
    let mut child = command
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let end = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > end || interrupted() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{command:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))
}

fn tail(path: &Path, chars: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let text = text.trim();
    let start = text
        .char_indices()
        .rev()
        .nth(chars)
        .map_or(0, |(i, _)| i + 1);
    text[start..].replace('\n', " | ")
}

// ---------------------------------------------------------------------------------------------
// Workloads (Python, written to the run's temporary directory)

const WORKLOAD_PY: &str = r#"# bench_supervisor workload. steady MIB SECONDS TAG | grow BYTES_PER_S CAP_BYTES SECONDS TAG
import sys, time

def touch(buf):
    buf[::4096] = b"\x01" * ((len(buf) + 4095) // 4096)

mode = sys.argv[1]
if mode == "steady":
    data = bytearray(int(sys.argv[2]) << 20)
    touch(data)
    end = time.monotonic() + float(sys.argv[3])
    while time.monotonic() < end:
        time.sleep(1)
elif mode == "grow":
    # Grows by BYTES_PER_S in ten steps a second, every page written, up to CAP_BYTES.
    step = int(sys.argv[2]) // 10
    cap = int(sys.argv[3])
    start = tick = time.monotonic()
    held, total = [], 0
    while tick - start < float(sys.argv[4]):
        if total + step <= cap:
            chunk = bytearray(step)
            touch(chunk)
            held.append(chunk)
            total += step
        tick += 0.1
        time.sleep(max(0.0, tick - time.monotonic()))
"#;

/// The hand-written baseline: read each pid's status (RSS) and children once a second, as the
/// fast probe does.
const POLLER_PY: &str = r#"# bench_supervisor baseline poller. INTERVAL_S PID_FILE TAG
import sys, time
interval = float(sys.argv[1])
pids = [int(p) for p in open(sys.argv[2]).read().split()]
tick = time.monotonic()
while True:
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid, "rb") as f:
                for line in f:
                    if line.startswith(b"VmRSS:"):
                        total += int(line.split()[1])
                        break
            with open("/proc/%d/task/%d/children" % (pid, pid), "rb") as f:
                f.read()
        except OSError:
            pass
    tick += interval
    time.sleep(max(0.0, tick - time.monotonic()))
"#;

/// Everything one run shares: paths, the interpreter, the tag.
struct Env {
    dir: PathBuf,
    python: String,
    workload: PathBuf,
    poller: PathBuf,
    tag: String,
    plimsoll: PathBuf,
}

impl Env {
    fn workload(&self, args: &[String], tag: &str) -> Vec<String> {
        let mut argv = vec![self.python.clone(), path_str(&self.workload)];
        argv.extend(args.iter().cloned());
        argv.push(format!("{}-{tag}", self.tag));
        argv
    }

    /// Starts the baseline poller over `pids`.
    fn poller(&self, pids: &[u32], name: &str) -> Result<Guard> {
        let list = self.dir.join(format!("{name}.pids"));
        let text: Vec<String> = pids.iter().map(u32::to_string).collect();
        fs::write(&list, text.join("\n"))?;
        Guard::spawn(
            Command::new(&self.python)
                .arg(&self.poller)
                .arg(INTERVAL_S.to_string())
                .arg(&list)
                .arg(format!("{}-{name}", self.tag)),
            Signal::SIGKILL,
            Duration::ZERO,
        )
    }

    /// `plimsoll run ARGS -- CMD`, its output in `<name>.log`.
    fn plimsoll_run(&self, name: &str, options: &[String], command: &[String]) -> Result<Guard> {
        let data = self.dir.join(name);
        fs::create_dir_all(&data)?;
        let log = log_file(&self.dir.join(format!("{name}.log")))?;
        Guard::spawn(
            Command::new(&self.plimsoll)
                .arg("run")
                .arg("--data-dir")
                .arg(&data)
                .arg("--events")
                .arg(data.join("events.jsonl"))
                .args(options)
                .arg("--")
                .args(command)
                .stdout(log.try_clone()?)
                .stderr(log),
            Signal::SIGTERM,
            Duration::from_secs(10),
        )
    }
}

fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------------------------
// PM2

/// A PM2 with its own PM2_HOME; `pm2 kill` on drop, then SIGKILL for whatever is left.
struct Pm2 {
    command: PathBuf,
    home: PathBuf,
    log: PathBuf,
}

impl Pm2 {
    fn new(command: &Path, dir: &Path, name: &str) -> Result<Pm2> {
        let home = dir.join(name);
        fs::create_dir_all(&home)?;
        Ok(Pm2 {
            command: command.to_path_buf(),
            log: dir.join(format!("{name}.cli.log")),
            home,
        })
    }

    fn cli(&self, args: &[&str], limit: Duration) -> Result<()> {
        let log = log_file(&self.log)?;
        let status = run_bounded(
            Command::new(&self.command)
                .args(args)
                .env("PM2_HOME", &self.home)
                .stdout(log.try_clone()?)
                .stderr(log),
            limit,
        )?;
        if !status.success() {
            bail!(
                "pm2 {} failed ({status}): {}",
                args.join(" "),
                tail(&self.log, 300)
            );
        }
        Ok(())
    }

    /// Starts the app of an ecosystem file; returns the daemon's pid.
    fn start(&self, ecosystem: &Path) -> Result<u32> {
        self.cli(&["start", &path_str(ecosystem)], Duration::from_secs(60))?;
        self.daemon()
            .context("PM2 started no daemon (no pm2.pid in PM2_HOME)")
    }

    fn daemon(&self) -> Option<u32> {
        fs::read_to_string(self.home.join("pm2.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// What the daemon logged for each max-memory restart: the memory it saw, in bytes.
    fn memory_restarts(&self) -> Vec<u64> {
        let text = fs::read_to_string(self.home.join("pm2.log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| line.split("(current_memory=").nth(1))
            .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
            .collect()
    }
}

impl Drop for Pm2 {
    fn drop(&mut self) {
        let daemon = self.daemon();
        let tree = daemon.map(descendants).unwrap_or_default();
        let _ = self.cli(&["kill"], Duration::from_secs(30));
        for pid in daemon.into_iter().chain(tree) {
            if memory(pid).is_some() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
}

/// A PM2 ecosystem file for one app running `argv`.
fn ecosystem(path: &Path, name: &str, argv: &[String], max_memory: Option<&str>) -> Result<()> {
    let (interpreter, rest) = argv.split_first().context("empty command")?;
    let (script, args) = rest.split_first().context("no script")?;
    let mut app = serde_json::json!({
        "name": name,
        "script": script,
        "interpreter": interpreter,
        "args": args,
        "exec_mode": "fork",
        "autorestart": true,
    });
    if let Some(limit) = max_memory {
        app["max_memory_restart"] = limit.into();
    }
    let file = serde_json::json!({ "apps": [app] });
    fs::write(path, serde_json::to_string_pretty(&file)?)?;
    Ok(())
}

/// Why PM2 is not in this run, if it is not: not asked for, or not installed.
fn pm2_availability(args: &Args) -> Result<String, String> {
    if args.no_pm2 {
        return Err("left out (--no-pm2)".to_owned());
    }
    if !args.pm2.exists() {
        return Err(format!(
            "not installed at {} (npm install --prefix bench/out/pm2 pm2@latest)",
            args.pm2.display()
        ));
    }
    let package = fs::canonicalize(&args.pm2)
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join("package.json")));
    let version = package
        .and_then(|p| fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned());
    Ok(version)
}

// ---------------------------------------------------------------------------------------------
// Measuring RSS and CPU over a window

/// One process (or several summed) measured over the window.
#[derive(Debug, Clone, Default)]
struct Usage {
    rss_kib: u64,
    pss_kib: u64,
    hwm_kib: u64,
    cpu_ticks: u64,
    seconds: f64,
    ticks_per_s: f64,
}

impl Usage {
    fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
    fn pss_mib(&self) -> f64 {
        self.pss_kib as f64 / 1024.0
    }
    fn hwm_mib(&self) -> f64 {
        self.hwm_kib as f64 / 1024.0
    }
    fn cpu_percent(&self) -> f64 {
        100.0 * self.cpu_ticks as f64 / self.ticks_per_s / self.seconds.max(1e-9)
    }
    fn sum(parts: &[&Usage]) -> Usage {
        let mut total = parts.first().map_or_else(Usage::default, |u| (*u).clone());
        for part in parts.iter().skip(1) {
            total.rss_kib += part.rss_kib;
            total.pss_kib += part.pss_kib;
            total.hwm_kib += part.hwm_kib;
            total.cpu_ticks += part.cpu_ticks;
        }
        total
    }
}

/// CPU ticks of each pid now, then after `window` the delta and the memory of each.
fn measure(pids: &[u32], window: Duration) -> Result<Vec<Usage>> {
    let ticks_per_s = clock_ticks_per_s();
    let before: Vec<Option<u64>> = pids.iter().map(|&p| cpu_ticks(p)).collect();
    let started = Instant::now();
    pause(window)?;
    let seconds = started.elapsed().as_secs_f64();
    pids.iter()
        .zip(before)
        .map(|(&pid, before)| {
            let after = cpu_ticks(pid);
            let mem = memory(pid);
            match (before, after, mem) {
                (Some(b), Some(a), Some(m)) => Ok(Usage {
                    rss_kib: m.rss_kib,
                    pss_kib: pss_kib(pid).unwrap_or(0),
                    hwm_kib: m.hwm_kib,
                    cpu_ticks: a.saturating_sub(b),
                    seconds,
                    ticks_per_s,
                }),
                _ => bail!("pid {pid} ended during the measurement"),
            }
        })
        .collect()
}

fn ratio(value: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{:.2}", value / base)
    } else {
        "-".to_owned()
    }
}

fn verdict(ok: bool) -> String {
    if ok { "meets" } else { "MISSES" }.to_owned()
}

fn usage_table() -> Table {
    Table::new(&[
        ("process", Align::Left),
        ("RSS MiB", Align::Right),
        ("peak MiB", Align::Right),
        ("PSS MiB", Align::Right),
        ("CPU % core", Align::Right),
        ("CPU ms", Align::Right),
        ("RSS x base", Align::Right),
        ("CPU x base", Align::Right),
        ("bar", Align::Left),
        ("result", Align::Left),
    ])
}

fn usage_row(table: &mut Table, name: &str, usage: &Usage, base: &Usage, bar: &str, ok: &str) {
    table.row(vec![
        name.to_owned(),
        format!("{:.1}", usage.rss_mib()),
        format!("{:.1}", usage.hwm_mib()),
        format!("{:.1}", usage.pss_mib()),
        format!("{:.3}", usage.cpu_percent()),
        format!("{:.0}", 1000.0 * usage.cpu_ticks as f64 / usage.ticks_per_s),
        ratio(usage.rss_mib(), base.rss_mib()),
        ratio(usage.cpu_percent(), base.cpu_percent()),
        bar.to_owned(),
        ok.to_owned(),
    ]);
}

// ---------------------------------------------------------------------------------------------
// 1. Idle supervision (with PM2's daemon in the same window)

/// What the idle comparison found, for the side-by-side table.
#[derive(Debug, Default)]
struct Idle {
    plimsoll: Option<Usage>,
    pm2: Option<Usage>,
}

fn idle(env: &Env, args: &Args, pm2: &Result<String, String>) -> Result<Idle> {
    let window = Duration::from_secs(args.seconds);
    let lifetime = (args.seconds + 120).to_string();
    let steady = env.workload(&["steady".into(), "20".into(), lifetime.clone()], "idle");
    let mut plimsoll = env.plimsoll_run(
        "idle-plimsoll",
        &[
            "--budget".into(),
            "1GiB".into(),
            "--interval".into(),
            "1s".into(),
        ],
        &steady,
    )?;
    let target = find_descendant(
        plimsoll.pid(),
        |c| is_workload(c, &env.tag),
        Duration::from_secs(10),
    )?;
    let keeper = find_descendant(
        plimsoll.pid(),
        |c| c.contains(" __keep "),
        Duration::from_secs(1),
    )?;
    let bare = Guard::spawn(
        Command::new("sleep").arg(&lifetime),
        Signal::SIGKILL,
        Duration::ZERO,
    )?;
    let poller = env.poller(&[target], "idle-poller")?;

    let mut pm2_run = None;
    let mut pm2_note = None;
    if pm2.is_ok() {
        let started = (|| -> Result<(Pm2, u32, u32)> {
            let home = Pm2::new(&args.pm2, &env.dir, "pm2-idle")?;
            let file = env.dir.join("idle.ecosystem.json");
            ecosystem(&file, "steady", &steady, None)?;
            let daemon = home.start(&file)?;
            let target = find_descendant(
                daemon,
                |c| is_workload(c, &env.tag),
                Duration::from_secs(10),
            )?;
            Ok((home, daemon, target))
        })();
        match started {
            Ok(started) => pm2_run = Some(started),
            Err(error) => pm2_note = Some(format!("{error:#}")),
        }
    }

    // Let start-up settle, then measure everything over the same window.
    pause(Duration::from_secs(3))?;
    if let Some(status) = plimsoll.exited() {
        bail!(
            "plimsoll run exited early ({status}): {}",
            tail(&env.dir.join("idle-plimsoll.log"), 300)
        );
    }
    let mut pids = vec![bare.pid(), poller.pid(), target, plimsoll.pid(), keeper];
    if let Some((_, daemon, pm2_target)) = &pm2_run {
        pids.extend([*daemon, *pm2_target]);
    }
    plimsoll_bench::outln!(
        "measuring idle supervision for {} s (plimsoll{} side by side)...",
        args.seconds,
        if pm2_run.is_some() { " and PM2" } else { "" }
    );
    let usage = measure(&pids, window)?;
    drop(poller);
    drop(bare);
    drop(plimsoll);
    drop(pm2_run);

    let (bare, base, target, supervisor, keeper) =
        (&usage[0], &usage[1], &usage[2], &usage[3], &usage[4]);
    let both = Usage::sum(&[supervisor, keeper]);
    let bar = format!("RSS ≤ {BAR_RSS_MIB} MiB, CPU ≤ {BAR_CPU_PERCENT} %");
    let meets =
        |u: &Usage| verdict(u.rss_mib() <= BAR_RSS_MIB && u.cpu_percent() <= BAR_CPU_PERCENT);
    let mut table = usage_table();
    usage_row(&mut table, "bare `sleep` (RSS floor)", bare, base, "", "");
    usage_row(
        &mut table,
        "baseline: Python 1 Hz /proc poller",
        base,
        base,
        "",
        "",
    );
    usage_row(
        &mut table,
        "supervised: steady Python, 20 MiB",
        target,
        base,
        "",
        "",
    );
    table.rule();
    usage_row(
        &mut table,
        "plimsoll run: supervisor",
        supervisor,
        base,
        &bar,
        &meets(supervisor),
    );
    usage_row(
        &mut table,
        "plimsoll run: keeper (__keep)",
        keeper,
        base,
        "",
        "",
    );
    usage_row(
        &mut table,
        "plimsoll run: supervisor + keeper",
        &both,
        base,
        &bar,
        &meets(&both),
    );
    let mut result = Idle {
        plimsoll: Some(both),
        pm2: None,
    };
    if usage.len() > 5 {
        table.rule();
        usage_row(
            &mut table,
            "PM2 daemon (God Daemon)",
            &usage[5],
            base,
            "",
            "",
        );
        usage_row(
            &mut table,
            "PM2's supervised steady Python",
            &usage[6],
            base,
            "",
            "",
        );
        result.pm2 = Some(usage[5].clone());
    }
    plimsoll_bench::outln!(
        "== 1. supervising one process at 1 Hz ({} s window; CPU from utime+stime, {} ticks/s) ==",
        args.seconds,
        clock_ticks_per_s()
    );
    print!("{table}");
    match (pm2, pm2_note) {
        (Err(why), _) => plimsoll_bench::outln!("PM2: {why}"),
        (Ok(_), Some(note)) => plimsoll_bench::outln!("PM2: could not be started: {note}"),
        _ => {}
    }
    plimsoll_bench::outln!();
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// 2. watch of many processes

fn watch(env: &Env, args: &Args) -> Result<()> {
    let count = args.watch_count;
    let lifetime = (args.seconds + 120).to_string();
    plimsoll_bench::outln!("starting {count} sleep processes...");
    let mut fleet = Fleet(Vec::with_capacity(count));
    for _ in 0..count {
        check_interrupted()?;
        let child = Command::new("sleep")
            .arg(&lifetime)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start sleep")?;
        fleet.0.push(child);
    }
    let pids: Vec<u32> = fleet.0.iter().map(Child::id).collect();

    let data = env.dir.join("watch");
    fs::create_dir_all(&data)?;
    let log_path = env.dir.join("watch.log");
    let log = log_file(&log_path)?;
    let mut plimsoll = Guard::spawn(
        Command::new(&env.plimsoll)
            .arg("watch")
            .args(pids.iter().map(u32::to_string))
            .arg("--data-dir")
            .arg(&data)
            .arg("--events")
            .arg(data.join("events.jsonl"))
            .arg("--interval")
            .arg("1s")
            .stdout(log.try_clone()?)
            .stderr(log),
        Signal::SIGTERM,
        Duration::from_secs(10),
    )?;
    let poller = env.poller(&pids, "watch-poller")?;
    pause(Duration::from_secs(3))?;
    let unavailable = plimsoll.exited();
    let mut measured = vec![poller.pid()];
    if unavailable.is_none() {
        measured.push(plimsoll.pid());
    }
    plimsoll_bench::outln!(
        "measuring watch of {count} processes for {} s...",
        args.seconds
    );
    let usage = measure(&measured, Duration::from_secs(args.seconds))?;
    let ended_during = plimsoll.exited();
    drop(poller);
    drop(plimsoll);
    drop(fleet);

    let base = &usage[0];
    let mut table = usage_table();
    usage_row(
        &mut table,
        &format!("baseline: Python 1 Hz poller, {count} pids"),
        base,
        base,
        "",
        "",
    );
    let mut note = None;
    match (unavailable, usage.get(1)) {
        (None, Some(watch)) => {
            let ok = watch.cpu_percent() <= BAR_WATCH_CPU_PERCENT;
            usage_row(
                &mut table,
                &format!("plimsoll watch, {count} pids"),
                watch,
                base,
                &format!("CPU ≤ {BAR_WATCH_CPU_PERCENT} %"),
                &verdict(ok),
            );
            if let Some(status) = ended_during {
                note = Some(format!(
                    "watch ended during the window ({status}): {}",
                    tail(&log_path, 200)
                ));
            }
        }
        (Some(status), _) => {
            let text = tail(&log_path, 160);
            note = Some(
                if status.code() == Some(2) || text.contains("not available") {
                    format!("watch: not available in this build ({status}: {text})")
                } else {
                    format!("watch: failed at start ({status}): {text}")
                },
            );
        }
        (None, None) => {}
    }
    plimsoll_bench::outln!(
        "== 2. watch of {count} processes at 1 Hz ({} s window) ==",
        args.seconds
    );
    print!("{table}");
    if let Some(note) = note {
        plimsoll_bench::outln!("{note}");
    }
    plimsoll_bench::outln!();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Budget breach: time to restart and overshoot, Plimsoll and PM2 side by side

/// One life of the growing workload (one pid), as polled from here.
#[derive(Debug)]
struct Life {
    pid: u32,
    first_seen: Instant,
    /// When its RSS was first seen above the budget (monotonic, and Unix ms).
    crossed: Option<(Instant, i64)>,
    peak_kib: u64,
    gone: Option<Instant>,
}

/// Follows the workload under one supervisor: each new pid is a restart.
struct Tracker {
    root: u32,
    needle: String,
    budget_kib: u64,
    lives: Vec<Life>,
}

impl Tracker {
    fn poll(&mut self) {
        let now = Instant::now();
        let now_ms = unix_ms();
        let mut alive = Vec::new();
        for pid in descendants(self.root) {
            if !cmdline(pid).is_some_and(|c| is_workload(&c, &self.needle)) {
                continue;
            }
            let Some(mem) = memory(pid) else { continue };
            alive.push(pid);
            let index = match self
                .lives
                .iter()
                .position(|l| l.pid == pid && l.gone.is_none())
            {
                Some(index) => index,
                None => {
                    self.lives.push(Life {
                        pid,
                        first_seen: now,
                        crossed: None,
                        peak_kib: 0,
                        gone: None,
                    });
                    self.lives.len() - 1
                }
            };
            let life = &mut self.lives[index];
            life.peak_kib = life.peak_kib.max(mem.rss_kib);
            if life.crossed.is_none() && mem.rss_kib > self.budget_kib {
                life.crossed = Some((now, now_ms));
            }
        }
        for life in &mut self.lives {
            if life.gone.is_none() && !alive.contains(&life.pid) {
                life.gone = Some(now);
            }
        }
    }

    /// Restarts seen so far: lives that crossed the budget and were followed by another.
    fn restarts(&self) -> usize {
        self.lives
            .windows(2)
            .filter(|pair| pair[0].crossed.is_some())
            .count()
    }
}

/// One observed budget restart.
#[derive(Debug, Clone)]
struct Restart {
    to_gone_s: Option<f64>,
    to_new_s: Option<f64>,
    peak_mib: f64,
    over_percent: f64,
    /// When the supervisor said it saw the breach, seconds after the crossing (Plimsoll only).
    seen_after_s: Option<f64>,
    /// The memory the supervisor saw when it decided, MiB.
    seen_mib: Option<f64>,
}

fn restarts_of(tracker: &Tracker, budget_mib: f64) -> Vec<Restart> {
    let mut found = Vec::new();
    for (i, life) in tracker.lives.iter().enumerate() {
        let Some((crossed, _)) = life.crossed else {
            continue;
        };
        let next = tracker.lives.get(i + 1);
        let peak_mib = life.peak_kib as f64 / 1024.0;
        found.push(Restart {
            to_gone_s: life.gone.map(|g| (g - crossed).as_secs_f64()),
            to_new_s: next.map(|n| {
                n.first_seen
                    .saturating_duration_since(crossed)
                    .as_secs_f64()
            }),
            peak_mib,
            over_percent: 100.0 * (peak_mib / budget_mib - 1.0),
            seen_after_s: None,
            seen_mib: None,
        });
    }
    found
}

/// Plimsoll's `budget-breach` events: (t_unix_ms, rss_bytes), in order.
fn breach_events(path: &Path) -> Vec<(i64, u64)> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["event"] == "budget-breach")
        .filter_map(|v| Some((v["t_unix_ms"].as_i64()?, v["rss_bytes"].as_u64()?)))
        .collect()
}

/// What the breach test found, for the side-by-side table.
#[derive(Debug, Default)]
struct Breach {
    plimsoll: Vec<Restart>,
    pm2: Option<Vec<Restart>>,
}

fn breach(env: &Env, args: &Args, pm2: &Result<String, String>) -> Result<Breach> {
    let budget_mib = args.budget_mib as f64;
    let rate = (args.growth_mb_s * 1e6) as u64;
    let cap = 4 * args.budget_mib * (1 << 20);
    let cross_s = budget_mib * 1048576.0 / (rate as f64).max(1.0);
    // Enough for PM2's 30 s check after each crossing, and start-up.
    let limit = Duration::from_secs_f64(args.restarts as f64 * (cross_s + 33.0) + 10.0);
    let lifetime = "900".to_owned();
    let grow = |tag: &str| {
        env.workload(
            &[
                "grow".into(),
                rate.to_string(),
                cap.to_string(),
                lifetime.clone(),
            ],
            tag,
        )
    };

    let plimsoll = env.plimsoll_run(
        "grow-plimsoll",
        &[
            "--budget".into(),
            format!("{}MiB", args.budget_mib),
            "--interval".into(),
            "1s".into(),
            "--name".into(),
            "grow".into(),
        ],
        &grow("grow-plimsoll"),
    )?;
    let mut trackers = vec![Tracker {
        root: plimsoll.pid(),
        needle: format!("{}-grow-plimsoll", env.tag),
        budget_kib: args.budget_mib * 1024,
        lives: Vec::new(),
    }];
    let mut pm2_home = None;
    let mut pm2_note = None;
    if pm2.is_ok() {
        let started = (|| -> Result<(Pm2, u32)> {
            let home = Pm2::new(&args.pm2, &env.dir, "pm2-grow")?;
            let file = env.dir.join("grow.ecosystem.json");
            let limit = format!("{}M", args.budget_mib);
            ecosystem(&file, "grow", &grow("grow-pm2"), Some(&limit))?;
            let daemon = home.start(&file)?;
            Ok((home, daemon))
        })();
        match started {
            Ok((home, daemon)) => {
                trackers.push(Tracker {
                    root: daemon,
                    needle: format!("{}-grow-pm2", env.tag),
                    budget_kib: args.budget_mib * 1024,
                    lives: Vec::new(),
                });
                pm2_home = Some(home);
            }
            Err(error) => pm2_note = Some(format!("{error:#}")),
        }
    }
    plimsoll_bench::outln!(
        "breach test: {} restarts each, budget {} MiB, growth {} MB/s (crossing ~{:.0} s after each start), at most {:.0} s...",
        args.restarts,
        args.budget_mib,
        args.growth_mb_s,
        cross_s,
        limit.as_secs_f64()
    );
    let end = Instant::now() + limit;
    while Instant::now() < end {
        check_interrupted()?;
        let started = Instant::now();
        for tracker in &mut trackers {
            tracker.poll();
        }
        if trackers.iter().all(|t| t.restarts() >= args.restarts) {
            break;
        }
        std::thread::sleep(POLL.saturating_sub(started.elapsed()));
    }
    drop(plimsoll);
    let pm2_seen = pm2_home.as_ref().map(Pm2::memory_restarts);
    drop(pm2_home);

    // Cross-checks: Plimsoll's budget-breach events, PM2's log of memory restarts.
    let mut ours = restarts_of(&trackers[0], budget_mib);
    let events = breach_events(&env.dir.join("grow-plimsoll").join("events.jsonl"));
    let crossings: Vec<i64> = trackers[0]
        .lives
        .iter()
        .filter_map(|l| l.crossed.map(|c| c.1))
        .collect();
    for ((restart, (t_ms, rss)), crossed_ms) in ours.iter_mut().zip(&events).zip(&crossings) {
        restart.seen_after_s = Some((t_ms - crossed_ms) as f64 / 1000.0);
        restart.seen_mib = Some(*rss as f64 / 1048576.0);
    }
    let theirs = trackers.get(1).map(|t| {
        let mut found = restarts_of(t, budget_mib);
        for (restart, seen) in found.iter_mut().zip(pm2_seen.iter().flatten()) {
            restart.seen_mib = Some(*seen as f64 / 1048576.0);
        }
        found
    });

    let mut table = Table::new(&[
        ("supervisor", Align::Left),
        ("#", Align::Right),
        ("cross → killed s", Align::Right),
        ("cross → new pid s", Align::Right),
        ("peak RSS MiB", Align::Right),
        ("over budget %", Align::Right),
        ("it saw MiB", Align::Right),
        ("its breach after s", Align::Right),
    ]);
    let seconds = |s: Option<f64>| s.map_or_else(|| "-".to_owned(), |s| format!("{s:.2}"));
    let add = |name: &str, restarts: &[Restart], table: &mut Table| {
        for (i, r) in restarts.iter().enumerate() {
            table.row(vec![
                name.to_owned(),
                (i + 1).to_string(),
                seconds(r.to_gone_s),
                r.to_new_s
                    .map_or_else(|| "not restarted yet".to_owned(), |s| format!("{s:.2}")),
                format!("{:.1}", r.peak_mib),
                format!("{:+.1}", r.over_percent),
                r.seen_mib
                    .map_or_else(|| "-".to_owned(), |m| format!("{m:.1}")),
                seconds(r.seen_after_s),
            ]);
        }
        table.rule();
    };
    if let Some(theirs) = &theirs {
        add("PM2 (baseline)", theirs, &mut table);
    }
    add("plimsoll", &ours, &mut table);
    plimsoll_bench::outln!(
        "== 3. budget restarts: {} MiB budget, Python growing {} MB/s, RSS polled at {} Hz ==",
        args.budget_mib,
        args.growth_mb_s,
        1000 / POLL.as_millis()
    );
    print!("{table}");
    plimsoll_bench::outln!(
        "(cross = first poll with the workload's VmRSS above the budget; killed = its pid gone; \
new pid = the next workload process seen; it saw = Plimsoll's budget-breach rss_bytes / PM2's \
logged current_memory; its breach after = Plimsoll's budget-breach event time after the cross)"
    );
    match (pm2, pm2_note) {
        (Err(why), _) => plimsoll_bench::outln!("PM2: {why}"),
        (Ok(_), Some(note)) => plimsoll_bench::outln!("PM2: could not be started: {note}"),
        _ => {}
    }
    plimsoll_bench::outln!();
    Ok(Breach {
        plimsoll: ours,
        pm2: theirs,
    })
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

fn max(values: Vec<f64>) -> Option<f64> {
    values.into_iter().max_by(f64::total_cmp)
}

/// PM2 against Plimsoll, one line per figure, with the ratio PM2 / Plimsoll.
fn side_by_side(idle: &Idle, breach: &Breach, pm2_version: &str, budget_mib: u64) {
    let mut table = Table::new(&[
        ("figure", Align::Left),
        (&format!("PM2 {pm2_version} (baseline)"), Align::Right),
        ("plimsoll", Align::Right),
        ("plimsoll / PM2", Align::Right),
    ]);
    let mut line = |name: &str, pm2: Option<f64>, ours: Option<f64>, digits: usize| {
        let show = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"));
        table.row(vec![
            name.to_owned(),
            show(pm2),
            show(ours),
            match (pm2, ours) {
                (Some(p), Some(o)) => ratio(o, p),
                _ => "-".to_owned(),
            },
        ]);
    };
    line(
        "daemon RSS MiB, idle (plimsoll: supervisor + keeper)",
        idle.pm2.as_ref().map(Usage::rss_mib),
        idle.plimsoll.as_ref().map(Usage::rss_mib),
        1,
    );
    line(
        "daemon PSS MiB, idle (plimsoll: supervisor + keeper)",
        idle.pm2.as_ref().map(Usage::pss_mib),
        idle.plimsoll.as_ref().map(Usage::pss_mib),
        1,
    );
    line(
        "daemon CPU % of a core, idle",
        idle.pm2.as_ref().map(Usage::cpu_percent),
        idle.plimsoll.as_ref().map(Usage::cpu_percent),
        3,
    );
    let empty = Vec::new();
    let pm2 = breach.pm2.as_ref().unwrap_or(&empty);
    let to_new = |r: &[Restart]| r.iter().filter_map(|r| r.to_new_s).collect::<Vec<_>>();
    let peaks = |r: &[Restart]| r.iter().map(|r| r.peak_mib).collect::<Vec<_>>();
    let overs = |r: &[Restart]| r.iter().map(|r| r.over_percent).collect::<Vec<_>>();
    line(
        "budget restarts observed",
        breach.pm2.as_ref().map(|r| to_new(r).len() as f64),
        Some(to_new(&breach.plimsoll).len() as f64),
        0,
    );
    line(
        "crossing → restarted (new pid), median s",
        median(to_new(pm2)),
        median(to_new(&breach.plimsoll)),
        2,
    );
    line(
        "crossing → restarted (new pid), max s",
        max(to_new(pm2)),
        max(to_new(&breach.plimsoll)),
        2,
    );
    line(
        &format!("peak RSS before restart, max MiB (budget {budget_mib})"),
        max(peaks(pm2)),
        max(peaks(&breach.plimsoll)),
        1,
    );
    line(
        "over budget, max %",
        max(overs(pm2)),
        max(overs(&breach.plimsoll)),
        1,
    );
    plimsoll_bench::outln!("== 3. PM2 side by side ==");
    print!("{table}");
    let worst = max(to_new(&breach.plimsoll));
    let bar = INTERVAL_S + GRACE_S;
    plimsoll_bench::outln!(
        "bar: plimsoll acts within one sample interval plus the grace ({bar:.0} s): {}",
        match worst {
            Some(w) => format!("{} (worst {w:.2} s)", verdict(w <= bar)),
            None => "no restart observed".to_owned(),
        }
    );
    plimsoll_bench::outln!();
}

// ---------------------------------------------------------------------------------------------

fn run(args: &Args) -> Result<()> {
    if !args.plimsoll.exists() {
        bail!(
            "no binary at '{}' (build it with cargo build --release -p plimsoll)",
            args.plimsoll.display()
        );
    }
    let tag = format!("plimsoll-bench-{}", std::process::id());
    let _sweep = Sweep(tag.clone());
    let dir = tempfile::Builder::new()
        .prefix("bench-supervisor-")
        .tempdir()
        .context("tempdir")?;
    let python = {
        let output = Command::new(&args.python)
            .args([
                "-c",
                "import sys; print(sys.executable); print(sys.version.split()[0])",
            ])
            .output()
            .with_context(|| format!("cannot run '{}'", args.python))?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut lines = text.lines();
        let path = lines.next().context("no python path")?.to_owned();
        let version = lines.next().unwrap_or("?").to_owned();
        (path, version)
    };
    let workload = dir.path().join("workload.py");
    let poller = dir.path().join("poller.py");
    fs::write(&workload, WORKLOAD_PY)?;
    fs::write(&poller, POLLER_PY)?;
    let env = Env {
        dir: dir.path().to_path_buf(),
        python: python.0,
        workload,
        poller,
        tag,
        plimsoll: fs::canonicalize(&args.plimsoll)?,
    };
    let version = Command::new(&env.plimsoll)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let pm2 = pm2_availability(args);
    plimsoll_bench::outln!(
        "{version}; Python {}; PM2 {}; {} CPUs",
        python.1,
        match &pm2 {
            Ok(v) => v.clone(),
            Err(why) => why.clone(),
        },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    plimsoll_bench::outln!();

    let idle = idle(&env, args, &pm2)?;
    if args.no_watch {
        plimsoll_bench::outln!("== 2. watch: left out (--no-watch) ==\n");
    } else {
        watch(&env, args)?;
    }
    if args.no_breach {
        plimsoll_bench::outln!("== 3. breach test: left out (--no-breach) ==");
        return Ok(());
    }
    let breach = breach(&env, args, &pm2)?;
    side_by_side(
        &idle,
        &breach,
        pm2.as_deref().unwrap_or("(not run)"),
        args.budget_mib,
    );
    if args.keep {
        plimsoll_bench::outln!("logs, events and PM2_HOME kept in {}", dir.keep().display());
    }
    Ok(())
}
