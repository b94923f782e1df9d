//! `bench_agent`: what the Node.js agent costs a hot HTTP server. Two `plimsoll run`s of the same
//! small Node server run side by side for the whole benchmark, one with the agent preloaded and
//! one with `--no-agent` (the same supervision otherwise); a closed-loop load generator here
//! (keep-alive HTTP/1.1 GETs over loopback, one thread per connection) drives one of them at a
//! time, in alternating windows (with, without, without, with, …) so that drift of the machine
//! falls on both alike. It prints each window, the totals and the ratios against the issue's
//! bar: ≤ 1 % throughput and ≤ 1 ms p99 difference.
//!
//! With `--compare forced-gc` the two servers are two `plimsoll soak`s with the agent, one
//! forcing a full GC every `--gc-every` (the soak's default, 15 s) and one with
//! `--no-forced-gc`: the same windows then give what the soak's forced GCs cost the server's
//! throughput and latency, and the forcing soak's verdict JSON gives the pause of each GC.
//!
//! Every process started here is stopped at the end, on error and on Ctrl-C too (guards: SIGTERM
//! to each `plimsoll run`, which stops its target, then SIGKILL after a grace).

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{sysconf, Pid, SysconfVar};
use plimsoll_bench::interrupt::{catch_signals, check_interrupted, interrupted};
use plimsoll_bench::table::{Align, Table};

/// The bars from the issue.
const BAR_THROUGHPUT_LOSS: f64 = 0.01;
const BAR_P99_MS: f64 = 1.0;

/// The server: one JSON response per request, built from a small catalogue (a little
/// serialisation and parsing work, and garbage for the GC). It writes its port, its pid and
/// whether the agent was preloaded to the file named by its first argument.
const SERVER_JS: &str = r#"'use strict';
const http = require('http');
const fs = require('fs');

const items = Array.from({ length: 24 }, (_, i) => ({
  id: i,
  name: 'item-' + i,
  tags: ['red', 'green', 'blue'].slice(0, 1 + (i % 3)),
  price: Math.round(i * 137.5) / 100,
}));

const server = http.createServer((req, res) => {
  const order = JSON.parse(JSON.stringify({ path: req.url, items }));
  const total = order.items.reduce((sum, item) => sum + item.price * item.tags.length, 0);
  const body = JSON.stringify({ path: order.path, count: order.items.length, total, at: Date.now() });
  res.writeHead(200, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
});

server.listen(0, '127.0.0.1', () => {
  const agent = Object.keys(require.cache).some((name) => name.endsWith('plimsoll-agent.js'));
  const info = JSON.stringify({ port: server.address().port, pid: process.pid, agent });
  const file = process.argv[2];
  fs.writeFileSync(file + '.tmp', info);
  fs.renameSync(file + '.tmp', file);
});
"#;

#[derive(Debug, Parser)]
#[command(about = "Overhead of the Node.js agent on a hot HTTP server, with and without it")]
struct Args {
    /// Length of each measuring window, in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Rounds; each measures both servers once (so 2 × rounds windows), the order alternating.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Keep-alive connections of the load generator (one thread each).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Load on each server before the first window (JIT, heap growth), in seconds.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// The plimsoll binary to measure.
    #[arg(long, default_value = "target/release/plimsoll")]
    plimsoll: PathBuf,
    /// Node.js.
    #[arg(long, default_value = "node")]
    node: String,
    /// Keep the temporary directory (data dirs, logs) and print its path.
    #[arg(long)]
    keep: bool,
    /// What the two servers differ in: `agent` (with / without the agent, under `plimsoll
    /// run`) or `forced-gc` (both under `plimsoll soak` with the agent, with / without forced
    /// GCs).
    #[arg(long, value_enum, default_value_t = Compare::Agent)]
    compare: Compare,
    /// With `--compare forced-gc`: how often the soak forces a full GC, in seconds.
    #[arg(long, default_value_t = 15)]
    gc_every: u64,
}

/// What the benchmark compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Compare {
    /// The agent's overhead.
    Agent,
    /// The cost of a soak's forced GCs.
    ForcedGc,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(error) = catch_signals("bench_agent") {
        eprintln!("bench_agent: {error:#}");
        return ExitCode::FAILURE;
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench_agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The two supervised servers

/// Which of the two servers: `WithAgent` is the measured one, `WithoutAgent` its reference.
/// Under `--compare forced-gc` they are the soak forcing GCs and the soak that does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    WithAgent,
    WithoutAgent,
}

impl Variant {
    /// Whether the agent is preloaded into this server.
    fn has_agent(self) -> bool {
        self == Variant::WithAgent || compare() == Compare::ForcedGc
    }

    fn label(self) -> &'static str {
        match (self, compare()) {
            (Variant::WithAgent, Compare::Agent) => "with agent",
            (Variant::WithoutAgent, Compare::Agent) => "without agent",
            (Variant::WithAgent, Compare::ForcedGc) => "forced GC",
            (Variant::WithoutAgent, Compare::ForcedGc) => "no forced GC",
        }
    }
}

/// The comparison of this run, set once at start (labels depend on it).
static COMPARE: std::sync::OnceLock<Compare> = std::sync::OnceLock::new();

fn compare() -> Compare {
    COMPARE.get().copied().unwrap_or(Compare::Agent)
}

/// One `plimsoll run` of the server, stopped (SIGTERM, which stops its target, then SIGKILL)
/// when dropped.
struct Server {
    variant: Variant,
    supervisor: Child,
    addr: SocketAddr,
    /// The node process.
    pid: u32,
    log: PathBuf,
    /// Under `--compare forced-gc`: where the soak writes its verdict JSON.
    verdict: Option<PathBuf>,
}

impl Server {
    fn start(
        variant: Variant,
        args: &Args,
        dir: &Path,
        script: &Path,
        listen: bool,
    ) -> Result<Server> {
        let name = match variant {
            Variant::WithAgent => "with-agent",
            Variant::WithoutAgent => "without-agent",
        };
        let data = dir.join(name);
        fs::create_dir_all(&data)?;
        let port_file = dir.join(format!("{name}.port"));
        let log = dir.join(format!("{name}.log"));
        // Absolute: the supervisor runs in `dir`.
        let plimsoll = fs::canonicalize(&args.plimsoll)
            .with_context(|| format!("no plimsoll at '{}'", args.plimsoll.display()))?;
        let mut command = Command::new(&plimsoll);
        let verdict = match args.compare {
            Compare::Agent => {
                command.arg("run");
                if listen {
                    command.args(["--listen", "off"]);
                }
                if variant == Variant::WithoutAgent {
                    command.arg("--no-agent");
                }
                None
            }
            Compare::ForcedGc => {
                // Long enough for the whole benchmark; it is stopped (SIGTERM) at the end.
                let total = args.warmup + 2 * args.seconds * args.rounds as u64 + 120;
                command.args(["soak", "--json", "--duration", &format!("{total}s")]);
                if variant == Variant::WithAgent {
                    command.args(["--gc-every", &format!("{}s", args.gc_every)]);
                } else {
                    command.arg("--no-forced-gc");
                }
                Some(dir.join(format!("{name}.json")))
            }
        };
        command
            .arg("--data-dir")
            .arg(&data)
            .args(["--interval", "1s", "--name", name, "--"])
            .arg(&args.node)
            .arg(script)
            .arg(&port_file)
            .current_dir(dir)
            .env_remove("NODE_OPTIONS")
            .stdin(Stdio::null());
        let output =
            fs::File::create(&log).with_context(|| format!("cannot create '{}'", log.display()))?;
        match &verdict {
            Some(path) => {
                let json = fs::File::create(path)
                    .with_context(|| format!("cannot create '{}'", path.display()))?;
                command.stdout(json).stderr(output);
            }
            None => {
                command.stdout(output.try_clone()?).stderr(output);
            }
        }
        let supervisor = command
            .spawn()
            .with_context(|| format!("cannot start {}", args.plimsoll.display()))?;
        let mut server = Server {
            variant,
            supervisor,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pid: 0,
            log,
            verdict,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let info = loop {
            check_interrupted()?;
            if let Ok(text) = fs::read_to_string(&port_file) {
                break text;
            }
            if let Ok(Some(status)) = server.supervisor.try_wait() {
                bail!(
                    "{} exited at start ({status}): {}",
                    variant.label(),
                    tail(&server.log, 400)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: the server did not start within 20 s: {}",
                    variant.label(),
                    tail(&server.log, 400)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let info: serde_json::Value =
            serde_json::from_str(&info).with_context(|| format!("bad port file '{info}'"))?;
        let port = info["port"].as_u64().context("no port in the port file")?;
        server.addr.set_port(u16::try_from(port).context("port")?);
        server.pid = info["pid"]
            .as_u64()
            .and_then(|pid| u32::try_from(pid).ok())
            .context("no pid in the port file")?;
        let preloaded = info["agent"].as_bool() == Some(true);
        if preloaded != variant.has_agent() {
            bail!(
                "{}: the agent is {}preloaded into the server",
                variant.label(),
                if preloaded { "" } else { "not " }
            );
        }
        Ok(server)
    }

    /// Whether the node process holds a connected unix socket: the agent's connection to the
    /// supervisor (the server itself has none).
    fn agent_connected(&self) -> bool {
        let mut inodes = HashSet::new();
        if let Ok(fds) = fs::read_dir(format!("/proc/{}/fd", self.pid)) {
            for fd in fds.flatten() {
                let Ok(target) = fs::read_link(fd.path()) else {
                    continue;
                };
                let target = target.to_string_lossy();
                if let Some(inode) = target
                    .strip_prefix("socket:[")
                    .and_then(|rest| rest.strip_suffix(']'))
                {
                    inodes.insert(inode.to_owned());
                }
            }
        }
        let Ok(table) = fs::read_to_string(format!("/proc/{}/net/unix", self.pid)) else {
            return false;
        };
        // Num RefCount Protocol Flags Type St Inode [Path]; St 03 is connected.
        table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() >= 7 && fields[5] == "03" && inodes.contains(fields[6])
        })
    }

    fn alive(&mut self) -> Result<()> {
        if let Ok(Some(status)) = self.supervisor.try_wait() {
            bail!(
                "{}: plimsoll run exited ({status}): {}",
                self.variant.label(),
                tail(&self.log, 400)
            );
        }
        if !Path::new(&format!("/proc/{}", self.pid)).exists() {
            bail!("{}: the node server exited", self.variant.label());
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !matches!(self.supervisor.try_wait(), Ok(None)) {
            return;
        }
        let pid = Pid::from_raw(self.supervisor.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if !matches!(self.supervisor.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = kill(pid, Signal::SIGKILL);
        let _ = self.supervisor.wait();
    }
}

/// The last `chars` characters of a log file, on one line.
fn tail(path: &Path, chars: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let skip = text.chars().count().saturating_sub(chars);
    text.chars().skip(skip).collect()
}

/// Whether this plimsoll build has `run --listen` (the HTTP server); without it, none is served.
fn has_listen(plimsoll: &Path) -> Result<bool> {
    let output = Command::new(plimsoll)
        .args(["run", "--help"])
        .output()
        .with_context(|| format!("cannot run {}", plimsoll.display()))?;
    Ok(String::from_utf8_lossy(&output.stdout).contains("--listen"))
}

/// CPU time of a process (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS of a process, in MiB.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn clock_ticks_per_s() -> f64 {
    sysconf(SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |ticks| ticks as f64)
}

// ---------------------------------------------------------------------------------------------
// The load generator

/// What one window of load measured.
struct Window {
    variant: Variant,
    elapsed: Duration,
    /// Latency of every request, in nanoseconds.
    latencies: Vec<u64>,
    /// The server's CPU share over the window, in percent of a core.
    server_cpu: f64,
    /// The server's resident set size at the end of the window, in MiB.
    server_rss_mib: f64,
}

/// Drives `addr` with `connections` keep-alive connections for `length`, each sending its next
/// GET as soon as the last response is complete.
fn load(addr: SocketAddr, connections: usize, length: Duration) -> Result<(Duration, Vec<u64>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || connection(addr, &stop))
        })
        .collect();
    let end = start + length;
    while Instant::now() < end && !interrupted() {
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
    stop.store(true, Ordering::SeqCst);
    let mut latencies = Vec::new();
    let mut failure = None;
    for worker in workers {
        match worker.join() {
            Ok(Ok(measured)) => latencies.extend(measured),
            Ok(Err(error)) => failure = Some(error),
            Err(_) => failure = Some(anyhow::anyhow!("a load thread panicked")),
        }
    }
    let elapsed = start.elapsed();
    check_interrupted()?;
    if let Some(error) = failure {
        return Err(error);
    }
    Ok((elapsed, latencies))
}

const REQUEST: &[u8] = b"GET /orders/42 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n";

/// One keep-alive connection: requests until `stop`, the latency of each in nanoseconds.
fn connection(addr: SocketAddr, stop: &AtomicBool) -> Result<Vec<u64>> {
    let mut stream =
        TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut buffer = vec![0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        stream.write_all(REQUEST).context("cannot send a request")?;
        read_response(&mut stream, &mut buffer)?;
        latencies.push(u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    Ok(latencies)
}

/// Reads one response (status 200, with a Content-Length) to its last byte.
fn read_response(stream: &mut TcpStream, buffer: &mut [u8]) -> Result<()> {
    let mut filled = 0;
    let (head_end, body_length) = loop {
        if filled == buffer.len() {
            bail!("response header larger than {} bytes", buffer.len());
        }
        let read = stream
            .read(&mut buffer[filled..])
            .context("cannot read a response")?;
        if read == 0 {
            bail!("the server closed the connection");
        }
        filled += read;
        if let Some(end) = find(&buffer[..filled], b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..end]).context("response header")?;
            if !head.starts_with("HTTP/1.1 200") {
                bail!(
                    "unexpected response '{}'",
                    head.lines().next().unwrap_or_default()
                );
            }
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())
                        .flatten()
                })
                .context("response without Content-Length")?;
            break (end + 4, length);
        }
    };
    let mut remaining = (head_end + body_length).saturating_sub(filled);
    while remaining > 0 {
        let chunk = remaining.min(buffer.len());
        let read = stream
            .read(&mut buffer[..chunk])
            .context("cannot read a response body")?;
        if read == 0 {
            bail!("the server closed the connection in a response");
        }
        remaining -= read;
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// One measuring window on `server`, with the server's CPU share over it.
fn window(server: &mut Server, args: &Args, length: Duration) -> Result<Window> {
    server.alive()?;
    let ticks_before = cpu_ticks(server.pid).context("server CPU time")?;
    let (elapsed, latencies) = load(server.addr, args.connections, length)?;
    let ticks = cpu_ticks(server.pid)
        .context("server CPU time")?
        .saturating_sub(ticks_before);
    let server_rss_mib = rss_mib(server.pid).context("server RSS")?;
    server.alive()?;
    Ok(Window {
        variant: server.variant,
        elapsed,
        server_cpu: ticks as f64 / clock_ticks_per_s() / elapsed.as_secs_f64() * 100.0,
        server_rss_mib,
        latencies,
    })
}

// ---------------------------------------------------------------------------------------------
// Figures

/// Throughput and latency of one or more windows.
struct Figures {
    requests: usize,
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    server_cpu: f64,
}

impl Figures {
    fn of<'a>(windows: impl IntoIterator<Item = &'a Window>) -> Figures {
        let windows: Vec<&Window> = windows.into_iter().collect();
        let mut latencies: Vec<u64> = windows
            .iter()
            .flat_map(|w| w.latencies.iter().copied())
            .collect();
        latencies.sort_unstable();
        let seconds: f64 = windows.iter().map(|w| w.elapsed.as_secs_f64()).sum();
        let cpu_seconds: f64 = windows
            .iter()
            .map(|w| w.server_cpu * w.elapsed.as_secs_f64())
            .sum();
        let quantile = |q: f64| {
            if latencies.is_empty() {
                return 0.0;
            }
            let index = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
            latencies[index - 1] as f64 / 1e6
        };
        Figures {
            requests: latencies.len(),
            per_s: latencies.len() as f64 / seconds.max(1e-9),
            p50_ms: quantile(0.50),
            p99_ms: quantile(0.99),
            max_ms: quantile(1.0),
            server_cpu: cpu_seconds / seconds.max(1e-9),
        }
    }

    fn cells(&self, name: String) -> Vec<String> {
        vec![
            name,
            self.requests.to_string(),
            format!("{:.0}", self.per_s),
            format!("{:.3}", self.p50_ms),
            format!("{:.3}", self.p99_ms),
            format!("{:.2}", self.max_ms),
            format!("{:.1}", self.server_cpu),
        ]
    }
}

fn figures_table() -> Table {
    Table::new(&[
        ("server", Align::Left),
        ("requests", Align::Right),
        ("req/s", Align::Right),
        ("p50 ms", Align::Right),
        ("p99 ms", Align::Right),
        ("max ms", Align::Right),
        ("node CPU %", Align::Right),
    ])
}

// ---------------------------------------------------------------------------------------------

fn run(args: &Args) -> Result<()> {
    if args.rounds == 0 || args.connections == 0 || args.seconds == 0 || args.gc_every == 0 {
        bail!("--rounds, --connections, --seconds and --gc-every must be at least 1");
    }
    let _ = COMPARE.set(args.compare);
    let node_version = Command::new(&args.node)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run '{}'", args.node))?;
    let plimsoll_version = Command::new(&args.plimsoll)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {}", args.plimsoll.display()))?;
    let listen = has_listen(&args.plimsoll)?;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    plimsoll_bench::outln!(
        "{}; node {}; {cpus} CPUs; {} connections, {} rounds of {} s per server{}",
        String::from_utf8_lossy(&plimsoll_version.stdout).trim(),
        String::from_utf8_lossy(&node_version.stdout).trim(),
        args.connections,
        args.rounds,
        args.seconds,
        if listen {
            ""
        } else {
            " (this build has no --listen)"
        },
    );

    let temp = tempfile::Builder::new()
        .prefix("plimsoll-bench-agent-")
        .tempdir()?;
    let dir = temp.path().to_owned();
    let script = dir.join("server.js");
    fs::write(&script, SERVER_JS)?;

    let mut with = Server::start(Variant::WithAgent, args, &dir, &script, listen)?;
    let mut without = Server::start(Variant::WithoutAgent, args, &dir, &script, listen)?;
    plimsoll_bench::outln!(
        "servers: with agent node pid {} on {}, without agent node pid {} on {}",
        with.pid,
        with.addr,
        without.pid,
        without.addr
    );

    let warmup = Duration::from_secs(args.warmup);
    if !warmup.is_zero() {
        plimsoll_bench::outln!("warming up each server for {} s...", args.warmup);
        for server in [&mut with, &mut without] {
            window(server, args, warmup)?;
        }
    }
    // The agent connects at start and reports every second; after the warm-up it must be
    // connected in one server only.
    match (
        with.agent_connected(),
        without.agent_connected(),
        args.compare,
    ) {
        (true, false, Compare::Agent) => {
            plimsoll_bench::outln!(
                "agent: connected to its supervisor in the with-agent server only"
            )
        }
        (true, true, Compare::ForcedGc) => {
            plimsoll_bench::outln!("agent: connected to its soak in both servers")
        }
        (with_connected, without_connected, _) => bail!(
            "agent connections: {} {with_connected}, {} {without_connected}; expected true, {}",
            Variant::WithAgent.label(),
            Variant::WithoutAgent.label(),
            Variant::WithoutAgent.has_agent()
        ),
    }

    let length = Duration::from_secs(args.seconds);
    let mut windows = Vec::with_capacity(2 * args.rounds);
    let mut per_window = Table::new(&[
        ("window", Align::Right),
        ("server", Align::Left),
        ("req/s", Align::Right),
        ("p50 ms", Align::Right),
        ("p99 ms", Align::Right),
        ("node CPU %", Align::Right),
        ("node RSS MiB", Align::Right),
    ]);
    let mut round_ratios = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        let order = if round % 2 == 0 {
            [&mut with, &mut without]
        } else {
            [&mut without, &mut with]
        };
        for server in order {
            let measured = window(server, args, length)?;
            let figures = Figures::of([&measured]);
            per_window.row(vec![
                (windows.len() + 1).to_string(),
                measured.variant.label().to_owned(),
                format!("{:.0}", figures.per_s),
                format!("{:.3}", figures.p50_ms),
                format!("{:.3}", figures.p99_ms),
                format!("{:.1}", figures.server_cpu),
                format!("{:.1}", measured.server_rss_mib),
            ]);
            plimsoll_bench::outln!(
                "window {} ({}): {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, node {:.0} % CPU, {:.1} MiB RSS",
                windows.len() + 1,
                measured.variant.label(),
                figures.per_s,
                figures.p50_ms,
                figures.p99_ms,
                figures.server_cpu,
                measured.server_rss_mib,
            );
            windows.push(measured);
        }
        let [first, second] = [&windows[windows.len() - 2], &windows[windows.len() - 1]];
        let (with_window, without_window) = if first.variant == Variant::WithAgent {
            (first, second)
        } else {
            (second, first)
        };
        round_ratios
            .push(Figures::of([with_window]).per_s / Figures::of([without_window]).per_s.max(1e-9));
    }
    let still_connected = with.agent_connected();
    let forced_verdict = with.verdict.clone();
    drop(with);
    drop(without);
    // The forcing soak, stopped, printed its verdict: the forced GCs and their pauses.
    let forced_gc = forced_verdict.map(|path| {
        let text = fs::read_to_string(&path).unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(text.trim())
            .map(|verdict| verdict["forced_gc"].clone())
            .unwrap_or(serde_json::Value::Null)
    });

    let of = |variant: Variant| Figures::of(windows.iter().filter(|w| w.variant == variant));
    let (a, b) = (of(Variant::WithAgent), of(Variant::WithoutAgent));
    let mut totals = figures_table();
    totals.row(a.cells(format!(
        "{} ({} windows)",
        Variant::WithAgent.label(),
        args.rounds
    )));
    totals.row(b.cells(format!(
        "{} ({} windows)",
        Variant::WithoutAgent.label(),
        args.rounds
    )));
    let throughput = a.per_s / b.per_s.max(1e-9);
    let p99_difference = a.p99_ms - b.p99_ms;
    let header = format!(
        "{} / {}",
        Variant::WithAgent.label(),
        Variant::WithoutAgent.label()
    );
    let mut ratios = Table::new(&[
        (header.as_str(), Align::Left),
        ("value", Align::Right),
        ("bar", Align::Left),
        ("result", Align::Left),
    ]);
    // The agent's bars apply to the agent; the forced GCs are measured, not barred.
    let bar = |text: String, ok: bool| match args.compare {
        Compare::Agent => (text, verdict(ok)),
        Compare::ForcedGc => (String::new(), String::new()),
    };
    let (throughput_bar, throughput_result) = bar(
        format!("≥ {:.2}", 1.0 - BAR_THROUGHPUT_LOSS),
        throughput >= 1.0 - BAR_THROUGHPUT_LOSS,
    );
    ratios.row(vec![
        "throughput ratio".to_owned(),
        format!("{throughput:.4}"),
        throughput_bar,
        throughput_result,
    ]);
    round_ratios.sort_by(f64::total_cmp);
    ratios.row(vec![
        "throughput ratio, median of the rounds".to_owned(),
        format!("{:.4}", round_ratios[round_ratios.len() / 2]),
        String::new(),
        format!(
            "rounds: {}",
            round_ratios
                .iter()
                .map(|ratio| format!("{ratio:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    ]);
    ratios.row(vec![
        "p50 ratio".to_owned(),
        format!("{:.4}", a.p50_ms / b.p50_ms.max(1e-9)),
        String::new(),
        String::new(),
    ]);
    ratios.row(vec![
        "p99 ratio".to_owned(),
        format!("{:.4}", a.p99_ms / b.p99_ms.max(1e-9)),
        String::new(),
        String::new(),
    ]);
    let (p99_bar, p99_result) = bar(format!("≤ {BAR_P99_MS:.1}"), p99_difference <= BAR_P99_MS);
    ratios.row(vec![
        "p99 difference, ms".to_owned(),
        format!("{p99_difference:+.3}"),
        p99_bar,
        p99_result,
    ]);
    if let Some(forced) = &forced_gc {
        let pause = &forced["pause_ms"];
        ratios.row(vec![
            "forced GCs, pause per GC median / p95 / max, ms".to_owned(),
            match (
                pause["median"].as_f64(),
                pause["p95"].as_f64(),
                pause["max"].as_f64(),
            ) {
                (Some(median), Some(p95), Some(max)) => {
                    format!("{median:.1} / {p95:.1} / {max:.1}")
                }
                _ => "not reported".to_owned(),
            },
            String::new(),
            format!(
                "{} GCs every {} s, {} failed; {:.3} % of the soak paused",
                forced["count"],
                args.gc_every,
                forced["failed"],
                forced["paused_fraction"].as_f64().unwrap_or(f64::NAN) * 100.0
            ),
        ]);
    }
    ratios.row(vec![
        "node CPU % difference".to_owned(),
        format!("{:+.1}", a.server_cpu - b.server_cpu),
        String::new(),
        String::new(),
    ]);
    let last_rss = |variant: Variant| {
        windows
            .iter()
            .rev()
            .find(|w| w.variant == variant)
            .map_or(0.0, |w| w.server_rss_mib)
    };
    ratios.row(vec![
        "node RSS at the end, MiB".to_owned(),
        format!(
            "{:.1} / {:.1}",
            last_rss(Variant::WithAgent),
            last_rss(Variant::WithoutAgent)
        ),
        String::new(),
        String::new(),
    ]);
    let spread = |variant: Variant| {
        let rates: Vec<f64> = windows
            .iter()
            .filter(|w| w.variant == variant)
            .map(|w| Figures::of([w]).per_s)
            .collect();
        let low = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let high = rates.iter().copied().fold(0.0, f64::max);
        (high - low) / b.per_s.max(1e-9) * 100.0
    };

    plimsoll_bench::outln!();
    plimsoll_bench::outln!(
        "== {}: {} connections, {} windows of {} s per server, alternating ==",
        match args.compare {
            Compare::Agent => "Node agent overhead".to_owned(),
            Compare::ForcedGc => format!("soak's forced GC every {} s", args.gc_every),
        },
        args.connections,
        args.rounds,
        args.seconds
    );
    print!("{per_window}");
    plimsoll_bench::outln!();
    print!("{totals}");
    plimsoll_bench::outln!();
    print!("{ratios}");
    plimsoll_bench::outln!(
        "window-to-window spread of req/s: {} {:.1} %, {} {:.1} % (of the {} mean){}",
        Variant::WithAgent.label(),
        spread(Variant::WithAgent),
        Variant::WithoutAgent.label(),
        spread(Variant::WithoutAgent),
        Variant::WithoutAgent.label(),
        if still_connected {
            ""
        } else {
            "; the agent was no longer connected at the end"
        }
    );
    if args.keep {
        let kept = temp.keep();
        plimsoll_bench::outln!("kept {}", kept.display());
    }
    Ok(())
}

fn verdict(ok: bool) -> String {
    if ok { "meets" } else { "MISSES" }.to_owned()
}
