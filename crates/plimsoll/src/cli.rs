//! What the user typed: the command line, parsed and validated without I/O (the first of the
//! two configuration stages; commands resolve paths and limits themselves).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use std::time::Duration;

use crate::units::{parse_duration, ByteSize};

/// Keeps a service under its memory budget: tells a real leak from a GC sawtooth, restarts
/// before the OOM killer does, and proves in CI that a change does not leak.
#[derive(Debug, Parser)]
#[command(name = "plimsoll", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 no leak / success, 1 leak found or budget failed, \
2 bad usage or bad input, 3 inconclusive.\nSizes: 512M, 512MiB, 1.5G, 1073741824 (K/M/G and \
KiB/MiB/GiB are powers of 1024; KB/MB/GB powers of 1000). Durations: 500ms, 30s, 5m, 1h."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Verdict on a recorded memory series (CSV with t_s and rss_bytes columns)
    Analyze(AnalyzeArgs),
    /// One-shot breakdown of a process tree's memory, its cgroup and PSI
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AnalyzeArgs {
    /// CSV file with a header line: t_s and rss_bytes are required; heap_used_after_gc_bytes
    /// and others are used when present. `-` reads standard input
    pub(crate) file: PathBuf,
    /// Print the verdict as one JSON object
    #[arg(long)]
    pub(crate) json: bool,
    /// Memory budget, for the projected time until it is reached (e.g. 512MiB, 2G)
    #[arg(long, value_name = "SIZE")]
    pub(crate) budget: Option<ByteSize>,
    /// Leave out samples from the first DURATION of the series (start-up), e.g. 2m
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) warmup: Option<Duration>,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Process id: the process and all its descendants are measured
    pub(crate) pid: u32,
    /// Print the breakdown as one JSON object
    #[arg(long)]
    pub(crate) json: bool,
}
