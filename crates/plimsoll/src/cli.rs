//! What the user typed: the command line, parsed and validated without I/O (the first of the
//! two configuration stages; commands resolve paths and limits themselves).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use std::time::Duration;

use crate::name::parse_name;
use crate::units::{parse_grace, parse_interval, parse_soak_duration, parse_window, ByteSize};

/// Keeps a service under its memory budget: tells a real leak from a GC sawtooth, restarts
/// before the OOM killer does, and proves in CI that a change does not leak.
#[derive(Debug, Parser)]
#[command(name = "plimsoll", version = crate::manual::VERSION, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 no leak / success, 1 leak found or budget failed, \
2 bad usage or bad input, 3 inconclusive.\nSizes: 512M, 512MiB, 1.5G, 1073741824 (K/M/G and \
KiB/MiB/GiB are powers of 1024; KB/MB/GB powers of 1000). Durations: 500ms, 30s, 5m, 1h."
)]
pub(crate) struct Cli {
    /// How the supervisor writes its own log on standard error: text for people, json for log
    /// shippers (one JSON object per line)
    #[arg(
        long,
        value_enum,
        global = true,
        value_name = "FORMAT",
        default_value = "text"
    )]
    pub(crate) log_format: crate::logging::LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Verdict on a recorded memory series (CSV with t_s and rss_bytes columns)
    Analyze(AnalyzeArgs),
    /// One-shot breakdown of a process tree's memory, its cgroup and PSI
    Check(CheckArgs),
    /// Run a command under supervision: one memory budget for its whole process tree, leak
    /// detection, graceful restarts on breach and crash
    Run(RunArgs),
    /// Monitor processes it does not own: levels, leak detection, events; no restarts
    Watch(WatchArgs),
    /// Run several apps from a config file (like PM2's ecosystem file), with rolling restarts
    Up(UpArgs),
    /// Analyse V8 heap snapshots (.heapsnapshot): what is big, what grows, what holds it
    #[command(subcommand)]
    Heap(HeapCommand),
    /// Ask a running target's runtime for a heap snapshot; prints its path
    Snapshot(SnapshotArgs),
    /// The CI gate: run CMD (and a load command) for a while, then give the leak verdict and
    /// the exit code
    Soak(SoakArgs),
    /// A self-contained HTML report (charts, events, verdict) of a recorded run
    Report(ReportArgs),
    /// HTTP, store and dashboard for remote targets only: browser pages and other reporters
    /// that POST samples to /api/v1/ingest
    Serve(ServeArgs),
    /// Turn another tool's config into a plimsoll.toml for `plimsoll up`
    #[command(subcommand)]
    Import(ImportCommand),
    /// Shell completions on standard output (bash, zsh, fish, elvish, powershell)
    Completions(CompletionsArgs),
    /// Man pages: plimsoll(1) on standard output, or one page per command into --out DIR
    Man(ManArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum ImportCommand {
    /// A PM2 ecosystem file (.js, .cjs, .mjs, .json, .yaml) as a plimsoll.toml; every key it
    /// cannot carry over is a warning naming the key and the app
    Pm2(ImportPm2Args),
}

#[derive(Debug, Args)]
#[command(
    after_help = "Example: plimsoll import pm2 ecosystem.config.js --env production -o plimsoll.toml\n\
A .js/.cjs/.mjs file is evaluated by `node` (from PATH) in its own directory, as PM2 does."
)]
pub(crate) struct ImportPm2Args {
    /// The ecosystem file
    pub(crate) file: PathBuf,
    /// Apply the file's `env_NAME` over `env`, as `pm2 start FILE --env NAME` does
    #[arg(long, value_name = "NAME")]
    pub(crate) env: Option<String>,
    /// Write the config to FILE (atomically) instead of standard output
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Replace the -o FILE when it exists
    #[arg(long, requires = "output")]
    pub(crate) force: bool,
    /// Print one JSON object (the config, where it went, the warnings) instead of the config
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Example: plimsoll soak --duration 15m --warmup 1m --budget 512MiB \\\n            --load './load.sh' --report soak.html -- node server.js\n\
Exit codes: 0 no leak, 1 leak, budget exceeded, load or target failed, 2 bad usage, \
3 inconclusive (too short to tell: the message says how much longer it needs)."
)]
pub(crate) struct SoakArgs {
    /// How long to run the target (warm-up included); the verdict judges the steady state
    /// after --warmup: a quiet floor can pass after about 5 minutes of it, noisy ones need more;
    /// at most 168h
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_soak_duration)]
    pub(crate) duration: Duration,
    /// Samples of the first DURATION are recorded but count neither for the verdict nor as
    /// budget breaches; at most 24h
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_window)]
    pub(crate) warmup: Duration,
    /// A load command (run through sh -c) started with the target and stopped at the end; a
    /// non-zero exit before the end fails the soak
    #[arg(long, value_name = "CMD")]
    pub(crate) load: Option<String>,
    /// Memory budget for the whole process tree (e.g. 512MiB); reaching it fails the soak
    #[arg(long, value_name = "SIZE")]
    pub(crate) budget: Option<ByteSize>,
    /// Time between two samples: 100ms to 10m
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    pub(crate) interval: Duration,
    /// Print the verdict as one JSON object on standard output
    #[arg(long)]
    pub(crate) json: bool,
    /// Write a self-contained HTML report of the soak to FILE (checked to be writable before
    /// the soak starts)
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
    /// Stop as soon as the detector confirms a leak or the budget is reached
    #[arg(long)]
    pub(crate) fail_fast: bool,
    /// Compress the detector's windows by this factor for short CI runs on fast synthetic
    /// workloads (0.05 makes a 14-minute verdict take 42 s); 1 is the real detector
    #[arg(long, value_name = "FACTOR", default_value_t = 1.0, value_parser = parse_time_scale)]
    pub(crate) time_scale: f64,
    /// Where samples and events are kept; default: $XDG_STATE_HOME/plimsoll or
    /// ~/.local/state/plimsoll
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Write every event as a JSON line to FILE
    #[arg(long, value_name = "FILE")]
    pub(crate) events: Option<String>,
    /// Name of the target in events and the report (letters, digits, `-`, `_`, `.`; at most
    /// 64); default: the command's file name
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub(crate) name: Option<String>,
    /// Do not preload the Node.js agent into a Node command
    #[arg(long)]
    pub(crate) no_agent: bool,
    /// A Node target's heap is read right after a full GC forced through the agent this often,
    /// give or take 30 % at random (the verdict's heap channel: the exact live heap, no GC
    /// sawtooth): 100ms to 10m [default: 15s, times --time-scale]
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    pub(crate) gc_every: Option<Duration>,
    /// Do not force GCs: the heap channel is the heap after the target's own major GCs
    #[arg(long, conflicts_with = "gc_every")]
    pub(crate) no_forced_gc: bool,
    /// The command to soak, after `--`
    #[arg(last = true, required = true, value_name = "CMD")]
    pub(crate) command: Vec<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "Example: plimsoll report ~/.local/state/plimsoll --out report.html")]
pub(crate) struct ReportArgs {
    /// The data dir of the run (its store)
    pub(crate) data_dir: PathBuf,
    /// The HTML file to write
    #[arg(long, value_name = "FILE")]
    pub(crate) out: PathBuf,
    /// The target to report on; default: the one with the newest sample
    #[arg(long, value_name = "NAME")]
    pub(crate) target: Option<String>,
    /// Only the samples of the last DURATION (at most 24h); default: every raw sample the
    /// store keeps
    #[arg(long, value_name = "DURATION", value_parser = parse_window)]
    pub(crate) last: Option<Duration>,
    /// The detector's time scale the run used (`soak --time-scale`), for the verdict
    #[arg(long, value_name = "FACTOR", default_value_t = 1.0, value_parser = parse_time_scale)]
    pub(crate) time_scale: f64,
}

#[derive(Debug, Args)]
pub(crate) struct SnapshotArgs {
    /// The target's name (as in `run --name`, or the instance name under `up`)
    #[arg(value_parser = parse_name)]
    pub(crate) target: String,
    /// The data dir of the supervisor that runs it; default: $XDG_STATE_HOME/plimsoll or
    /// ~/.local/state/plimsoll
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Print the result as one JSON object
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum HeapCommand {
    /// Totals, the top constructors by retained size and count, the largest objects with a
    /// retainer path each
    Summary(HeapSummaryArgs),
    /// What grew between two snapshots; with three (baseline, target, final), the objects
    /// allocated between the first two that are still alive in the third: the leak suspects
    Diff(HeapDiffArgs),
}

#[derive(Debug, Args)]
pub(crate) struct HeapSummaryArgs {
    /// The .heapsnapshot file
    pub(crate) file: PathBuf,
    /// Print the summary as one JSON object
    #[arg(long)]
    pub(crate) json: bool,
    /// How many rows in each top list
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub(crate) top: usize,
}

#[derive(Debug, Args)]
pub(crate) struct HeapDiffArgs {
    /// Two or three .heapsnapshot files, oldest first
    #[arg(value_name = "SNAPSHOT", num_args = 2..=3, required = true)]
    pub(crate) files: Vec<PathBuf>,
    /// Print the diff as one JSON object
    #[arg(long)]
    pub(crate) json: bool,
    /// How many rows in each list
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub(crate) top: usize,
}

#[derive(Debug, Args)]
pub(crate) struct AnalyzeArgs {
    /// CSV file with a header line: t_s and rss_bytes are required; heap_used_after_gc_bytes
    /// and others are used when present. `-` reads standard input
    pub(crate) file: PathBuf,
    /// Print the verdict as one JSON object
    #[arg(long)]
    pub(crate) json: bool,
    /// Memory budget, for the projected time until it is reached (e.g. 512MiB, 2G)
    #[arg(long, value_name = "SIZE")]
    pub(crate) budget: Option<ByteSize>,
    /// Leave out the samples of the first DURATION of the series (start-up), e.g. 2m: they
    /// count neither for the verdict nor as budget breaches; at most 24h
    #[arg(long, value_name = "DURATION", value_parser = parse_window)]
    pub(crate) warmup: Option<Duration>,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Process id: the process and all its descendants are measured
    pub(crate) pid: u32,
    /// Print the breakdown as one JSON object
    #[arg(long)]
    pub(crate) json: bool,
}

/// What every supervising command (`run`, `watch`) shares: budget, levels, sampling, where
/// samples and events go.
#[derive(Debug, Args)]
pub(crate) struct MonitorArgs {
    /// Memory budget for the whole process tree (e.g. 512MiB, 2G); default: the cgroup limit
    #[arg(long, value_name = "SIZE")]
    pub(crate) budget: Option<ByteSize>,
    /// Warn above this share of the budget held for 2 minutes
    #[arg(long, value_name = "PERCENT", default_value = "75", value_parser = parse_percent)]
    pub(crate) warn: f64,
    /// Critical above this share of the budget held for 5 minutes
    #[arg(long, value_name = "PERCENT", default_value = "85", value_parser = parse_percent)]
    pub(crate) critical: f64,
    /// Time between two samples of the process tree: 100ms to 10m
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    pub(crate) interval: Duration,
    /// After each start, samples this long are recorded but count neither as breaches nor
    /// leaks; at most 24h
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_window)]
    pub(crate) warmup: Duration,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
}

/// Where a supervisor's samples and events go.
#[derive(Debug, Args)]
pub(crate) struct OutputArgs {
    /// Where samples, events and incidents are kept; default: $XDG_STATE_HOME/plimsoll or
    /// ~/.local/state/plimsoll
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Write every event as a JSON line to FILE, or to standard output with `-`
    #[arg(long, value_name = "FILE|-")]
    pub(crate) events: Option<String>,
    /// Run CMD (through sh -c) for every event, with the event as JSON on its stdin and in
    /// PLIMSOLL_* variables
    #[arg(long, value_name = "CMD")]
    pub(crate) on_event: Option<String>,
    /// POST every event as JSON to URL
    #[arg(long, value_name = "URL")]
    pub(crate) webhook: Option<String>,
    /// Serve HTTP (/health, /metrics, the API, the dashboard) on ADDR (IP:PORT, port 0 picks a
    /// free one); `off` serves none
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464", value_parser = parse_listen)]
    pub(crate) listen: Listen,
    /// Serve no HTTP (the same as --listen off)
    #[arg(long)]
    pub(crate) no_http: bool,
    /// Read the bearer token of the HTTP admin actions from FILE (else PLIMSOLL_ADMIN_TOKEN);
    /// without a token the admin actions are off
    #[arg(long, value_name = "FILE")]
    pub(crate) admin_token_file: Option<PathBuf>,
    /// Read the bearer token of the HTTP reads (/health, /metrics, /api/v1/*) from FILE (else
    /// PLIMSOLL_READ_TOKEN); the admin token opens them too. Without one, reads are open
    #[arg(long, value_name = "FILE")]
    pub(crate) read_token_file: Option<PathBuf>,
    /// Read the bearer token of POST /api/v1/ingest from FILE (else PLIMSOLL_INGEST_TOKEN); it
    /// grants nothing else. Without one, ingest is off
    #[arg(long, value_name = "FILE")]
    pub(crate) ingest_token_file: Option<PathBuf>,
    /// A web origin (e.g. https://app.example.com) whose pages may POST to /api/v1/ingest
    /// (CORS); repeat for more. Other origins are refused
    #[arg(long = "cors-origin", value_name = "ORIGIN", value_parser = parse_origin)]
    pub(crate) cors_origins: Vec<String>,
}

/// A web origin as browsers send it: `scheme://host[:port]`, no path, no trailing slash.
fn parse_origin(text: &str) -> Result<String, String> {
    let invalid = |why: &str| {
        Err(format!(
            "invalid origin '{}': {why} (expected e.g. https://app.example.com or \
             http://127.0.0.1:8080)",
            crate::bounded::excerpt(text)
        ))
    };
    let Some((scheme, rest)) = text.split_once("://") else {
        return invalid("no scheme");
    };
    if !matches!(scheme, "http" | "https") {
        return invalid("the scheme is not http or https");
    }
    if rest.is_empty() {
        return invalid("no host");
    }
    let host_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '[' | ']');
    if let Some(c) = rest.chars().find(|&c| !host_ok(c)) {
        return invalid(&format!(
            "'{}' is not allowed in an origin (no path, no trailing '/')",
            c.escape_default()
        ));
    }
    Ok(text.to_ascii_lowercase())
}

/// Where the HTTP server listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listen {
    /// No HTTP server.
    Off,
    /// This address.
    On(SocketAddr),
}

/// `off`, `IP:PORT`, `[IPv6]:PORT` or `localhost:PORT` (no name lookups here).
fn parse_listen(text: &str) -> Result<Listen, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(Listen::Off);
    }
    let local = text
        .strip_prefix("localhost:")
        .map(|port| format!("127.0.0.1:{port}"));
    local
        .as_deref()
        .unwrap_or(text)
        .parse::<SocketAddr>()
        .map(Listen::On)
        .map_err(|_| {
            format!(
                "invalid listen address '{text}' (expected e.g. 127.0.0.1:9464, [::1]:9464 or off)"
            )
        })
}

#[derive(Debug, Args)]
#[command(after_help = "Example: plimsoll run --budget 512MiB --events - -- node server.js")]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) monitor: MonitorArgs,
    /// Between SIGTERM and SIGKILL when stopping or restarting; at most 10m
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_grace)]
    pub(crate) grace: Duration,
    /// Name of the target in events and metrics (letters, digits, `-`, `_`, `.`; at most 64);
    /// default: the command's file name
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub(crate) name: Option<String>,
    /// Do not preload the Node.js agent into a Node command (no heap figures, snapshots or gc)
    #[arg(long)]
    pub(crate) no_agent: bool,
    /// Compress the leak detector's windows (and the leak investigation's snapshot spacing) by
    /// F, e.g. 0.05 for a 40-second demo; 1 keeps the documented defaults
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = parse_time_scale)]
    pub(crate) time_scale: f64,
    /// Give up after this many restarts within --restart-window
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub(crate) max_restarts: u32,
    /// The window restarts are counted over, in the target's run time (the backoff delays
    /// between runs do not count); at most 24h
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_window)]
    pub(crate) restart_window: Duration,
    /// The target's OOM score adjustment (-1000 to 1000); by default a negative one inherited
    /// from plimsoll (which may protect itself) is reset to 0
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-1000..=1000))]
    pub(crate) oom_score_adj: Option<i32>,
    /// The command to supervise, after `--`
    #[arg(last = true, required = true, value_name = "CMD")]
    pub(crate) command: Vec<String>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples: plimsoll watch 4242 4243 --budget 1G\n          plimsoll watch --match 'node .*server.js' --events -\n          plimsoll watch --cgroup system.slice/nginx.service\n          plimsoll watch --containers --listen 0.0.0.0:9464"
)]
pub(crate) struct WatchArgs {
    #[command(flatten)]
    pub(crate) monitor: MonitorArgs,
    /// Process ids to watch (each with its descendants)
    #[arg(value_name = "PID", required_unless_present_any = ["pattern", "cgroups", "containers"])]
    pub(crate) pids: Vec<u32>,
    /// Watch every process whose command line matches REGEX, and new ones as they appear
    #[arg(long = "match", value_name = "REGEX")]
    pub(crate) pattern: Option<String>,
    /// Watch the memory cgroup at PATH: relative to the hierarchy's root
    /// (system.slice/nginx.service) or absolute under a cgroup mount; one per flag, repeat it
    /// for more. Its working set is held against its limit (the budget unless --budget is given)
    #[arg(long = "cgroup", value_name = "PATH", action = clap::ArgAction::Append)]
    pub(crate) cgroups: Vec<PathBuf>,
    /// Watch the cgroup of every container (Kubernetes, Docker, containerd, Podman, CRI-O)
    /// and systemd service, and new ones as they appear
    #[arg(long)]
    pub(crate) containers: bool,
    /// Where the cgroup file system is (a host's /sys/fs/cgroup mounted elsewhere); default:
    /// as mounted here, from /proc/self/mountinfo
    #[arg(long, value_name = "DIR")]
    pub(crate) cgroup_root: Option<PathBuf>,
    /// Compress the leak detector's windows by F, e.g. 0.01 for a demo or a test; 1 keeps the
    /// documented defaults
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = parse_time_scale)]
    pub(crate) time_scale: f64,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Example: PLIMSOLL_INGEST_TOKEN=secret plimsoll serve --listen 127.0.0.1:9464 \\\n            --cors-origin https://app.example.com\n\
Pages load the monitor from /agent/plimsoll-browser.js (README, \"Browsers\")."
)]
pub(crate) struct ServeArgs {
    /// Memory budget of each remote instance (a page's memory), for its levels; default none
    #[arg(long, value_name = "SIZE")]
    pub(crate) budget: Option<ByteSize>,
    /// The most live instances one remote target may have (idle ones expire after 5 minutes);
    /// over it, a new instance gets 429
    #[arg(long, value_name = "N", default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) max_instances: u32,
    /// Compress the leak detector's windows by F, e.g. 0.05 for a demo or a test; 1 keeps the
    /// documented defaults
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = parse_time_scale)]
    pub(crate) time_scale: f64,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "See examples/plimsoll.toml for every key of the config file.")]
pub(crate) struct UpArgs {
    /// The config file
    #[arg(short, long, value_name = "FILE", default_value = "plimsoll.toml")]
    pub(crate) config: PathBuf,
    /// Check the config file and print what would run, then exit
    #[arg(long)]
    pub(crate) check: bool,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
}

/// A time scale: a number above 0 and at most 1.
pub(crate) fn parse_time_scale(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value > 0.0 && value <= 1.0 => Ok(value),
        _ => Err(format!(
            "invalid time scale '{text}' (expected a number above 0 and at most 1, e.g. 0.05)"
        )),
    }
}

/// A share of the budget: `75` or `75%`, above 0 and at most 100.
fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%');
    match number.parse::<f64>() {
        Ok(value) if value > 0.0 && value <= 100.0 => Ok(value / 100.0),
        _ => Err(format!(
            "invalid percentage '{text}' (expected e.g. 75 or 75%, above 0 and at most 100)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_parse_without_lookups() {
        let on = |text: &str| Listen::On(text.parse().expect("addr"));
        assert_eq!(parse_listen("off"), Ok(Listen::Off));
        assert_eq!(parse_listen("127.0.0.1:0"), Ok(on("127.0.0.1:0")));
        assert_eq!(parse_listen("localhost:9464"), Ok(on("127.0.0.1:9464")));
        assert_eq!(parse_listen("[::1]:80"), Ok(on("[::1]:80")));
        let error = parse_listen("example.com:80").expect_err("a name");
        assert!(error.contains("'example.com:80'"), "{error}");
        assert!(parse_listen("9464").is_err());
    }

    #[test]
    fn cgroup_takes_one_path_per_flag_so_a_number_after_it_is_a_pid() {
        let parsed = Cli::try_parse_from([
            "plimsoll", "watch", "--cgroup", "a/b", "--cgroup", "c", "123",
        ])
        .expect("parses");
        let Command::Watch(args) = parsed.command else {
            panic!("{parsed:?}");
        };
        assert_eq!(args.cgroups, [PathBuf::from("a/b"), PathBuf::from("c")]);
        assert_eq!(args.pids, [123]);
        // Two paths after one flag: the second is not a path, nor a pid.
        let error = Cli::try_parse_from(["plimsoll", "watch", "--cgroup", "a", "b"])
            .expect_err("b is no pid");
        assert!(error.to_string().contains("'b'"), "{error}");
    }

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        assert_eq!(
            parse_origin("http://127.0.0.1:8080"),
            Ok("http://127.0.0.1:8080".to_owned())
        );
        assert_eq!(
            parse_origin("https://App.example.com"),
            Ok("https://app.example.com".to_owned())
        );
        for bad in [
            "app.example.com",
            "ftp://x",
            "https://",
            "https://x/",
            "https://x/path",
        ] {
            let error = parse_origin(bad).expect_err(bad);
            assert!(error.contains(&format!("'{bad}'")), "{error}");
        }
    }
}

#[derive(Debug, Args)]
#[command(after_help = "Install, e.g.:\n  \
plimsoll completions bash > ~/.local/share/bash-completion/completions/plimsoll\n  \
plimsoll completions zsh > ~/.zfunc/_plimsoll   # with fpath+=(~/.zfunc) before compinit\n  \
plimsoll completions fish > ~/.config/fish/completions/plimsoll.fish")]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum, value_name = "SHELL")]
    pub(crate) shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
#[command(after_help = "Example: plimsoll man --out /usr/local/share/man/man1 && man plimsoll-run")]
pub(crate) struct ManArgs {
    /// Write plimsoll.1 and one page per command (plimsoll-run.1, plimsoll-heap-diff.1, …)
    /// into DIR, created if missing, instead of plimsoll.1 to standard output
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
}
