//! The on-event command (`--on-event CMD`): `sh -c CMD` per event, the event JSON on its stdin
//! and in `PLIMSOLL_*` environment variables, in its own process group, killed as a group when
//! it runs past its timeout, always reaped; its output's tail is kept for the error message.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::bail;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::{Deliver, Rendered, Shutdown};

/// How much of a hook's stdout and of its stderr is kept (the end of each).
const OUTPUT_TAIL: usize = 4096;
/// How long to wait, after killing a hook's group, for it to die and its pipes to close.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// Longest pause between two looks at whether the hook has exited.
const MAX_POLL: Duration = Duration::from_millis(50);

/// The configured on-event command.
#[derive(Debug)]
pub(super) struct Hook {
    command: String,
    timeout: Duration,
}

impl Hook {
    /// Checks the command and the timeout.
    pub(super) fn new(command: &str, timeout: Duration) -> anyhow::Result<Hook> {
        if command.trim().is_empty() {
            bail!("invalid --on-event command '{command}': it is empty");
        }
        if timeout.is_zero() {
            bail!("invalid on-event hook timeout {timeout:?}: it must be more than 0");
        }
        Ok(Hook {
            command: command.to_owned(),
            timeout,
        })
    }

    fn start(&self, event: &Rendered) -> std::io::Result<Child> {
        Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .env("PLIMSOLL_EVENT", event.kind)
            .env("PLIMSOLL_TARGET", &event.target)
            .env("PLIMSOLL_T_UNIX_MS", event.t_unix_ms.to_string())
            .env("PLIMSOLL_EVENT_JSON", &event.json)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
    }
}

impl Deliver for Hook {
    fn deliver(&mut self, event: &Rendered, shutdown: &Shutdown) -> Result<(), String> {
        let started = Instant::now();
        let timeout_at = started + self.timeout;
        let mut child = self
            .start(event)
            .map_err(|error| format!("cannot start the on-event hook: {error}"))?;
        // The child leads its own group, whose id is its pid. Never signal group 0 or 1: that
        // would be our own group or everything.
        let group = match i32::try_from(child.id()) {
            Ok(pid) if pid > 1 => Pid::from_raw(pid),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("on-event hook got an odd pid {}", child.id()));
            }
        };

        let (output_tx, outputs) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            spawn_reader(Stream::Stdout, stdout, output_tx.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            spawn_reader(Stream::Stderr, stderr, output_tx);
        }
        if let Some(mut stdin) = child.stdin.take() {
            let input = format!("{}\n", event.json);
            // A hook that does not read its stdin must not hold us up: write on a thread (an
            // error, such as a hook that exited without reading, is of no interest).
            let spawned = std::thread::Builder::new()
                .name("hook-stdin".to_owned())
                .spawn(move || {
                    let _ = stdin.write_all(input.as_bytes());
                });
            // Without the thread, stdin is closed: the hook sees no input, which it reports.
            drop(spawned);
        }

        let mut output = Output::default();
        let outcome = match wait_until(&mut child, || shutdown.cap(timeout_at)) {
            Ok(Some(status)) => {
                // Exited; background processes it left may still hold its pipes until the end
                // of its time.
                if !output.collect(&outputs, || shutdown.cap(timeout_at)) {
                    kill_group(group);
                    let grace_end = Instant::now() + KILL_GRACE;
                    output.collect(&outputs, || grace_end);
                }
                Outcome::Exited(status)
            }
            Ok(None) => {
                kill_group(group);
                reap_after_kill(child);
                let grace_end = Instant::now() + KILL_GRACE;
                output.collect(&outputs, || grace_end);
                if shutdown.cap(timeout_at) < timeout_at {
                    Outcome::KilledAtShutdown
                } else {
                    Outcome::TimedOut
                }
            }
            Err(error) => {
                kill_group(group);
                reap_after_kill(child);
                Outcome::WaitFailed(error)
            }
        };

        let message = match outcome {
            Outcome::Exited(status) if status.success() => return Ok(()),
            Outcome::Exited(status) => format!("on-event hook failed ({status})"),
            Outcome::TimedOut => format!(
                "on-event hook timed out after {:?} and was killed",
                self.timeout
            ),
            Outcome::KilledAtShutdown => "on-event hook was killed at shutdown".to_owned(),
            Outcome::WaitFailed(error) => format!("cannot wait for the on-event hook: {error}"),
        };
        Err(format!("{message}{}", output.describe()))
    }
}

/// How a hook run ended.
#[derive(Debug)]
enum Outcome {
    Exited(ExitStatus),
    TimedOut,
    KilledAtShutdown,
    WaitFailed(std::io::Error),
}

/// Waits for the child to exit until `end()` (re-read each time: a shutdown can move it
/// earlier); `None` when it did not exit by then.
fn wait_until(child: &mut Child, end: impl Fn() -> Instant) -> std::io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        let end = end();
        if now >= end {
            return Ok(None);
        }
        std::thread::sleep(pause.min(end - now));
        pause = (pause * 2).min(MAX_POLL);
    }
}

fn kill_group(group: Pid) {
    // ESRCH (the group is already gone) is the only expected error, and not one.
    let _ = killpg(group, Signal::SIGKILL);
}

/// Reaps a child that was just sent SIGKILL; one that does not die at once (stuck in the
/// kernel) is handed to a thread that waits for it, so it is reaped in the end all the same.
fn reap_after_kill(mut child: Child) {
    let grace_end = Instant::now() + KILL_GRACE;
    if let Ok(Some(_)) | Err(_) = wait_until(&mut child, || grace_end) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("hook-reaper".to_owned())
        .spawn(move || {
            let _ = child.wait();
        });
    drop(spawned);
}

#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

fn spawn_reader(stream: Stream, reader: impl Read + Send + 'static, done: Sender<(Stream, Tail)>) {
    let spawned = std::thread::Builder::new()
        .name("hook-output".to_owned())
        .spawn(move || {
            let _ = done.send((stream, read_tail(reader, OUTPUT_TAIL)));
        });
    // Without the thread the pipe is closed: the hook gets EPIPE on output, which it reports.
    drop(spawned);
}

/// The end of a stream.
#[derive(Debug, Default)]
struct Tail {
    bytes: Vec<u8>,
    /// Whether earlier bytes were left out.
    cut: bool,
}

/// Reads to the end, keeping the last `limit` bytes.
fn read_tail(mut reader: impl Read, limit: usize) -> Tail {
    let mut tail = Tail::default();
    let mut chunk = [0u8; 4096];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                tail.bytes.extend_from_slice(&chunk[..n]);
                if tail.bytes.len() > 2 * limit {
                    let excess = tail.bytes.len() - limit;
                    tail.bytes.drain(..excess);
                    tail.cut = true;
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if tail.bytes.len() > limit {
        let excess = tail.bytes.len() - limit;
        tail.bytes.drain(..excess);
        tail.cut = true;
    }
    tail
}

/// What the hook printed.
#[derive(Debug, Default)]
struct Output {
    stdout: Option<Tail>,
    stderr: Option<Tail>,
}

impl Output {
    /// Gathers the streams that end by `end()`; true when all have.
    fn collect(&mut self, outputs: &Receiver<(Stream, Tail)>, end: impl Fn() -> Instant) -> bool {
        loop {
            let wait = end().saturating_duration_since(Instant::now());
            match outputs.recv_timeout(wait) {
                Ok((Stream::Stdout, tail)) => self.stdout = Some(tail),
                Ok((Stream::Stderr, tail)) => self.stderr = Some(tail),
                // Every reader has sent its tail (or was never started).
                Err(RecvTimeoutError::Disconnected) => return true,
                Err(RecvTimeoutError::Timeout) => return false,
            }
        }
    }

    /// `; stderr: '…'; stdout: '…'` for the streams that said something.
    fn describe(&self) -> String {
        let mut text = String::new();
        for (name, tail) in [("stderr", &self.stderr), ("stdout", &self.stdout)] {
            let Some(tail) = tail else { continue };
            let said = String::from_utf8_lossy(&tail.bytes);
            let said = said.trim();
            if said.is_empty() {
                continue;
            }
            let cut = if tail.cut { "…" } else { "" };
            text.push_str(&format!("; {name}: '{cut}{said}'"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::event::Event;
    use crate::sinks::tests::{event, eventually};
    use crate::sinks::{SinkConfig, Sinks, HOOK_QUEUE};

    fn sinks_with_hook(command: String, timeout: Duration) -> Sinks {
        Sinks::new(&SinkConfig {
            events: None,
            on_event: Some(command),
            webhook: None,
            hook_timeout: timeout,
        })
        .expect("sinks")
    }

    fn run_once(command: &str) -> Result<(), String> {
        let mut hook = Hook::new(command, Duration::from_secs(10)).expect("hook");
        hook.deliver(&Rendered::new(&event(1)), &Shutdown::default())
    }

    /// Whether the process is gone (or a zombie waiting for a reaper that is not ours).
    fn is_gone(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    fn read_when_present(path: &Path) -> String {
        let mut text = String::new();
        eventually(&format!("{}", path.display()), || {
            text = std::fs::read_to_string(path).unwrap_or_default();
            !text.is_empty()
        });
        text
    }

    #[test]
    fn hook_gets_the_event_on_stdin_and_in_its_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display();
        let command = format!(
            "cat > '{d}/stdin.tmp' && \
             printf '%s\\n' \"$PLIMSOLL_EVENT\" \"$PLIMSOLL_TARGET\" \"$PLIMSOLL_T_UNIX_MS\" \
               \"$PLIMSOLL_EVENT_JSON\" > '{d}/env.tmp' && \
             mv '{d}/stdin.tmp' '{d}/stdin' && mv '{d}/env.tmp' '{d}/env'"
        );
        let sinks = sinks_with_hook(command, Duration::from_secs(10));
        let sent: Event = event(3);
        sinks.emit(&sent);

        let stdin = read_when_present(&dir.path().join("stdin"));
        let env = read_when_present(&dir.path().join("env"));
        let json = sent.to_json();
        assert_eq!(stdin, format!("{json}\n"));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&stdin).expect("json"),
            json
        );
        assert_eq!(env, format!("restarted\napi\n1700000000003\n{json}\n"));

        let stats = sinks.close(Instant::now() + Duration::from_secs(10));
        assert_eq!((stats[0].delivered, stats[0].failed), (1, 0));
    }

    #[test]
    fn a_hung_hook_is_killed_with_its_group_and_emit_stays_fast() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display();
        // The background sleep holds the hook's stdout: only a group kill ends it.
        let command =
            format!("sleep 1000 & echo $! > '{d}/bg.tmp' && mv '{d}/bg.tmp' '{d}/bg'; wait");
        let sinks = sinks_with_hook(command, Duration::from_millis(300));
        sinks.emit(&event(0));
        let background = read_when_present(&dir.path().join("bg"));
        let background = background.trim();

        // The worker is busy with the hung hook: these queue up to the limit, then are dropped.
        for n in 1..=100 {
            sinks.emit(&event(n));
        }
        let dropped = sinks.stats()[0].dropped;
        assert!(dropped >= 100 - HOOK_QUEUE as u64 - 1, "dropped {dropped}");

        eventually("the hung hook to be killed", || {
            sinks.stats()[0].failed >= 1
        });
        let stats = sinks.stats();
        let error = stats[0].last_error.as_deref().unwrap_or_default();
        assert!(error.contains("timed out after 300ms"), "{error}");
        eventually("the hook's background process to die", || {
            is_gone(background)
        });

        let stats = sinks.close(Instant::now() + Duration::from_millis(100));
        assert_eq!(stats[0].delivered, 0);
        assert_eq!(stats[0].failed + stats[0].dropped, 101, "{stats:?}");
    }

    #[test]
    fn a_failing_hook_reports_its_status_and_output() {
        let error = run_once("echo to-stdout; echo oops >&2; exit 3").expect_err("fails");
        assert!(error.contains("exit status: 3"), "{error}");
        assert!(error.contains("stderr: 'oops'"), "{error}");
        assert!(error.contains("stdout: 'to-stdout'"), "{error}");
    }

    #[test]
    fn a_hook_that_ignores_stdin_and_prints_a_lot_succeeds() {
        assert_eq!(run_once("head -c 1000000 /dev/zero; exit 0"), Ok(()));
        let error = run_once("head -c 100000 /dev/zero | tr '\\0' x; exit 1").expect_err("fails");
        assert!(
            error.contains("stdout: '…xxx"),
            "{}",
            error.chars().take(80).collect::<String>()
        );
        assert!(error.len() < OUTPUT_TAIL + 200, "{}", error.len());
    }

    #[test]
    fn shutdown_kills_a_running_hook() {
        let mut hook = Hook::new("sleep 1000", Duration::from_secs(3600)).expect("hook");
        let shutdown = Shutdown::default();
        shutdown.begin(Instant::now() + Duration::from_millis(50));
        let error = hook
            .deliver(&Rendered::new(&event(1)), &shutdown)
            .expect_err("killed");
        assert!(error.contains("killed at shutdown"), "{error}");
    }

    #[test]
    fn empty_command_or_zero_timeout_is_an_error() {
        assert!(Hook::new("  ", Duration::from_secs(1)).is_err());
        let error = Hook::new("true", Duration::ZERO).expect_err("zero");
        assert!(error.to_string().contains("0ns"), "{error}");
    }

    #[test]
    fn tail_keeps_the_end() {
        let tail = read_tail(&b"0123456789"[..], 4);
        assert_eq!((tail.bytes.as_slice(), tail.cut), (&b"6789"[..], true));
        let tail = read_tail(&b"0123"[..], 4);
        assert_eq!((tail.bytes.as_slice(), tail.cut), (&b"0123"[..], false));
        let long = vec![b'a'; 100_000];
        assert_eq!(read_tail(long.as_slice(), 4096).bytes.len(), 4096);
    }
}
