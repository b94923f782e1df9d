//! Integration tests of `plimsoll_guard::redis` against a real `redis-server` (Debian's
//! package): each test starts its own server on a free loopback port in a temp dir, without
//! persistence, and kills and reaps it when done.
#![cfg(feature = "redis")]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use plimsoll_guard::cache::{BoundedCache, CacheRegistry};
use plimsoll_guard::redis::{ReadThrough, RedisTier, SpillQueue, TierError, TieredCache};

/// How long a server may take to answer PING after it was started.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// A `redis-server` child on 127.0.0.1, killed and reaped on drop.
struct RedisServer {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    fn start() -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        // A free port: bind port 0, note it, let it go.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let log = dir.path().join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (Debian package redis-server)");
        let mut server = RedisServer {
            child,
            port,
            log,
            _dir: dir,
        };
        server.wait_for_ping();
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn wait_for_ping(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if ping(self.port) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("redis-server exited with {status}:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING within {START_DEADLINE:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server now (SIGKILL) and reaps it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a server on `port` answers `PING` with `+PONG`.
fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0_u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// A plain connection for looking at what the module wrote.
async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

/// A loader that counts its calls and answers `value`.
fn counting_loader<'a>(
    calls: &'a AtomicUsize,
    value: &'a [u8],
) -> impl FnOnce() -> std::future::Ready<Result<Vec<u8>, std::io::Error>> + 'a {
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(value.to_vec()))
    }
}

#[tokio::test]
async fn read_through_loads_on_a_miss_then_hits_with_a_ttl() {
    let server = RedisServer::start();
    let tier = RedisTier::connect(&server.url(), "svc")
        .await
        .expect("connect");
    let cache = ReadThrough::new(&tier, Duration::from_secs(60)).expect("cache");
    let calls = AtomicUsize::new(0);

    let first = cache
        .get_or_load("user:1", counting_loader(&calls, b"\x00alice\xff"))
        .await
        .expect("miss");
    let second = cache
        .get_or_load("user:1", counting_loader(&calls, b"not this"))
        .await
        .expect("hit");

    assert_eq!(first, b"\x00alice\xff");
    assert_eq!(second, b"\x00alice\xff");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the loader ran once");

    let mut raw = raw(&server).await;
    let stored: Vec<u8> = redis::cmd("GET")
        .arg("svc:user:1")
        .query_async(&mut raw)
        .await
        .expect("GET");
    assert_eq!(stored, b"\x00alice\xff", "stored under PREFIX:KEY");
    let ttl: i64 = redis::cmd("TTL")
        .arg("svc:user:1")
        .query_async(&mut raw)
        .await
        .expect("TTL");
    assert!((1..=60).contains(&ttl), "TTL {ttl}");
}

#[tokio::test]
async fn read_through_rounds_a_fractional_ttl_up_and_refuses_one_under_a_second() {
    let server = RedisServer::start();
    let tier = RedisTier::connect(&server.url(), "svc")
        .await
        .expect("connect");

    let refused = ReadThrough::new(&tier, Duration::from_millis(999));
    assert!(
        matches!(refused, Err(TierError::InvalidTtl { .. })),
        "{refused:?}"
    );
    if let Err(error) = refused {
        assert_eq!(
            error.to_string(),
            "TTL 999ms is shorter than one second, the resolution of Redis' EX"
        );
    }

    let cache = ReadThrough::new(&tier, Duration::from_millis(1_500)).expect("cache");
    let calls = AtomicUsize::new(0);
    cache
        .get_or_load("k", counting_loader(&calls, b"v"))
        .await
        .expect("load");
    let mut raw = raw(&server).await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg("svc:k")
        .query_async(&mut raw)
        .await
        .expect("PTTL");
    assert!((1_501..=2_000).contains(&pttl), "PTTL {pttl} ms");
}

#[tokio::test]
async fn read_through_returns_the_loaders_error_and_stores_nothing() {
    let server = RedisServer::start();
    let tier = RedisTier::connect(&server.url(), "svc")
        .await
        .expect("connect");
    let cache = ReadThrough::new(&tier, Duration::from_secs(60)).expect("cache");

    let result = cache
        .get_or_load("missing", || async {
            Err::<Vec<u8>, _>(std::io::Error::other("database down"))
        })
        .await;
    assert_eq!(
        result.map_err(|error| error.to_string()),
        Err("database down".to_owned())
    );

    let mut raw = raw(&server).await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg("svc:missing")
        .query_async(&mut raw)
        .await
        .expect("EXISTS");
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn read_through_falls_back_to_the_loader_on_an_error_reply() {
    let server = RedisServer::start();
    let tier = RedisTier::connect(&server.url(), "svc")
        .await
        .expect("connect");
    let cache = ReadThrough::new(&tier, Duration::from_secs(60)).expect("cache");
    // A list at the key: GET answers WRONGTYPE.
    let mut raw = raw(&server).await;
    let _: i64 = redis::cmd("RPUSH")
        .arg("svc:clash")
        .arg("x")
        .query_async(&mut raw)
        .await
        .expect("RPUSH");
    let calls = AtomicUsize::new(0);

    let value = cache
        .get_or_load("clash", counting_loader(&calls, b"fresh"))
        .await
        .expect("the loader answers");
    assert_eq!(value, b"fresh");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // SET replaces a value of any type, so the key is a cached string from now on.
    let kind: String = redis::cmd("TYPE")
        .arg("svc:clash")
        .query_async(&mut raw)
        .await
        .expect("TYPE");
    assert_eq!(kind, "string");
    let value = cache
        .get_or_load("clash", counting_loader(&calls, b"not this"))
        .await
        .expect("hit");
    assert_eq!(value, b"fresh");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn read_through_falls_back_to_the_loader_when_redis_is_gone() {
    let mut server = RedisServer::start();
    let tier = RedisTier::connect(&server.url(), "svc")
        .await
        .expect("connect");
    let cache = ReadThrough::new(&tier, Duration::from_secs(60)).expect("cache");
    let calls = AtomicUsize::new(0);
    cache
        .get_or_load("k", counting_loader(&calls, b"cached"))
        .await
        .expect("load while up");

    server.kill();

    let started = Instant::now();
    for attempt in 0..3 {
        let value = cache
            .get_or_load("k", counting_loader(&calls, b"from the loader"))
            .await
            .expect("the loader answers");
        assert_eq!(value, b"from the loader", "attempt {attempt}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    // Fail fast: no SET after a failed GET, one reconnection retry instead of the crate's six
    // (here about 0.15 s a request; 5 s leaves room for a loaded machine).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "three fallbacks took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connect_to_a_closed_port_names_the_url_without_its_password() {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    let error = RedisTier::connect(&url, "svc")
        .await
        .expect_err("nothing listens");
    assert!(matches!(error, TierError::Connect { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("cannot connect to Redis at 'redis://:***@127.0.0.1:{port}'")
    );
}

#[tokio::test]
async fn spill_queue_pops_in_push_order() {
    let server = RedisServer::start();
    let tier = RedisTier::connect(&server.url(), "svc")
        .await
        .expect("connect");
    let queue = SpillQueue::new(&tier, "spill", 100);

    assert!(queue.is_empty().await.expect("is_empty"));
    assert_eq!(queue.pop().await.expect("pop empty"), None);
    for (i, payload) in [&b"one"[..], b"two", b"\x00three\xff"]
        .into_iter()
        .enumerate()
    {
        assert_eq!(queue.push(payload).await.expect("push"), i + 1);
    }
    assert_eq!(queue.len().await.expect("len"), 3);

    assert_eq!(queue.pop().await.expect("pop"), Some(b"one".to_vec()));
    assert_eq!(queue.pop().await.expect("pop"), Some(b"two".to_vec()));
    assert_eq!(
        queue.pop().await.expect("pop"),
        Some(b"\x00three\xff".to_vec())
    );
    assert_eq!(queue.pop().await.expect("pop"), None);

    let mut raw = raw(&server).await;
    let kind: String = redis::cmd("TYPE")
        .arg("svc:spill")
        .query_async(&mut raw)
        .await
        .expect("TYPE");
    assert_eq!(kind, "none", "an emptied list is gone");
}

#[tokio::test]
async fn spill_queue_refuses_a_push_beyond_its_bound() {
    let server = RedisServer::start();
    let tier = RedisTier::connect(&server.url(), "svc")
        .await
        .expect("connect");
    let queue = SpillQueue::new(&tier, "spill", 3);

    for i in 0..3_u8 {
        queue.push(&[i]).await.expect("below the bound");
    }
    let error = queue.push(b"overflow").await.expect_err("full");
    assert!(
        matches!(error, TierError::QueueFull { bound: 3, .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "spill queue 'svc:spill' is full (bound of 3 entries)"
    );
    assert_eq!(queue.len().await.expect("len"), 3, "nothing was added");

    queue.pop().await.expect("pop");
    assert_eq!(queue.push(b"room again").await.expect("push"), 3);
}

#[tokio::test]
async fn spill_queue_bound_holds_under_concurrent_pushes() {
    let server = RedisServer::start();
    let tier = RedisTier::connect(&server.url(), "svc")
        .await
        .expect("connect");
    let queue = SpillQueue::new(&tier, "spill", 10);

    let pushes = (0..40_u8).map(|i| {
        let queue = queue.clone();
        tokio::spawn(async move { queue.push(&[i]).await })
    });
    let mut accepted = 0;
    for push in pushes.collect::<Vec<_>>() {
        match push.await.expect("task") {
            Ok(_) => accepted += 1,
            Err(TierError::QueueFull { .. }) => {}
            Err(error) => panic!("unexpected {error:?}"),
        }
    }
    assert_eq!(accepted, 10);
    assert_eq!(queue.len().await.expect("len"), 10);
}

#[tokio::test]
async fn spill_queue_pop_batch_takes_the_oldest_first() {
    let server = RedisServer::start();
    let tier = RedisTier::connect(&server.url(), "svc")
        .await
        .expect("connect");
    let queue = SpillQueue::new(&tier, "spill", 100);

    assert!(queue.pop_batch(5).await.expect("empty batch").is_empty());
    for i in 0..7_u8 {
        queue.push(&[i]).await.expect("push");
    }
    assert!(queue.pop_batch(0).await.expect("batch of 0").is_empty());
    assert_eq!(
        queue.pop_batch(3).await.expect("batch"),
        vec![vec![0], vec![1], vec![2]]
    );
    assert_eq!(
        queue.pop_batch(10).await.expect("rest"),
        vec![vec![3], vec![4], vec![5], vec![6]]
    );
    assert!(queue.pop_batch(10).await.expect("drained").is_empty());
}

#[tokio::test]
async fn spill_queue_reports_redis_failures() {
    let mut server = RedisServer::start();
    let tier = RedisTier::connect(&server.url(), "svc")
        .await
        .expect("connect");
    let queue = SpillQueue::new(&tier, "spill", 10);
    queue.push(b"kept").await.expect("push while up");

    server.kill();

    let error = queue.push(b"lost?").await.expect_err("Redis is gone");
    assert!(
        matches!(
            error,
            TierError::Command {
                command: "RPUSH",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error
        .to_string()
        .starts_with("Redis RPUSH on 'svc:spill' failed"));
}

#[tokio::test]
async fn prefixes_keep_tiers_apart_on_one_connection() {
    let server = RedisServer::start();
    let tier = RedisTier::connect(&server.url(), "a")
        .await
        .expect("connect");
    let other = tier.with_prefix("b");
    assert_eq!(tier.key("k"), "a:k");
    assert_eq!(other.key("k"), "b:k");

    let a = SpillQueue::new(&tier, "q", 10);
    let b = SpillQueue::new(&other, "q", 10);
    a.push(b"for a").await.expect("push");
    assert_eq!(b.len().await.expect("len"), 0);
    assert_eq!(a.len().await.expect("len"), 1);
}

#[tokio::test]
async fn a_tiered_cache_reads_back_from_redis_what_the_process_dropped() {
    let server = RedisServer::start();
    let tier = RedisTier::connect(&server.url(), "svc")
        .await
        .expect("connect");
    let registry = CacheRegistry::new();
    let local = BoundedCache::builder("profiles")
        .max_bytes(1 << 20)
        .max_entries(1000)
        .ttl(Duration::from_secs(60))
        .weigher(|k: &String, v: &std::sync::Arc<[u8]>| (k.len() + v.len()) as u64)
        .build(&registry)
        .expect("local layer");
    let shared = ReadThrough::new(&tier, Duration::from_secs(60)).expect("shared layer");
    let cache = TieredCache::new(local, shared);
    let calls = AtomicUsize::new(0);
    for _ in 0..3 {
        let value = cache
            .get_or_load("user:1", counting_loader(&calls, b"alice"))
            .await
            .expect("value");
        assert_eq!(&value[..], b"alice");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "loaded once");
    assert_eq!(cache.local().get("user:1").as_deref(), Some(&b"alice"[..]));

    // Critical pressure or the clear-cache action empties the process's layer...
    let cleared = registry.clear_all();
    assert_eq!(cleared.entries, 1);
    assert!(cache.local().get("user:1").is_none());
    // ...and the next lookup comes from Redis, not from the loader.
    let value = cache
        .get_or_load("user:1", counting_loader(&calls, b"recomputed"))
        .await
        .expect("value");
    assert_eq!(&value[..], b"alice");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the loader did not run again"
    );
    assert!(
        cache.local().get("user:1").is_some(),
        "kept in the process again"
    );
}
