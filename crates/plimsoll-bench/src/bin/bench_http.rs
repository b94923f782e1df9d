//! `bench_http`: latency of `/health` and `/metrics` with 100 targets, over loopback against a
//! live `plimsoll up` (100 instances of `sleep`), with a baseline measured in the same run: a
//! static asset of the same server (routing, HTTP and the socket, without the registry).
//!
//! One keep-alive connection, requests one after another (the latency of one scrape, not
//! throughput under contention); a warm-up pass is discarded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Latency of /health and /metrics with many targets, against a static baseline")]
struct Args {
    /// The plimsoll binary.
    #[arg(long, default_value = "target/release/plimsoll")]
    plimsoll: PathBuf,
    /// Targets (instances of `sleep`) under `plimsoll up`.
    #[arg(long, default_value_t = 100)]
    targets: usize,
    /// Timed requests per route.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
}

/// The bar: median under 1 ms.
const BAR_MEDIAN_MS: f64 = 1.0;

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench_http: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Stops `plimsoll up` (and so its targets) however the benchmark ends.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(args: &Args) -> Result<()> {
    let dir = tempfile::tempdir().context("tempdir")?;
    let config = dir.path().join("plimsoll.toml");
    std::fs::write(
        &config,
        format!(
            "[[app]]\nname = \"sleeper\"\ncommand = [\"sleep\", \"3600\"]\ninstances = {}\nbudget = \"1GiB\"\n",
            args.targets
        ),
    )?;
    let data = dir.path().join("data");
    let child = Command::new(&args.plimsoll)
        .arg("up")
        .arg("-c")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "cannot start '{}' (build it first)",
                args.plimsoll.display()
            )
        })?;
    let _up = Up(child);
    let addr = wait_for_addr(&data.join("run/http.addr"))?;
    let mut client = Client::connect(&addr)?;
    // Every target sampled at least once.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = client.get("/metrics")?;
        let sampled = body
            .lines()
            .filter(|l| l.starts_with("plimsoll_rss_bytes{"))
            .count();
        if sampled >= args.targets {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {sampled} of {} targets sampled after 30 s",
                args.targets
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let routes = [
        ("/assets/dashboard.css", "baseline: static asset"),
        ("/health", "/health"),
        ("/metrics", "/metrics"),
    ];
    let mut rows = Vec::new();
    for (path, label) in routes {
        for _ in 0..args.requests / 10 {
            client.get(path)?;
        }
        let mut times = Vec::with_capacity(args.requests);
        let mut bytes = 0;
        for _ in 0..args.requests {
            let start = Instant::now();
            bytes = client.get(path)?.len();
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        rows.push((label, bytes, times));
    }
    plimsoll_bench::outln!(
        "HTTP latency over loopback, {} targets, {} sequential requests per route on one keep-alive connection",
        args.targets, args.requests
    );
    plimsoll_bench::outln!(
        "{:<24} {:>9} {:>11} {:>9} {:>9} {:>13} {:>6}",
        "route",
        "bytes",
        "median ms",
        "p90 ms",
        "p99 ms",
        "× baseline",
        "bar"
    );
    let baseline = median(&rows[0].2);
    for (label, bytes, times) in &rows {
        let m = median(times);
        let bar = if label.starts_with("baseline") {
            "-"
        } else if m < BAR_MEDIAN_MS {
            "ok"
        } else {
            "MISS"
        };
        plimsoll_bench::outln!(
            "{label:<24} {bytes:>9} {m:>11.3} {:>9.3} {:>9.3} {:>13.2} {bar:>6}",
            quantile(times, 0.9),
            quantile(times, 0.99),
            m / baseline
        );
    }
    plimsoll_bench::outln!("bar: median under {BAR_MEDIAN_MS} ms with 100 targets");
    Ok(())
}

fn median(sorted: &[f64]) -> f64 {
    quantile(sorted, 0.5)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

fn wait_for_addr(path: &Path) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return Ok(text.trim().to_owned());
            }
        }
        if Instant::now() > deadline {
            bail!("no '{}' after 30 s", path.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP/1.1 keep-alive client (responses with Content-Length only).
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    host: String,
}

impl Client {
    fn connect(addr: &str) -> Result<Client> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Client {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
            host: addr.to_owned(),
        })
    }

    fn get(&mut self, path: &str) -> Result<String> {
        write!(
            self.writer,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive\r\n\r\n",
            self.host
        )?;
        let mut status = String::new();
        self.reader.read_line(&mut status)?;
        if !(status.contains(" 200 ") || status.contains(" 503 ")) {
            bail!("GET {path}: {}", status.trim());
        }
        let mut length = None;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let length = length.with_context(|| format!("GET {path}: no Content-Length"))?;
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}
