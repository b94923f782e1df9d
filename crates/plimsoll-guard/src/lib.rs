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
