//! Graceful shutdown: one cancellation token and one task tracker for the whole service.
//! Tasks and timers started through [`Shutdown`] stop when it fires; flush hooks (a log
//! buffer, a batch in progress) run after the tasks have stopped, so nothing refills a buffer
//! that was just flushed; and the whole stop is bounded by a grace period, as a supervisor's
//! SIGKILL will not wait longer.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

type Flush = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The service's shutdown: cheap to clone, every clone the same.
#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
    flushes: Arc<Mutex<Vec<(String, Flush)>>>,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("cancelled", &self.token.is_cancelled())
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

/// How a shutdown went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Whether every tracked task stopped within the grace period.
    pub tasks_stopped: bool,
    /// Tasks still running when the grace period ran out (they are left to the runtime).
    pub tasks_left: usize,
    /// The flush hooks that ran to completion, by name, in the order they were added.
    pub flushed: Vec<String>,
    /// The flush hooks cut short by the grace period.
    pub not_flushed: Vec<String>,
}

impl Shutdown {
    /// A shutdown that has not fired.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// The token that fires at shutdown (a child token: cancelling it stops nothing else).
    pub fn token(&self) -> CancellationToken {
        self.token.child_token()
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Waits until shutdown begins.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    /// Spawns a task that is waited for at shutdown. It should watch [`Shutdown::token`] and
    /// finish its current piece of work; it is not aborted.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// Spawns a task that is dropped at its next await once shutdown begins.
    pub fn spawn_until_shutdown<F>(&self, task: F) -> JoinHandle<Option<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let token = self.token.clone();
        self.tasks
            .spawn(async move { token.run_until_cancelled(task).await })
    }

    /// Runs `tick` every `period` (the first after one period) until shutdown: a timer that
    /// cannot outlive the service.
    pub fn every(
        &self,
        period: Duration,
        mut tick: impl FnMut() + Send + 'static,
    ) -> JoinHandle<()> {
        let token = self.token.clone();
        self.tasks.spawn(async move {
            let start = tokio::time::Instant::now() + period;
            let mut ticks = tokio::time::interval_at(start, period.max(Duration::from_millis(1)));
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    _ = ticks.tick() => tick(),
                }
            }
        })
    }

    /// Adds a flush hook, run at shutdown after the tasks have stopped.
    pub fn on_shutdown(&self, name: &str, flush: impl Future<Output = ()> + Send + 'static) {
        self.flushes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name.to_owned(), Box::pin(flush)));
    }

    /// Begins shutdown without waiting (e.g. from a signal handler or an admin route).
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Shuts down: fires the token, waits for the tracked tasks, then runs the flush hooks in
    /// order, all within `grace`.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.token.cancel();
        self.tasks.close();
        let deadline = tokio::time::Instant::now() + grace;
        let tasks_stopped = tokio::time::timeout_at(deadline, self.tasks.wait())
            .await
            .is_ok();
        let tasks_left = self.tasks.len();
        if !tasks_stopped {
            tracing::warn!(
                tasks_left,
                "tasks still running at the end of the grace period"
            );
        }
        let hooks =
            std::mem::take(&mut *self.flushes.lock().unwrap_or_else(PoisonError::into_inner));
        let mut report = ShutdownReport {
            tasks_stopped,
            tasks_left,
            flushed: Vec::new(),
            not_flushed: Vec::new(),
        };
        for (name, flush) in hooks {
            if tokio::time::timeout_at(deadline, flush).await.is_ok() {
                report.flushed.push(name);
            } else {
                tracing::warn!(hook = %name, "flush cut short by the grace period");
                report.not_flushed.push(name);
            }
        }
        report
    }
}

/// Waits for SIGTERM (what `plimsoll run` and systemd send) or SIGINT; returns its name.
pub async fn signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn timers_and_tasks_stop_then_buffers_flush_in_order() {
        let shutdown = Shutdown::new();
        let ticks = Arc::new(AtomicUsize::new(0));
        shutdown.every(Duration::from_secs(1), {
            let ticks = ticks.clone();
            move || {
                ticks.fetch_add(1, Ordering::SeqCst);
            }
        });
        let token = shutdown.token();
        let worker = shutdown.spawn(async move {
            token.cancelled().await;
            "finished its piece of work"
        });
        let buffer = Arc::new(Mutex::new(vec!["line 1", "line 2"]));
        let sink = Arc::new(Mutex::new(Vec::new()));
        shutdown.on_shutdown("log buffer", {
            let (buffer, sink) = (buffer.clone(), sink.clone());
            async move {
                let lines = std::mem::take(&mut *buffer.lock().expect("buffer"));
                sink.lock().expect("sink").extend(lines);
            }
        });
        shutdown.on_shutdown("metrics", async {});
        // Let the timer task start, then move the fake clock 3.5 s, a step at a time.
        tokio::task::yield_now().await;
        for _ in 0..7 {
            tokio::time::advance(Duration::from_millis(500)).await;
            tokio::task::yield_now().await;
        }
        assert_eq!(ticks.load(Ordering::SeqCst), 3);

        let report = shutdown.shutdown(Duration::from_secs(5)).await;
        assert_eq!(
            report,
            ShutdownReport {
                tasks_stopped: true,
                tasks_left: 0,
                flushed: vec!["log buffer".to_owned(), "metrics".to_owned()],
                not_flushed: vec![],
            }
        );
        assert_eq!(worker.await.expect("worker"), "finished its piece of work");
        assert_eq!(*sink.lock().expect("sink"), ["line 1", "line 2"]);
        // The timer is gone: time passing ticks nothing more.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), 3);
        assert!(shutdown.is_shutting_down());
    }

    #[tokio::test(start_paused = true)]
    async fn the_grace_period_bounds_a_task_that_will_not_stop() {
        let shutdown = Shutdown::new();
        shutdown.spawn(std::future::pending::<()>());
        let dropped = shutdown.spawn_until_shutdown(std::future::pending::<()>());
        shutdown.on_shutdown("slow", std::future::pending());
        let report = shutdown.shutdown(Duration::from_secs(2)).await;
        assert!(!report.tasks_stopped);
        assert_eq!(
            report.tasks_left, 1,
            "the pending task; the other was dropped"
        );
        assert_eq!(report.not_flushed, ["slow"]);
        assert_eq!(dropped.await.expect("joined"), None);
    }
}
