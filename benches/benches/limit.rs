//! Rate limits: one direct check, and keyed checks over 10,000 and 1,000,000
//! live keys, against governor.
//!
//! Groups:
//! * `limit/direct`: one `check` of a direct limiter on the real clock.
//! * `limit/keyed_10k`, `limit/keyed_1m`: one `check_key` per iteration, walking
//!   a fixed random order of `u64` keys that were all inserted before timing
//!   starts (the steady state of a busy entry point: every key is known).
//!
//! Both limiters use their default clock (ours: `MonotonicClock`, governor's
//! `QuantaClock`: both the TSC through quanta) and quotas under which every
//! check is admitted and writes its new state (the admitting path does the
//! most work in both). The direct limiter allows one unit a nanosecond: a check
//! takes longer than that, so the bucket never empties however long criterion
//! runs. The keyed limiters allow one unit an hour with a burst of a million,
//! so no key goes idle (and is swept) mid-run and no key's bucket empties: a
//! run checks each of 10,000 keys well under a million times. Our cap is twice the live keys (the guide advises 2-4x);
//! `scalekit-cap2m` is the same keys under a 2^21 cap (sparse for 10,000 keys).
//!
//! Each iteration keeps the decision (admitted or not), as a handler that
//! answers 429 does. Ours also returns the state for the `RateLimit` headers;
//! it is built from values already in registers, only when it is used.
//!
//! Run: `cargo bench -p scalekit-benches --bench limit`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use scalekit_core::mix64;
use scalekit_limit::{KeyedRateLimiter, Quota, RateLimiter};

/// One unit an hour, a burst of a million: every keyed check is admitted and
/// pushes the key's state an hour ahead, so no key goes idle (and is swept)
/// mid-run.
const BURST: u32 = 1_000_000;

fn ours_quota() -> Quota {
    Quota::per_hour(NonZeroU32::new(1).unwrap()).allow_burst(NonZeroU32::new(BURST).unwrap())
}

fn governor_quota() -> governor::Quota {
    governor::Quota::per_hour(NonZeroU32::new(1).unwrap())
        .allow_burst(NonZeroU32::new(BURST).unwrap())
}

/// One unit a nanosecond (a burst of a thousand): a check takes longer than a
/// nanosecond, so every check of the direct limiter is admitted.
fn direct(c: &mut Criterion) {
    let mut group = c.benchmark_group("limit/direct");
    let burst = NonZeroU32::new(1_000).unwrap();
    let ours = RateLimiter::new(
        Quota::with_interval(Duration::from_nanos(1))
            .unwrap()
            .allow_burst(burst),
    );
    group.bench_function("scalekit", |b| b.iter(|| black_box(ours.check().is_ok())));
    let theirs = governor::RateLimiter::direct(
        governor::Quota::with_period(Duration::from_nanos(1))
            .unwrap()
            .allow_burst(burst),
    );
    group.bench_function("governor", |b| b.iter(|| black_box(theirs.check().is_ok())));
    // The buckets were never emptied: checks after the run are still admitted.
    assert!(ours.check().is_ok() && theirs.check().is_ok());
    group.finish();
}

/// Keys in a fixed random order (a power of two in length, for the index mask).
fn keys(n: usize) -> Vec<u64> {
    let len = n.next_power_of_two();
    (0..len as u64)
        .map(|i| mix64((i % n as u64) ^ 0x5EED))
        .collect()
}

fn bench_ours(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    keys: &[u64],
    n: usize,
    max_keys: usize,
) {
    let mask = keys.len() - 1;
    let ours = KeyedRateLimiter::<u64>::builder(ours_quota())
        .max_keys(max_keys)
        .build()
        .unwrap();
    for k in keys {
        assert!(ours.check_key(k).is_ok());
    }
    assert_eq!(ours.len(), n);
    let mut i = 0usize;
    group.bench_function(id, |b| {
        b.iter(|| {
            i = (i + 1) & mask;
            black_box(ours.check_key(&keys[i]).is_ok())
        })
    });
    // No key's bucket was emptied (and no key was swept): still admitted.
    assert!(keys.iter().all(|k| ours.check_key(k).is_ok()));
    assert_eq!(ours.len(), n);
}

fn keyed(group: &mut BenchmarkGroup<'_, WallTime>, n: usize) {
    let keys = keys(n);
    let mask = keys.len() - 1;
    // The cap sized as the limit guide (crates/scalekit-limit/GUIDE.md) advises (2-4x the live keys; here 2x), so
    // the table is as dense as it would be in service.
    let cap = 2 * n;
    bench_ours(group, "scalekit", &keys, n, cap);
    // The same keys in a table sized for 2^21 keys (for 10,000 keys: sparse, so
    // every check touches its own cache line and page).
    bench_ours(group, "scalekit-cap2m", &keys, n, 1 << 21);
    let theirs = governor::RateLimiter::keyed(governor_quota());
    for k in &keys {
        assert!(theirs.check_key(k).is_ok());
    }
    let mut i = 0usize;
    group.bench_function("governor", |b| {
        b.iter(|| {
            i = (i + 1) & mask;
            black_box(theirs.check_key(&keys[i]).is_ok())
        })
    });
    assert!(keys.iter().all(|k| theirs.check_key(k).is_ok()));
}

fn keyed_10k(c: &mut Criterion) {
    let mut group = c.benchmark_group("limit/keyed_10k");
    keyed(&mut group, 10_000);
    group.finish();
}

fn keyed_1m(c: &mut Criterion) {
    let mut group = c.benchmark_group("limit/keyed_1m");
    keyed(&mut group, 1_000_000);
    group.finish();
}

criterion_group!(benches, direct, keyed_10k, keyed_1m);
criterion_main!(benches);
