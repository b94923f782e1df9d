//! Caches bounded by bytes, entries and time at once, registered by name so that an operator's
//! "clear caches" and critical memory pressure can empty or shrink every cache of a process.
//!
//! [`BoundedCache`] is a thin layer over [`moka::sync::Cache`]: moka does the storage, the
//! eviction (TinyLFU admission, LRU eviction), the TTL and the time to idle; this module adds
//! the second capacity bound, the hit/miss counters and the registration in a
//! [`CacheRegistry`]. The registry holds its caches weakly, so a dropped cache disappears from
//! it, and it can hold any [`RegisteredCache`], not only the ones built here.
//!
//! ```
//! use std::time::Duration;
//! use plimsoll_guard::cache::{BoundedCache, CacheRegistry};
//!
//! let registry = CacheRegistry::new();
//! let sessions: BoundedCache<u64, String> = BoundedCache::builder("sessions")
//!     .max_bytes(64 << 20)
//!     .max_entries(100_000)
//!     .ttl(Duration::from_secs(600))
//!     .weigher(|_id: &u64, token: &String| 8 + token.len() as u64)
//!     .build(&registry)?;
//! sessions.insert(7, "token".to_owned());
//! assert_eq!(sessions.get(&7).as_deref(), Some("token"));
//! let report = registry.clear_all();
//! assert_eq!(report.caches, 1);
//! # Ok::<(), plimsoll_guard::cache::CacheError>(())
//! ```

mod bounded;
mod registry;

use std::time::Duration;

pub use bounded::{BoundedCache, BoundedCacheBuilder, NoWeigher};
pub use registry::{CacheRegistry, CacheStats, ClearReport, Dropped, RegisteredCache};

/// What can go wrong when building or registering a cache, or shrinking the registered ones.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The cache name is empty.
    #[error("cache name is empty (expected e.g. 'sessions')")]
    EmptyName,
    /// A live cache with the same name is already in the registry.
    #[error("cache name '{name}' is already registered")]
    DuplicateName {
        /// The name asked for.
        name: String,
    },
    /// A bound the builder needs was not given.
    #[error("cache '{name}' has no {setting} (expected a call to .{setting}(..))")]
    MissingSetting {
        /// The cache's name.
        name: String,
        /// The builder method that was not called.
        setting: &'static str,
    },
    /// A bound is zero: the cache could hold nothing.
    #[error("{setting} of cache '{name}' is 0 (expected at least 1)")]
    Zero {
        /// The cache's name.
        name: String,
        /// `max_bytes` or `max_entries`.
        setting: &'static str,
    },
    /// The time to live or time to idle is zero or longer than moka accepts (1000 years).
    #[error(
        "{setting} of cache '{name}' is {value:?} (expected more than 0s and at most 1000 years)"
    )]
    Duration {
        /// The cache's name.
        name: String,
        /// `ttl` or `time_to_idle`.
        setting: &'static str,
        /// The duration given.
        value: Duration,
    },
    /// A shrink fraction is not a number between 0 and 1.
    #[error("shrink fraction {fraction} is out of range (expected 0 to 1, e.g. 0.5)")]
    Fraction {
        /// The fraction given.
        fraction: f64,
    },
}
