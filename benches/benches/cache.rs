//! Cache throughput with two threads on a Zipf(1.0) workload: scalekit's cache
//! against moka and quick_cache, in one run.
//!
//! 1,000,000 distinct keys, capacity 100,000, keys drawn with exponent 1.0 and
//! spread over `u64` by a bijection. Each cache is warmed by the same stream
//! (read, insert on a miss) before measuring.
//!
//! - `cache/read_zipf_1t`: one thread only reads (`get`), the baseline for
//!   scaling: a read path without shared writes runs twice the operations in
//!   the same time with two threads.
//! - `cache/read_zipf_2t`: both threads only read.
//! - `cache/mixed_zipf_2t`: 75% reads, 25% inserts.
//!
//! One criterion iteration is one operation on each thread, so a time is per
//! operation (1t) or per pair of concurrent operations (2t); compare ids
//! within a group.
//!
//! Run: `cargo bench -p scalekit-benches --bench cache`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::Zipf;

const KEYS: u64 = 1_000_000;
const CAPACITY: u64 = 100_000;
const STREAM: usize = 1 << 21;
const THREADS: usize = 2;

/// SplitMix64's step: a bijection of `u64` (the same as the hit-ratio binary's).
fn spread(rank: u64) -> u64 {
    scalekit_core::mix64(rank.wrapping_add(0x9e37_79b9_7f4a_7c15))
}

fn zipf_stream(seed: u64) -> Vec<u64> {
    let zipf = Zipf::new(KEYS as f64, 1.0).expect("valid Zipf parameters");
    let mut rng = StdRng::seed_from_u64(seed);
    (0..STREAM)
        .map(|_| spread(rng.sample(zipf) as u64))
        .collect()
}

/// The operations the benchmark needs from each cache.
trait Bench: Sync {
    fn get(&self, key: u64) -> Option<u64>;
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

fn warm(cache: &dyn Bench, stream: &[u64]) {
    for &key in stream {
        if cache.get(key).is_none() {
            cache.insert(key, key);
        }
    }
}

/// Runs `iters` operations on each thread; returns the wall time of the slowest.
fn run(
    cache: &dyn Bench,
    streams: &[Vec<u64>],
    threads: usize,
    iters: u64,
    insert_every: Option<usize>,
) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        for stream in streams.iter().take(threads) {
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                let mut hits = 0u64;
                for i in 0..iters as usize {
                    let key = stream[i & (STREAM - 1)];
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

const IDS: [&str; 3] = ["scalekit", "moka", "quick_cache"];

fn build(name: &str) -> Box<dyn Bench> {
    match name {
        "scalekit" => Box::new(scalekit_cache::Cache::<u64, u64>::new(CAPACITY)),
        "moka" => Box::new(moka::sync::Cache::<u64, u64>::new(CAPACITY)),
        _ => Box::new(quick_cache::sync::Cache::<u64, u64>::new(CAPACITY as usize)),
    }
}

fn bench(c: &mut Criterion, group_name: &str, threads: usize, insert_every: Option<usize>) {
    let streams: Vec<Vec<u64>> = (0..THREADS as u64).map(|t| zipf_stream(7 + t)).collect();
    let warmup = zipf_stream(99);
    let mut group = c.benchmark_group(group_name);
    group.measurement_time(Duration::from_secs(4));
    for name in IDS {
        // Built and warmed on first use, so a filtered run builds only its cache.
        let mut cache: Option<Box<dyn Bench>> = None;
        group.bench_function(name, |b| {
            let cache = cache.get_or_insert_with(|| {
                let cache = build(name);
                warm(cache.as_ref(), &warmup);
                cache
            });
            b.iter_custom(|iters| run(cache.as_ref(), &streams, threads, iters, insert_every));
        });
    }
    group.finish();
}

fn read_zipf_1t(c: &mut Criterion) {
    bench(c, "cache/read_zipf_1t", 1, None);
}

fn read_zipf_2t(c: &mut Criterion) {
    bench(c, "cache/read_zipf_2t", THREADS, None);
}

fn mixed_zipf_2t(c: &mut Criterion) {
    bench(c, "cache/mixed_zipf_2t", THREADS, Some(4));
}

criterion_group!(benches, read_zipf_1t, read_zipf_2t, mixed_zipf_2t);
criterion_main!(benches);
