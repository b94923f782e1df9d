//! A small HTTP service guarded by plimsoll-guard, using all of it: the monitor and its
//! `/health`, `/metrics` and admin routes, the admission gate in front of requests, a batch
//! worker sized by memory, a bounded cache, a bounded log buffer flushed at shutdown, a dedupe
//! set of processed events, jemalloc (feature `jemalloc`) and the Redis tier (feature `redis`,
//! with `REDIS_URL`). It can leak on purpose, to watch the guard and `plimsoll run` at work:
//!
//! ```text
//! cargo build -p plimsoll-guard --example guarded_service
//! plimsoll run --budget 96MiB -- target/debug/examples/guarded_service --leak-kib-per-s 512
//! curl -s 127.0.0.1:9465/health
//! ```
//!
//! Options: `--listen ADDR` (default 127.0.0.1:9465; port 0 picks one), `--name NAME`,
//! `--leak-kib-per-s N`. It prints `listening on http://ADDR` first, and stops gracefully on
//! SIGTERM or SIGINT (exit 0). The budget comes from `plimsoll run` (`PLIMSOLL_BUDGET_BYTES`)
//! or the cgroup; the admin token from `PLIMSOLL_ADMIN_TOKEN`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use plimsoll_guard::admission::{BatchConfig, BatchSizer};
use plimsoll_guard::buffer::{BoundedBuffer, BufferLimits};
use plimsoll_guard::cache::BoundedCache;
use plimsoll_guard::dedupe::DedupeSet;
use plimsoll_guard::{Guard, GuardConfig};
use serde_json::json;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How long a request waits for the admission gate before it is turned away with a 503.
const ADMIT_WAIT: Duration = Duration::from_secs(1);
/// How long the service may take to stop (plimsoll run's default grace is longer).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the user typed.
#[derive(Debug)]
struct Options {
    listen: SocketAddr,
    name: String,
    leak_kib_per_s: u64,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        listen: SocketAddr::from(([127, 0, 0, 1], 9465)),
        name: "guarded-service".to_owned(),
        leak_kib_per_s: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => {
                let text = value()?;
                options.listen = text
                    .parse()
                    .map_err(|_| format!("invalid --listen '{text}' (expected IP:PORT)"))?;
            }
            "--name" => options.name = value()?,
            "--leak-kib-per-s" => {
                let text = value()?;
                options.leak_kib_per_s = text.parse().map_err(|_| {
                    format!("invalid --leak-kib-per-s '{text}' (expected a whole number)")
                })?;
            }
            "-h" | "--help" => {
                println!(
                    "guarded_service [--listen ADDR] [--name NAME] [--leak-kib-per-s N]\n\n\
                     A sample service guarded by plimsoll-guard: GET /users/ID (cached), POST \
                     /events/ID (deduplicated), POST /jobs/ID (batched), and the guard's /health, \
                     /metrics and admin routes."
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown option '{other}' (see --help)")),
        }
    }
    Ok(options)
}

/// The service's own state beside the guard's.
#[derive(Clone)]
struct App {
    guard: Guard,
    users: BoundedCache<u64, Arc<String>>,
    log: Arc<Mutex<BoundedBuffer<String>>>,
    processed: Arc<Mutex<DedupeSet<u64>>>,
    jobs: Arc<Mutex<VecDeque<u64>>>,
    #[cfg(feature = "redis")]
    spill: Option<plimsoll_guard::redis::SpillQueue>,
}

impl App {
    fn log(&self, line: String) {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        // A line larger than the whole buffer is dropped: a log must not take the service down.
        let _ = log.push(line, Instant::now());
    }

    /// Waits for the admission gate, up to `ADMIT_WAIT`; a 503 when memory stays high.
    async fn admit(&self) -> Result<(), Response> {
        match tokio::time::timeout(ADMIT_WAIT, self.guard.gate().admit()).await {
            Ok(()) => Ok(()),
            Err(_) => Err((
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "1")],
                Json(json!({ "error": "busy: memory is above the soft limit, try again" })),
            )
                .into_response()),
        }
    }
}

/// `GET /users/{id}`: a "profile" built once and cached (about 1 KiB each).
async fn user(State(app): State<App>, Path(id): Path<u64>) -> Response {
    if let Err(busy) = app.admit().await {
        return busy;
    }
    let profile = app
        .users
        .get_with(id, || Arc::new(format!("user {id}: {}", "x".repeat(1000))));
    app.log(format!("GET /users/{id}"));
    Json(json!({ "id": id, "bytes": profile.len() })).into_response()
}

/// `POST /events/{id}`: processed once; a repeat is acknowledged and skipped.
async fn event(State(app): State<App>, Path(id): Path<u64>) -> Response {
    if let Err(busy) = app.admit().await {
        return busy;
    }
    let new = app
        .processed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, Instant::now());
    app.log(format!("POST /events/{id} new={new}"));
    Json(json!({ "id": id, "processed": new })).into_response()
}

/// `POST /jobs/{id}`: queued for the batch worker; spilled to Redis while the gate is paused.
async fn job(State(app): State<App>, Path(id): Path<u64>) -> Response {
    #[cfg(feature = "redis")]
    if !app.guard.gate().try_admit() {
        if let Some(spill) = &app.spill {
            return match spill.push(&id.to_le_bytes()).await {
                Ok(_) => Json(json!({ "id": id, "queued": "spilled" })).into_response(),
                Err(error) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({ "error": error.to_string() })),
                )
                    .into_response(),
            };
        }
    }
    app.jobs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push_back(id);
    Json(json!({ "id": id, "queued": "memory" })).into_response()
}

/// Takes batches of jobs, sized by the memory pressure, until shutdown.
async fn batch_worker(app: App) {
    let soft_limit = app.guard.gate().soft_limit_bytes();
    let Ok(mut sizer) = BatchSizer::new(BatchConfig::recommended(256, soft_limit)) else {
        return;
    };
    let token = app.guard.shutdown().token();
    let mut ticks = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            _ = ticks.tick() => {}
        }
        // The gate's soft limit moves to the warn mark once the budget is known.
        sizer.set_soft_limit_bytes(app.guard.gate().soft_limit_bytes());
        let used = app.guard.monitor().pressure().used_bytes;
        let size = sizer.observe(Instant::now(), used);
        let batch: Vec<u64> = {
            let mut jobs = app.jobs.lock().unwrap_or_else(PoisonError::into_inner);
            let n = size.min(jobs.len());
            jobs.drain(..n).collect()
        };
        #[cfg(feature = "redis")]
        let batch =
            {
                let mut batch = batch;
                if let (Some(spill), true) = (&app.spill, app.guard.gate().try_admit()) {
                    let room = size.saturating_sub(batch.len());
                    if let Ok(spilled) = spill.pop_batch(room).await {
                        batch.extend(spilled.iter().filter_map(|b| {
                            Some(u64::from_le_bytes(b.as_slice().try_into().ok()?))
                        }));
                    }
                }
                batch
            };
        if !batch.is_empty() {
            app.log(format!("batch of {} jobs (size {size})", batch.len()));
        }
    }
}

/// Writes the buffered log lines to standard output.
fn flush(log: &Mutex<BoundedBuffer<String>>) -> usize {
    let lines: Vec<String> = log
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain_all()
        .collect();
    for line in &lines {
        println!("{line}");
    }
    lines.len()
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("guarded_service: {message}");
            return ExitCode::from(2);
        }
    };
    // The guard logs through `tracing`: level changes, admission pauses, cache shrinks. Colour
    // only on a terminal and without `NO_COLOR` (no-color.org), as plimsoll's own logs.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(colour)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("guarded_service: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("guarded_service: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(options: Options) -> Result<(), String> {
    let guard = Guard::start(GuardConfig::recommended(&options.name)).map_err(|e| e.to_string())?;
    let users = BoundedCache::builder("users")
        .max_bytes(8 << 20)
        .max_entries(10_000)
        .ttl(Duration::from_secs(600))
        .weigher(|_id: &u64, profile: &Arc<String>| profile.len() as u64 + 64)
        .build(guard.caches())
        .map_err(|e| e.to_string())?;
    let log = BoundedBuffer::new(
        BufferLimits {
            max_items: 10_000,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(60),
        },
        |line: &String| line.len() as u64,
    )
    .map_err(|e| e.to_string())?;
    let processed =
        DedupeSet::new(100_000, Duration::from_secs(3600)).map_err(|e| e.to_string())?;
    let app = App {
        guard: guard.clone(),
        users,
        log: Arc::new(Mutex::new(log)),
        processed: Arc::new(Mutex::new(processed)),
        jobs: Arc::new(Mutex::new(VecDeque::new())),
        #[cfg(feature = "redis")]
        spill: spill_queue().await,
    };

    // The log buffer goes out once a second, and one last time at shutdown.
    let log = app.log.clone();
    guard.shutdown().every(Duration::from_secs(1), move || {
        flush(&log);
    });
    let log = app.log.clone();
    guard.shutdown().on_shutdown("log buffer", async move {
        let lines = flush(&log);
        println!("flushed {lines} buffered log lines");
    });
    guard.shutdown().spawn(batch_worker(app.clone()));
    if options.leak_kib_per_s > 0 {
        let per_tick = options.leak_kib_per_s as usize * 1024 / 10;
        let mut leaked: Vec<Vec<u8>> = Vec::new();
        guard.shutdown().every(Duration::from_millis(100), move || {
            // Touched, so it is resident: a leak the monitor and plimsoll run can see.
            leaked.push(vec![1u8; per_tick]);
        });
    }

    let router = Router::new()
        .route("/users/{id}", get(user))
        .route("/events/{id}", post(event))
        .route("/jobs/{id}", post(job))
        .with_state(app)
        .merge(guard.router());
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on http://{addr}");

    let stopping = guard.shutdown().clone();
    tokio::spawn(async move {
        match plimsoll_guard::shutdown::signal().await {
            Ok(name) => println!("{name}: stopping"),
            Err(error) => eprintln!("cannot wait for signals: {error}"),
        }
        stopping.trigger();
    });
    let stopped = guard.shutdown().clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { stopped.cancelled().await })
        .await
        .map_err(|e| e.to_string())?;
    let report = guard.shutdown().shutdown(STOP_GRACE).await;
    println!(
        "stopped: tasks stopped in time: {}, flushed: {:?}",
        report.tasks_stopped, report.flushed
    );
    Ok(())
}

/// The spill queue on `REDIS_URL`, when it is set and answers.
#[cfg(feature = "redis")]
async fn spill_queue() -> Option<plimsoll_guard::redis::SpillQueue> {
    let url = std::env::var("REDIS_URL").ok()?;
    match plimsoll_guard::redis::RedisTier::connect(&url, "guarded-service").await {
        Ok(tier) => Some(plimsoll_guard::redis::SpillQueue::new(
            &tier, "jobs", 100_000,
        )),
        Err(error) => {
            eprintln!("no spill queue: {error}");
            None
        }
    }
}
