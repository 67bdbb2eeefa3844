//! The cache throughput workload, shared by `benches/cache.rs` (criterion) and
//! the `cache-ab` binary (interleaved rounds).
//!
//! 1,000,000 distinct keys, capacity 100,000, keys drawn with Zipf exponent 1.0
//! and spread over `u64` by a bijection. Each cache is warmed by the same
//! stream (read, insert on a miss) before measuring; each thread then walks its
//! own stream, reading, or inserting every `insert_every`-th operation.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::Zipf;

/// Distinct keys.
pub const KEYS: u64 = 1_000_000;
/// Entries each cache holds.
pub const CAPACITY: u64 = 100_000;
/// Length of a stream (a power of two).
pub const STREAM: usize = 1 << 21;

/// SplitMix64's step: a bijection of `u64`, so popular keys are not small numbers.
pub fn spread(rank: u64) -> u64 {
    scalekit_core::mix64(rank.wrapping_add(0x9e37_79b9_7f4a_7c15))
}

/// `requests` Zipf(`alpha`)-distributed ranks over `keys`, each mapped to a
/// key by [`spread`] (also the hit-ratio binary's Zipf workloads).
pub fn zipf_keys(alpha: f64, keys: u64, requests: u64, seed: u64) -> Result<Vec<u64>, String> {
    let distribution =
        Zipf::new(keys as f64, alpha).map_err(|e| format!("zipf({alpha}, {keys}): {e}"))?;
    let mut rng = StdRng::seed_from_u64(seed);
    Ok((0..requests)
        .map(|_| spread(rng.sample(distribution) as u64))
        .collect())
}

/// `STREAM` keys drawn from Zipf(1.0) over `KEYS` ranks.
pub fn zipf_stream(seed: u64) -> Vec<u64> {
    match zipf_keys(1.0, KEYS, STREAM as u64, seed) {
        Ok(keys) => keys,
        Err(e) => unreachable!("constant, valid Zipf parameters: {e}"),
    }
}

/// The operations the workload needs from each cache.
pub trait Bench: Sync {
    /// A read.
    fn get(&self, key: u64) -> Option<u64>;
    /// An insert (new key or replace).
    fn insert(&self, key: u64, value: u64);
}

impl Bench for scalekit_cache::Cache<u64, u64> {
    fn get(&self, key: u64) -> Option<u64> {
        scalekit_cache::Cache::get(self, &key)
    }
    fn insert(&self, key: u64, value: u64) {
        scalekit_cache::Cache::insert(self, key, value);
    }
}

impl Bench for moka::sync::Cache<u64, u64> {
    fn get(&self, key: u64) -> Option<u64> {
        moka::sync::Cache::get(self, &key)
    }
    fn insert(&self, key: u64, value: u64) {
        moka::sync::Cache::insert(self, key, value);
    }
}

impl Bench for quick_cache::sync::Cache<u64, u64> {
    fn get(&self, key: u64) -> Option<u64> {
        quick_cache::sync::Cache::get(self, &key)
    }
    fn insert(&self, key: u64, value: u64) {
        quick_cache::sync::Cache::insert(self, key, value);
    }
}

/// The caches compared, by benchmark id.
pub const IDS: [&str; 3] = ["scalekit", "moka", "quick_cache"];

/// A cache of `CAPACITY` entries by id (`scalekit`, `moka`, anything else:
/// `quick_cache`), warmed by `warmup`.
pub fn build(id: &str, warmup: &[u64]) -> Box<dyn Bench> {
    let cache: Box<dyn Bench> = match id {
        "scalekit" => Box::new(scalekit_cache::Cache::<u64, u64>::new(CAPACITY)),
        "moka" => Box::new(moka::sync::Cache::<u64, u64>::new(CAPACITY)),
        _ => Box::new(quick_cache::sync::Cache::<u64, u64>::new(CAPACITY as usize)),
    };
    for &key in warmup {
        if cache.get(key).is_none() {
            cache.insert(key, key);
        }
    }
    cache
}

/// Runs `iters` operations on each of `threads` threads (thread `t` walks
/// `streams[t]` from `offset`); returns the wall time from the common start to
/// the last thread's end.
pub fn run(
    cache: &dyn Bench,
    streams: &[Vec<u64>],
    threads: usize,
    iters: u64,
    insert_every: Option<usize>,
    offset: usize,
) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        for stream in streams.iter().take(threads) {
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                let mut hits = 0u64;
                for i in 0..iters as usize {
                    let key = stream[(i + offset) & (STREAM - 1)];
                    match insert_every {
                        Some(every) if i % every == every - 1 => cache.insert(key, key),
                        _ => hits += u64::from(cache.get(key).is_some()),
                    }
                }
                black_box(hits);
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}
