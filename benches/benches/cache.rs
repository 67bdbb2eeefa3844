//! Cache throughput with two threads on a Zipf(1.0) workload: scalekit's cache
//! against moka and quick_cache, in one run.
//!
//! The workload is `scalekit_benches::cache_workload`: 1,000,000 distinct
//! keys, capacity 100,000, Zipf exponent 1.0; each cache warmed by the same
//! stream before measuring.
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
//! Run: `cargo bench -p scalekit-benches --bench cache`. The `cache-ab`
//! binary runs the same workloads in interleaved rounds, for ratios that hold
//! when the machine's load drifts during a run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use scalekit_benches::cache_workload::{build, run, zipf_stream, Bench, IDS};

const THREADS: usize = 2;

fn bench(c: &mut Criterion, group_name: &str, threads: usize, insert_every: Option<usize>) {
    let streams: Vec<Vec<u64>> = (0..THREADS as u64).map(|t| zipf_stream(7 + t)).collect();
    let warmup = zipf_stream(99);
    let mut group = c.benchmark_group(group_name);
    group.measurement_time(Duration::from_secs(4));
    for name in IDS {
        // Built and warmed on first use, so a filtered run builds only its cache.
        let mut cache: Option<Box<dyn Bench>> = None;
        group.bench_function(name, |b| {
            let cache = cache.get_or_insert_with(|| build(name, &warmup));
            b.iter_custom(|iters| run(cache.as_ref(), &streams, threads, iters, insert_every, 0));
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
