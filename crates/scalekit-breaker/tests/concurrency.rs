//! Many threads released together by a barrier: half-open never admits more
//! than its probes, and the lock-free window loses no outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use scalekit_breaker::{CircuitBreaker, State, Window};
use scalekit_core::{Admission, ManualClock, Outcome};

const THREADS: usize = 8;

#[test]
fn half_open_never_admits_more_than_its_probes() {
    for probes in [1u32, 2, 5, 17] {
        let clock = ManualClock::new();
        let b = Arc::new(
            CircuitBreaker::builder()
                .window(Window::ConsecutiveFailures(1))
                .wait_in_open(Duration::from_secs(1))
                .half_open_probes(probes)
                .clock(clock.clone())
                .build()
                .unwrap(),
        );
        let p = b.try_acquire().unwrap();
        b.record(p, Outcome::Failure, Duration::ZERO);
        for round in 0..20 {
            assert_eq!(b.state(), State::Open);
            clock.advance(Duration::from_secs(60));
            let barrier = Arc::new(Barrier::new(THREADS));
            let admitted = Arc::new(AtomicU64::new(0));
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    let (b, barrier, admitted) =
                        (Arc::clone(&b), Arc::clone(&barrier), Arc::clone(&admitted));
                    thread::spawn(move || {
                        barrier.wait();
                        let mut mine = vec![];
                        for _ in 0..200 {
                            if let Ok(p) = b.try_acquire() {
                                admitted.fetch_add(1, Ordering::AcqRel);
                                mine.push(p);
                            }
                        }
                        mine
                    })
                })
                .collect();
            let permits: Vec<_> = handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect();
            assert_eq!(
                admitted.load(Ordering::Acquire),
                u64::from(probes),
                "round {round}"
            );
            assert_eq!(b.state(), State::HalfOpen);
            // Fail the probes (from several threads) to reopen for the next round.
            thread::scope(|s| {
                for p in permits {
                    let b = &b;
                    s.spawn(move || b.record(p, Outcome::Failure, Duration::ZERO));
                }
            });
        }
    }
}

#[test]
fn concurrent_records_in_closed_are_all_counted() {
    let b = Arc::new(
        CircuitBreaker::builder()
            .window(Window::Count(100_000))
            .minimum_calls(1_000_000)
            .build()
            .unwrap(),
    );
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (b, barrier) = (Arc::clone(&b), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                for i in 0..5_000 {
                    let p = b.try_acquire().unwrap();
                    let failed = (i + t) % 3 == 0;
                    let outcome = if failed {
                        Outcome::Failure
                    } else {
                        Outcome::Success
                    };
                    b.record(p, outcome, Duration::ZERO);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = b.stats();
    let expected_failures: u64 = (0..THREADS)
        .map(|t| (0..5_000).filter(|i| (i + t) % 3 == 0).count() as u64)
        .sum();
    assert_eq!(s.calls, (THREADS * 5_000) as u64);
    assert_eq!(s.failures, expected_failures);
}

#[test]
fn concurrent_failures_open_the_breaker_once() {
    let transitions = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&transitions);
    let b = Arc::new(
        CircuitBreaker::builder()
            .window(Window::Count(16))
            .minimum_calls(16)
            .on_transition(move |_| {
                seen.fetch_add(1, Ordering::AcqRel);
            })
            .clock(ManualClock::new())
            .build()
            .unwrap(),
    );
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (b, barrier) = (Arc::clone(&b), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                for _ in 0..100 {
                    if let Ok(p) = b.try_acquire() {
                        b.record(p, Outcome::Failure, Duration::ZERO);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(b.state(), State::Open);
    assert_eq!(transitions.load(Ordering::Acquire), 1);
    assert_eq!(b.generation(), 1);
}
