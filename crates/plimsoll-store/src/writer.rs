//! The writer thread: the supervisor hands writes to it without ever waiting on the disk.
//!
//! [`WriterHandle::try_send`] puts a [`Write`] on a bounded queue and returns at once; when the
//! queue is full the write is dropped and counted ([`WriterStats::dropped`]), so a slow or
//! stuck disk costs data, never the supervisor's loop. The thread batches samples (one
//! transaction per [`WriterConfig::max_batch_rows`] rows or per
//! [`WriterConfig::max_batch_delay`], whichever comes first) and writes events, incidents and
//! compactions at once, after the samples queued before them. A failed write is counted and
//! handed to the error callback; it never stops the thread. Memory is bounded: the queue holds
//! at most `capacity` writes and the batch at most `max_batch_rows` rows plus one write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::retention::Retention;
use crate::rows::SampleRow;
use crate::store::Store;

/// One write for the writer thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Samples to append, batched with the ones around them.
    Samples(Vec<SampleRow>),
    /// An event to append (see [`Store::insert_event`]).
    Event {
        /// The target's name.
        target: String,
        /// When it happened, milliseconds since the Unix epoch.
        t_unix_ms: i64,
        /// The event's kind, e.g. `restarted`.
        kind: String,
        /// The event as JSON, stored as given.
        payload_json: String,
    },
    /// An incident to record (see [`Store::record_incident`]); the samples queued before it
    /// are written first, so they are part of it.
    Incident {
        /// The target's name.
        target: String,
        /// When it happened, milliseconds since the Unix epoch.
        t_unix_ms: i64,
        /// Why, e.g. `budget-breach`.
        reason: String,
        /// How far back the evidence reaches.
        lookback: Duration,
        /// The heap snapshot written for it, when there is one.
        snapshot_path: Option<String>,
    },
    /// One bounded compaction step (see [`Store::compact`]).
    Compact {
        /// The time to apply retention at, milliseconds since the Unix epoch.
        now_unix_ms: i64,
        /// What to keep.
        retention: Retention,
    },
}

/// How the writer thread queues and batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterConfig {
    /// How many writes may wait in the queue (at least 1; 0 counts as 1).
    pub capacity: usize,
    /// Samples are committed once this many are pending (at least 1; 0 counts as 1).
    pub max_batch_rows: usize,
    /// Samples are committed at the latest this long after the first of a batch arrived.
    pub max_batch_delay: Duration,
}

impl WriterConfig {
    /// A queue of 1,024 writes (over 15 minutes of one write a second, should the disk
    /// stall), batches of up to 2,000 rows, and at most 1 s between a sample and its commit
    /// (what readers of the store, like the HTTP API, lag behind).
    pub fn recommended() -> WriterConfig {
        WriterConfig {
            capacity: 1024,
            max_batch_rows: 2_000,
            max_batch_delay: Duration::from_secs(1),
        }
    }
}

/// Why [`WriterHandle::try_send`] did not queue a write. Either way the write is dropped and
/// counted in [`WriterStats::dropped`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteDropped {
    /// The queue is full: the disk is slower than the writes.
    #[error("store writer queue is full")]
    Full,
    /// The writer thread has stopped.
    #[error("store writer is closed")]
    Closed,
}

/// What the writer thread has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    /// Writes dropped because the queue was full or the thread had stopped.
    pub dropped: u64,
    /// Writes that failed in SQLite (each also went to the error callback).
    pub errors: u64,
    /// Samples committed.
    pub samples_written: u64,
    /// Samples lost in failed batches.
    pub samples_lost: u64,
    /// Events committed.
    pub events_written: u64,
    /// Incidents committed.
    pub incidents_written: u64,
    /// Compaction steps committed.
    pub compactions: u64,
}

#[derive(Debug, Default)]
struct Counters {
    dropped: AtomicU64,
    errors: AtomicU64,
    samples_written: AtomicU64,
    samples_lost: AtomicU64,
    events_written: AtomicU64,
    incidents_written: AtomicU64,
    compactions: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> WriterStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WriterStats {
            dropped: get(&self.dropped),
            errors: get(&self.errors),
            samples_written: get(&self.samples_written),
            samples_lost: get(&self.samples_lost),
            events_written: get(&self.events_written),
            incidents_written: get(&self.incidents_written),
            compactions: get(&self.compactions),
        }
    }
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

enum Msg {
    Write(Write),
    /// Write everything queued before, then answer.
    Flush(SyncSender<()>),
    /// Write everything queued, then stop.
    Close,
    /// Test hook: the thread says it is paused, then waits until told to go on.
    #[cfg(test)]
    Pause {
        paused: SyncSender<()>,
        resume: Receiver<()>,
    },
}

/// A cheap, cloneable way to send writes to the writer thread, for every task that has some.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    tx: SyncSender<Msg>,
    counters: Arc<Counters>,
}

impl WriterHandle {
    /// Queues `write` and returns at once: never blocks. When the queue is full or the thread
    /// has stopped, the write is dropped and counted.
    pub fn try_send(&self, write: Write) -> Result<(), WriteDropped> {
        match self.tx.try_send(Msg::Write(write)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                add(&self.counters.dropped, 1);
                Err(WriteDropped::Full)
            }
            Err(TrySendError::Disconnected(_)) => {
                add(&self.counters.dropped, 1);
                Err(WriteDropped::Closed)
            }
        }
    }

    /// Blocks until everything queued before this call is committed (or failed). For tests,
    /// tools and shutdown paths, not for the supervisor's loop: it waits for the disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        let (reply, done) = mpsc::sync_channel(1);
        self.tx
            .send(Msg::Flush(reply))
            .map_err(|_| StoreError::WriterGone)?;
        done.recv().map_err(|_| StoreError::WriterGone)
    }

    /// How many writes were dropped so far.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// What the writer thread has done so far.
    pub fn stats(&self) -> WriterStats {
        self.counters.snapshot()
    }
}

/// The writer thread and the handle to it. Dropping it without
/// [`StoreWriter::flush_and_close`] lets the thread finish the queue and stop on its own once
/// every [`WriterHandle`] is gone.
#[derive(Debug)]
pub struct StoreWriter {
    handle: WriterHandle,
    thread: JoinHandle<Store>,
}

impl StoreWriter {
    /// Moves `store` onto a new thread named `plimsoll-store` that writes what the handles
    /// send. `on_error` is called on that thread with every write that failed (to log it).
    pub fn spawn(
        store: Store,
        config: &WriterConfig,
        on_error: impl FnMut(StoreError) + Send + 'static,
    ) -> Result<StoreWriter, StoreError> {
        let (tx, rx) = mpsc::sync_channel(config.capacity.max(1));
        let counters = Arc::new(Counters::default());
        let max_batch_rows = config.max_batch_rows.max(1);
        let worker = Worker {
            store,
            pending: Vec::with_capacity(max_batch_rows),
            max_batch_rows,
            max_batch_delay: config.max_batch_delay,
            deadline: None,
            counters: Arc::clone(&counters),
            on_error: Box::new(on_error),
        };
        let thread = std::thread::Builder::new()
            .name("plimsoll-store".into())
            .spawn(move || worker.run(&rx))
            .map_err(StoreError::Spawn)?;
        Ok(StoreWriter {
            handle: WriterHandle { tx, counters },
            thread,
        })
    }

    /// A handle for another task to send writes with.
    pub fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// See [`WriterHandle::try_send`].
    pub fn try_send(&self, write: Write) -> Result<(), WriteDropped> {
        self.handle.try_send(write)
    }

    /// See [`WriterHandle::flush`].
    pub fn flush(&self) -> Result<(), StoreError> {
        self.handle.flush()
    }

    /// See [`WriterHandle::dropped`].
    pub fn dropped(&self) -> u64 {
        self.handle.dropped()
    }

    /// See [`WriterHandle::stats`].
    pub fn stats(&self) -> WriterStats {
        self.handle.stats()
    }

    /// Writes everything queued (waiting for room in the queue if it is full), stops the
    /// thread and gives the store back with the final counts. Writes that other handles send
    /// afterwards are dropped and counted.
    pub fn flush_and_close(self) -> Result<(Store, WriterStats), StoreError> {
        let StoreWriter { handle, thread } = self;
        // If this fails the thread is gone, and join says how.
        let _ = handle.tx.send(Msg::Close);
        let counters = Arc::clone(&handle.counters);
        drop(handle);
        let store = thread.join().map_err(|_| StoreError::WriterGone)?;
        Ok((store, counters.snapshot()))
    }
}

struct Worker {
    store: Store,
    /// Samples not yet committed; at most `max_batch_rows` plus one write's worth.
    pending: Vec<SampleRow>,
    max_batch_rows: usize,
    max_batch_delay: Duration,
    /// When `pending` must be committed at the latest; `None` while it is empty.
    deadline: Option<Instant>,
    counters: Arc<Counters>,
    on_error: Box<dyn FnMut(StoreError) + Send>,
}

impl Worker {
    fn run(mut self, rx: &Receiver<Msg>) -> Store {
        loop {
            let msg = match self.deadline {
                None => rx.recv().ok(),
                Some(deadline) => {
                    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                        Ok(msg) => Some(msg),
                        Err(RecvTimeoutError::Timeout) => {
                            self.commit_samples();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => None,
                    }
                }
            };
            match msg {
                Some(Msg::Close) => {
                    // Bounded by the queue's capacity at the time of the close.
                    while let Ok(msg) = rx.try_recv() {
                        self.handle(msg);
                    }
                    break;
                }
                Some(msg) => self.handle(msg),
                None => break,
            }
        }
        self.commit_samples();
        self.store
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Write(Write::Samples(rows)) => {
                if self.pending.is_empty() {
                    self.deadline = Some(Instant::now() + self.max_batch_delay);
                }
                self.pending.extend(rows);
                if self.pending.len() >= self.max_batch_rows {
                    self.commit_samples();
                }
            }
            Msg::Write(write) => {
                self.commit_samples();
                self.apply(write);
            }
            Msg::Flush(reply) => {
                self.commit_samples();
                let _ = reply.send(());
            }
            Msg::Close => {}
            #[cfg(test)]
            Msg::Pause { paused, resume } => {
                let _ = paused.send(());
                let _ = resume.recv();
            }
        }
    }

    fn apply(&mut self, write: Write) {
        let result = match write {
            Write::Samples(rows) => {
                // `handle` batches samples; here they are written at once.
                self.pending.extend(rows);
                self.commit_samples();
                Ok(())
            }
            Write::Event {
                target,
                t_unix_ms,
                kind,
                payload_json,
            } => self
                .store
                .insert_event(&target, t_unix_ms, &kind, &payload_json)
                .map(|_| add(&self.counters.events_written, 1)),
            Write::Incident {
                target,
                t_unix_ms,
                reason,
                lookback,
                snapshot_path,
            } => self
                .store
                .record_incident(
                    &target,
                    t_unix_ms,
                    &reason,
                    lookback,
                    snapshot_path.as_deref(),
                )
                .map(|_| add(&self.counters.incidents_written, 1)),
            Write::Compact {
                now_unix_ms,
                retention,
            } => self
                .store
                .compact(now_unix_ms, &retention)
                .map(|_| add(&self.counters.compactions, 1)),
        };
        if let Err(error) = result {
            self.failed(error);
        }
    }

    fn commit_samples(&mut self) {
        self.deadline = None;
        if self.pending.is_empty() {
            return;
        }
        match self.store.insert_samples(&self.pending) {
            Ok(()) => add(&self.counters.samples_written, self.pending.len()),
            Err(error) => {
                add(&self.counters.samples_lost, self.pending.len());
                self.failed(error);
            }
        }
        self.pending.clear();
        // One huge write must not keep a huge buffer alive.
        if self.pending.capacity() > 4 * self.max_batch_rows {
            self.pending.shrink_to(self.max_batch_rows);
        }
    }

    fn failed(&mut self, error: StoreError) {
        add(&self.counters.errors, 1);
        (self.on_error)(error);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn config(capacity: usize) -> WriterConfig {
        WriterConfig {
            capacity,
            max_batch_rows: 100,
            max_batch_delay: Duration::from_millis(20),
        }
    }

    fn samples(target: &str, from: i64, n: i64) -> Write {
        Write::Samples(
            (from..from + n)
                .map(|t| SampleRow::new(target, t, 1))
                .collect(),
        )
    }

    #[test]
    fn writes_arrive_in_order_and_close_drains_the_queue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let writer = StoreWriter::spawn(store, &config(64), |_| {}).expect("spawn");
        writer.try_send(samples("api", 0, 250)).expect("samples");
        writer
            .try_send(Write::Event {
                target: "api".into(),
                t_unix_ms: 300,
                kind: "budget-breach".into(),
                payload_json: "{}".into(),
            })
            .expect("event");
        writer
            .try_send(Write::Incident {
                target: "api".into(),
                t_unix_ms: 300,
                reason: "budget-breach".into(),
                lookback: Duration::from_millis(100),
                snapshot_path: None,
            })
            .expect("incident");
        writer.try_send(samples("api", 400, 3)).expect("tail");
        writer
            .try_send(Write::Compact {
                now_unix_ms: 1_000,
                retention: Retention::recommended(),
            })
            .expect("compact");
        writer.try_send(samples("api", 500, 2)).expect("last");

        let (store, stats) = writer.flush_and_close().expect("close");
        assert_eq!(
            stats,
            WriterStats {
                samples_written: 255,
                events_written: 1,
                incidents_written: 1,
                compactions: 1,
                ..WriterStats::default()
            }
        );
        assert_eq!(store.samples("api", 0, 1_000).expect("read").len(), 255);
        let incident = store.incident(1).expect("read").expect("exists");
        // The samples sent before the incident are part of it: (200, 300] ∩ [0, 250).
        assert_eq!(incident.samples.len(), 49);
        assert_eq!(incident.events.len(), 1);
    }

    #[test]
    fn samples_are_committed_within_the_batch_delay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let writer = StoreWriter::spawn(store, &config(64), |_| {}).expect("spawn");
        let reader = crate::StoreReader::open(dir.path()).expect("reader");
        writer.try_send(samples("api", 0, 3)).expect("send");
        let deadline = Instant::now() + Duration::from_secs(5);
        while reader.samples("api", 0, 10).expect("read").len() < 3 {
            assert!(Instant::now() < deadline, "not committed");
            std::thread::yield_now();
        }
        // The counter is bumped right after the commit the reader already sees.
        while writer.stats().samples_written < 3 {
            assert!(Instant::now() < deadline, "not counted");
            std::thread::yield_now();
        }
        assert_eq!(writer.stats().samples_written, 3);
        writer.flush_and_close().expect("close");
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let writer = StoreWriter::spawn(store, &config(4), |_| {}).expect("spawn");

        // Stall the thread as a stuck disk would.
        let (paused_tx, paused) = mpsc::sync_channel(1);
        let (resume, resume_rx) = mpsc::sync_channel(1);
        writer
            .handle
            .tx
            .send(Msg::Pause {
                paused: paused_tx,
                resume: resume_rx,
            })
            .expect("pause");
        paused.recv().expect("paused");

        let started = Instant::now();
        let mut outcomes = Vec::new();
        for i in 0..1_000 {
            outcomes.push(writer.try_send(samples("api", i, 1)));
        }
        // A blocking send would never return while the thread is paused.
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(outcomes[..4].iter().all(Result::is_ok));
        assert!(outcomes[4..].iter().all(|o| *o == Err(WriteDropped::Full)));
        assert_eq!(writer.dropped(), 996);

        resume.send(()).expect("resume");
        let (store, stats) = writer.flush_and_close().expect("close");
        assert_eq!(stats.samples_written, 4);
        assert_eq!(stats.dropped, 996);
        assert_eq!(store.samples("api", 0, 10_000).expect("read").len(), 4);
    }

    #[test]
    fn failed_writes_are_counted_reported_and_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let writer = StoreWriter::spawn(store, &config(64), move |e: StoreError| {
            if let Ok(mut seen) = sink.lock() {
                seen.push(e.to_string());
            }
        })
        .expect("spawn");
        writer.try_send(samples("", 0, 2)).expect("bad samples");
        writer
            .try_send(Write::Event {
                target: String::new(),
                t_unix_ms: 0,
                kind: "x".into(),
                payload_json: "{}".into(),
            })
            .expect("bad event");
        writer.try_send(samples("api", 0, 2)).expect("good");
        writer.flush().expect("flush");
        assert_eq!(writer.stats().errors, 2);
        assert_eq!(writer.stats().samples_lost, 2);
        assert_eq!(writer.stats().samples_written, 2);
        let (_, stats) = writer.flush_and_close().expect("close");
        assert_eq!(stats.errors, 2);
        assert_eq!(
            *seen.lock().expect("lock"),
            ["empty target name ''", "empty target name ''"]
        );
    }

    #[test]
    fn sends_after_close_are_dropped_as_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let writer = StoreWriter::spawn(store, &config(4), |_| {}).expect("spawn");
        let handle = writer.handle();
        writer.flush_and_close().expect("close");
        assert_eq!(
            handle.try_send(samples("api", 0, 1)),
            Err(WriteDropped::Closed)
        );
        assert_eq!(handle.dropped(), 1);
        assert!(matches!(handle.flush(), Err(StoreError::WriterGone)));
    }
}
