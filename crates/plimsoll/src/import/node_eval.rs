//! Reading a JavaScript ecosystem file (`.js`, `.cjs`, `.mjs`) the way PM2 does, by loading it
//! in Node: a child `node` that requires the file in its own directory and prints its exports as
//! JSON, bounded in time (10 s) and in output, and killed with its whole group when it overstays.

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

use crate::bounded::{excerpt, excerpt_message};
use crate::supervise::contain;

/// How long the file may take to load, from when node is ready to load it.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);
/// How long node itself may take to start (seconds on a loaded machine).
const STARTUP: Duration = Duration::from_secs(60);
/// The line our script writes on standard error once node runs it.
const LOADING_MARK: &[u8] = b"PLIMSOLL_PM2_LOADING\n";
/// The most JSON read back: an ecosystem file of hundreds of apps is a few dozen KiB.
const MAX_STDOUT: usize = 4 << 20;
/// The most of standard error kept for the message.
const MAX_STDERR: usize = 64 << 10;
/// The line our script writes on standard error when loading fails.
const ERROR_MARK: &str = "PLIMSOLL_PM2_ERROR ";

/// The script `node -e` runs with the file's absolute path as its one argument. Whatever the
/// file itself prints goes to standard error, so standard output holds only the JSON.
const SCRIPT: &str = r#"
process.stderr.write('PLIMSOLL_PM2_LOADING\n');
const print = process.stdout.write.bind(process.stdout);
process.stdout.write = (...a) => process.stderr.write(...a);
const file = process.argv[1];
const url = () => require('url').pathToFileURL(file).href;
const report = (e) => {
  const stack = e && e.stack ? String(e.stack).split('\n') : [];
  let at = stack.length && stack[0].startsWith(file + ':') ? stack[0] : '';
  if (!at) { const frame = stack.find((l) => l.includes(file + ':')); if (frame) at = frame.trim().replace(/^at\s+/, ''); }
  const name = e && e.name ? String(e.name) : 'Error';
  const message = e && e.message !== undefined ? String(e.message) : String(e);
  process.stderr.write('\nPLIMSOLL_PM2_ERROR ' + JSON.stringify({ name, message, at }) + '\n');
  process.exit(1);
};
const esm = async () => { const ns = await import(url()); return ns.default !== undefined ? ns.default : { ...ns }; };
const load = async () => {
  if (file.endsWith('.mjs')) return esm();
  let value;
  try { value = require(file); } catch (e) { if (e && e.code === 'ERR_REQUIRE_ESM') return esm(); throw e; }
  // Newer nodes require() an ES module as its namespace.
  if (value && value[Symbol.toStringTag] === 'Module') return value.default !== undefined ? value.default : { ...value };
  return value;
};
load().then((value) => {
  let text;
  try { text = JSON.stringify(value === undefined ? null : value); } catch (e) { return report(e); }
  print(text === undefined ? 'null' : text);
  // A timer or socket the file left open must not keep node running (writes to pipes are
  // synchronous on Linux: nothing is lost).
  process.exit(0);
}, report);
"#;

/// The exports of the JavaScript file at `path` (absolute), as JSON.
pub(crate) fn evaluate(path: &Path) -> Result<Value> {
    evaluate_within(path, TIMEOUT)
}

/// [`evaluate`] with a time limit.
fn evaluate_within(path: &Path, limit: Duration) -> Result<Value> {
    let shown = path.display();
    let dir = path.parent().unwrap_or(Path::new("/"));
    // While the file is read, orphans of what it starts (a `setsid` or `detached` child)
    // re-parent to this process, so that `end_what_it_started` finds and ends them all.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let mut node = Command::new("node");
    node.arg("-e")
        .arg(SCRIPT)
        .arg(path)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // Node dies with import, even when import is killed with SIGKILL. The closure runs
    // between fork and exec: one prctl, async-signal-safe, no allocation.
    #[allow(unsafe_code)]
    unsafe {
        node.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            Ok(())
        });
    }
    let mut child = node.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow!(
                "cannot read '{shown}': it is JavaScript and `node` was not found on PATH \
                     (install Node.js, or convert the file to .json or .yaml)"
            )
        } else {
            anyhow!("cannot read '{shown}': cannot start `node`: {e}")
        }
    })?;
    let (loading, started) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().map(|s| drain(s, MAX_STDOUT, None));
    let stderr = child
        .stderr
        .take()
        .map(|s| drain(s, MAX_STDERR, Some(loading)));
    let finished = wait_for(&mut child, &started, STARTUP, limit);
    // Reading a config starts nothing that lasts: whatever the file started dies with node.
    end_what_it_started(child.id() as i32);
    let _ = nix::sys::prctl::set_child_subreaper(false);
    // Something the file started in a session of its own may hold the pipes open: wait for
    // the rest of the output a little, not forever.
    let (out, out_overflow) = stdout
        .map_or(Some((Vec::new(), false)), join)
        .unwrap_or_default();
    let (err, _) = stderr
        .map_or(Some((Vec::new(), false)), join)
        .unwrap_or_default();
    let status = match finished {
        Waited::Exited(status) => status,
        Waited::TimedOut { loading: true } => bail!(
            "cannot read '{shown}': node did not finish loading it within {:.0} s \
             (does it wait for something, e.g. a server or stdin?)",
            limit.as_secs_f64()
        ),
        Waited::TimedOut { loading: false } => bail!(
            "cannot read '{shown}': node did not start within {} s",
            STARTUP.as_secs()
        ),
    };
    if !status.success() {
        bail!("cannot read '{shown}': {}", failure(&err));
    }
    if out_overflow {
        bail!("cannot read '{shown}': its exports are larger than {MAX_STDOUT} bytes as JSON");
    }
    serde_json::from_slice(&out).map_err(|e| {
        anyhow!(
            "cannot read '{shown}': node printed something that is not JSON ({e}): {}",
            crate::bounded::excerpt_bytes(&out)
        )
    })
}

/// Node's complaint, from our error line when the script got that far.
fn failure(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    if let Some(line) = text.lines().rev().find_map(|l| l.strip_prefix(ERROR_MARK)) {
        if let Ok(error) = serde_json::from_str::<Value>(line) {
            let field = |key: &str| error[key].as_str().unwrap_or_default().to_owned();
            let at = field("at");
            let place = if at.is_empty() {
                String::new()
            } else {
                format!(" (at {})", excerpt(&at))
            };
            return format!(
                "node could not load it: {}: {}{place}",
                excerpt(&field("name")),
                excerpt_message(&field("message"))
            );
        }
    }
    let mark = String::from_utf8_lossy(LOADING_MARK);
    let last: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != mark.trim())
        .collect();
    let tail = last[last.len().saturating_sub(3)..].join(" | ");
    format!("node failed: {}", excerpt_message(&tail))
}

/// Reads all of `source` on a thread, keeping at most `max` bytes (and whether there was more),
/// so a child that prints a lot never blocks on a full pipe; tells `loading` when the script's
/// first line has come.
fn drain(
    mut source: impl Read + Send + 'static,
    max: usize,
    mut loading: Option<std::sync::mpsc::Sender<()>>,
) -> std::sync::mpsc::Receiver<(Vec<u8>, bool)> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut overflow = false;
        let mut buffer = [0u8; 8192];
        loop {
            match source.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = max.saturating_sub(kept.len());
                    kept.extend_from_slice(&buffer[..n.min(room)]);
                    overflow |= n > room;
                    if kept.starts_with(LOADING_MARK) {
                        if let Some(loading) = loading.take() {
                            let _ = loading.send(());
                        }
                    }
                }
            }
        }
        let _ = sender.send((kept, overflow));
    });
    receiver
}

/// What [`drain`] read, once its pipe closed, within a second.
fn join(receiver: std::sync::mpsc::Receiver<(Vec<u8>, bool)>) -> Option<(Vec<u8>, bool)> {
    receiver.recv_timeout(Duration::from_secs(1)).ok()
}

/// How the wait for node ended.
#[derive(Debug)]
enum Waited {
    Exited(std::process::ExitStatus),
    /// Killed with its group; `loading`: node had started on the file.
    TimedOut {
        loading: bool,
    },
}

/// Waits for `child`: up to `startup` until `started` says node runs the script, then up to
/// `limit` more; past either it kills the child's whole group (a file that started something).
fn wait_for(
    child: &mut Child,
    started: &std::sync::mpsc::Receiver<()>,
    startup: Duration,
    limit: Duration,
) -> Waited {
    let mut deadline = Instant::now() + startup;
    let mut loading = false;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Waited::Exited(status),
            Ok(None) => {}
            Err(_) => break,
        }
        if !loading && started.try_recv().is_ok() {
            loading = true;
            deadline = Instant::now() + limit;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
    Waited::TimedOut { loading }
}

/// Kills and reaps what is left of node's process `group` and of this process's descendants
/// (node's orphans, adopted as the child subreaper), until none is left or 2 s have passed.
fn end_what_it_started(group: i32) {
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::Pid;
    let me = std::process::id() as i32;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = contain::tree_and_group(&contain::processes(), me, group);
        for process in &left {
            let _ = kill(Pid::from_raw(process.pid), Signal::SIGKILL);
        }
        // Reap the killed orphans (node itself was reaped by `wait_for`).
        while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            if status == WaitStatus::StillAlive {
                break;
            }
        }
        if left.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_past_its_time_is_killed_with_its_group() {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("sleep 30 & sleep 30")
            .process_group(0)
            .spawn()
            .expect("sh");
        let group = nix::unistd::Pid::from_raw(child.id() as i32);
        let started = Instant::now();
        let (_never, silent) = std::sync::mpsc::channel();
        let waited = wait_for(&mut child, &silent, Duration::from_millis(200), TIMEOUT);
        assert!(
            matches!(waited, Waited::TimedOut { loading: false }),
            "{waited:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(20));
        // Nothing of the group is left running (a killed grandchild may linger as a zombie
        // until init reaps it).
        let alive = || -> Vec<String> {
            std::fs::read_dir("/proc")
                .expect("/proc")
                .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("stat")).ok())
                .filter(|stat| {
                    // pid (comm) state ppid pgrp …
                    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
                    let fields: Vec<&str> = after.split_whitespace().collect();
                    fields.get(2) == Some(&group.as_raw().to_string().as_str()) && fields[0] != "Z"
                })
                .collect()
        };
        // SIGKILL is delivered at once but a process takes a moment to die: poll, bounded.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !alive().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(alive(), Vec::<String>::new());
    }

    #[test]
    fn what_the_file_starts_in_a_session_of_its_own_does_not_outlive_the_import() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = format!("plimsoll-import-orphan-{}", std::process::id());
        let file = dir.path().join("daemon.config.js");
        // A detached shell (its own session) and its sleep: both must be gone after import.
        std::fs::write(
            &file,
            format!(
                "require('child_process').spawn('sh', ['-c', 'sleep 1000; : {marker}'], \
                 {{ detached: true, stdio: 'ignore' }}).unref();\n\
                 module.exports = {{ apps: [{{ script: 'a.js' }}] }};\n"
            ),
        )
        .expect("write");
        let value = evaluate_within(&file, TIMEOUT).expect("loads");
        assert_eq!(value["apps"][0]["script"], "a.js");
        let alive = std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                let cmdline = std::fs::read(path.join("cmdline")).ok()?;
                let stat = std::fs::read_to_string(path.join("stat")).ok()?;
                let zombie = stat
                    .rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z'));
                (!zombie && String::from_utf8_lossy(&cmdline).contains(&marker)).then_some(path)
            })
            .collect::<Vec<_>>();
        assert!(alive.is_empty(), "left running: {alive:?}");
    }

    #[test]
    fn a_file_that_never_finishes_loading_is_cut_off_and_one_with_open_handles_is_not_waited_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let endless = dir.path().join("endless.config.js");
        std::fs::write(&endless, "while (true) {}\n").expect("write");
        let started = Instant::now();
        let error = format!(
            "{:#}",
            evaluate_within(&endless, Duration::from_millis(500)).expect_err("endless")
        );
        assert!(
            error.contains("did not finish loading it within 0 s"),
            "{error}"
        );
        // Killed at the limit; reaping it and its pipes take at most a few seconds more.
        assert!(started.elapsed() < Duration::from_secs(20));
        let busy = dir.path().join("busy.config.js");
        std::fs::write(
            &busy,
            "setInterval(() => {}, 1000);\nrequire('net').createServer().listen(0, '127.0.0.1');\n\
             module.exports = { apps: [{ script: 'a.js' }] };\n",
        )
        .expect("write");
        // Held by its timer and server, node would reach the limit and fail.
        let value = evaluate_within(&busy, Duration::from_secs(60)).expect("loads");
        assert_eq!(value["apps"][0]["script"], "a.js");
    }

    #[test]
    fn nodes_complaint_is_cut_to_its_message_and_place() {
        let stderr = b"noise\nPLIMSOLL_PM2_ERROR {\"name\":\"TypeError\",\"message\":\"x is not a function\",\"at\":\"/a/eco.js:3:1\"}\n";
        assert_eq!(
            failure(stderr),
            "node could not load it: TypeError: x is not a function (at /a/eco.js:3:1)"
        );
        assert_eq!(failure(b"a\nb\n\nc\nd\n"), "node failed: b | c | d");
        assert_eq!(
            failure(b"PLIMSOLL_PM2_LOADING\nKilled\n"),
            "node failed: Killed"
        );
    }
}
