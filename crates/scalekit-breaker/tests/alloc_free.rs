//! The closed path, a rejection and a probe allocate nothing, with and without
//! an event listener.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use scalekit_breaker::{CircuitBreaker, Window};
use scalekit_core::{Admission, ManualClock, Outcome};
use scalekit_test_support::alloc::{allocations_during, assert_installed, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn hot_paths_allocate_nothing(events: Option<Arc<AtomicU64>>) {
    let clock = ManualClock::new();
    let builder = CircuitBreaker::builder()
        .window(Window::Count(16))
        .minimum_calls(16)
        .wait_in_open(Duration::from_secs(1))
        .half_open_probes(2)
        .clock(clock.clone());
    let b = match events {
        Some(seen) => builder
            .on_event(move |_| {
                seen.fetch_add(1, Ordering::Relaxed);
            })
            .build()
            .unwrap(),
        None => builder.build().unwrap(),
    };
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
        drop(b.try_acquire().unwrap()); // dropped unreported
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
        let q = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err());
        drop(q); // a probe dropped unreported gives its slot back
        let _ = b.try_acquire().unwrap();
        b.record(p, Outcome::Success, Duration::ZERO);
    });
    assert_eq!(n, 0, "rejections and probes");
}

#[test]
fn the_hot_paths_do_not_allocate() {
    assert_installed();
    hot_paths_allocate_nothing(None);
}

#[test]
fn the_hot_paths_do_not_allocate_with_an_event_listener() {
    assert_installed();
    let seen = Arc::new(AtomicU64::new(0));
    hot_paths_allocate_nothing(Some(Arc::clone(&seen)));
    assert!(seen.load(Ordering::Relaxed) > 2000);
}
