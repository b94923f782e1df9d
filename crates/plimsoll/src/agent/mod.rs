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
        SocketFile(self.socket.clone())
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
                    if line.len() > MAX_LINE {
                        continue;
                    }
                    let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
                        self.lock().errors += 1;
                        continue;
                    };
                    self.receive(&message, &mut pid, &sender);
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
        let after_gc: Option<u64> = reported.iter().map(|f| f.heap_used_after_gc_bytes).sum();
        Some(HeapFigures {
            processes: reported.len(),
            heap_used_bytes: reported.iter().filter_map(|f| f.heap_used_bytes).sum(),
            heap_total_bytes: reported.iter().filter_map(|f| f.heap_total_bytes).sum(),
            external_bytes: reported.iter().filter_map(|f| f.external_bytes).sum(),
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
