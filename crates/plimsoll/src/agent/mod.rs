//! The supervisor's side of the Node.js agent: a private unix socket that every Node process of
//! the target connects to (one connection per process: cluster workers and child node processes
//! each report with their pid), the latest figures of each, and commands sent to them.

pub(crate) mod node;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// How long a command may take (a heap snapshot of a big heap takes a while).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest line accepted from an agent.
const MAX_LINE: usize = 64 * 1024;

/// The latest figures of one Node process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
pub(crate) struct Figures {
    pub(crate) pid: u32,
    pub(crate) heap_used_bytes: Option<u64>,
    pub(crate) heap_total_bytes: Option<u64>,
    pub(crate) external_bytes: Option<u64>,
    pub(crate) heap_limit_bytes: Option<u64>,
    /// Heap used right after the last major GC; `None` before the first one.
    pub(crate) heap_used_after_gc_bytes: Option<u64>,
}

/// The figures of all Node processes of the target, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct HeapFigures {
    /// How many processes reported.
    pub(crate) processes: usize,
    pub(crate) heap_used_bytes: u64,
    pub(crate) heap_total_bytes: u64,
    pub(crate) external_bytes: u64,
    /// Sum of heap used after the last major GC, once every process has had one.
    pub(crate) heap_used_after_gc_bytes: Option<u64>,
}

/// Removes a socket file when dropped.
#[derive(Debug)]
pub(crate) struct SocketFile(PathBuf);

impl SocketFile {
    pub(crate) fn new(path: PathBuf) -> SocketFile {
        SocketFile(path)
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A connected agent.
#[derive(Debug)]
struct Connection {
    figures: Option<Figures>,
    commands: mpsc::Sender<Pending>,
}

/// A command on its way to one agent, with where its reply goes.
#[derive(Debug)]
struct Pending {
    line: String,
    id: u64,
    reply: oneshot::Sender<serde_json::Value>,
}

#[derive(Debug, Default)]
struct Shared {
    connections: HashMap<u32, Connection>,
    next_id: u64,
    waiting: HashMap<u64, oneshot::Sender<serde_json::Value>>,
    errors: u64,
}

/// The agent socket of one target.
#[derive(Debug, Clone)]
pub(crate) struct AgentHub {
    shared: Arc<Mutex<Shared>>,
    socket: PathBuf,
}

impl AgentHub {
    /// Listens on `socket` (created with mode 0600, replacing a stale one) and accepts agents
    /// until the returned hub's last clone is dropped and the runtime ends.
    pub(crate) fn listen(socket: &Path) -> Result<AgentHub> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)
            .with_context(|| format!("cannot listen on agent socket '{}'", socket.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict agent socket '{}'", socket.display()))?;
        let hub = AgentHub {
            shared: Arc::new(Mutex::new(Shared::default())),
            socket: socket.to_path_buf(),
        };
        let accepting = hub.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(accepting.clone().serve(stream));
            }
        });
        Ok(hub)
    }

    /// Removes the socket file when the returned guard is dropped (when the supervisor ends).
    pub(crate) fn remove_on_drop(&self) -> SocketFile {
        SocketFile::new(self.socket.clone())
    }

    /// The socket's path, for the agent's environment.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads one agent's lines until it disconnects; writes the commands queued for it.
    async fn serve(self, stream: UnixStream) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let (sender, mut commands) = mpsc::channel::<Pending>(8);
        let mut pid: Option<u32> = None;
        loop {
            tokio::select! {
                line = lines.next_line() => {
                    let Ok(Some(line)) = line else { break };
                    self.take_line(&line, &mut pid, &sender);
                }
                Some(pending) = commands.recv() => {
                    self.lock().waiting.insert(pending.id, pending.reply);
                    if write.write_all(pending.line.as_bytes()).await.is_err() {
                        break;
                    }
                }
            }
        }
        if let Some(pid) = pid {
            self.lock().connections.remove(&pid);
        }
    }

    /// One line from an agent: too long is skipped, not JSON counts as an error.
    fn take_line(&self, line: &str, pid: &mut Option<u32>, sender: &mpsc::Sender<Pending>) {
        if line.len() > MAX_LINE {
            return;
        }
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            self.lock().errors += 1;
            return;
        };
        self.receive(&message, pid, sender);
    }

    fn receive(
        &self,
        message: &serde_json::Value,
        pid: &mut Option<u32>,
        sender: &mpsc::Sender<Pending>,
    ) {
        let kind = message["type"].as_str().unwrap_or_default();
        let from = message["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
        let mut shared = self.lock();
        match (kind, from) {
            ("hello", Some(from)) => {
                *pid = Some(from);
                shared.connections.insert(
                    from,
                    Connection {
                        figures: None,
                        commands: sender.clone(),
                    },
                );
            }
            ("figures", Some(from)) => {
                if let (Some(connection), Ok(figures)) = (
                    shared.connections.get_mut(&from),
                    serde_json::from_value::<Figures>(message.clone()),
                ) {
                    connection.figures = Some(figures);
                }
            }
            ("reply", _) => {
                if let Some(id) = message["id"].as_u64() {
                    if let Some(waiting) = shared.waiting.remove(&id) {
                        let _ = waiting.send(message.clone());
                    }
                }
            }
            ("error", _) => {
                shared.errors += 1;
                tracing::debug!(agent_error = %message, "agent reported an error");
            }
            _ => shared.errors += 1,
        }
    }

    /// The figures of the connected processes, summed; `None` when no agent reported yet.
    pub(crate) fn figures(&self) -> Option<HeapFigures> {
        let shared = self.lock();
        let reported: Vec<&Figures> = shared
            .connections
            .values()
            .filter_map(|c| c.figures.as_ref())
            .collect();
        if reported.is_empty() {
            return None;
        }
        // Agents send any numbers: the sums saturate rather than overflow.
        let sum = |field: fn(&Figures) -> Option<u64>| {
            reported
                .iter()
                .filter_map(|f| field(f))
                .fold(0, u64::saturating_add)
        };
        let after_gc = reported.iter().try_fold(0, |sum: u64, f| {
            f.heap_used_after_gc_bytes.map(|b| sum.saturating_add(b))
        });
        Some(HeapFigures {
            processes: reported.len(),
            heap_used_bytes: sum(|f| f.heap_used_bytes),
            heap_total_bytes: sum(|f| f.heap_total_bytes),
            external_bytes: sum(|f| f.external_bytes),
            heap_used_after_gc_bytes: after_gc,
        })
    }

    /// Pids of the connected agents, lowest (usually the app's main process) first.
    pub(crate) fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.lock().connections.keys().copied().collect();
        pids.sort_unstable();
        pids
    }

    /// Sends `command` (a JSON object without `id`) to the agent of `pid` and waits for its reply.
    pub(crate) async fn command(
        &self,
        pid: u32,
        mut command: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let (reply, answer) = oneshot::channel();
        let sender = {
            let mut shared = self.lock();
            shared.next_id += 1;
            let id = shared.next_id;
            command["id"] = id.into();
            let Some(connection) = shared.connections.get(&pid) else {
                bail!("no agent in process {pid}");
            };
            let line = format!("{command}\n");
            (connection.commands.clone(), Pending { line, id, reply })
        };
        let (channel, pending) = sender;
        channel
            .send(pending)
            .await
            .context("the agent disconnected")?;
        let reply = tokio::time::timeout(COMMAND_TIMEOUT, answer)
            .await
            .context("the agent did not answer in time")?
            .context("the agent disconnected")?;
        if reply["ok"] != serde_json::Value::Bool(true) {
            bail!(
                "the agent in process {pid} failed: {}",
                reply["error"].as_str().unwrap_or("no reason given")
            );
        }
        Ok(reply)
    }
}

/// Feeds `text` line by line to a hub without a socket, as one agent's connection would, with
/// commands 1 to 3 awaiting replies; returns what the hub then reports (for `crate::fuzzing`).
pub(crate) fn replay(text: &str) -> (Option<HeapFigures>, Vec<u32>, Vec<serde_json::Value>) {
    let hub = AgentHub {
        shared: Arc::default(),
        socket: PathBuf::new(),
    };
    let mut answers = Vec::new();
    for id in 1..=3 {
        let (reply, answer) = oneshot::channel();
        hub.lock().waiting.insert(id, reply);
        answers.push(answer);
    }
    let (sender, _commands) = mpsc::channel(8);
    let mut pid = None;
    for line in text.lines() {
        hub.take_line(line, &mut pid, &sender);
    }
    let replies = answers
        .into_iter()
        .filter_map(|mut a| a.try_recv().ok())
        .collect();
    (hub.figures(), hub.pids(), replies)
}

#[cfg(test)]
mod tests {
    //! Real node processes with the real agent, against a real hub.

    use std::process::{Child, Command, Stdio};
    use std::time::Instant;

    use super::*;

    /// A node process running `script` with the agent preloaded and pointed at `hub`.
    struct Node(Child);

    impl Node {
        /// Runs `script` from a file in `dir` (cluster workers re-run the main file).
        fn start(dir: &Path, hub: Option<&AgentHub>, script: &str) -> Node {
            let agent = dir.join("plimsoll-agent.js");
            std::fs::write(&agent, node::AGENT_JS).expect("write agent");
            let main = dir.join(format!("app-{}.js", std::process::id()));
            std::fs::write(&main, script).expect("write app");
            let mut command = Command::new("node");
            command
                .arg(&main)
                .env("NODE_OPTIONS", format!("--require={}", agent.display()))
                .env("PLIMSOLL_AGENT_INTERVAL_MS", "100")
                .current_dir(dir)
                .stdout(Stdio::null());
            match hub {
                Some(hub) => command.env("PLIMSOLL_AGENT_SOCKET", hub.socket()),
                None => command.env_remove("PLIMSOLL_AGENT_SOCKET"),
            };
            Node(command.spawn().expect("node is installed"))
        }

        fn alive(&mut self) -> bool {
            self.0.try_wait().expect("try_wait").is_none()
        }
    }

    impl Drop for Node {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    const KEEP_ALIVE: &str = "setInterval(() => {}, 1000);";

    async fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn hub_in(dir: &Path) -> AgentHub {
        AgentHub::listen(&dir.join("agent.sock")).expect("listen")
    }

    #[tokio::test]
    async fn figures_arrive_and_gc_works_without_expose_gc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = hub_in(dir.path());
        let _node = Node::start(
            dir.path(),
            Some(&hub),
            &format!("global.keep = 'x'.repeat(1e6); {KEEP_ALIVE}"),
        );
        let figures = until("figures", || hub.figures()).await;
        assert_eq!(figures.processes, 1);
        assert!(figures.heap_used_bytes > 1_000_000, "{figures:?}");
        let pid = hub.pids()[0];
        let reply = hub
            .command(pid, serde_json::json!({ "cmd": "gc" }))
            .await
            .expect("gc");
        assert!(reply["heap_used_after_bytes"].as_u64().expect("after") > 0);
        // After a full GC the heap used after GC is known.
        let after = until("post-GC heap", || {
            hub.figures().and_then(|f| f.heap_used_after_gc_bytes)
        })
        .await;
        assert!(after > 0);
    }

    #[tokio::test]
    async fn a_snapshot_is_a_valid_heapsnapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = hub_in(dir.path());
        let _node = Node::start(
            dir.path(),
            Some(&hub),
            &format!("global.marker = new Map([[1, 2]]); {KEEP_ALIVE}"),
        );
        until("hello", || hub.pids().first().copied()).await;
        let path = dir.path().join("one.heapsnapshot");
        let pid = hub.pids()[0];
        let command = serde_json::json!({ "cmd": "snapshot", "path": path.display().to_string() });
        let reply = hub.command(pid, command).await.expect("snapshot");
        assert_eq!(
            reply["path"].as_str(),
            Some(path.display().to_string().as_str())
        );
        assert!(reply["bytes"].as_u64().expect("bytes") > 100_000);
        let snapshot = plimsoll_heap::parse_file(&path).expect("a valid snapshot");
        drop(snapshot);
    }

    #[tokio::test]
    async fn clear_caches_reaches_the_apps_listener() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = hub_in(dir.path());
        let script = format!(
            "process.on('plimsoll:clear-caches', () => require('fs').writeFileSync('cleared', 'yes')); {KEEP_ALIVE}"
        );
        let _node = Node::start(dir.path(), Some(&hub), &script);
        let pid = until("hello", || hub.pids().first().copied()).await;
        let reply = hub
            .command(pid, serde_json::json!({ "cmd": "clear-caches" }))
            .await
            .expect("clear");
        assert_eq!(reply["listeners"], 1);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("cleared")).expect("marker"),
            "yes"
        );
    }

    #[tokio::test]
    async fn an_app_that_exits_on_its_own_exits_promptly_with_the_agent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = hub_in(dir.path());
        let mut node = Node::start(dir.path(), Some(&hub), "setTimeout(() => {}, 200);");
        let started = Instant::now();
        until("exit", || (!node.alive()).then_some(())).await;
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(node.0.wait().expect("wait").code(), Some(0));
        // And without a socket the agent does nothing at all.
        let mut quiet = Node::start(dir.path(), None, "require('fs').writeFileSync('ran', '1');");
        until("exit", || (!quiet.alive()).then_some(())).await;
        assert_eq!(quiet.0.wait().expect("wait").code(), Some(0));
        assert!(dir.path().join("ran").exists());
    }

    #[test]
    fn the_app_survives_the_supervisor_going_away() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let script = format!("let n = 0; setInterval(() => require('fs').writeFileSync('beat', String(++n)), 50); {KEEP_ALIVE}");
        let mut node = runtime.block_on(async {
            let hub = hub_in(dir.path());
            let node = Node::start(dir.path(), Some(&hub), &script);
            until("hello", || hub.pids().first().copied()).await;
            node
        });
        // The supervisor's side goes away: listener and connections close.
        drop(runtime);
        let beat = |dir: &Path| {
            std::fs::read_to_string(dir.join("beat"))
                .ok()
                .and_then(|b| b.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let before = beat(dir.path());
        let deadline = Instant::now() + Duration::from_secs(20);
        while beat(dir.path()) < before + 10 {
            assert!(node.alive(), "the app died with the supervisor gone");
            assert!(Instant::now() < deadline, "the app stopped beating");
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }

    #[tokio::test]
    async fn a_cluster_app_reports_each_worker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = hub_in(dir.path());
        let script = format!(
            "const cluster = require('cluster'); if (cluster.isPrimary) {{ cluster.fork(); cluster.fork(); }} {KEEP_ALIVE}"
        );
        let _node = Node::start(dir.path(), Some(&hub), &script);
        let figures = until("three processes", || {
            hub.figures().filter(|f| f.processes == 3)
        })
        .await;
        assert_eq!(hub.pids().len(), 3);
        assert!(figures.heap_used_bytes > 0);
    }
}
