//! The keeper: a small process (this same binary, `plimsoll __keep -- CMD…`) between the
//! supervisor and the target. It leads the target's process group and asks the kernel for a
//! SIGTERM when the supervisor dies (PR_SET_PDEATHSIG), even by SIGKILL; it then takes the
//! whole group down (SIGTERM, grace, SIGKILL), so no part of the target outlives its
//! supervisor. It reports the target's pid and exit status through a small status file.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::{getpgrp, getppid, Pid};
use tokio::signal::unix::{signal, SignalKind};

/// The hidden subcommand that runs the keeper.
pub(crate) const SUBCOMMAND: &str = "__keep";
/// Environment: the supervisor's pid; the keeper exits if its parent is not that process.
pub(crate) const ENV_SUPERVISOR: &str = "PLIMSOLL_KEEPER_SUPERVISOR";
/// Environment: where the keeper writes the target's pid and exit status.
pub(crate) const ENV_STATUS: &str = "PLIMSOLL_KEEPER_STATUS";
/// Environment: milliseconds between SIGTERM and SIGKILL when the supervisor is gone.
pub(crate) const ENV_GRACE_MS: &str = "PLIMSOLL_KEEPER_GRACE_MS";

/// What the keeper reports about the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct KeeperStatus {
    /// The target's pid, once started.
    pub(crate) pid: Option<u32>,
    /// Its exit code, when it exited normally.
    pub(crate) code: Option<i32>,
    /// The signal that ended it, when one did.
    pub(crate) signal: Option<i32>,
}

impl KeeperStatus {
    /// Reads a status file; a missing or partial file gives what it has.
    pub(crate) fn read(path: &Path) -> KeeperStatus {
        let text = fs::read_to_string(path).unwrap_or_default();
        let mut status = KeeperStatus::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match (
                words.next(),
                words.next().and_then(|w| w.parse::<i64>().ok()),
            ) {
                (Some("pid"), Some(pid)) => status.pid = u32::try_from(pid).ok(),
                (Some("code"), Some(code)) => status.code = i32::try_from(code).ok(),
                (Some("signal"), Some(signal)) => status.signal = i32::try_from(signal).ok(),
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
            eprintln!("plimsoll keeper: {message}");
            ExitCode::from(127)
        }
    }
}

async fn keep(command: Vec<OsString>) -> Result<u8, String> {
    let supervisor: Option<i32> = std::env::var(ENV_SUPERVISOR)
        .ok()
        .and_then(|v| v.parse().ok());
    let status_path = std::env::var_os(ENV_STATUS).map(PathBuf::from);
    let grace = std::env::var(ENV_GRACE_MS)
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(5), Duration::from_millis);
    let (program, rest) = command.split_first().ok_or("no command to run")?;

    // Ask for SIGTERM when the supervisor dies; then check that it has not died already (the
    // request only covers a parent that is alive when it is made).
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(|e| format!("prctl: {e}"))?;
    if let Some(supervisor) = supervisor {
        if getppid() != Pid::from_raw(supervisor) {
            return Err("the supervisor is gone".to_owned());
        }
    }
    // Catch the signals before the target exists, so that none of them kills the keeper; the
    // target starts with default handlers (exec resets caught signals).
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;

    let mut child = tokio::process::Command::new(program)
        .args(rest)
        .spawn()
        .map_err(|e| format!("cannot run '{}': {e}", program.to_string_lossy()))?;
    if let (Some(path), Some(pid)) = (&status_path, child.id()) {
        write_status(path, &format!("pid {pid}\n"));
    }
    let mut orphaned_at: Option<tokio::time::Instant> = None;
    let status = loop {
        let deadline = orphaned_at.map(|t| t + grace);
        tokio::select! {
            status = child.wait() => break status.map_err(|e| e.to_string())?,
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
            _ = hangup.recv() => {}
            () = sleep_until(deadline) => {
                // The grace is over: SIGKILL takes the keeper down with the group.
                let _ = killpg(getpgrp(), Signal::SIGKILL);
            }
        }
        // A signal while the supervisor lives came from the supervisor, sent to the whole
        // group: the target has it too, and its exit will end the loop. With the supervisor
        // gone, the keeper stops the group itself.
        let parent_alive = supervisor.is_none_or(|s| getppid() == Pid::from_raw(s));
        if !parent_alive && orphaned_at.is_none() {
            orphaned_at = Some(tokio::time::Instant::now());
            let _ = killpg(getpgrp(), Signal::SIGTERM);
        }
    };
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
    if let Some(path) = &status_path {
        let pid = child.id().map(|p| format!("pid {p}\n")).unwrap_or_default();
        let previous = fs::read_to_string(path).unwrap_or(pid);
        write_status(path, &format!("{previous}{line}"));
    }
    Ok(code)
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Replaces the status file atomically (write, then rename), so a reader never sees half.
fn write_status(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp");
    if fs::write(&temporary, text).is_ok() {
        let _ = fs::rename(&temporary, path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_files_are_read_leniently() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("status");
        assert_eq!(KeeperStatus::read(&path), KeeperStatus::default());
        fs::write(&path, "pid 42\ncode 3\n").expect("write");
        assert_eq!(
            KeeperStatus::read(&path),
            KeeperStatus {
                pid: Some(42),
                code: Some(3),
                signal: None
            }
        );
        fs::write(&path, "pid 42\nsignal 9\ngarbage\npid x\n").expect("write");
        assert_eq!(
            KeeperStatus::read(&path),
            KeeperStatus {
                pid: Some(42),
                code: None,
                signal: Some(9)
            }
        );
    }
}
