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
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// How long a command may take (a heap snapshot of a big heap takes a while).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest line accepted from an agent; a longer one is skipped while it is read, never
/// buffered whole.
const MAX_LINE: usize = 64 * 1024;
/// The pause after a failed accept (e.g. EMFILE) before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
    /// Accepts that failed (the loop goes on after each).
    accept_failures: u64,
}

/// What [`LineReader::next`] read.
#[derive(Debug, PartialEq)]
enum Line {
    /// A line, without its newline.
    Text(Vec<u8>),
    /// A line longer than the limit, skipped.
    TooLong,
}

/// Reads lines of at most `max` bytes, holding no more than that: the rest of a longer line is
/// skipped as it arrives. Cancel-safe (what was read stays in the reader), so it can sit in a
/// `select!`.
#[derive(Debug)]
struct LineReader<R> {
    reader: R,
    max: usize,
    line: Vec<u8>,
    too_long: bool,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    fn new(reader: R, max: usize) -> Self {
        LineReader {
            reader,
            max,
            line: Vec::new(),
            too_long: false,
        }
    }

    /// The next line; `None` at the end (an unfinished last line is dropped).
    async fn next(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                return Ok(None);
            }
            let (chunk, ends) = match available.iter().position(|&b| b == b'\n') {
                Some(at) => (&available[..at], Some(at + 1)),
                None => (available, None),
            };
            if !self.too_long {
                if self.line.len() + chunk.len() > self.max {
                    self.too_long = true;
                    self.line = Vec::new();
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            let used = ends.unwrap_or(chunk.len());
            self.reader.consume(used);
            if ends.is_some() {
                let line = if std::mem::take(&mut self.too_long) {
                    Line::TooLong
                } else {
                    Line::Text(std::mem::take(&mut self.line))
                };
                return Ok(Some(line));
            }
        }
    }
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
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(accepting.clone().serve(stream));
                    }
                    Err(error) => {
                        // Out of fds, say: agents wait in the backlog until one is free.
                        accepting.lock().accept_failures += 1;
                        tracing::warn!(error = %error, "agent socket: cannot accept; retrying");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                }
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
        let mut lines = LineReader::new(BufReader::new(read), MAX_LINE);
        let (sender, mut commands) = mpsc::channel::<Pending>(8);
        let mut pid: Option<u32> = None;
        // The commands written to this agent that may still wait for a reply.
        let mut sent: Vec<u64> = Vec::new();
        loop {
            tokio::select! {
                line = lines.next() => {
                    let line = match line {
                        Ok(Some(Line::Text(line))) => line,
                        Ok(Some(Line::TooLong)) => {
                            self.lock().errors += 1;
                            tracing::debug!(max_bytes = MAX_LINE, "agent line too long; skipped");
                            continue;
                        }
                        Ok(None) | Err(_) => break,
                    };
                    self.take_line(&line, &mut pid, &sender);
                }
                Some(pending) = commands.recv() => {
                    {
                        let mut shared = self.lock();
                        sent.retain(|id| shared.waiting.contains_key(id));
                        sent.push(pending.id);
                        shared.waiting.insert(pending.id, pending.reply);
                    }
                    if write.write_all(pending.line.as_bytes()).await.is_err() {
                        break;
                    }
                }
            }
        }
        // Gone: its waiting commands fail now (their reply senders are dropped), not at the
        // command timeout.
        let mut shared = self.lock();
        for id in sent {
            shared.waiting.remove(&id);
        }
        if let Some(pid) = pid {
            shared.connections.remove(&pid);
        }
    }

    /// One line from an agent: too long is skipped, not JSON counts as an error.
    fn take_line(&self, line: &[u8], pid: &mut Option<u32>, sender: &mpsc::Sender<Pending>) {
        if line.len() > MAX_LINE {
            return;
        }
        let Ok(message) = serde_json::from_slice::<serde_json::Value>(line) else {
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
        // Saturating: the figures come from outside, and a sum must not overflow.
        let total = |field: fn(&Figures) -> Option<u64>| {
            reported
                .iter()
                .filter_map(|f| field(f))
                .fold(0u64, u64::saturating_add)
        };
        let after_gc = reported.iter().try_fold(0u64, |sum, f| {
            f.heap_used_after_gc_bytes.map(|b| sum.saturating_add(b))
        });
        Some(HeapFigures {
            processes: reported.len(),
            heap_used_bytes: total(|f| f.heap_used_bytes),
            heap_total_bytes: total(|f| f.heap_total_bytes),
            external_bytes: total(|f| f.external_bytes),
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
        let gone = || format!("the agent in process {pid} disconnected before answering");
        channel.send(pending).await.with_context(gone)?;
        let reply = tokio::time::timeout(COMMAND_TIMEOUT, answer)
            .await
            .with_context(|| {
                format!(
                    "the agent in process {pid} did not answer within {} s",
                    COMMAND_TIMEOUT.as_secs()
                )
            })?
            .with_context(gone)?;
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
        hub.take_line(line.as_bytes(), &mut pid, &sender);
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

    /// A fake agent on the hub's socket: says hello as `pid`, then reads the first command.
    async fn fake_agent(hub: &AgentHub, pid: u32) -> BufReader<UnixStream> {
        let mut stream = UnixStream::connect(hub.socket()).await.expect("connect");
        let hello = format!("{{\"type\":\"hello\",\"pid\":{pid}}}\n");
        stream.write_all(hello.as_bytes()).await.expect("hello");
        until("hello", || hub.pids().contains(&pid).then_some(())).await;
        BufReader::new(stream)
    }

    #[tokio::test]
    async fn a_pending_command_fails_as_soon_as_its_agent_disconnects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = hub_in(dir.path());
        let mut agent = fake_agent(&hub, 4242).await;
        let asking = hub.clone();
        let started = Instant::now();
        let command = tokio::spawn(async move {
            asking
                .command(4242, serde_json::json!({ "cmd": "snapshot", "path": "/x" }))
                .await
        });
        let mut line = String::new();
        agent.read_line(&mut line).await.expect("the command");
        assert!(line.contains("\"snapshot\""), "{line}");
        drop(agent);
        let error = tokio::time::timeout(Duration::from_secs(5), command)
            .await
            .expect("the command fails at once, not at the 120 s timeout")
            .expect("join")
            .expect_err("no reply can come");
        assert!(
            format!("{error:#}").contains("disconnected before answering"),
            "{error:#}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        until("the connection forgotten", || {
            hub.pids().is_empty().then_some(())
        })
        .await;
    }

    #[tokio::test]
    async fn long_lines_are_skipped_while_read_never_buffered_whole() {
        let mut input = vec![b'x'; 1 << 20];
        input.extend_from_slice(b"\nshort\n\nlast-unfinished");
        let mut reader = LineReader::new(BufReader::with_capacity(4096, &input[..]), 100);
        assert_eq!(reader.next().await.expect("read"), Some(Line::TooLong));
        // Never more than the limit held, whatever the line's length.
        assert!(
            reader.line.capacity() <= 100 + 4096,
            "{}",
            reader.line.capacity()
        );
        assert_eq!(
            reader.next().await.expect("read"),
            Some(Line::Text(b"short".to_vec()))
        );
        assert_eq!(
            reader.next().await.expect("read"),
            Some(Line::Text(Vec::new()))
        );
        assert_eq!(reader.next().await.expect("read"), None);
    }

    /// On paused time: the 120 s pass at once while the agent stays silent.
    #[tokio::test(start_paused = true)]
    async fn a_command_an_agent_never_answers_times_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = hub_in(dir.path());
        let _agent = fake_agent(&hub, 31).await;
        let started = tokio::time::Instant::now();
        let error = hub
            .command(31, serde_json::json!({ "cmd": "gc" }))
            .await
            .expect_err("no reply comes");
        assert!(
            format!("{error:#}").contains("did not answer within 120 s"),
            "{error:#}"
        );
        assert!(started.elapsed() >= COMMAND_TIMEOUT);
    }

    #[tokio::test]
    async fn a_huge_line_then_hello_and_overflowing_figures_are_survived() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = hub_in(dir.path());
        let mut first = UnixStream::connect(hub.socket()).await.expect("connect");
        let mut garbage = vec![b'{'; 4 * MAX_LINE];
        garbage.push(b'\n');
        first.write_all(&garbage).await.expect("garbage");
        let mut agents = vec![BufReader::new(first)];
        agents.push(fake_agent(&hub, 7).await);
        let huge = u64::MAX - 1;
        for (agent, pid) in agents.iter_mut().zip([6u32, 7]) {
            if pid == 6 {
                let hello = format!("{{\"type\":\"hello\",\"pid\":{pid}}}\n");
                agent
                    .get_mut()
                    .write_all(hello.as_bytes())
                    .await
                    .expect("hello");
            }
            let figures = format!(
                "{{\"type\":\"figures\",\"pid\":{pid},\"heap_used_bytes\":{huge},\"heap_used_after_gc_bytes\":{huge}}}\n"
            );
            agent
                .get_mut()
                .write_all(figures.as_bytes())
                .await
                .expect("figures");
        }
        let figures = until("both figures", || {
            hub.figures().filter(|f| f.processes == 2)
        })
        .await;
        assert_eq!(figures.heap_used_bytes, u64::MAX);
        assert_eq!(figures.heap_used_after_gc_bytes, Some(u64::MAX));
        assert!(hub.lock().errors >= 1, "the long line is counted");
    }

    #[tokio::test]
    async fn the_accept_loop_survives_running_out_of_fds() {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = hub_in(dir.path());
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        let open = std::fs::read_dir("/proc/self/fd").expect("fds").count() as u64;
        setrlimit(Resource::RLIMIT_NOFILE, open + 16, hard).expect("setrlimit");
        // Every fd taken but one, which the agent's end of the connection gets.
        let mut fillers = Vec::new();
        while let Ok(file) = std::fs::File::open("/dev/null") {
            fillers.push(file);
        }
        fillers.pop();
        let mut agent = std::os::unix::net::UnixStream::connect(hub.socket()).expect("connect");
        until("a failed accept", || {
            (hub.lock().accept_failures > 0).then_some(())
        })
        .await;
        drop(fillers);
        setrlimit(Resource::RLIMIT_NOFILE, soft, hard).expect("restore");
        use std::io::Write as _;
        agent
            .write_all(b"{\"type\":\"hello\",\"pid\":99}\n")
            .expect("hello");
        until("the agent accepted after all", || {
            hub.pids().contains(&99).then_some(())
        })
        .await;
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
        assert!(reply["heap_used_after_bytes"].as_u64().expect("after") > 1_000_000);
        // The pause the app saw, timed around gc() on its thread.
        let pause = reply["pause_ms"].as_f64().expect("pause_ms");
        assert!(pause > 0.0 && pause < 10_000.0, "{reply}");
        // After a full GC the heap used after GC is known.
        let after = until("post-GC heap", || {
            hub.figures().and_then(|f| f.heap_used_after_gc_bytes)
        })
        .await;
        assert!(after > 0);
    }

    /// A forced GC's `external` counts the Buffers still alive, not the dead ones whose memory
    /// V8's background sweeper has yet to free: an app that holds 4 MiB of Buffers and makes
    /// 20 MiB/s of short-lived ones reads the same, to the kilobyte, GC after GC (without the
    /// young-generation GC after the full one, 0.2–0.6 MiB more at some GCs than at others).
    #[tokio::test]
    async fn a_forced_gc_counts_only_the_buffers_still_alive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = hub_in(dir.path());
        let _node = Node::start(
            dir.path(),
            Some(&hub),
            "global.held = []; for (let i = 0; i < 64; i++) global.held.push(Buffer.alloc(65536, 1));              setInterval(() => { for (let i = 0; i < 100; i++) Buffer.alloc(2048, 2).toString('latin1'); }, 10);",
        );
        until("hello", || hub.pids().first().copied()).await;
        let pid = hub.pids()[0];
        let held = 64.0 * 65536.0;
        let mut readings = Vec::new();
        for _ in 0..6 {
            let reply = hub
                .command(pid, serde_json::json!({ "cmd": "gc" }))
                .await
                .expect("gc");
            let external = reply["external_after_bytes"].as_f64().expect("external");
            // Node itself holds a little over a megabyte outside the heap.
            assert!(
                external >= held && external < held + 4.0 * 1024.0 * 1024.0,
                "external {external} with {held} held: {reply}"
            );
            readings.push(external);
            // Before the next forced GC, the app's dead Buffers pile up again: wait for an
            // agent report, newer than the GC, with a quarter of a megabyte of them more than
            // the reading, so that each reading had dead Buffers to leave out.
            let stale = hub.figures().map(|f| f.external_bytes);
            until("dead Buffers to pile up", || {
                hub.figures()
                    .map(|f| f.external_bytes)
                    .filter(|&e| Some(e) != stale && e as f64 > external + 256.0 * 1024.0)
            })
            .await;
        }
        let spread = readings.iter().copied().fold(f64::MIN, f64::max)
            - readings.iter().copied().fold(f64::MAX, f64::min);
        assert!(spread < 100_000.0, "readings {readings:?}");
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
