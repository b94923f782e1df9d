//! The second stage of configuration for the supervising commands: what `MonitorArgs` says,
//! checked and resolved (data dir, levels, sinks) into the settings they run with.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use plimsoll_analysis::LevelConfig;

use crate::cli::{Listen, MonitorArgs, OutputArgs};
use crate::sinks::{EventsTarget, SinkConfig};

/// Resolved common settings.
#[derive(Debug, Clone)]
pub(crate) struct Common {
    /// The budget; `None` means the cgroup limit, read from the first sample.
    pub(crate) budget: Option<u64>,
    /// Marks and holds of the levels.
    pub(crate) levels: LevelConfig,
    /// Time between samples.
    pub(crate) interval: Duration,
    /// Samples that count neither as breaches nor leaks after a start.
    pub(crate) warmup: Duration,
    /// Where the store lives.
    pub(crate) data_dir: PathBuf,
}

impl Common {
    /// Checks what clap cannot check alone and resolves the data dir.
    pub(crate) fn resolve(args: &MonitorArgs) -> Result<Common> {
        if args.warn >= args.critical {
            bail!(
                "--warn {:.0}% must be below --critical {:.0}%",
                args.warn * 100.0,
                args.critical * 100.0
            );
        }
        if args.interval < Duration::from_millis(100) {
            bail!(
                "--interval {:?} is too short (at least 100ms)",
                args.interval
            );
        }
        if args.budget.is_some_and(|b| b.0 == 0) {
            bail!("--budget 0 is no budget (leave it out to use the cgroup limit)");
        }
        let data_dir = data_dir(&args.output)?;
        Ok(Common {
            budget: args.budget.map(|b| b.0),
            levels: LevelConfig {
                warn: args.warn,
                critical: args.critical,
                ..LevelConfig::recommended()
            },
            interval: args.interval,
            warmup: args.warmup,
            data_dir,
        })
    }
}

/// The sinks `--events`, `--on-event` and `--webhook` ask for.
pub(crate) fn sink_config(args: &MonitorArgs) -> SinkConfig {
    output_sinks(&args.output)
}

/// The sinks of the output flags (`--events -` is standard output).
pub(crate) fn output_sinks(args: &OutputArgs) -> SinkConfig {
    SinkConfig {
        events: args.events.as_deref().map(|target| match target {
            "-" => EventsTarget::Stdout,
            path => EventsTarget::File(PathBuf::from(path)),
        }),
        on_event: args.on_event.clone(),
        webhook: args.webhook.clone(),
        hook_timeout: Duration::from_secs(10),
    }
}

/// The HTTP server's settings, resolved from the output flags and the environment.
#[derive(Debug, Clone)]
pub(crate) struct HttpSettings {
    /// Where to listen; `None` serves no HTTP.
    pub(crate) listen: Option<SocketAddr>,
    /// The bearer token of the admin actions; `None` turns them off.
    pub(crate) admin_token: Option<String>,
    /// The bearer token of the reads; `None` leaves them open.
    pub(crate) read_token: Option<String>,
    /// The bearer token of `POST /api/v1/ingest`; `None` turns ingest off.
    pub(crate) ingest_token: Option<String>,
    /// The web origins whose pages may post to ingest (CORS).
    pub(crate) cors_origins: Vec<String>,
    /// How remote targets are judged and bounded (`serve` sets its flags here).
    pub(crate) remote: crate::ingest::RemoteConfig,
}

/// The environment variable that holds the admin token when no file is given.
pub(crate) const ADMIN_TOKEN_ENV: &str = "PLIMSOLL_ADMIN_TOKEN";

/// The environment variable that holds the read token when no file is given.
pub(crate) const READ_TOKEN_ENV: &str = "PLIMSOLL_READ_TOKEN";

/// The environment variable that holds the ingest token when no file is given.
pub(crate) const INGEST_TOKEN_ENV: &str = "PLIMSOLL_INGEST_TOKEN";

/// The longest token file read: a token is a line, not a document.
const MAX_TOKEN_FILE: u64 = 4096;

/// `--listen`, `--no-http`, the admin token (`--admin-token-file`, else
/// `PLIMSOLL_ADMIN_TOKEN`), the read token (`--read-token-file`, else
/// `PLIMSOLL_READ_TOKEN`), the ingest token (`--ingest-token-file`, else
/// `PLIMSOLL_INGEST_TOKEN`) and the CORS origins of ingest.
pub(crate) fn http_settings(args: &OutputArgs) -> Result<HttpSettings> {
    let listen = match (args.no_http, args.listen) {
        (true, _) | (false, Listen::Off) => None,
        (false, Listen::On(addr)) => Some(addr),
    };
    let admin_token = token(
        args.admin_token_file.as_deref(),
        "--admin-token-file",
        ADMIN_TOKEN_ENV,
    )?;
    let read_token = token(
        args.read_token_file.as_deref(),
        "--read-token-file",
        READ_TOKEN_ENV,
    )?;
    let ingest_token = token(
        args.ingest_token_file.as_deref(),
        "--ingest-token-file",
        INGEST_TOKEN_ENV,
    )?;
    Ok(HttpSettings {
        listen,
        admin_token,
        read_token,
        ingest_token,
        cors_origins: args.cors_origins.clone(),
        remote: crate::ingest::RemoteConfig::recommended(),
    })
}

/// A token from `file` (given as `flag`), else from the variable `env`; surrounding blanks
/// trimmed, a blank one is none (an empty file is an error).
fn token(file: Option<&Path>, flag: &str, env: &str) -> Result<Option<String>> {
    let Some(path) = file else {
        return Ok(std::env::var(env)
            .ok()
            .map(|token| token.trim().to_owned())
            .filter(|token| !token.is_empty()));
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| std::io::Read::take(file, MAX_TOKEN_FILE + 1).read_to_string(&mut text))
        .with_context(|| format!("cannot read {flag} '{}'", path.display()))?;
    if text.len() as u64 > MAX_TOKEN_FILE {
        bail!(
            "{flag} '{}' is longer than {MAX_TOKEN_FILE} bytes (expected one token)",
            path.display()
        );
    }
    let token = text.trim();
    if token.is_empty() {
        bail!("{flag} '{}' is empty", path.display());
    }
    Ok(Some(token.to_owned()))
}

/// `--data-dir`, else the default.
pub(crate) fn data_dir(args: &OutputArgs) -> Result<PathBuf> {
    data_dir_or_default(args.data_dir.as_deref())
}

/// `dir`, else the default data dir.
/// Always absolute: targets may run in another working directory and still find it.
pub(crate) fn data_dir_or_default(dir: Option<&Path>) -> Result<PathBuf> {
    let dir = match dir {
        Some(dir) => dir.to_path_buf(),
        None => default_data_dir()?,
    };
    if dir.is_absolute() {
        return Ok(dir);
    }
    let here = std::env::current_dir().context("cannot tell the current directory")?;
    Ok(here.join(dir))
}

/// `$XDG_STATE_HOME/plimsoll`, else `~/.local/state/plimsoll`.
fn default_data_dir() -> Result<PathBuf> {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        return Ok(PathBuf::from(state).join("plimsoll"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither XDG_STATE_HOME nor HOME is set: give --data-dir")?;
    Ok(PathBuf::from(home).join(".local/state/plimsoll"))
}

/// Creates `dir` and its parents; the last one readable by its owner only.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data dir '{}'", dir.display()))
}
