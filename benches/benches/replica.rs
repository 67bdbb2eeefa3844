//! Choosing a replica: power of two choices over peak-EWMA, against tower's
//! balancer.
//!
//! Group `replica/select_16`: 16 endpoints; one iteration chooses an endpoint
//! and completes a call on it (so both sides update their latency estimate).
//! * `scalekit`: `ReplicaSet::select` + `Selected::success` (lock-free; two
//!   clock reads, one at selection and one at completion).
//! * `scalekit_excluding_2`: the same through `select_excluding` with two
//!   names excluded (a retry's selection).
//! * `tower`: `Balance` (p2c) over `ServiceList` of `PeakEwma` services:
//!   `poll_ready` (which samples two and reads their load: a mutex and a clock
//!   read each) + `call` + polling the response to completion (which updates
//!   the chosen service's estimate under its mutex).
//!
//! Run: `cargo bench -p scalekit-benches --bench replica`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use scalekit_replica::{Member, ReplicaSet};
use tower::balance::p2c::Balance;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PeakEwma};
use tower::Service;

const ENDPOINTS: usize = 16;

/// A backend that answers at once.
#[derive(Clone, Copy)]
struct Backend(u32);

impl Service<()> for Backend {
    type Response = u32;
    type Error = Infallible;
    type Future = Ready<Result<u32, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: ()) -> Self::Future {
        ready(Ok(self.0))
    }
}

fn select_16(c: &mut Criterion) {
    let mut group = c.benchmark_group("replica/select_16");

    let mut builder = ReplicaSet::builder();
    for i in 0..ENDPOINTS {
        builder = builder.member(Member::replica(format!("r{i}"), i as u32));
    }
    let set = builder.build().unwrap();
    group.bench_function("scalekit", |b| {
        b.iter(|| {
            let s = set.select().unwrap();
            black_box(*s);
            s.success();
        })
    });
    // A retry's selection: two endpoints already tried.
    let tried = ["r3", "r11"];
    group.bench_function("scalekit_excluding_2", |b| {
        b.iter(|| {
            let s = set.select_excluding(black_box(&tried)).unwrap();
            black_box(*s);
            s.success();
        })
    });

    let services: Vec<_> = (0..ENDPOINTS as u32)
        .map(|i| {
            PeakEwma::new(
                Backend(i),
                Duration::from_millis(30),
                10e9,
                CompleteOnResponse::default(),
            )
        })
        .collect();
    let mut balance = Balance::new(ServiceList::new(services));
    let mut cx = Context::from_waker(Waker::noop());
    group.bench_function("tower", |b| {
        b.iter(|| {
            match balance.poll_ready(&mut cx) {
                Poll::Ready(Ok(())) => {}
                _ => panic!("the balancer is not ready"),
            }
            let fut = pin!(balance.call(()));
            match fut.poll(&mut cx) {
                Poll::Ready(Ok(v)) => black_box(v),
                _ => panic!("the backend answers at once"),
            };
        })
    });
    group.finish();
}

criterion_group!(benches, select_16);
criterion_main!(benches);
