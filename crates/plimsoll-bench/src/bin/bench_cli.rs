//! `bench_cli`: what users run, measured end to end. `plimsoll analyze` on CSV files of 1 and
//! 10 million samples (throughput and peak memory, each run in a fresh process) against the
//! baseline of reading the same file line by line; and one probe sample of a process (what
//! `check` and the 1 Hz supervisor loop pay) against the baseline of reading its statm file.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use nix::sys::resource::{getrusage, UsageWho};
use plimsoll_bench::table::{Align, Table};
use plimsoll_probe::{Pid, Probe, SampleDepth};

#[derive(Debug, Parser)]
#[command(about = "End-to-end cost of `plimsoll analyze` and of one probe sample")]
struct Args {
    /// Samples in the long file (the short one has a tenth).
    #[arg(long, default_value_t = 10_000_000)]
    samples: u64,
    /// Probe samples to average over.
    #[arg(long, default_value_t = 2_000)]
    probes: u32,
    /// The plimsoll binary to measure.
    #[arg(long, default_value = "target/release/plimsoll")]
    plimsoll: PathBuf,
    /// Internal: run a command, wait, print "seconds peak_rss_kib".
    #[arg(long, hide = true, num_args = 1.., allow_hyphen_values = true)]
    child: Option<Vec<String>>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.child {
        Some(command) => run_child(command),
        None => run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench_cli: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `command` to completion and prints its wall time and peak RSS (the largest resident
/// size of any child of this process: there is only the one).
fn run_child(command: &[String]) -> Result<()> {
    let (program, rest) = command.split_first().context("empty command")?;
    let started = Instant::now();
    let status = Command::new(program)
        .args(rest)
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("cannot run '{program}'"))?;
    let seconds = started.elapsed().as_secs_f64();
    // Exit codes 0, 1 and 3 are verdicts; 2 is an error.
    if status.code() == Some(2) || status.code().is_none() {
        bail!("'{program}' failed: {status}");
    }
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage")?;
    plimsoll_bench::outln!("{seconds} {}", usage.max_rss());
    Ok(())
}

/// Measures `command` in a fresh process: (seconds, peak RSS in KiB).
fn measure(command: &[&str]) -> Result<(f64, u64)> {
    let me = std::env::current_exe().context("current_exe")?;
    let output = Command::new(me)
        .arg("--child")
        .args(command)
        .output()
        .context("spawn child")?;
    if !output.status.success() {
        bail!(
            "measurement failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut fields = text.split_whitespace();
    let seconds = fields.next().context("no time")?.parse()?;
    let kib = fields.next().context("no rss")?.parse()?;
    Ok((seconds, kib))
}

/// Writes a 1 Hz series of `samples` lines: a 1 MB/min leak under a 40 MB, 30 s sawtooth.
fn write_series(path: &Path, samples: u64) -> Result<()> {
    let mut out =
        BufWriter::new(File::create(path).with_context(|| format!("create {}", path.display()))?);
    writeln!(out, "t_s,rss_bytes")?;
    for i in 0..samples {
        let saw = 40 * (1 << 20) * (i % 30) / 30;
        let rss = 100 * (1 << 20) + i * (1 << 20) / 60 + saw;
        writeln!(out, "{i},{rss}")?;
    }
    out.flush()?;
    Ok(())
}

/// Baseline: read the file line by line and count the lines, in this process.
fn read_lines(path: &Path) -> Result<(f64, u64)> {
    let started = Instant::now();
    let mut reader = BufReader::with_capacity(1 << 16, File::open(path)?);
    let mut line = Vec::new();
    let mut lines = 0u64;
    while reader.read_until(b'\n', &mut line)? > 0 {
        lines += 1;
        line.clear();
    }
    Ok((started.elapsed().as_secs_f64(), lines))
}

fn run(args: &Args) -> Result<()> {
    if !args.plimsoll.exists() {
        bail!(
            "no binary at '{}' (build it with cargo build --release -p plimsoll)",
            args.plimsoll.display()
        );
    }
    let plimsoll = args.plimsoll.to_str().context("binary path is not UTF-8")?;
    let dir = tempfile::tempdir().context("tempdir")?;
    let mut table = Table::new(&[
        ("work", Align::Left),
        ("samples", Align::Right),
        ("seconds", Align::Right),
        ("Msamples/s", Align::Right),
        ("x baseline time", Align::Right),
        ("peak RSS MiB", Align::Right),
    ]);
    for samples in [args.samples / 10, args.samples] {
        let path = dir.path().join(format!("series-{samples}.csv"));
        write_series(&path, samples)?;
        let file = path.to_str().context("temp path is not UTF-8")?;
        let (base_s, lines) = read_lines(&path)?;
        table.row(vec![
            "read lines (baseline)".into(),
            (lines - 1).to_string(),
            format!("{base_s:.3}"),
            format!("{:.2}", samples as f64 / base_s / 1e6),
            "1.00".into(),
            "-".into(),
        ]);
        let (seconds, kib) = measure(&[plimsoll, "analyze", "--json", file])?;
        table.row(vec![
            "plimsoll analyze".into(),
            samples.to_string(),
            format!("{seconds:.3}"),
            format!("{:.2}", samples as f64 / seconds / 1e6),
            format!("{:.2}", seconds / base_s),
            format!("{:.1}", kib as f64 / 1024.0),
        ]);
        table.rule();
    }
    plimsoll_bench::outln!("== plimsoll analyze, end to end (CSV parse + detector) ==");
    print!("{table}");

    plimsoll_bench::outln!();
    plimsoll_bench::outln!(
        "== one probe sample of this process (what check and the 1 Hz loop pay) =="
    );
    print!("{}", probe_table(args.probes)?);
    Ok(())
}

/// CPU time of this process, user + system.
fn cpu_time() -> Result<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_SELF).context("getrusage")?;
    let to =
        |tv: nix::sys::time::TimeVal| Duration::new(tv.tv_sec() as u64, tv.tv_usec() as u32 * 1000);
    Ok(to(usage.user_time()) + to(usage.system_time()))
}

fn per_call(calls: u32, mut work: impl FnMut() -> Result<()>) -> Result<Duration> {
    let before = cpu_time()?;
    for _ in 0..calls {
        work()?;
    }
    Ok((cpu_time()? - before) / calls)
}

fn probe_table(calls: u32) -> Result<Table> {
    let pid = Pid::current();
    let statm = format!("/proc/{}/statm", pid.0);
    let baseline = per_call(calls, || {
        std::fs::read_to_string(&statm)?;
        Ok(())
    })?;
    let mut probe = Probe::new(pid).context("probe self")?;
    let fast = per_call(calls, || {
        probe.sample(SampleDepth::Fast)?;
        Ok(())
    })?;
    let full = per_call(calls, || {
        probe.sample(SampleDepth::Full)?;
        Ok(())
    })?;
    let check = per_call(calls / 4, || {
        Probe::new(pid)?.sample(SampleDepth::Full)?;
        Ok(())
    })?;
    let mut table = Table::new(&[
        ("work", Align::Left),
        ("CPU µs/call", Align::Right),
        ("x baseline", Align::Right),
    ]);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    for (name, cost) in [
        ("read /proc/PID/statm (baseline)", baseline),
        ("probe sample, fast (status)", fast),
        ("probe sample, full (+smaps_rollup)", full),
        ("check: new probe + full sample", check),
    ] {
        table.row(vec![
            name.into(),
            format!("{:.1}", us(cost)),
            format!("{:.2}", us(cost) / us(baseline).max(1e-9)),
        ]);
    }
    Ok(table)
}
