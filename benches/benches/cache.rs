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
//! - `cache/mixed_zipf_2t`: 75% reads, 25% inserts of present or new keys.
//! - `cache/aside_zipf_2t`: cache-aside, an insert after each miss.
//!
//! Each cache's runs walk on through the streams from where its last run
//! stopped (`Cursor`), so samples do not replay the keys they just inserted.
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
use scalekit_benches::cache_workload::{build, run, streams, Bench, Cursor, Pattern, IDS};

const THREADS: usize = 2;

fn bench(c: &mut Criterion, group_name: &str, threads: usize, pattern: Pattern) {
    let (streams, warmup) = streams(threads);
    let mut group = c.benchmark_group(group_name);
    group.measurement_time(Duration::from_secs(4));
    for name in IDS {
        // Built and warmed on first use, so a filtered run builds only its cache.
        let mut cache: Option<Box<dyn Bench>> = None;
        let mut cursor = Cursor::default();
        group.bench_function(name, |b| {
            let cache = cache.get_or_insert_with(|| build(name, &warmup));
            b.iter_custom(|iters| {
                run(
                    cache.as_ref(),
                    &streams,
                    threads,
                    iters,
                    pattern,
                    &mut cursor,
                )
            });
        });
    }
    group.finish();
}

fn read_zipf_1t(c: &mut Criterion) {
    bench(c, "cache/read_zipf_1t", 1, Pattern::Reads);
}

fn read_zipf_2t(c: &mut Criterion) {
    bench(c, "cache/read_zipf_2t", THREADS, Pattern::Reads);
}

fn mixed_zipf_1t(c: &mut Criterion) {
    bench(c, "cache/mixed_zipf_1t", 1, Pattern::Mix);
}

fn mixed_zipf_2t(c: &mut Criterion) {
    bench(c, "cache/mixed_zipf_2t", THREADS, Pattern::Mix);
}

fn aside_zipf_2t(c: &mut Criterion) {
    bench(c, "cache/aside_zipf_2t", THREADS, Pattern::CacheAside);
}

criterion_group!(
    benches,
    read_zipf_1t,
    read_zipf_2t,
    mixed_zipf_1t,
    mixed_zipf_2t,
    aside_zipf_2t
);
criterion_main!(benches);
