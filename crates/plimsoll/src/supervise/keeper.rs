//! The keeper: a small process (this same binary, `plimsoll __keep -- CMD…`) between the
//! supervisor and the target. It leads the target's process group, puts the target in a cgroup
//! of its own where one can be made, is the child subreaper of the target's tree, and asks the
//! kernel for a SIGTERM when the supervisor dies (PR_SET_PDEATHSIG), even by SIGKILL; it then
//! takes everything contained down (SIGTERM, grace, SIGKILL), so no part of the target outlives
//! its supervisor (see `contain.rs`). When the target exits, the rest of its tree and cgroup is
//! killed with it. It reports the target's containment, cgroup and pid, and later its exit
//! status, as lines on a unix stream socket in the abstract namespace that the supervisor
//! listens on (no file: a full disk cannot stop a restart; see `handshake`).

use std::ffi::OsString;
use std::fs;
use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{getpgrp, getppid, Pid};
use tokio::signal::unix::{signal, SignalKind};

use super::contain::{self, Cgroup, Containment};

/// The hidden subcommand that runs the keeper.
pub(crate) const SUBCOMMAND: &str = "__keep";
/// Environment: the supervisor's pid; the keeper exits if its parent is not that process.
pub(crate) const ENV_SUPERVISOR: &str = "PLIMSOLL_KEEPER_SUPERVISOR";
/// Environment: the abstract unix socket name (without the leading NUL) the keeper reports the
/// target's pid and exit status to.
pub(crate) const ENV_STATUS: &str = "PLIMSOLL_KEEPER_STATUS";
/// Environment: milliseconds between SIGTERM and SIGKILL when the supervisor is gone.
pub(crate) const ENV_GRACE_MS: &str = "PLIMSOLL_KEEPER_GRACE_MS";
/// Environment: the target's OOM score adjustment; without it a negative one is reset to 0.
pub(crate) const ENV_OOM_SCORE_ADJ: &str = "PLIMSOLL_KEEPER_OOM_SCORE_ADJ";

/// Environment: the soft open-file limit to give the target back (plimsoll raised its own).
pub(crate) const ENV_NOFILE: &str = "PLIMSOLL_KEEPER_NOFILE";

/// What the keeper reports about the target.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct KeeperStatus {
    /// The target's pid, once started.
    pub(crate) pid: Option<u32>,
    /// How the target is contained, once started.
    pub(crate) containment: Option<Containment>,
    /// The target's own cgroup, when it has one.
    pub(crate) cgroup: Option<PathBuf>,
    /// Its exit code, when it exited normally.
    pub(crate) code: Option<i32>,
    /// The signal that ended it, when one did.
    pub(crate) signal: Option<i32>,
}

impl KeeperStatus {
    /// Parses the keeper's report lines; a partial or garbled report gives what it has.
    pub(crate) fn parse(text: &str) -> KeeperStatus {
        let mut status = KeeperStatus::default();
        for line in text.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            let number = value.trim().parse::<i64>().ok();
            match (key, number) {
                ("pid", Some(pid)) => status.pid = u32::try_from(pid).ok(),
                ("code", Some(code)) => status.code = i32::try_from(code).ok(),
                ("signal", Some(signal)) => status.signal = i32::try_from(signal).ok(),
                ("containment", _) => status.containment = Containment::parse(value),
                ("cgroup", _) if !value.is_empty() => status.cgroup = Some(PathBuf::from(value)),
                _ => {}
            }
        }
        status
    }
}

/// Runs the keeper: `args` are what follows `__keep` on the command line (`-- CMD ARGS…`).
pub(crate) fn main(args: Vec<OsString>) -> ExitCode {
    let command: Vec<OsString> = args.into_iter().skip_while(|a| a != "--").skip(1).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(keep(command)),
        Err(error) => Err(format!("cannot start: {error}")),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            crate::stdout::errln!("plimsoll keeper: {message}");
            ExitCode::from(127)
        }
    }
}

async fn keep(command: Vec<OsString>) -> Result<u8, String> {
    let supervisor: Option<i32> = std::env::var(ENV_SUPERVISOR)
        .ok()
        .and_then(|v| v.parse().ok());
    let grace = std::env::var(ENV_GRACE_MS)
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(5), Duration::from_millis);
    let only = std::env::var(contain::ENV_CONTAINMENT)
        .ok()
        .and_then(|v| Containment::parse(&v));
    let (program, rest) = command.split_first().ok_or("no command to run")?;

    // Ask for SIGTERM when the supervisor dies; then check that it has not died already (the
    // request only covers a parent that is alive when it is made).
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(|e| format!("prctl: {e}"))?;
    if let Some(supervisor) = supervisor {
        if getppid() != Pid::from_raw(supervisor) {
            return Err("the supervisor is gone".to_owned());
        }
    }
    // Orphans of the target's tree (a double fork, a `setsid` whose parent exited) re-parent
    // to the keeper instead of init, so they stay findable and are reaped here.
    let subreaper = nix::sys::prctl::set_child_subreaper(true).is_ok();
    // Connected before the target exists (std's sockets are close-on-exec: the target does not
    // inherit it).
    let mut report = Report::connect(std::env::var_os(ENV_STATUS))?;
    // Catch the signals before the target exists, so that none of them kills the keeper; the
    // target starts with default handlers (exec resets caught signals).
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let mut child_exited = signal(SignalKind::child()).map_err(|e| e.to_string())?;

    let me = std::process::id() as i32;
    let cgroup = match only {
        Some(Containment::SubreaperPgroup) => None,
        _ => Cgroup::create(&format!("{}{me}", contain::LEAF_PREFIX), only),
    };
    let containment = cgroup
        .as_ref()
        .map_or(Containment::SubreaperPgroup, |c| c.kind);
    let mut target = tokio::process::Command::new(program);
    target.args(rest);
    for key in [
        ENV_SUPERVISOR,
        ENV_STATUS,
        ENV_GRACE_MS,
        ENV_OOM_SCORE_ADJ,
        ENV_NOFILE,
        contain::ENV_CONTAINMENT,
    ] {
        target.env_remove(key);
    }
    // The target inherits the keeper's limits: the open-file one goes back to what plimsoll
    // was started with (the keeper needs few descriptors).
    if let Some(soft) = std::env::var(ENV_NOFILE).ok().and_then(|v| v.parse().ok()) {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
            if let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, u64::min(soft, hard), hard) {
                crate::stdout::errln!(
                    "plimsoll keeper: cannot restore the open-file limit {soft}: {error}"
                );
            }
        }
    }
    // The supervisor may protect itself from the OOM killer; its targets are not protected.
    let oom_score_adj = target_oom_score_adj(
        std::env::var(ENV_OOM_SCORE_ADJ)
            .ok()
            .and_then(|v| v.parse().ok()),
        fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|v| v.trim().parse().ok()),
    )
    .map(|adj| adj.to_string());
    let join = cgroup.as_ref().map(|c| c.procs.try_clone()).transpose();
    let join = join.map_err(|e| format!("cgroup: {e}"))?;
    // SAFETY: between fork and exec the closure only calls write(2) on a descriptor opened
    // before the fork: async-signal-safe, no allocation, no lock.
    #[allow(unsafe_code)]
    unsafe {
        target.pre_exec(move || {
            if let Some(procs) = &join {
                nix::unistd::write(std::os::fd::AsFd::as_fd(procs), b"0")?;
            }
            if let Some(value) = &oom_score_adj {
                set_oom_score_adj(value.as_bytes())?;
            }
            Ok(())
        });
    }
    let spawned = target.spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            if let Some(cgroup) = &cgroup {
                contain::destroy_cgroup(&cgroup.path, Duration::from_secs(1));
            }
            return Err(format!(
                "cannot run '{}': {error}",
                program.to_string_lossy()
            ));
        }
    };
    let target_pid = child.id().map_or(0, |p| p as i32);
    // The pid line comes last: it ends the start report.
    let mut reported = format!("containment {}\n", containment.as_str());
    if let Some(cgroup) = &cgroup {
        reported.push_str(&format!("cgroup {}\n", cgroup.path.display()));
    }
    reported.push_str(&format!("pid {target_pid}\n"));
    if !subreaper {
        crate::stdout::errln!(
            "plimsoll keeper: cannot become the child subreaper; orphans go to init"
        );
    }
    report.send(&reported);
    let cgroup_path = cgroup.as_ref().map(|c| c.path.clone());
    let everyone = |signal: Signal, outside_group: bool| {
        let group = getpgrp().as_raw();
        let mut pids: Vec<i32> = contain::tree_and_group(&contain::processes(), me, group)
            .into_iter()
            .filter(|p| !outside_group || p.pgid != group)
            .map(|p| p.pid)
            .collect();
        if let Some(path) = &cgroup_path {
            pids.extend(contain::cgroup_pids(path).iter().map(|p| p.as_raw()));
        }
        for pid in pids.into_iter().filter(|&p| p != me) {
            let Some(process) = contain::process(pid) else {
                continue;
            };
            if !outside_group || process.pgid != group {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
            }
        }
    };
    let mut stopping_at: Option<tokio::time::Instant> = None;
    // When to send (again) SIGKILL to everything contained: the end of the grace, then every
    // 100 ms until the target is gone (a process may fork while it is being killed).
    let mut deadline: Option<tokio::time::Instant> = None;
    let status = loop {
        let stop = tokio::select! {
            status = child.wait() => break status.map_err(|e| e.to_string())?,
            _ = terminate.recv() => true,
            _ = interrupt.recv() => true,
            _ = hangup.recv() => true,
            _ = child_exited.recv() => {
                reap_orphans(target_pid);
                false
            }
            () = sleep_until(deadline) => {
                // The grace is over: everything contained is killed; the target's exit ends
                // the loop.
                everyone(Signal::SIGKILL, false);
                deadline = Some(tokio::time::Instant::now() + Duration::from_millis(100));
                false
            }
        };
        if stop && stopping_at.is_none() {
            // While the supervisor lives, it sent the signal to the whole process group: the
            // rest of the target (a `setsid`, a detached child) gets it from the keeper. With
            // the supervisor gone, the keeper stops everything itself.
            stopping_at = Some(tokio::time::Instant::now());
            deadline = stopping_at.map(|t| t + grace);
            let parent_alive = supervisor.is_none_or(|s| getppid() == Pid::from_raw(s));
            everyone(Signal::SIGTERM, parent_alive);
        }
    };
    // The target is gone: so is whatever it left behind.
    kill_the_rest(&everyone, cgroup_path.as_deref());
    use std::os::unix::process::ExitStatusExt;
    let (line, code) = match (status.code(), status.signal()) {
        (Some(code), _) => (
            format!("code {code}\n"),
            u8::try_from(code & 0xff).unwrap_or(1),
        ),
        (None, Some(signal)) => (
            format!("signal {signal}\n"),
            128u8.saturating_add(signal as u8),
        ),
        (None, None) => ("code 1\n".to_owned(), 1),
    };
    report.send(&line);
    Ok(code)
}

/// The OOM score adjustment to give the target, if any: the configured one, else 0 when the
/// keeper inherited a negative one (the supervisor protects itself, not its targets). A
/// positive one is left alone: lowering it may need a privilege the supervisor lacks.
fn target_oom_score_adj(configured: Option<i32>, inherited: Option<i32>) -> Option<i32> {
    configured.or(inherited.filter(|&adj| adj < 0).map(|_| 0))
}

/// Writes `value` to `/proc/self/oom_score_adj`. Only async-signal-safe calls (open, write,
/// close): it runs between fork and exec.
#[allow(unsafe_code)]
fn set_oom_score_adj(value: &[u8]) -> std::io::Result<()> {
    use nix::libc;
    // SAFETY: a NUL-terminated path and a buffer that outlive the calls; the descriptor is
    // closed on every path.
    unsafe {
        let fd = libc::open(
            c"/proc/self/oom_score_adj".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let written = libc::write(fd, value.as_ptr().cast(), value.len());
        let error = std::io::Error::last_os_error();
        libc::close(fd);
        if written < 0 {
            return Err(error);
        }
    }
    Ok(())
}

/// Kills and reaps everything left of the target (its tree, the keeper's group and the
/// cgroup) until nothing is left or 5 s have passed, then removes the cgroup.
fn kill_the_rest(everyone: &dyn Fn(Signal, bool), cgroup: Option<&Path>) {
    let me = std::process::id() as i32;
    let group = getpgrp().as_raw();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        everyone(Signal::SIGKILL, false);
        reap_orphans(0);
        let left = contain::tree_and_group(&contain::processes(), me, group).len()
            + cgroup.map_or(0, |c| contain::cgroup_pids(c).len());
        if left == 0 || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Some(cgroup) = cgroup {
        contain::destroy_cgroup(cgroup, Duration::from_secs(1));
    }
}

/// Reaps the keeper's exited children other than `target` (orphans it adopted as subreaper);
/// the target's status is left for its own wait. `target` 0 reaps every one.
fn reap_orphans(target: i32) {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    let me = std::process::id() as i32;
    for process in contain::processes() {
        if process.ppid == me && process.state == 'Z' && process.pid != target {
            let _ = waitpid(Pid::from_raw(process.pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The keeper's end of the handshake: a stream connected to the supervisor's abstract socket
/// (none when the keeper was started without one, as for `soak`'s load command).
struct Report(Option<UnixStream>);

impl Report {
    fn connect(name: Option<OsString>) -> Result<Report, String> {
        let Some(name) = name else {
            return Ok(Report(None));
        };
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::ffi::OsStrExt;
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .map_err(|e| format!("bad report socket name: {e}"))?;
        let stream = UnixStream::connect_addr(&address)
            .map_err(|e| format!("cannot reach the supervisor: {e}"))?;
        Ok(Report(Some(stream)))
    }

    /// Sends `text`; a supervisor that is gone is no error (the keeper then stops the target).
    fn send(&mut self, text: &str) {
        if let Some(stream) = &mut self.0 {
            let _ = stream.write_all(text.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_negative_oom_score_adj_is_reset_and_a_configured_one_wins() {
        assert_eq!(target_oom_score_adj(None, Some(-500)), Some(0));
        assert_eq!(target_oom_score_adj(None, Some(0)), None);
        assert_eq!(target_oom_score_adj(None, Some(300)), None);
        assert_eq!(target_oom_score_adj(None, None), None);
        assert_eq!(target_oom_score_adj(Some(-100), Some(-500)), Some(-100));
        assert_eq!(target_oom_score_adj(Some(200), Some(500)), Some(200));
    }

    #[test]
    fn reports_are_parsed_leniently() {
        assert_eq!(KeeperStatus::parse(""), KeeperStatus::default());
        assert_eq!(
            KeeperStatus::parse("pid 42\ncode 3\n"),
            KeeperStatus {
                pid: Some(42),
                code: Some(3),
                ..KeeperStatus::default()
            }
        );
        assert_eq!(
            KeeperStatus::parse(
                "containment cgroup-v1\ncgroup /sys/fs/cgroup/a b\npid 42\nsignal 9\ngarbage\npid x\n"
            ),
            KeeperStatus {
                pid: Some(42),
                containment: Some(Containment::CgroupV1),
                cgroup: Some(PathBuf::from("/sys/fs/cgroup/a b")),
                code: None,
                signal: Some(9)
            }
        );
    }
}
