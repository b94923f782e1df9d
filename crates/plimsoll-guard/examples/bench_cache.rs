//! `bench_cache`: what `BoundedCache` costs over a bare `moka::sync::Cache` on the hot path
//! (get of a present key, insert), against the bar of at most 10 % more time per operation.
//!
//! Both caches have the same capacity in bytes, the same weigher (8 bytes of key plus the
//! value's length), the same TTL, keys and values. Each round times every case once, in
//! alternating order, so drift of a shared machine falls on both sides; the table shows the
//! medians over the rounds and the median of the per-round ratios. Every case starts from a
//! full cache. Gets run on one thread and on two (the hit counter is a shared atomic); inserts
//! of new keys make moka admit and evict; inserts over present keys make it update in place.
//! Invalidation of present keys is shown too, without a bar: it is
//! where `BoundedCache` works around a fault of moka (see `BoundedCache::invalidate`).
//!
//! `cargo run --release -p plimsoll-guard --example bench_cache [-- --rounds N --ops N]`;
//! the exit code is 0 whatever the verdict (2 for bad arguments).

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plimsoll_guard::cache::{BoundedCache, CacheRegistry};

/// The bar: `BoundedCache` at most 10 % slower per operation than bare moka.
const BAR_RATIO: f64 = 1.10;
/// Keys that fit in the caches (each is charged 8 + `VALUE_BYTES` bytes).
const KEYS: u64 = 50_000;
const VALUE_BYTES: usize = 100;
const TTL: Duration = Duration::from_secs(3600);

type Value = Arc<[u8]>;

struct Settings {
    rounds: usize,
    ops: usize,
}

fn main() -> ExitCode {
    let settings = match parse_args(std::env::args().skip(1)) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("bench_cache: {message}");
            eprintln!("usage: bench_cache [--rounds N] [--ops N]");
            return ExitCode::from(2);
        }
    };
    run(&settings);
    ExitCode::SUCCESS
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Settings, String> {
    let mut settings = Settings {
        rounds: 21,
        ops: 300_000,
    };
    while let Some(flag) = args.next() {
        let target = match flag.as_str() {
            "--rounds" => &mut settings.rounds,
            "--ops" => &mut settings.ops,
            other => return Err(format!("unknown argument '{other}'")),
        };
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        *target = match value.parse() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(format!(
                    "invalid {flag} '{value}' (expected a positive integer)"
                ))
            }
        };
    }
    Ok(settings)
}

fn weigh(_key: &u64, value: &Value) -> u64 {
    8 + value.len() as u64
}

/// The two caches under test, behind one interface.
trait Subject: Sync {
    fn get(&self, key: u64) -> Option<Value>;
    fn insert(&self, key: u64, value: Value);
    fn invalidate(&self, key: u64);
    fn settle(&self);
    /// Empties the cache, so the next fill is not fought by TinyLFU admission.
    fn reset(&self);
}

impl Subject for moka::sync::Cache<u64, Value> {
    #[inline]
    fn get(&self, key: u64) -> Option<Value> {
        moka::sync::Cache::get(self, &key)
    }
    #[inline]
    fn insert(&self, key: u64, value: Value) {
        moka::sync::Cache::insert(self, key, value);
    }
    #[inline]
    fn invalidate(&self, key: u64) {
        moka::sync::Cache::invalidate(self, &key);
    }
    fn settle(&self) {
        self.run_pending_tasks();
    }
    fn reset(&self) {
        self.invalidate_all();
        self.run_pending_tasks();
    }
}

impl Subject for BoundedCache<u64, Value> {
    #[inline]
    fn get(&self, key: u64) -> Option<Value> {
        BoundedCache::get(self, &key)
    }
    #[inline]
    fn insert(&self, key: u64, value: Value) {
        BoundedCache::insert(self, key, value);
    }
    #[inline]
    fn invalidate(&self, key: u64) {
        BoundedCache::invalidate(self, &key);
    }
    fn settle(&self) {
        self.run_pending_tasks();
    }
    fn reset(&self) {
        self.clear();
    }
}

/// The cases of one round, each timed on both caches.
#[derive(Clone, Copy)]
enum Case {
    Get,
    GetTwoThreads,
    InsertNew,
    InsertReplace,
    /// Not under the bar: shown for what the workaround in `BoundedCache::invalidate` costs.
    Invalidate,
}

impl Case {
    const ALL: [Case; 5] = [
        Case::Get,
        Case::GetTwoThreads,
        Case::InsertNew,
        Case::InsertReplace,
        Case::Invalidate,
    ];

    fn label(self) -> &'static str {
        match self {
            Case::Get => "get (hit), 1 thread",
            Case::GetTwoThreads => "get (hit), 2 threads",
            Case::InsertNew => "insert new key (full)",
            Case::InsertReplace => "insert over a key",
            Case::Invalidate => "invalidate a key",
        }
    }
}

fn run(settings: &Settings) {
    let max_bytes = KEYS * (8 + VALUE_BYTES as u64);
    let moka: moka::sync::Cache<u64, Value> = moka::sync::Cache::builder()
        .max_capacity(max_bytes)
        .time_to_live(TTL)
        .weigher(|key, value| u32::try_from(weigh(key, value)).unwrap_or(u32::MAX))
        .build();
    let registry = CacheRegistry::new();
    // max_entries = KEYS charges every entry 8 + VALUE_BYTES: the same weights as moka's.
    let bounded = match BoundedCache::builder("bench")
        .max_bytes(max_bytes)
        .max_entries(KEYS)
        .ttl(TTL)
        .weigher(weigh)
        .build(&registry)
    {
        Ok(cache) => cache,
        Err(error) => {
            eprintln!("bench_cache: {error}");
            return;
        }
    };
    let value: Value = Arc::from(vec![7u8; VALUE_BYTES]);
    let keys = shuffled(KEYS);
    // Keys never inserted before, from far above the filled ones.
    let mut fresh = 1 << 40;

    // Nanoseconds per operation: moka first, BoundedCache second, per case and round.
    let mut times: Vec<[Vec<f64>; 2]> = Case::ALL.iter().map(|_| [vec![], vec![]]).collect();
    // Round 0 warms up and is not counted.
    for round in 0..=settings.rounds {
        for (c, &case) in Case::ALL.iter().enumerate() {
            let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for side in order {
                // Generic, not `dyn`: each side is inlined as a caller would inline it.
                let ns = match side {
                    0 => time_case(case, &moka, &keys, &mut fresh, &value, settings.ops),
                    _ => time_case(case, &bounded, &keys, &mut fresh, &value, settings.ops),
                };
                if round > 0 {
                    times[c][side].push(ns);
                }
            }
        }
    }

    println!(
        "BoundedCache vs bare moka::sync::Cache: {KEYS} entries of {VALUE_BYTES}-byte values \
         (the caches are full), {} ops per case and round, {} rounds interleaved",
        settings.ops, settings.rounds
    );
    println!("ns/op: median over the rounds; ratio: median of the per-round ratios");
    println!(
        "{:<24} {:>11} {:>19} {:>7} {:>5}",
        "operation", "moka ns/op", "BoundedCache ns/op", "ratio", "bar"
    );
    for (c, case) in Case::ALL.iter().enumerate() {
        let [moka_ns, bounded_ns] = &times[c];
        let mut ratios: Vec<f64> = moka_ns
            .iter()
            .zip(bounded_ns)
            .map(|(moka, bounded)| bounded / moka)
            .collect();
        let ratio = median(&mut ratios);
        let verdict = match case {
            Case::Invalidate => "-",
            _ if ratio <= BAR_RATIO => "PASS",
            _ => "FAIL",
        };
        println!(
            "{:<24} {:>11.1} {:>19.1} {ratio:>7.3} {verdict:>5}",
            case.label(),
            median(&mut moka_ns.clone()),
            median(&mut bounded_ns.clone()),
        );
    }
    println!("bar: BoundedCache/moka at most {BAR_RATIO:.2}");
    let stats = bounded.stats();
    println!(
        "BoundedCache counted {} hits and {} misses",
        stats.hits, stats.misses
    );
}

/// Fills `subject` with `keys`, then times `ops` operations of `case`; nanoseconds per
/// operation.
fn time_case<S: Subject>(
    case: Case,
    subject: &S,
    keys: &[u64],
    fresh: &mut u64,
    value: &Value,
    ops: usize,
) -> f64 {
    subject.reset();
    for &key in keys {
        subject.insert(key, Arc::clone(value));
    }
    subject.settle();
    let start = Instant::now();
    match case {
        Case::Get | Case::GetTwoThreads => {
            let threads = if matches!(case, Case::Get) { 1 } else { 2 };
            std::thread::scope(|scope| {
                for thread in 0..threads {
                    scope.spawn(move || {
                        let offset = thread * keys.len() / 2;
                        for i in 0..ops / threads {
                            let key = keys[(offset + i) % keys.len()];
                            black_box(subject.get(key));
                        }
                    });
                }
            });
        }
        Case::InsertNew => {
            for key in *fresh..*fresh + ops as u64 {
                subject.insert(key, Arc::clone(value));
            }
            *fresh += ops as u64;
        }
        Case::InsertReplace => {
            for i in 0..ops {
                subject.insert(keys[i % keys.len()], Arc::clone(value));
            }
        }
        // Present keys only: at most one pass over the filled ones.
        Case::Invalidate => {
            for &key in keys.iter().take(ops) {
                subject.invalidate(key);
            }
        }
    }
    let done = match case {
        Case::Invalidate => ops.min(keys.len()),
        _ => ops,
    };
    let ns = start.elapsed().as_nanos() as f64 / done as f64;
    subject.settle();
    ns
}

/// `0..n` in a fixed pseudo-random order (splitmix64 and Fisher-Yates).
fn shuffled(n: u64) -> Vec<u64> {
    let mut keys: Vec<u64> = (0..n).collect();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for i in (1..keys.len()).rev() {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        keys.swap(i, (z % (i as u64 + 1)) as usize);
    }
    keys
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
