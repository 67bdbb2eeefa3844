//! Checks and denials allocate nothing (a new key's insert may, once per shard).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A counting global allocator is the one way to observe allocations; it lives in
// this test binary only and forwards every call to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use std::num::NonZeroU32;

use scalekit_core::{Admission, ManualClock};
use scalekit_limit::{Bulkhead, KeyedRateLimiter, Quota, RateLimiter};

/// Counts allocations made by the current thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn checks_and_denials_do_not_allocate() {
    let clock = ManualClock::new();
    let q = Quota::per_second(NonZeroU32::new(10).unwrap());
    let direct = RateLimiter::with_clock(q, clock.clone());
    let keyed = KeyedRateLimiter::<u64, _>::builder(q)
        .max_keys(1024)
        .shards(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    let _ = keyed.check_key(&0); // allocates the shard's table, once
    let bulkhead = Bulkhead::new(1);
    let n = allocations_during(|| {
        for k in 0..100u64 {
            let _ = direct.check();
            let _ = keyed.check_key(&(k % 50));
            let _ = direct.try_acquire();
        }
        let d = direct.check().unwrap_err();
        let _ = d.retry_after_secs();
        let g = bulkhead.enter().unwrap();
        assert!(bulkhead.enter().is_err());
        drop(g);
    });
    assert_eq!(n, 0);
}
