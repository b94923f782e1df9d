//! The memory toolkit for Rust services: what Node teams hand-write again and again, in one
//! crate that speaks the same language as the `plimsoll` binary.
//!
//! - [`monitor`]: samples the own process and publishes a pressure level (ok/warn/critical)
//!   through a watch channel, with the binary's marks, holds and leak detector.
//! - [`admission`]: a gate that pauses new work above a soft limit and resumes below 80 % of
//!   it, and an adaptive batch sizer.
//! - [`cache`]: caches bounded by bytes, entries and TTL (on moka), registered so that "clear
//!   caches" and critical pressure shrink them; [`buffer`] and [`dedupe`]: bounded buffers and
//!   dedupe sets with size and age limits.
//! - [`Guard`]: all of it wired together; [`Guard::router`] serves `/health`, `/metrics` and
//!   the admin actions in the binary's shapes.
//! - [`shutdown`]: a cancellation token and task tracker that stop timers and tasks and flush
//!   buffers.
//! - `alloc` (feature `jemalloc`, `pprof`): allocator statistics, purging, heap profiles.
//! - `redis` (feature `redis`): read-through caches and a spill queue on a shared Redis.
//!
//! ```no_run
//! use std::time::Duration;
//! use plimsoll_guard::cache::BoundedCache;
//! use plimsoll_guard::{Guard, GuardConfig};
//!
//! # async fn service() -> Result<(), Box<dyn std::error::Error>> {
//! // The budget comes from `plimsoll run --budget` (PLIMSOLL_BUDGET_BYTES) or the cgroup.
//! let guard = Guard::start(GuardConfig::recommended("orders"))?;
//! let users: BoundedCache<u64, String> = BoundedCache::builder("users")
//!     .max_bytes(64 << 20)
//!     .max_entries(100_000)
//!     .ttl(Duration::from_secs(600))
//!     .weigher(|_id, name: &String| 8 + name.len() as u64)
//!     .build(guard.caches())?;
//! let app = axum::Router::new().merge(guard.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9465").await?;
//! let stopped = guard.shutdown().clone();
//! tokio::spawn(async move {
//!     let stop = async move { stopped.cancelled().await };
//!     axum::serve(listener, app).with_graceful_shutdown(stop).await
//! });
//!
//! guard.gate().admit().await; // before taking new work: waits while memory is high
//! users.insert(7, "alice".to_owned());
//!
//! plimsoll_guard::shutdown::signal().await?; // SIGTERM from plimsoll run, systemd, …
//! let report = guard.shutdown().shutdown(Duration::from_secs(10)).await;
//! assert!(report.tasks_stopped);
//! # Ok(())
//! # }
//! ```

mod error;
mod guard;

pub mod admission;
pub mod buffer;
pub mod cache;
pub mod dedupe;
pub mod monitor;
mod router;
pub mod shutdown;

#[cfg(feature = "jemalloc")]
pub mod alloc;
#[cfg(feature = "redis")]
pub mod redis;

pub use error::GuardError;
pub use guard::{Guard, GuardConfig};
pub use plimsoll_http::AdminToken;
