//! Soak of the store: writes many samples through the writer thread, with compaction every
//! simulated minute, and prints throughput and the process's peak RSS (VmHWM) as it goes, to
//! show that memory stays flat however long the supervisor runs.
//!
//! `cargo run --release -p plimsoll-store --example store_soak -- [SAMPLES] [TARGETS]`
//! (defaults: 1,000,000 samples over 10 targets, one sample per target per simulated second).

use std::time::{Duration, Instant};

use plimsoll_store::{Retention, SampleRow, Store, StoreWriter, Write, WriteDropped, WriterConfig};

const T0: i64 = 1_700_000_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let targets: u64 = args.next().map_or(Ok(10), |a| a.parse())?;
    let names: Vec<String> = (0..targets).map(|i| format!("target-{i}")).collect();

    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let writer = StoreWriter::spawn(store, &WriterConfig::recommended(), |error| {
        eprintln!("store write failed: {error}");
    })?;
    let retention = Retention::recommended();

    println!(
        "{:>10} {:>9} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "samples", "sim_h", "rows/s", "VmRSS_kB", "VmHWM_kB", "db_kB", "queue_full"
    );
    let started = Instant::now();
    let mut written = 0_u64;
    let mut full = 0_u64;
    let mut tick = 0_i64;
    let mut next_report = total / 10;
    while written < total {
        let t = T0 + tick * 1_000;
        let rows: Vec<SampleRow> = names
            .iter()
            .enumerate()
            .map(|(i, name)| sample(name, t, tick, i as u64))
            .collect();
        written += rows.len() as u64;
        send(&writer, Write::Samples(rows), &mut full)?;
        if tick % 60 == 59 {
            send(
                &writer,
                Write::Compact {
                    now_unix_ms: t,
                    retention: retention.clone(),
                },
                &mut full,
            )?;
        }
        tick += 1;
        if written >= next_report {
            writer.flush()?;
            report(written, tick, started.elapsed(), dir.path(), full);
            next_report += total / 10;
        }
    }
    let (store, stats) = writer.flush_and_close()?;
    report(written, tick, started.elapsed(), dir.path(), full);
    let series = store.series(&names[0], 0, usize::MAX)?;
    println!(
        "{stats:?}\n{} points kept for {} ({} raw), integrity problems: {:?}",
        series.len(),
        names[0],
        store.samples(&names[0], 0, usize::MAX)?.len(),
        store.integrity_problems()?
    );
    Ok(())
}

/// A plausible sample: a slow sawtooth around 200 MiB.
fn sample(name: &str, t: i64, tick: i64, i: u64) -> SampleRow {
    let rss = 200 * 1024 * 1024 + (tick as u64 % 300) * 64 * 1024 + i;
    let mut s = SampleRow::new(name, t, rss);
    s.pss_bytes = Some(rss - 4096);
    s.heap_used_bytes = Some(rss / 2);
    s.heap_total_bytes = Some(rss / 2 + (8 << 20));
    s.heap_used_after_gc_bytes = Some(rss / 3);
    s.external_bytes = Some(1 << 20);
    s.budget_bytes = Some(512 << 20);
    s.level = Some("ok".into());
    s
}

/// Queues a write; when the queue is full (the soak produces far faster than a supervisor),
/// waits for the writer to catch up and retries, so that nothing is lost from the count.
fn send(
    writer: &StoreWriter,
    write: Write,
    full: &mut u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut write = Some(write);
    while let Some(w) = write.take() {
        match writer.try_send(w.clone()) {
            Ok(()) => {}
            Err(WriteDropped::Full) => {
                *full += 1;
                writer.flush()?;
                write = Some(w);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn report(written: u64, ticks: i64, elapsed: Duration, dir: &std::path::Path, full: u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let db_kb: u64 = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len() / 1024)
                .sum()
        })
        .unwrap_or(0);
    println!(
        "{:>10} {:>9.1} {:>10.0} {:>10} {:>10} {:>10} {:>8}",
        written,
        ticks as f64 / 3600.0,
        written as f64 / elapsed.as_secs_f64(),
        field("VmRSS:"),
        field("VmHWM:"),
        db_kb,
        full
    );
}
