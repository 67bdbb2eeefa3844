//! The closed path, a rejection and a probe allocate nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A counting global allocator is the one way to observe allocations; it lives in
// this test binary only and forwards every call to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use scalekit_breaker::{CircuitBreaker, Window};
use scalekit_core::{Admission, ManualClock, Outcome};

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
fn the_hot_paths_do_not_allocate() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder()
        .window(Window::Count(16))
        .minimum_calls(16)
        .wait_in_open(Duration::from_secs(1))
        .half_open_probes(2)
        .clock(clock.clone())
        .build()
        .unwrap();
    let n = allocations_during(|| {
        for i in 0..1000 {
            let p = b.try_acquire().unwrap();
            let outcome = if i % 4 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            b.record(p, outcome, Duration::ZERO);
        }
        let _ = b.call(|| Ok::<_, ()>(1));
    });
    assert_eq!(n, 0, "closed path");
    while let Ok(p) = b.try_acquire() {
        b.record(p, Outcome::Failure, Duration::ZERO);
    }
    let n = allocations_during(|| {
        for _ in 0..1000 {
            assert!(b.try_acquire().is_err());
        }
        clock.advance(Duration::from_secs(1));
        let p = b.try_acquire().unwrap();
        let _ = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err());
        b.record(p, Outcome::Success, Duration::ZERO);
    });
    assert_eq!(n, 0, "rejections and probes");
}
