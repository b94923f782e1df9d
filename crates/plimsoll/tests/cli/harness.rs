//! A small fluent harness: `Cmd::new("analyze").arg(..).expect_exit(1)` runs the real binary
//! with a deadline and returns its output for further checks.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one command may run before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

/// One run of the binary being set up.
pub(crate) struct Cmd {
    command: Command,
    stdin: Option<Vec<u8>>,
    /// Where standard output goes instead of a pipe the harness reads.
    stdout: Option<Stdio>,
    /// Where standard error goes instead of a pipe the harness reads.
    stderr: Option<Stdio>,
    /// Killed after this long.
    deadline: Duration,
}

/// What a finished run printed.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Output {
    /// Standard output parsed as one JSON value.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

impl Cmd {
    pub(crate) fn new(subcommand: &str) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_plimsoll"));
        command.arg(subcommand);
        Cmd {
            command,
            stdin: None,
            stdout: None,
            stderr: None,
            deadline: DEADLINE,
        }
    }

    /// Another program, e.g. a wrapper that sets something up and then execs plimsoll.
    pub(crate) fn program(program: impl AsRef<std::ffi::OsStr>) -> Self {
        Cmd {
            command: Command::new(program),
            stdin: None,
            stdout: None,
            stderr: None,
            deadline: DEADLINE,
        }
    }

    /// Killed after `deadline` instead of the usual 60 s (a long soak).
    pub(crate) fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Standard output is a pipe whose reader is already gone: every write fails with EPIPE.
    pub(crate) fn stdout_closed_pipe(mut self) -> Self {
        self.stdout = Some(closed_pipe());
        self
    }

    /// Standard output is `/dev/full`: every write fails with ENOSPC.
    pub(crate) fn stdout_dev_full(mut self) -> Self {
        self.stdout = Some(dev_full());
        self
    }

    /// Standard error is a pipe whose reader is already gone.
    pub(crate) fn stderr_closed_pipe(mut self) -> Self {
        self.stderr = Some(closed_pipe());
        self
    }

    /// Standard error is `/dev/full`.
    pub(crate) fn stderr_dev_full(mut self) -> Self {
        self.stderr = Some(dev_full());
        self
    }

    /// The binary run through `wrapper` (e.g. `["prlimit", "--nofile=256:256", "--"]`).
    pub(crate) fn wrapped(wrapper: &[&str], subcommand: &str) -> Self {
        let (program, args) = wrapper.split_first().expect("a wrapper program");
        args.iter()
            .fold(Cmd::program(program), |cmd, arg| cmd.arg(arg))
            .arg(env!("CARGO_BIN_EXE_plimsoll"))
            .arg(subcommand)
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    pub(crate) fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// Runs to completion (or the deadline); the output when the exit code is `code`.
    pub(crate) fn try_exit(mut self, code: i32) -> Option<Output> {
        let output = self
            .command
            .stdin(Stdio::null())
            .output()
            .expect("run plimsoll");
        (output.status.code() == Some(code)).then(|| Output {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    pub(crate) fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    pub(crate) fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Runs to completion (or the deadline) and checks the exit code.
    pub(crate) fn expect_exit(mut self, code: i32) -> Output {
        self.command
            .stdout(self.stdout.take().unwrap_or_else(Stdio::piped))
            .stderr(self.stderr.take().unwrap_or_else(Stdio::piped))
            .stdin(Stdio::piped());
        let mut child = self.command.spawn().expect("spawn plimsoll");
        if let Some(bytes) = self.stdin.take() {
            // A command may stop reading early (a line over its cap): a closed pipe is fine.
            let written = child.stdin.take().expect("stdin").write_all(&bytes);
            if let Err(error) = written {
                assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe, "write stdin");
            }
        }
        drop(child.stdin.take());
        let started = Instant::now();
        let watchdog_pid = child.id();
        let deadline = self.deadline;
        let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = finished.clone();
        let watchdog = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                if started.elapsed() > deadline {
                    let _ = Command::new("kill")
                        .arg("-9")
                        .arg(watchdog_pid.to_string())
                        .status();
                    return;
                }
                std::thread::park_timeout(Duration::from_millis(50));
            }
        });
        let output = child.wait_with_output().expect("wait for plimsoll");
        finished.store(true, std::sync::atomic::Ordering::SeqCst);
        watchdog.thread().unpark();
        let _ = watchdog.join();
        let result = Output {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        assert_eq!(
            output.status.code(),
            Some(code),
            "unexpected exit: {result:?}"
        );
        result
    }
}

/// A pipe whose reader is already gone: every write fails with EPIPE.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    writer.into()
}

/// `/dev/full`: every write fails with ENOSPC.
fn dev_full() -> Stdio {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full")
        .into()
}

/// Writes `text` to `name` in `dir` and returns the path.
pub(crate) fn write_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

/// A 1 Hz series as CSV, `seconds` long, from `f(t)` in bytes.
pub(crate) fn series_csv(seconds: u32, f: impl Fn(f64) -> f64) -> String {
    let mut text = String::from("t_s,rss_bytes\n");
    for i in 0..seconds {
        let t = f64::from(i);
        text.push_str(&format!("{t},{}\n", f(t).max(0.0) as u64));
    }
    text
}

/// A plimsoll process running in the background, with a deadline on everything asked of it.
pub(crate) struct Running {
    child: std::process::Child,
}

impl Cmd {
    /// Starts the command in the background (stdout and stderr go to files in `dir`).
    pub(crate) fn spawn_in(mut self, dir: &Path) -> Running {
        let stdout = std::fs::File::create(dir.join("plimsoll.stdout")).expect("stdout file");
        let stderr = std::fs::File::create(dir.join("plimsoll.stderr")).expect("stderr file");
        self.command
            .stdout(stdout)
            .stderr(stderr)
            .stdin(Stdio::null());
        Running {
            child: self.command.spawn().expect("spawn plimsoll"),
        }
    }
}

impl Running {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to the plimsoll process.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} failed");
    }

    /// Waits for the exit, at most `within`; returns the exit code.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "plimsoll did not exit within {within:?}"
            );
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `check` until it returns `Some`, at most `within`; fails the test with `what` otherwise.
pub(crate) fn eventually<T>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

/// The JSON lines of an events file, as far as written.
pub(crate) fn read_events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The names of the events in `events`, in order.
pub(crate) fn event_names(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or_default().to_owned())
        .collect()
}
