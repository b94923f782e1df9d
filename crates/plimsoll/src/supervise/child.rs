//! One run of the target: started through the keeper in its own process group (and cgroup,
//! where one can be made), stopped gracefully (SIGTERM, the grace, then SIGKILL: the keeper
//! does it for everything it contains; the supervisor kills what is left should the keeper
//! itself die), always reaped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::Command;
use tokio::time::{sleep, timeout};

use super::contain::{self, Containment};
use super::keeper::{self, KeeperStatus};
use super::Settings;

/// How long past the grace the supervisor waits for the keeper to have killed everything
/// before it kills the keeper's group and the target's cgroup itself.
pub(crate) const KEEPER_MARGIN: Duration = Duration::from_secs(2);

/// The supervisor's variables with this prefix are not passed to targets.
const SCRUBBED_PREFIX: &str = "PLIMSOLL_";

/// How long the keeper may take to report the target's pid.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The most the keeper's report may hold: a few short lines.
const REPORT_LIMIT: u64 = 16 * 1024;

/// How a run of the target ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChildExit {
    /// The exit code, when it exited.
    pub(crate) code: Option<i32>,
    /// The signal that ended it, when one did.
    pub(crate) signal: Option<i32>,
}

impl ChildExit {
    /// The exit status a shell would report: the code, or 128 + the signal.
    pub(crate) fn shell_status(self) -> u8 {
        match (self.code, self.signal) {
            (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
            (None, Some(signal)) => 128u8.saturating_add(u8::try_from(signal).unwrap_or(0)),
            (None, None) => 1,
        }
    }
}

/// A running target.
#[derive(Debug)]
pub(crate) struct Child {
    keeper: tokio::process::Child,
    /// The process group (the keeper's pid).
    group: Pid,
    /// The target's own pid: the root of the tree that is sampled.
    pub(crate) pid: u32,
    /// How the target is contained.
    pub(crate) containment: Containment,
    /// The target's own cgroup, when it has one.
    cgroup: Option<PathBuf>,
    /// The keeper's end of the handshake, which brings the target's exit status.
    report: BufReader<UnixStream>,
}

/// `plimsoll __keep -- COMMAND…` in a new process group, with `grace` between SIGTERM and
/// SIGKILL should this process die, and without any PLIMSOLL_* variable of this process (no
/// Plimsoll secret — admin, read or ingest token — reaches a target; the variables set on
/// purpose are added by the caller).
pub(crate) fn keeper_command(
    command: &[impl AsRef<std::ffi::OsStr>],
    grace: Duration,
) -> Result<Command> {
    let me =
        std::env::current_exe().context("cannot find the plimsoll binary to start the keeper")?;
    let mut keeper = Command::new(me);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with(SCRUBBED_PREFIX) {
            keeper.env_remove(key);
        }
    }
    if let Ok(only) = std::env::var(contain::ENV_CONTAINMENT) {
        if Containment::parse(&only).is_none() {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    "{}={} is not one of cgroup-v2, cgroup-v1, subreaper+pgroup: ignored, \
                     containment is chosen automatically",
                    contain::ENV_CONTAINMENT,
                    crate::bounded::excerpt(&only)
                );
            });
        }
        keeper.env(contain::ENV_CONTAINMENT, only);
    }
    keeper
        .arg(keeper::SUBCOMMAND)
        .arg("--")
        .args(command)
        .env(keeper::ENV_SUPERVISOR, std::process::id().to_string())
        .env(keeper::ENV_GRACE_MS, grace.as_millis().to_string())
        .process_group(0);
    // The target gets the open-file limit plimsoll was started with, not the raised one.
    if let Some(soft) = crate::fds::original_limit() {
        keeper.env(keeper::ENV_NOFILE, soft.to_string());
    }
    Ok(keeper)
}

impl Child {
    /// Starts `command` under a keeper, with `env` added to the environment, and waits until the
    /// keeper reports the target's pid.
    ///
    /// The handshake needs no disk: the keeper connects to a unix socket in the abstract
    /// namespace (a name, no file) that this process listens on for this start only, and
    /// only a connection from the keeper's own pid (`SO_PEERCRED`) is believed.
    pub(crate) async fn spawn(
        settings: &Settings,
        extra_env: &[(String, String)],
    ) -> Result<Child> {
        let command = &settings.command;
        let (listener, name) = handshake_listener()?;
        let mut keeper = keeper_command(command, settings.grace)?;
        if let Some(adj) = settings.oom_score_adj {
            keeper.env(keeper::ENV_OOM_SCORE_ADJ, adj.to_string());
        }
        let mut keeper = keeper
            .envs(settings.env.iter().chain(extra_env).map(|(k, v)| (k, v)))
            .env(keeper::ENV_STATUS, &name)
            .current_dir(settings.cwd.as_deref().unwrap_or(Path::new(".")))
            .kill_on_drop(false)
            .spawn()
            .with_context(|| format!("cannot start '{}'", command.join(" ")))?;
        let group = Pid::from_raw(keeper.id().context("keeper exited at once")? as i32);
        let handshake = handshake(listener, group.as_raw());
        tokio::pin!(handshake);
        let reported = tokio::select! {
            reported = &mut handshake => Some(reported),
            _ = keeper.wait() => None,
            () = sleep(START_TIMEOUT) => {
                let _ = killpg(group, Signal::SIGKILL);
                let _ = keeper.wait().await;
                bail!("'{}' did not start within 10 s", command.join(" "));
            }
        };
        // A keeper that is gone may still have reported first (a target that exits at once):
        // what it sent is waiting in the socket.
        let reported = match reported {
            Some(reported) => reported,
            None => timeout(Duration::from_secs(1), handshake)
                .await
                .unwrap_or_else(|_| Err(anyhow!("no report"))),
        };
        match reported {
            Ok((
                report,
                KeeperStatus {
                    pid: Some(pid),
                    containment,
                    cgroup,
                    ..
                },
            )) => Ok(Child {
                keeper,
                group,
                pid,
                containment: containment.unwrap_or(Containment::SubreaperPgroup),
                cgroup,
                report,
            }),
            Ok(_) | Err(_) => {
                let _ = killpg(group, Signal::SIGKILL);
                let status = keeper.wait().await.context("keeper")?;
                let why = reported
                    .err()
                    .map(|e| format!(": {e:#}"))
                    .unwrap_or_default();
                bail!(
                    "cannot start '{}' (exit status {status}{why})",
                    command.join(" ")
                );
            }
        }
    }

    /// Waits for the target to exit; reaps the keeper and whatever is left of the group.
    pub(crate) async fn wait(&mut self) -> ChildExit {
        let keeper_status = self.keeper.wait().await;
        // Whatever the target left behind in its group and cgroup goes with it (the keeper
        // did that already, unless it was killed itself).
        let _ = killpg(self.group, Signal::SIGKILL);
        if let Some(cgroup) = self.cgroup.take() {
            if cgroup.exists() {
                let _ = tokio::task::spawn_blocking(move || {
                    contain::destroy_cgroup(&cgroup, Duration::from_secs(5));
                })
                .await;
            }
        }
        // The keeper has exited: its end is closed and the rest of its report is here.
        let mut rest = String::new();
        let _ = timeout(
            Duration::from_secs(1),
            (&mut self.report)
                .take(REPORT_LIMIT)
                .read_to_string(&mut rest),
        )
        .await;
        let reported = KeeperStatus::parse(&rest);
        if reported.code.is_some() || reported.signal.is_some() {
            return ChildExit {
                code: reported.code,
                signal: reported.signal,
            };
        }
        use std::os::unix::process::ExitStatusExt;
        match keeper_status {
            Ok(status) => ChildExit {
                code: status.code(),
                signal: status.signal(),
            },
            Err(_) => ChildExit {
                code: None,
                signal: None,
            },
        }
    }

    /// Sends `signal` to the whole process group.
    pub(crate) fn signal(&self, signal: Signal) {
        let _ = killpg(self.group, signal);
    }

    /// Stops the target gracefully: SIGTERM to the group (the keeper passes it on to the rest
    /// of what it contains), up to `grace` to exit, then SIGKILL: from the keeper, or, should
    /// it not be done a little later, to the keeper's group and the cgroup from here.
    pub(crate) async fn stop(&mut self, grace: Duration) -> ChildExit {
        self.signal(Signal::SIGTERM);
        match timeout(grace.saturating_add(KEEPER_MARGIN), self.keeper.wait()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(
                    pid = self.pid,
                    grace_ms = grace.as_millis() as u64,
                    "the keeper did not stop the target after the grace; sending SIGKILL"
                );
                self.signal(Signal::SIGKILL);
            }
        }
        let exit = self.wait().await;
        if exit.signal == Some(Signal::SIGKILL as i32) {
            tracing::warn!(
                pid = self.pid,
                grace_ms = grace.as_millis() as u64,
                "target ignored SIGTERM; killed after the grace"
            );
        }
        exit
    }
}

/// Listens on a fresh abstract unix socket for one keeper's report; returns it with its name.
fn handshake_listener() -> Result<(UnixListener, String)> {
    use std::os::linux::net::SocketAddrExt;
    static STARTS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(
        "plimsoll-keeper-{}-{}-{nanos:08x}",
        std::process::id(),
        STARTS.fetch_add(1, Ordering::Relaxed)
    );
    let listen = || -> std::io::Result<UnixListener> {
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        let listener = std::os::unix::net::UnixListener::bind_addr(&address)?;
        listener.set_nonblocking(true)?;
        UnixListener::from_std(listener)
    };
    let listener = listen().with_context(|| format!("cannot listen on @{name} for the keeper"))?;
    Ok((listener, name))
}

/// Accepts the keeper's connection (only from `keeper`'s pid) and reads its start report, up
/// to the pid line that ends it.
async fn handshake(
    listener: UnixListener,
    keeper: i32,
) -> Result<(BufReader<UnixStream>, KeeperStatus)> {
    let stream = loop {
        let (stream, _) = listener.accept().await.context("accept")?;
        let peer = stream.peer_cred().ok().and_then(|c| c.pid());
        if peer == Some(keeper) {
            break stream;
        }
        tracing::warn!(?peer, keeper, "ignored a connection to the keeper's socket");
    };
    let mut report = BufReader::new(stream);
    let mut text = String::new();
    loop {
        let mut line = String::new();
        let read = (&mut report)
            .take(REPORT_LIMIT)
            .read_line(&mut line)
            .await
            .context("read")?;
        text.push_str(&line);
        if read == 0 || line.starts_with("pid ") || text.len() as u64 > REPORT_LIMIT {
            return Ok((report, KeeperStatus::parse(&text)));
        }
    }
}
