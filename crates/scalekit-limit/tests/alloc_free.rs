//! Checks and denials allocate nothing (a new key's insert may, once per shard).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::num::NonZeroU32;
use std::time::Duration;

use scalekit_core::{Admission, ManualClock};
use scalekit_limit::{
    Bulkhead, KeyedRateLimiter, KeyedSlidingWindow, Quota, RateLimiter, SlidingWindow,
};
use scalekit_test_support::alloc::{allocations_during, assert_installed, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn checks_and_denials_do_not_allocate() {
    assert_installed();
    let clock = ManualClock::new();
    let q = Quota::per_second(NonZeroU32::new(10).unwrap());
    let direct = RateLimiter::with_clock(q, clock.clone());
    let keyed = KeyedRateLimiter::<u64, _>::builder(q)
        .max_keys(64)
        .shards(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    let _ = keyed.check_key(&0); // allocates the shard's table, once
    let window = SlidingWindow::with_clock(10, Duration::from_secs(1), clock.clone()).unwrap();
    let keyed_window = KeyedSlidingWindow::<u64, _>::builder(10, Duration::from_secs(1))
        .max_keys(64)
        .shards(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    let _ = keyed_window.check_key(&0);
    let bulkhead = Bulkhead::new(1);
    let n = allocations_during(|| {
        for k in 0..100u64 {
            let _ = direct.check();
            let _ = keyed.check_key(&(k % 50));
            let _ = direct.try_acquire();
            let _ = window.check();
            let _ = keyed_window.check_key(&(k % 50));
        }
        let d = direct.check().unwrap_err();
        let _ = d.retry_after_secs();
        let g = bulkhead.enter().unwrap();
        assert!(bulkhead.enter().is_err());
        drop(g);
    });
    assert_eq!(n, 0, "checks, denials and inserts below the cap");
    // At the cap: new keys take idle keys' slots (near their home, or found by
    // the sweep) without allocating.
    clock.advance(Duration::from_secs(10));
    let n = allocations_during(|| {
        for k in 1000..1200u64 {
            assert!(keyed.check_key(&k).is_ok(), "key {k}");
            assert!(keyed_window.check_key(&k).is_ok(), "key {k}");
            clock.advance(Duration::from_secs(2));
        }
    });
    assert_eq!(n, 0, "evictions");
}
