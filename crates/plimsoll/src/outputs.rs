//! Where a supervisor's events and samples go: the log, the sinks (events file, on-event
//! command, webhook) and the embedded store. Every output is non-blocking; a failing one is
//! logged and counted, never fatal.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use plimsoll_analysis::Level;
use plimsoll_probe::Sample;
use plimsoll_store::{Retention, SampleRow, Store, StoreWriter, Write, WriterConfig};

use crate::agent::HeapFigures;
use crate::event::Event;
use crate::sinks::{SinkConfig, Sinks};
use crate::supervise::EventOutput;

/// How far back an incident's evidence reaches.
const INCIDENT_LOOKBACK: Duration = Duration::from_secs(5 * 60);
/// How often the store applies its retention.
const COMPACT_EVERY: Duration = Duration::from_secs(60);

/// The outputs of one supervisor.
#[derive(Debug)]
pub(crate) struct Outputs {
    sinks: Sinks,
    store: StoreWriter,
    last_compact: Instant,
    /// Samples sent since the last compaction: its bound is scaled to them, so that retention
    /// keeps up with any number of targets.
    samples_since_compact: u64,
}

impl Outputs {
    /// Opens the store in `data_dir` and starts the sinks; nothing is started when either is
    /// misconfigured.
    pub(crate) fn open(data_dir: &Path, sinks: &SinkConfig) -> Result<Outputs> {
        let sinks = Sinks::new(sinks).context("bad event sink")?;
        let store = Store::open(data_dir)
            .with_context(|| format!("cannot open the store in '{}'", data_dir.display()))?;
        let mut failures: u64 = 0;
        let store = StoreWriter::spawn(store, &WriterConfig::recommended(), move |error| {
            // With the cause: "store insert samples failed: database or disk is full".
            failures += 1;
            let error = anyhow::Error::new(error);
            tracing::warn!(error = %format!("{error:#}"), failures, "store write failed");
        })
        .context("cannot start the store writer")?;
        Ok(Outputs {
            sinks,
            store,
            last_compact: Instant::now(),
            samples_since_compact: 0,
        })
    }

    /// Delivers what is queued (within a few seconds) and stops the workers.
    pub(crate) fn close(self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        for stats in self.sinks.close(deadline) {
            if stats.failed > 0 || stats.dropped > 0 {
                tracing::warn!(
                    sink = stats.sink,
                    delivered = stats.delivered,
                    failed = stats.failed,
                    dropped = stats.dropped,
                    last_error = ?stats.last_error,
                    "sink had trouble"
                );
            }
        }
        match self.store.flush_and_close() {
            Ok((_, stats)) => {
                if stats.dropped > 0 {
                    tracing::warn!(dropped = stats.dropped, "store dropped writes (queue full)");
                }
                if stats.errors > 0 {
                    tracing::warn!(
                        failures = stats.errors,
                        samples_lost = stats.samples_lost,
                        "store writes failed during the run"
                    );
                }
            }
            Err(error) => tracing::warn!(%error, "store did not close cleanly"),
        }
    }

    fn send(&self, write: Write) {
        if let Err(dropped) = self.store.try_send(write) {
            tracing::debug!(?dropped, "store write dropped");
        }
    }
}

impl EventOutput for Outputs {
    fn emit(&mut self, event: &Event) {
        tracing::info!(target_name = %event.target, "{}", event.describe());
        self.sinks.emit(event);
        self.send(Write::Event {
            target: event.target.clone(),
            t_unix_ms: event.t_unix_ms,
            kind: event.kind.name().to_owned(),
            payload_json: event.to_json().to_string(),
        });
    }

    fn sample(
        &mut self,
        name: &str,
        t_unix_ms: i64,
        sample: &Sample,
        heap: Option<&HeapFigures>,
        budget: Option<u64>,
        level: Level,
    ) {
        let cgroup = sample.cgroup.as_ref();
        let row = SampleRow {
            heap_used_bytes: heap.map(|h| h.heap_used_bytes),
            heap_total_bytes: heap.map(|h| h.heap_total_bytes),
            heap_used_after_gc_bytes: heap.and_then(|h| h.heap_used_after_gc_bytes),
            external_bytes: heap.map(|h| h.external_bytes),
            pss_bytes: sample.pss.map(|b| b.0),
            uss_bytes: sample.uss.map(|b| b.0),
            swap_bytes: Some(sample.swap.0),
            cgroup_usage_bytes: cgroup.map(|c| c.usage.0),
            cgroup_limit_bytes: cgroup.and_then(|c| c.limit).map(|b| b.0),
            budget_bytes: budget,
            level: Some(level.as_str().to_owned()),
            ..SampleRow::new(name, t_unix_ms, sample.rss.0)
        };
        self.send(Write::Samples(vec![row]));
        self.samples_since_compact += 1;
        if self.last_compact.elapsed() >= COMPACT_EVERY {
            self.last_compact = Instant::now();
            let inserted = std::mem::take(&mut self.samples_since_compact);
            self.send(Write::Compact {
                now_unix_ms: t_unix_ms,
                retention: Retention::recommended().keeping_up_with(inserted),
            });
        }
    }

    fn incident(&mut self, name: &str, t_unix_ms: i64, reason: &str, snapshot: Option<&str>) {
        self.send(Write::Incident {
            target: name.to_owned(),
            t_unix_ms,
            reason: reason.to_owned(),
            lookback: INCIDENT_LOOKBACK,
            snapshot_path: snapshot.map(str::to_owned),
        });
    }
}
