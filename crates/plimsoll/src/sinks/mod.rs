//! Event sinks: every event goes to the event stream (`--events`), the on-event command
//! (`--on-event`) and the webhook (`--webhook`), each on its own worker thread behind a bounded
//! queue, so a slow or dead sink never blocks the supervision loop. A failing sink is counted and
//! its last error kept, never fatal.
//!
//! The queues drop the newest event when full (the one being emitted), and count it: the events
//! already queued are older and so closer to what caused the burst.

mod events_file;
mod hook;
mod webhook;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::event::Event;

pub(crate) use events_file::EventsTarget;

/// Queue length of the event stream writer: generous, writes are quick.
const EVENTS_QUEUE: usize = 1024;
/// Queue length of the on-event command: hooks are slow, and a burst of events should not start
/// a burst of stale hooks.
const HOOK_QUEUE: usize = 16;
/// Queue length of the webhook.
const WEBHOOK_QUEUE: usize = 256;
/// How long past the close deadline a worker gets to wrap up: count what is left in its queue
/// as dropped, reap a hook it just killed.
const CLOSE_GRACE: Duration = Duration::from_millis(250);

/// The sinks the user asked for (plain data; the CLI fills it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SinkConfig {
    /// `--events FILE|-`: JSON lines.
    pub(crate) events: Option<EventsTarget>,
    /// `--on-event CMD`: run by `sh -c` for each event.
    pub(crate) on_event: Option<String>,
    /// `--webhook URL`: each event POSTed as JSON.
    pub(crate) webhook: Option<String>,
    /// How long one on-event command may run before its process group is killed.
    pub(crate) hook_timeout: Duration,
}

/// What one sink did so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SinkStats {
    /// `events`, `hook` or `webhook`.
    pub(crate) sink: &'static str,
    /// Events delivered.
    pub(crate) delivered: u64,
    /// Events whose delivery failed (after retries, where the sink retries).
    pub(crate) failed: u64,
    /// Events dropped undelivered: the queue was full, or shutdown came first.
    pub(crate) dropped: u64,
    /// The last failure's message.
    pub(crate) last_error: Option<String>,
}

/// The fan-out to all configured sinks (the store is fed separately).
#[derive(Debug)]
pub(crate) struct Sinks {
    workers: Vec<Worker>,
}

impl Sinks {
    /// Validates the configuration, opens the events file and starts one worker per sink.
    /// Nothing is started when any part of the configuration is bad.
    pub(crate) fn new(config: &SinkConfig) -> anyhow::Result<Sinks> {
        // Everything that can fail is done before any thread starts.
        let webhook = config
            .webhook
            .as_deref()
            .map(webhook::Webhook::new)
            .transpose()?;
        let hook = config
            .on_event
            .as_deref()
            .map(|command| hook::Hook::new(command, config.hook_timeout))
            .transpose()?;
        let events = config
            .events
            .as_ref()
            .map(events_file::EventsFile::open)
            .transpose()?;

        let mut workers = Vec::new();
        if let Some(events) = events {
            workers.push(Worker::spawn("events", EVENTS_QUEUE, events)?);
        }
        if let Some(hook) = hook {
            workers.push(Worker::spawn("hook", HOOK_QUEUE, hook)?);
        }
        if let Some(webhook) = webhook {
            workers.push(Worker::spawn("webhook", WEBHOOK_QUEUE, webhook)?);
        }
        Ok(Sinks { workers })
    }

    /// Hands the event to every sink without waiting: a full queue drops it (counted).
    pub(crate) fn emit(&self, event: &Event) {
        if self.workers.is_empty() {
            return;
        }
        let rendered = Arc::new(Rendered::new(event));
        for worker in &self.workers {
            worker.offer(Arc::clone(&rendered));
        }
    }

    /// Counters per sink, in the order events, hook, webhook (configured ones only); `close`
    /// returns the final ones.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> Vec<SinkStats> {
        self.workers.iter().map(Worker::stats).collect()
    }

    /// Stops taking events, delivers what is queued until `deadline` (what is left then is
    /// dropped, a hook still running is killed, a webhook stops retrying), joins the workers and
    /// returns the final counters. Takes at most a moment (`CLOSE_GRACE`) past the deadline: a
    /// worker still stuck then (a hung disk) is left behind and says so in `last_error`.
    pub(crate) fn close(mut self, deadline: Instant) -> Vec<SinkStats> {
        for worker in &mut self.workers {
            worker.begin_close(deadline);
        }
        self.workers
            .into_iter()
            .map(|worker| worker.finish(deadline))
            .collect()
    }
}

/// An event rendered once for all sinks.
#[derive(Debug)]
struct Rendered {
    /// The kind's name (`leak-confirmed`).
    kind: &'static str,
    /// The target's name.
    target: String,
    /// Milliseconds since the Unix epoch.
    t_unix_ms: i64,
    /// `Event::to_json()`, compact, without a newline.
    json: String,
}

impl Rendered {
    fn new(event: &Event) -> Rendered {
        Rendered {
            kind: event.kind.name(),
            target: event.target.clone(),
            t_unix_ms: event.t_unix_ms,
            json: event.to_json().to_string(),
        }
    }
}

/// One sink's way of delivering an event, run on the sink's worker thread.
trait Deliver: Send + 'static {
    /// Delivers one event, retrying where the sink retries; waits no longer than the shutdown
    /// deadline once there is one. The error is the message kept as `last_error`.
    fn deliver(&mut self, event: &Rendered, shutdown: &Shutdown) -> Result<(), String>;
}

/// The shutdown deadline, shared with a worker so that its waits (hook timeouts, webhook
/// backoff) end early at shutdown.
#[derive(Debug, Default)]
struct Shutdown {
    deadline: Mutex<Option<Instant>>,
    changed: Condvar,
}

impl Shutdown {
    fn lock(&self) -> MutexGuard<'_, Option<Instant>> {
        self.deadline.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the shutdown: waits end by `deadline`.
    fn begin(&self, deadline: Instant) {
        *self.lock() = Some(deadline);
        self.changed.notify_all();
    }

    /// Whether the shutdown deadline has passed.
    fn is_past(&self) -> bool {
        self.lock()
            .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// `until`, or the shutdown deadline when that comes first.
    fn cap(&self, until: Instant) -> Instant {
        self.lock().map_or(until, |deadline| until.min(deadline))
    }

    /// Sleeps until `until`; returns false when the shutdown deadline came first.
    fn sleep_until(&self, until: Instant) -> bool {
        let mut guard = self.lock();
        loop {
            let end = guard.map_or(until, |deadline| until.min(deadline));
            let now = Instant::now();
            if now >= end {
                return guard.is_none_or(|deadline| until <= deadline);
            }
            guard = self
                .changed
                .wait_timeout(guard, end - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// A sink's counters, shared between its worker and the fan-out.
#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Counters {
    fn fail(&self, message: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.set_error(message);
    }

    fn set_error(&self, message: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(message);
    }

    fn snapshot(&self, sink: &'static str) -> SinkStats {
        SinkStats {
            sink,
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// One sink's thread and the bounded queue that feeds it.
#[derive(Debug)]
struct Worker {
    sink: &'static str,
    /// `None` once closing: the worker drains the queue and ends.
    queue: Option<SyncSender<Arc<Rendered>>>,
    counters: Arc<Counters>,
    shutdown: Arc<Shutdown>,
    /// Disconnected when the thread ends (its sender is dropped then, even on a panic).
    finished: Receiver<()>,
    thread: JoinHandle<()>,
}

impl Worker {
    fn spawn(
        sink: &'static str,
        capacity: usize,
        mut deliver: impl Deliver,
    ) -> anyhow::Result<Worker> {
        let (queue, events) = mpsc::sync_channel::<Arc<Rendered>>(capacity);
        let (finished_tx, finished) = mpsc::channel::<()>();
        let counters = Arc::new(Counters::default());
        let shutdown = Arc::new(Shutdown::default());
        let thread = {
            let counters = Arc::clone(&counters);
            let shutdown = Arc::clone(&shutdown);
            std::thread::Builder::new()
                .name(format!("sink-{sink}"))
                .spawn(move || {
                    let _finished = finished_tx;
                    for event in events {
                        if shutdown.is_past() {
                            counters.dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        match deliver.deliver(&event, &shutdown) {
                            Ok(()) => {
                                counters.delivered.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(message) => counters.fail(message),
                        }
                    }
                })
                .with_context(|| format!("cannot start the {sink} sink's thread"))?
        };
        Ok(Worker {
            sink,
            queue: Some(queue),
            counters,
            shutdown,
            finished,
            thread,
        })
    }

    /// Queues the event, or drops and counts it when the queue is full.
    fn offer(&self, event: Arc<Rendered>) {
        let Some(queue) = &self.queue else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match queue.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .set_error(format!("the {} sink's worker has stopped", self.sink));
            }
        }
    }

    #[cfg(test)]
    fn stats(&self) -> SinkStats {
        self.counters.snapshot(self.sink)
    }

    /// Closes the queue (the worker ends once it is drained) and sets the deadline.
    fn begin_close(&mut self, deadline: Instant) {
        self.queue = None;
        self.shutdown.begin(deadline);
    }

    /// Waits for the worker to end (it stops delivering at `deadline`, and then needs a
    /// moment), then returns the final counters.
    fn finish(self, deadline: Instant) -> SinkStats {
        let wait = (deadline + CLOSE_GRACE).saturating_duration_since(Instant::now());
        match self.finished.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {
                // Left behind: the process is about to exit anyway, and joining would hang.
                self.counters.set_error(format!(
                    "the {} sink was still busy at the shutdown deadline",
                    self.sink
                ));
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                if self.thread.join().is_err() {
                    self.counters
                        .set_error(format!("the {} sink's worker panicked", self.sink));
                }
            }
        }
        self.counters.snapshot(self.sink)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener};

    use super::*;
    use crate::event::EventKind;

    pub(super) fn event(n: u32) -> Event {
        Event {
            t_unix_ms: 1_700_000_000_000 + i64::from(n),
            target: "api".to_owned(),
            kind: EventKind::Restarted {
                reason: crate::event::RestartReason::Budget,
                attempt: n,
                delay_ms: 500,
            },
        }
    }

    /// Polls `check` until it holds or 10 s pass.
    pub(super) fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A tiny HTTP/1.1 server on loopback: answers the given statuses in order, one connection
    /// each, and records the request bodies and heads.
    pub(super) struct TestServer {
        pub(super) addr: SocketAddr,
        pub(super) requests: Arc<Mutex<Vec<(String, String)>>>,
        thread: Option<JoinHandle<()>>,
    }

    impl TestServer {
        pub(super) fn start(statuses: &[u16]) -> TestServer {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
            let addr = listener.local_addr().expect("local addr");
            let requests = Arc::new(Mutex::new(Vec::new()));
            let statuses = statuses.to_vec();
            let recorded = Arc::clone(&requests);
            let thread = std::thread::spawn(move || {
                for status in statuses {
                    let Ok((mut stream, _)) = listener.accept() else {
                        return;
                    };
                    stream
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .expect("read timeout");
                    let Some((head, body)) = read_request(&mut stream) else {
                        continue;
                    };
                    recorded.lock().expect("lock").push((head, body));
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(response.as_bytes());
                }
            });
            TestServer {
                addr,
                requests,
                thread: Some(thread),
            }
        }

        pub(super) fn url(&self) -> String {
            format!("http://{}/hook", self.addr)
        }

        pub(super) fn bodies(&self) -> Vec<String> {
            let requests = self.requests.lock().expect("lock");
            requests.iter().map(|(_, body)| body.clone()).collect()
        }

        /// Waits until the server has answered all its statuses.
        pub(super) fn join(mut self) {
            if let Some(thread) = self.thread.take() {
                thread.join().expect("server thread");
            }
        }
    }

    fn read_request(stream: &mut impl Read) -> Option<(String, String)> {
        let mut data = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            data.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
        let length = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        while data.len() < head_end + length {
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            data.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&data[head_end..head_end + length]).into_owned();
        Some((head, body))
    }

    #[test]
    fn every_sink_gets_every_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let events_path = dir.path().join("events.jsonl");
        let hook_out = dir.path().join("hook.out");
        let server = TestServer::start(&[200, 200, 200]);
        let sinks = Sinks::new(&SinkConfig {
            events: Some(EventsTarget::File(events_path.clone())),
            on_event: Some(format!(
                "printf '%s\\n' \"$PLIMSOLL_EVENT $PLIMSOLL_T_UNIX_MS\" >> '{}'",
                hook_out.display()
            )),
            webhook: Some(server.url()),
            hook_timeout: Duration::from_secs(10),
        })
        .expect("sinks");
        let events: Vec<Event> = (1..=3).map(event).collect();
        for event in &events {
            sinks.emit(event);
        }
        let stats = sinks.close(Instant::now() + Duration::from_secs(20));

        assert_eq!(
            stats
                .iter()
                .map(|s| (s.sink, s.delivered, s.failed, s.dropped))
                .collect::<Vec<_>>(),
            vec![("events", 3, 0, 0), ("hook", 3, 0, 0), ("webhook", 3, 0, 0)],
            "{stats:?}"
        );
        let expected: Vec<serde_json::Value> = events.iter().map(Event::to_json).collect();
        let lines = std::fs::read_to_string(&events_path).expect("events file");
        let written: Vec<serde_json::Value> = lines
            .lines()
            .map(|line| serde_json::from_str(line).expect("json line"))
            .collect();
        assert_eq!(written, expected);
        assert_eq!(
            std::fs::read_to_string(&hook_out).expect("hook output"),
            "restarted 1700000000001\nrestarted 1700000000002\nrestarted 1700000000003\n"
        );
        let posted: Vec<serde_json::Value> = server
            .bodies()
            .iter()
            .map(|body| serde_json::from_str(body).expect("json body"))
            .collect();
        assert_eq!(posted, expected);
        server.join();
    }

    #[test]
    fn no_sinks_configured_is_fine() {
        let sinks = Sinks::new(&SinkConfig {
            events: None,
            on_event: None,
            webhook: None,
            hook_timeout: Duration::from_secs(10),
        })
        .expect("sinks");
        sinks.emit(&event(1));
        assert!(sinks.stats().is_empty());
        assert!(sinks.close(Instant::now()).is_empty());
    }

    #[test]
    fn a_bad_part_of_the_config_fails_the_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = Sinks::new(&SinkConfig {
            events: Some(EventsTarget::File(dir.path().join("events.jsonl"))),
            on_event: None,
            webhook: Some("ftp://example.invalid/x".to_owned()),
            hook_timeout: Duration::from_secs(10),
        })
        .expect_err("bad webhook URL");
        assert!(
            format!("{error:#}").contains("'ftp://example.invalid/x'"),
            "{error:#}"
        );
        // Validation comes before the events file is opened.
        assert!(!dir.path().join("events.jsonl").exists());
    }

    #[test]
    fn close_delivers_what_is_queued() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        let sinks = Sinks::new(&SinkConfig {
            events: Some(EventsTarget::File(path.clone())),
            on_event: None,
            webhook: None,
            hook_timeout: Duration::from_secs(10),
        })
        .expect("sinks");
        for n in 0..500 {
            sinks.emit(&event(n));
        }
        let stats = sinks.close(Instant::now() + Duration::from_secs(20));
        assert_eq!((stats[0].delivered, stats[0].dropped), (500, 0));
        let text = std::fs::read_to_string(&path).expect("events file");
        assert_eq!(text.lines().count(), 500);
    }

    #[test]
    fn shutdown_cuts_sleeps_short() {
        let shutdown = Arc::new(Shutdown::default());
        assert!(shutdown.sleep_until(Instant::now() + Duration::from_millis(1)));
        let waker = {
            let shutdown = Arc::clone(&shutdown);
            std::thread::spawn(move || shutdown.begin(Instant::now()))
        };
        // Would take an hour if the shutdown did not wake it.
        assert!(!shutdown.sleep_until(Instant::now() + Duration::from_secs(3600)));
        waker.join().expect("waker");
        assert!(shutdown.is_past());
        let later = Instant::now() + Duration::from_secs(60);
        assert!(shutdown.cap(later) < later);
    }
}
