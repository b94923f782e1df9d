//! What the guard's monitor costs its service: the CPU time of one sample (the `/proc` read,
//! the level tracker and the leak detector) measured back to back, and the CPU the process
//! uses over a real window with the monitor at 1 Hz against the same window without it, in
//! the same run. The bar: at most 0.1 % of a core at 1 Hz.
//!
//! `cargo run --release -p plimsoll-guard --example bench_monitor -- [WINDOW_SECONDS]`

use std::time::{Duration, Instant};

use plimsoll_guard::monitor::{Monitor, MonitorConfig};
use plimsoll_guard::shutdown::Shutdown;

/// The bar, as a share of one core.
const BAR: f64 = 0.001;

/// CPU time of this process so far (user + system).
fn cpu_time() -> Duration {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(usage.user_time()) + tv(usage.system_time())
}

/// CPU used by the process over `window` of wall time while `run` is going.
async fn cpu_over(window: Duration) -> Duration {
    let before = cpu_time();
    tokio::time::sleep(window).await;
    cpu_time() - before
}

fn main() {
    let window = std::env::args()
        .nth(1)
        .map(|s| s.parse::<u64>().expect("WINDOW_SECONDS is a whole number"))
        .map_or(Duration::from_secs(20), Duration::from_secs);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // 1. One sample, back to back: a monitor ticking every millisecond for 2 s.
        let shutdown = Shutdown::new();
        let config = MonitorConfig {
            interval: Duration::from_millis(1),
            budget_bytes: Some(1 << 30),
            ..MonitorConfig::recommended("bench")
        };
        let monitor = Monitor::start(config, &shutdown).expect("monitor");
        let started = Instant::now();
        let before = cpu_time();
        let readings_before = monitor.pressure().readings;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let cpu = cpu_time() - before;
        let readings = monitor.pressure().readings - readings_before;
        shutdown.shutdown(Duration::from_secs(1)).await;
        let per_sample = cpu / u32::try_from(readings.max(1)).unwrap_or(u32::MAX);
        let implied = per_sample.as_secs_f64(); // at 1 Hz: seconds of CPU per second
        eprintln!(
            "{readings} samples in {:.1} s back to back",
            started.elapsed().as_secs_f64()
        );

        // 2. A real window at 1 Hz, against the same window idle.
        eprintln!("idle window of {} s …", window.as_secs());
        let idle = cpu_over(window).await;
        let shutdown = Shutdown::new();
        let config = MonitorConfig {
            budget_bytes: Some(1 << 30),
            ..MonitorConfig::recommended("bench")
        };
        let _monitor = Monitor::start(config, &shutdown).expect("monitor");
        // Steady state: the start (the probe finding its files, the first cgroup read) is a
        // one-time cost, left out of the window.
        tokio::time::sleep(Duration::from_secs(3)).await;
        eprintln!("monitored window of {} s …", window.as_secs());
        let monitored = cpu_over(window).await;
        shutdown.shutdown(Duration::from_secs(1)).await;
        let share = (monitored.saturating_sub(idle)).as_secs_f64() / window.as_secs_f64();

        println!("| measure | value | share of a core at 1 Hz |");
        println!("|---|---|---|");
        println!(
            "| CPU per sample (back to back, {readings} samples) | {:.1} µs | {:.4} % |",
            per_sample.as_secs_f64() * 1e6,
            implied * 100.0
        );
        println!(
            "| idle process, {} s | {:.2} ms | |",
            window.as_secs(),
            idle.as_secs_f64() * 1e3
        );
        println!(
            "| monitor at 1 Hz, {} s | {:.2} ms | {:.4} % |",
            window.as_secs(),
            monitored.as_secs_f64() * 1e3,
            share * 100.0
        );
        let worst = implied.max(share);
        println!(
            "\nbar: at most {:.1} % of a core; measured {:.4} % (ratio to the bar {:.3}) → {}",
            BAR * 100.0,
            worst * 100.0,
            worst / BAR,
            if worst <= BAR { "PASS" } else { "FAIL" }
        );
    });
}
