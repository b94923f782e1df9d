//! What one sample costs: CPU time per `check` (probe made and one full sample) and per
//! sample of a reused probe at both depths, with and without reading the cgroup. Run with
//! `cargo run --release -p plimsoll-probe --example sample_cost -- [PID] [ITERATIONS]`
//! (default: this process, 2000 iterations).

#[cfg(target_os = "linux")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use plimsoll_probe::{Pid, Probe, SampleDepth};

    let mut args = std::env::args().skip(1);
    let pid = match args.next() {
        Some(text) => Pid(text.parse().map_err(|_| format!("invalid pid '{text}'"))?),
        None => Pid::current(),
    };
    let iterations: u32 = match args.next() {
        Some(text) => text
            .parse()
            .map_err(|_| format!("invalid iteration count '{text}'"))?,
        None => 2000,
    };

    let mut probe = Probe::new(pid)?;
    let sample = probe.sample(SampleDepth::Full)?;
    let system_processes = std::fs::read_dir("/proc")?
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.parse::<u32>().is_ok())
        })
        .count();
    println!(
        "pid {pid}: {} process(es) in the tree, rss {}, pss {}, children found by {:?}, \
         {system_processes} processes on the system",
        sample.processes.len(),
        sample.rss,
        sample
            .pss
            .map_or_else(|| "-".to_owned(), |pss| pss.to_string()),
        probe.children_source(),
    );
    println!("cgroup: {:?}", sample.cgroup);
    println!("psi: {:?}", sample.psi);

    measure("check (Probe::new + Full sample)", iterations, || {
        Probe::new(pid)?.sample(SampleDepth::Full)?;
        Ok(())
    })?;
    measure("reused probe, Fast sample", iterations, || {
        probe.sample(SampleDepth::Fast)?;
        Ok(())
    })?;
    // What `watch` does between two reads of a tree's cgroup: the process files only.
    measure("reused probe, Fast, last cgroup", iterations, || {
        probe.sample_with_last_cgroup(SampleDepth::Fast)?;
        Ok(())
    })?;
    measure("reused probe, Full sample", iterations, || {
        probe.sample(SampleDepth::Full)?;
        Ok(())
    })?;
    Ok(())
}

/// Runs `work` `iterations` times and prints the CPU time (this thread's, from
/// `/proc/thread-self/schedstat`, in nanoseconds) and wall time per iteration.
#[cfg(target_os = "linux")]
fn measure(
    name: &str,
    iterations: u32,
    mut work: impl FnMut() -> Result<(), plimsoll_probe::ProbeError>,
) -> Result<(), Box<dyn std::error::Error>> {
    for _ in 0..iterations.min(100) {
        work()?;
    }
    let cpu_before = thread_cpu_ns()?;
    let wall_before = std::time::Instant::now();
    for _ in 0..iterations {
        work()?;
    }
    let wall = wall_before.elapsed();
    let cpu_ns = thread_cpu_ns()?.saturating_sub(cpu_before);
    let per = f64::from(iterations.max(1));
    println!(
        "{name:36} cpu {:8.1} µs/iteration   wall {:8.1} µs/iteration",
        cpu_ns as f64 / 1e3 / per,
        wall.as_secs_f64() * 1e6 / per,
    );
    Ok(())
}

/// CPU time this thread has used, in nanoseconds.
#[cfg(target_os = "linux")]
fn thread_cpu_ns() -> Result<u64, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let first = text.split_ascii_whitespace().next().unwrap_or_default();
    Ok(first
        .parse()
        .map_err(|_| format!("unexpected schedstat '{}'", text.trim()))?)
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("sample_cost measures /proc reads: it runs on Linux only");
}
