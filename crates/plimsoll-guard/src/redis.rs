//! The shared Redis tier: memory a service can lean on instead of its own heap, a read-through
//! cache of byte values and a bounded spill queue for work that does not fit the budget now.
//!
//! Everything goes through one [`RedisTier`]: a `redis::aio::ConnectionManager` (one multiplexed
//! connection, reconnected in the background) and a key prefix, so that every key this module
//! writes is `PREFIX:KEY`.
//!
//! Values are bytes: callers serialize. [`TieredCache`] puts a bounded in-process layer (a
//! [`BoundedCache`], registered, so critical pressure shrinks it) in front of [`ReadThrough`]:
//! what the process drops under pressure is read back from Redis, not recomputed.
//!
//! Failure policy, deliberately different for the two users:
//! - [`ReadThrough`] treats Redis as an optimisation: when Redis fails (down, timed out, a wrong
//!   type at the key) the loader answers and a warning is logged; a request never fails because
//!   of Redis alone.
//! - [`SpillQueue`] holds work that must not be lost silently: its errors are returned.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use plimsoll_guard::redis::{ReadThrough, RedisTier, SpillQueue};
//!
//! let tier = RedisTier::connect("redis://127.0.0.1:6379", "orders").await?;
//! let cache = ReadThrough::new(&tier, Duration::from_secs(300))?;
//! let body = cache
//!     .get_or_load("order:42", || async { Ok::<_, std::io::Error>(b"{...}".to_vec()) })
//!     .await?;
//! let spill = SpillQueue::new(&tier, "spill", 10_000);
//! spill.push(&body).await?;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::cache::BoundedCache;

/// How long one command may wait for its reply in [`RedisTier::connect`]'s configuration.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

/// How long one connection attempt may take in [`RedisTier::connect`]'s configuration.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_millis(500);

/// Connection attempts after the first in [`RedisTier::connect`]'s configuration (about 100 ms
/// later, jittered): while Redis is down, a request waits for one such reconnection cycle
/// (a fraction of a second when the port refuses, up to twice [`CONNECTION_TIMEOUT`] when the
/// host does not answer) before its fallback, instead of the redis crate's default of six
/// retries (about six seconds). The next request after a failed cycle starts another one.
pub const CONNECTION_RETRIES: usize = 1;

/// Pushes one payload unless the list already holds the bound: `LLEN` and `RPUSH` in one atomic
/// step, so concurrent producers cannot overshoot. Returns the new length, or -1 when full.
const PUSH_BOUNDED: &str = "\
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then return -1 end
return redis.call('RPUSH', KEYS[1], ARGV[1])";

/// Why a Redis tier operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TierError {
    /// The URL could not be parsed (the password, if any, is masked in `url`).
    #[error("invalid Redis URL '{url}'")]
    InvalidUrl {
        /// The URL as given, password masked.
        url: String,
        /// The redis crate's complaint.
        #[source]
        source: redis::RedisError,
    },
    /// The first connection (with its retries) failed.
    #[error("cannot connect to Redis at '{url}'")]
    Connect {
        /// The URL, password masked.
        url: String,
        /// The last connection error.
        #[source]
        source: redis::RedisError,
    },
    /// A read-through TTL shorter than one second, the resolution of `SET .. EX`.
    #[error("TTL {ttl:?} is shorter than one second, the resolution of Redis' EX")]
    InvalidTtl {
        /// The TTL asked for.
        ttl: Duration,
    },
    /// The spill queue already holds its bound of entries; the payload was not pushed.
    #[error("spill queue '{key}' is full (bound of {bound} entries)")]
    QueueFull {
        /// The list's key, with the prefix.
        key: String,
        /// The bound on the list's length.
        bound: usize,
    },
    /// A command failed: connection lost, timeout, or an error reply such as WRONGTYPE.
    #[error("Redis {command} on '{key}' failed")]
    Command {
        /// The command name.
        command: &'static str,
        /// The key it was sent for, with the prefix.
        key: String,
        /// The redis crate's error.
        #[source]
        source: redis::RedisError,
    },
}

impl TierError {
    /// Whether Redis itself answered with an error reply (such as WRONGTYPE), as opposed to the
    /// connection failing or timing out.
    fn server_answered(&self) -> bool {
        match self {
            TierError::Command { source, .. } => matches!(
                source.kind(),
                redis::ErrorKind::Server(_) | redis::ErrorKind::Extension
            ),
            _ => false,
        }
    }
}

/// A connection to a shared Redis and the prefix of the keys this service owns there.
///
/// Cheap to clone: clones share one connection.
#[derive(Debug, Clone)]
pub struct RedisTier {
    connection: ConnectionManager,
    prefix: Arc<str>,
}

impl RedisTier {
    /// Connects to `url` (`redis://[:PASSWORD@]HOST:PORT[/DB]`) with short timeouts
    /// ([`RESPONSE_TIMEOUT`], [`CONNECTION_TIMEOUT`], [`CONNECTION_RETRIES`]): this tier must
    /// fail fast so that fallbacks answer promptly. The first connection is made now, so that a
    /// wrong address shows at start; later losses reconnect in the background.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisTier, TierError> {
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_number_of_retries(CONNECTION_RETRIES)
            .set_max_delay(Duration::from_millis(500));
        RedisTier::connect_with_config(url, prefix, config).await
    }

    /// Like [`RedisTier::connect`] with the caller's connection settings.
    pub async fn connect_with_config(
        url: &str,
        prefix: &str,
        config: ConnectionManagerConfig,
    ) -> Result<RedisTier, TierError> {
        let client = redis::Client::open(url).map_err(|source| TierError::InvalidUrl {
            url: mask_password(url),
            source,
        })?;
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|source| TierError::Connect {
                url: mask_password(url),
                source,
            })?;
        Ok(RedisTier {
            connection,
            prefix: prefix.into(),
        })
    }

    /// The same connection under another key prefix.
    pub fn with_prefix(&self, prefix: &str) -> RedisTier {
        RedisTier {
            connection: self.connection.clone(),
            prefix: prefix.into(),
        }
    }

    /// The Redis key for `key`: `PREFIX:KEY`.
    pub fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        command: &'static str,
        key: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, TierError> {
        let mut connection = self.connection.clone();
        cmd.query_async(&mut connection)
            .await
            .map_err(|source| TierError::Command {
                command,
                key: key.to_owned(),
                source,
            })
    }
}

/// A read-through cache on Redis: `GET PREFIX:KEY`, and on a miss the loader's value stored
/// with `SET PREFIX:KEY VALUE EX TTL`.
///
/// Redis failures never fail a lookup: a failed `GET` is treated as a miss and a failed `SET`
/// is skipped, each logged as a warning (target `plimsoll_guard::redis`, fields `key` and
/// `error`), once per failed command: an outage logs a warning per request. When the `GET`
/// failed because Redis could not be reached (not an error reply), no `SET` is tried. Only the
/// loader's own error is returned. Two concurrent misses of the same key both run the loader
/// (no request coalescing).
#[derive(Debug, Clone)]
pub struct ReadThrough {
    tier: RedisTier,
    ttl_secs: u64,
}

impl ReadThrough {
    /// A cache whose entries expire `ttl` after they were loaded; a fraction of a second is
    /// rounded up to the next whole second (Redis' `EX` counts seconds), and a TTL under one
    /// second is refused.
    pub fn new(tier: &RedisTier, ttl: Duration) -> Result<ReadThrough, TierError> {
        if ttl < Duration::from_secs(1) {
            return Err(TierError::InvalidTtl { ttl });
        }
        let ttl_secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        Ok(ReadThrough {
            tier: tier.clone(),
            ttl_secs,
        })
    }

    /// The value at `key`: from Redis when it is there, otherwise from `loader`, which is then
    /// stored with the TTL. Returns the loader's error when it fails (nothing is stored); Redis
    /// errors only log a warning and fall back to the loader.
    pub async fn get_or_load<F, Fut, E>(&self, key: &str, loader: F) -> Result<Vec<u8>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
    {
        let full_key = self.tier.key(key);
        let mut get = redis::cmd("GET");
        get.arg(&full_key);
        let reachable = match self
            .tier
            .query::<Option<Vec<u8>>>("GET", &full_key, &get)
            .await
        {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => true,
            Err(error) => {
                tracing::warn!(
                    key = %full_key,
                    error = %error_chain(&error),
                    "shared cache read failed; loading without it"
                );
                error.server_answered()
            }
        };
        let value = loader().await?;
        if !reachable {
            // Redis is down or timing out: a SET would only wait for the same failure again.
            return Ok(value);
        }
        let mut set = redis::cmd("SET");
        set.arg(&full_key).arg(&value).arg("EX").arg(self.ttl_secs);
        if let Err(error) = self.tier.query::<()>("SET", &full_key, &set).await {
            tracing::warn!(
                key = %full_key,
                error = %error_chain(&error),
                "shared cache write failed; the value is served but not cached"
            );
        }
        Ok(value)
    }
}

/// A two-level cache: a bounded in-process [`BoundedCache`] in front of a [`ReadThrough`] on
/// Redis. A lookup tries the process, then Redis, then the loader; what Redis or the loader
/// gives is kept in the process too. When the guard shrinks or clears the local layer (critical
/// pressure, the clear-cache admin action), later lookups are served from Redis.
#[derive(Debug, Clone)]
pub struct TieredCache {
    local: BoundedCache<String, Arc<[u8]>>,
    shared: ReadThrough,
}

impl TieredCache {
    /// A tiered cache over `local` (build it with keys `String`, values `Arc<[u8]>`, and a
    /// weigher such as `|k, v| (k.len() + v.len()) as u64`) and `shared`.
    pub fn new(local: BoundedCache<String, Arc<[u8]>>, shared: ReadThrough) -> TieredCache {
        TieredCache { local, shared }
    }

    /// The value at `key`, from the process, Redis or `loader`, in that order. Returns the
    /// loader's error when it is needed and fails; Redis errors only log a warning.
    pub async fn get_or_load<F, Fut, E>(&self, key: &str, loader: F) -> Result<Arc<[u8]>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
    {
        if let Some(value) = self.local.get(key) {
            return Ok(value);
        }
        let value: Arc<[u8]> = self.shared.get_or_load(key, loader).await?.into();
        self.local.insert(key.to_owned(), Arc::clone(&value));
        Ok(value)
    }

    /// The in-process layer.
    pub fn local(&self) -> &BoundedCache<String, Arc<[u8]>> {
        &self.local
    }
}

/// A bounded FIFO of byte payloads in a Redis list (`PREFIX:NAME`): work pushed out of the
/// process when it does not fit the memory budget, taken back when pressure falls.
///
/// Several processes may share one queue: the bound is checked atomically with the push, and
/// each payload is popped by exactly one of them.
#[derive(Debug, Clone)]
pub struct SpillQueue {
    tier: RedisTier,
    key: String,
    bound: usize,
}

impl SpillQueue {
    /// The queue at `PREFIX:NAME`, refusing pushes while it holds `bound` entries.
    pub fn new(tier: &RedisTier, name: &str, bound: usize) -> SpillQueue {
        SpillQueue {
            key: tier.key(name),
            tier: tier.clone(),
            bound,
        }
    }

    /// Appends `payload` at the tail (`RPUSH`) and returns the queue's new length, or
    /// [`TierError::QueueFull`] when it already holds the bound.
    pub async fn push(&self, payload: &[u8]) -> Result<usize, TierError> {
        let mut eval = redis::cmd("EVAL");
        eval.arg(PUSH_BOUNDED)
            .arg(1)
            .arg(&self.key)
            .arg(payload)
            .arg(self.bound);
        let length: i64 = self.tier.query("RPUSH", &self.key, &eval).await?;
        usize::try_from(length).map_err(|_| TierError::QueueFull {
            key: self.key.clone(),
            bound: self.bound,
        })
    }

    /// Takes the oldest payload (`LPOP`), or `None` when the queue is empty.
    pub async fn pop(&self) -> Result<Option<Vec<u8>>, TierError> {
        let mut lpop = redis::cmd("LPOP");
        lpop.arg(&self.key);
        self.tier.query("LPOP", &self.key, &lpop).await
    }

    /// Takes up to `max` of the oldest payloads, oldest first, in one round trip
    /// (`LPOP KEY COUNT`, Redis 6.2 or later); empty when the queue is.
    pub async fn pop_batch(&self, max: usize) -> Result<Vec<Vec<u8>>, TierError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut lpop = redis::cmd("LPOP");
        lpop.arg(&self.key).arg(max);
        let batch: Option<Vec<Vec<u8>>> = self.tier.query("LPOP", &self.key, &lpop).await?;
        Ok(batch.unwrap_or_default())
    }

    /// How many payloads wait (`LLEN`).
    pub async fn len(&self) -> Result<usize, TierError> {
        let mut llen = redis::cmd("LLEN");
        llen.arg(&self.key);
        self.tier.query("LLEN", &self.key, &llen).await
    }

    /// Whether no payload waits.
    pub async fn is_empty(&self) -> Result<bool, TierError> {
        Ok(self.len().await? == 0)
    }
}

/// The error and its sources on one line, for a log field.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `redis://user:secret@host/` → `redis://user:***@host/`, so that errors can quote the URL.
fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let masked = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{scheme}://{masked}{}", &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_password_hides_only_the_secret() {
        for (url, expected) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
            ("rediss://app:hunter2@cache/1", "rediss://app:***@cache/1"),
            ("redis://token@cache", "redis://***@cache"),
            ("redis://cache/a@b", "redis://cache/a@b"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(mask_password(url), expected, "{url}");
        }
    }
}
