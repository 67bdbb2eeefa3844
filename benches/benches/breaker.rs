//! Circuit breakers: the closed path (one thread and two threads) and the
//! rejection in open, against failsafe and recloser.
//!
//! Groups:
//! * `breaker/closed_1t`: admit one call and report its success, one thread.
//! * `breaker/closed_2t`: the same from two threads on one shared breaker (time
//!   per call per thread: the wall time of `iters` calls on each thread).
//! * `breaker/open_reject`: ask an open breaker, get the rejection.
//!
//! Every breaker is configured alike: a count window of 100 calls, open at 50%
//! failures (failsafe has no count window: its default policy, consecutive
//! failures, is the cheapest it offers). `scalekit` is the `Admission` hot path
//! (`try_acquire` + `record`), what the tower layer calls; `scalekit-call` is
//! `CircuitBreaker::call`, which also times the call for slow-call detection (two
//! clock reads), as the peers' `call` does not.
//!
//! Run: `cargo bench -p scalekit-benches --bench breaker`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use failsafe::CircuitBreaker as _;
use scalekit_breaker::{CircuitBreaker, Window};
use scalekit_core::{Admission, Outcome};

fn ours() -> CircuitBreaker {
    CircuitBreaker::builder()
        .window(Window::Count(100))
        .minimum_calls(100)
        .failure_rate_threshold(50.0)
        .build()
        .unwrap()
}

fn recloser() -> recloser::Recloser {
    recloser::Recloser::custom()
        .error_rate(0.5)
        .closed_len(100)
        .half_open_len(10)
        .open_wait(Duration::from_secs(30))
        .build()
}

type Failsafe = failsafe::StateMachine<
    failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::Exponential>,
    (),
>;

fn failsafe() -> Failsafe {
    let backoff = failsafe::backoff::exponential(Duration::from_secs(10), Duration::from_secs(60));
    let policy = failsafe::failure_policy::consecutive_failures(100, backoff);
    failsafe::Config::new().failure_policy(policy).build()
}

#[inline]
fn ours_call(b: &CircuitBreaker) {
    let p = b.try_acquire().unwrap();
    b.record(black_box(p), Outcome::Success, Duration::ZERO);
}

/// Wall time of `iters` calls on each of two threads.
fn two_threads<B: Send + Sync + 'static>(breaker: Arc<B>, iters: u64, call: fn(&B)) -> Duration {
    let barrier = Arc::new(Barrier::new(3));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (b, barrier) = (Arc::clone(&breaker), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    call(&b);
                }
                barrier.wait();
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    barrier.wait();
    let elapsed = start.elapsed();
    for h in handles {
        h.join().unwrap();
    }
    elapsed
}

fn closed_1t(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker/closed_1t");
    let b = ours();
    group.bench_function("scalekit", |bench| bench.iter(|| ours_call(&b)));
    group.bench_function("scalekit-call", |bench| {
        bench.iter(|| b.call(|| Ok::<_, ()>(black_box(1u32))))
    });
    let r = recloser();
    group.bench_function("recloser", |bench| {
        bench.iter(|| r.call(|| Ok::<_, ()>(black_box(1u32))))
    });
    let f = failsafe();
    group.bench_function("failsafe", |bench| {
        bench.iter(|| f.call(|| Ok::<_, ()>(black_box(1u32))))
    });
    group.finish();
}

fn closed_2t(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker/closed_2t");
    let b = Arc::new(ours());
    group.bench_function("scalekit", |bench| {
        bench.iter_custom(|iters| two_threads(Arc::clone(&b), iters, ours_call))
    });
    group.bench_function("scalekit-call", |bench| {
        bench.iter_custom(|iters| {
            two_threads(Arc::clone(&b), iters, |b| {
                let _ = b.call(|| Ok::<_, ()>(black_box(1u32)));
            })
        })
    });
    let r = Arc::new(recloser());
    group.bench_function("recloser", |bench| {
        bench.iter_custom(|iters| {
            two_threads(Arc::clone(&r), iters, |r| {
                let _ = r.call(|| Ok::<_, ()>(black_box(1u32)));
            })
        })
    });
    let f = Arc::new(failsafe());
    group.bench_function("failsafe", |bench| {
        bench.iter_custom(|iters| {
            two_threads(Arc::clone(&f), iters, |f| {
                let _ = f.call(|| Ok::<_, ()>(black_box(1u32)));
            })
        })
    });
    group.finish();
}

fn open_reject(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker/open_reject");
    let b = ours();
    for _ in 0..100 {
        let p = b.try_acquire().unwrap();
        b.record(p, Outcome::Failure, Duration::ZERO);
    }
    assert!(b.try_acquire().is_err());
    group.bench_function("scalekit", |bench| {
        bench.iter(|| black_box(b.try_acquire()).is_err())
    });
    let r = recloser();
    for _ in 0..200 {
        let _ = r.call(|| Err::<(), _>(()));
    }
    assert!(matches!(
        r.call(|| Ok::<_, ()>(())),
        Err(recloser::Error::Rejected)
    ));
    group.bench_function("recloser", |bench| {
        bench.iter(|| r.call(|| Ok::<_, ()>(black_box(1u32))).is_err())
    });
    let f = failsafe();
    for _ in 0..100 {
        let _ = f.call(|| Err::<(), _>(()));
    }
    assert!(!f.is_call_permitted());
    group.bench_function("failsafe", |bench| {
        bench.iter(|| f.call(|| Ok::<_, ()>(black_box(1u32))).is_err())
    });
    group.finish();
}

criterion_group!(benches, closed_1t, closed_2t, open_reject);
criterion_main!(benches);
