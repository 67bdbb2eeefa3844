//! The cache throughput workload, shared by `benches/cache.rs` (criterion) and
//! the `cache-ab` binary (interleaved rounds).
//!
//! 1,000,000 distinct keys, capacity 100,000, keys drawn with Zipf exponent 1.0
//! and spread over `u64` by a bijection. Each cache is warmed by the same
//! stream, cache-aside (read, insert on a miss), before measuring; each thread
//! then walks its own stream under one [`Pattern`].
//!
//! A stream is [`STREAM`] keys and a run walks it from where the last run on
//! that cache stopped ([`Cursor`]), so no run replays keys it has just
//! inserted. With a short stream that repeats (the first version of this
//! workload walked 2^21 keys from the start in every criterion sample), the
//! replayed stretch is a fixed finite sample: its inserts become replacements
//! of keys inserted moments before and its tail becomes hot, and both caches'
//! times then depend on the run's length (quick_cache's 75/25 mix went from
//! 47 ns to 33 ns an operation between 200,000 and 10,000,000 operations a
//! round; ours stayed at 65 ns).

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::Zipf;

/// Distinct keys.
pub const KEYS: u64 = 1_000_000;
/// Entries each cache holds.
pub const CAPACITY: u64 = 100_000;
/// Length of a stream (a power of two): 16.8 million keys, 128 MiB.
pub const STREAM: usize = 1 << 24;

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

/// `len` keys drawn from Zipf(1.0) over `KEYS` ranks.
pub fn zipf_stream(seed: u64, len: usize) -> Vec<u64> {
    match zipf_keys(1.0, KEYS, len as u64, seed) {
        Ok(keys) => keys,
        Err(e) => unreachable!("constant, valid Zipf parameters: {e}"),
    }
}

/// The streams the measuring threads walk (one per thread, seeds 7 and 8)
/// and the warm-up stream (seed 99, 2^21 keys).
pub fn streams(threads: usize) -> (Vec<Vec<u64>>, Vec<u64>) {
    let streams = (0..threads as u64)
        .map(|t| zipf_stream(7 + t, STREAM))
        .collect();
    (streams, zipf_stream(99, 1 << 21))
}

/// What each operation of a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Every operation is a `get`.
    Reads,
    /// Every fourth operation inserts its key, present or not (a write-through
    /// update: about as many replacements of present keys as the hit ratio);
    /// the others are `get`s. The "75/25 mix".
    Mix,
    /// A `get`, and an insert after each miss (cache-aside: how a cache in
    /// front of a database is filled).
    CacheAside,
}

impl Pattern {
    /// Every pattern, for runners that measure them all.
    pub const ALL: [Pattern; 3] = [Pattern::Reads, Pattern::Mix, Pattern::CacheAside];

    /// The pattern's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Reads => "reads",
            Pattern::Mix => "mix",
            Pattern::CacheAside => "cache-aside",
        }
    }

    /// The pattern named `name`.
    pub fn parse(name: &str) -> Result<Pattern, String> {
        Pattern::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| format!("pattern: reads, mix or cache-aside, not {name:?}"))
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
/// `quick_cache`), warmed cache-aside by `warmup`.
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

/// Where the next run on one cache starts in the streams: each run walks on
/// from where the last stopped, wrapping only after [`STREAM`] operations a
/// thread.
#[derive(Debug, Default)]
pub struct Cursor {
    offset: usize,
    walked: u64,
}

impl Cursor {
    /// Operations a thread has walked since this cursor was made; a figure
    /// measured past [`STREAM`] of them has replayed keys.
    pub fn walked(&self) -> u64 {
        self.walked
    }
}

/// Runs `iters` operations of `pattern` on each of `threads` threads (thread
/// `t` walks `streams[t]` from the cursor, which moves on by `iters`);
/// returns the wall time from the first thread's start to the last thread's
/// end.
pub fn run(
    cache: &dyn Bench,
    streams: &[Vec<u64>],
    threads: usize,
    iters: u64,
    pattern: Pattern,
    cursor: &mut Cursor,
) -> Duration {
    let offset = cursor.offset;
    cursor.offset = (offset + iters as usize) % STREAM;
    cursor.walked += iters;
    // Each thread times its own operations: a start taken by the spawning
    // thread after the barrier can come late when that thread is not
    // scheduled at once (on a busy machine, after the workers have finished),
    // and the run then looks faster than it was.
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let workers: Vec<_> = streams
            .iter()
            .take(threads)
            .map(|stream| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let mut hits = 0u64;
                    for i in 0..iters as usize {
                        let key = stream[(i + offset) & (STREAM - 1)];
                        match pattern {
                            Pattern::Mix if i % 4 == 3 => cache.insert(key, key),
                            Pattern::CacheAside => {
                                if cache.get(key).is_some() {
                                    hits += 1;
                                } else {
                                    cache.insert(key, key);
                                }
                            }
                            _ => hits += u64::from(cache.get(key).is_some()),
                        }
                    }
                    black_box(hits);
                    (start, Instant::now())
                })
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|worker| worker.join().ok())
            .collect()
    });
    let first = spans.iter().map(|s| s.0).min();
    let last = spans.iter().map(|s| s.1).max();
    match (first, last) {
        (Some(first), Some(last)) => last.duration_since(first),
        _ => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_by_name() {
        for pattern in Pattern::ALL {
            assert_eq!(Pattern::parse(pattern.name()), Ok(pattern));
        }
        assert!(Pattern::parse("writes").is_err());
    }

    #[test]
    fn runs_walk_on_and_cache_aside_inserts_after_misses() {
        let stream: Vec<u64> = (0..STREAM as u64).collect();
        let streams = [stream];
        let cache = scalekit_cache::Cache::<u64, u64>::new(CAPACITY);
        let mut cursor = Cursor::default();
        run(&cache, &streams, 1, 1000, Pattern::Reads, &mut cursor);
        assert_eq!(cache.entry_count(), 0, "reads insert nothing");
        run(&cache, &streams, 1, 1000, Pattern::CacheAside, &mut cursor);
        // Keys 1000..2000, all new: each missed and was inserted.
        assert_eq!(cache.entry_count(), 1000);
        assert!(cache.contains_key(&1999) && !cache.contains_key(&999));
        run(&cache, &streams, 1, 1000, Pattern::Mix, &mut cursor);
        // Every fourth of keys 2000..3000 was written.
        assert_eq!(cache.entry_count(), 1250);
        assert!(cache.contains_key(&2003) && !cache.contains_key(&2004));
        assert_eq!(cursor.walked(), 3000);
        run(
            &cache,
            &streams,
            1,
            STREAM as u64 - 3000,
            Pattern::Reads,
            &mut cursor,
        );
        run(&cache, &streams, 1, 1, Pattern::CacheAside, &mut cursor);
        assert!(
            cache.contains_key(&0),
            "the cursor wraps to the stream's start"
        );
    }
}
