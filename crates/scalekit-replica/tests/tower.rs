//! The tower service over a replica set of services: decisions in `call` on
//! shared state, the chosen endpoint's readiness, and feedback to the set.
#![cfg(feature = "tower")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scalekit_core::{ManualClock, Outcome};
use scalekit_replica::tower::{ReplicaService, ReplicaServiceError};
use scalekit_replica::{
    AlwaysAdmit, Balance, EjectReason, Event, Member, OutlierDetection, ReplicaSet, SelectError,
};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::{Service, ServiceExt};

/// A backend whose readiness and answers the test controls. Clones share
/// everything (as clones of a channel share its connection).
#[derive(Clone)]
struct Backend {
    id: &'static str,
    failing: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
    broken: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
    waiting: Arc<Mutex<Option<Waker>>>,
}

impl Backend {
    fn new(id: &'static str) -> Self {
        Self {
            id,
            failing: Arc::new(AtomicBool::new(false)),
            ready: Arc::new(AtomicBool::new(true)),
            broken: Arc::new(AtomicBool::new(false)),
            calls: Arc::new(AtomicUsize::new(0)),
            waiting: Arc::new(Mutex::new(None)),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
        if let Some(w) = self.waiting.lock().unwrap().take() {
            w.wake();
        }
    }
}

impl Service<u32> for Backend {
    type Response = &'static str;
    type Error = String;
    type Future = std::future::Ready<Result<&'static str, String>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        if self.broken.load(Ordering::SeqCst) {
            return Poll::Ready(Err(format!("{}: connection refused", self.id)));
        }
        if self.ready.load(Ordering::SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            *self.waiting.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    fn call(&mut self, _: u32) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if self.failing.load(Ordering::SeqCst) {
            Err(format!("{}: 500", self.id))
        } else {
            Ok(self.id)
        })
    }
}

type Set = ReplicaSet<Backend, AlwaysAdmit, ManualClock>;

fn outliers(consecutive: u32) -> OutlierDetection {
    let mut o = OutlierDetection::default();
    o.consecutive_failures = Some(consecutive);
    o.base_ejection_time = Duration::from_secs(30);
    o.max_ejection_percent = 50;
    o
}

fn set_of(clock: &ManualClock, backends: &[&Backend], consecutive: u32) -> Set {
    let mut b = ReplicaSet::builder()
        .clock(clock.clone())
        .balance(Balance::RoundRobin)
        .outlier_detection(outliers(consecutive));
    for backend in backends {
        b = b.member(Member::replica(backend.id, (*backend).clone()));
    }
    b.build().unwrap()
}

fn run<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn a_failing_endpoint_is_ejected_and_traffic_moves_to_the_others() {
    let clock = ManualClock::new();
    let (a, bad, c) = (Backend::new("a"), Backend::new("bad"), Backend::new("c"));
    bad.failing.store(true, Ordering::SeqCst);
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&events);
    let set = ReplicaSet::builder()
        .clock(clock.clone())
        .balance(Balance::RoundRobin)
        .outlier_detection(outliers(3))
        .on_event(move |e| log.lock().unwrap().push(e.clone()))
        .member(Member::replica("a", a.clone()))
        .member(Member::replica("bad", bad.clone()))
        .member(Member::replica("c", c.clone()))
        .build()
        .unwrap();
    let svc = ReplicaService::new(set.clone());
    run(async {
        let mut failures = 0;
        for i in 0..300 {
            match svc.clone().oneshot(i).await {
                Ok(id) => assert_ne!(id, "bad"),
                Err(ReplicaServiceError::Inner(e)) => {
                    assert_eq!(e, "bad: 500");
                    failures += 1;
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        // Ejected by its third failure in a row; nothing went to it after.
        assert_eq!(failures, 3);
        assert_eq!(bad.calls(), 3);
        assert_eq!(a.calls() + c.calls(), 297);
        let stats = set.stats();
        assert!(stats.endpoints[1].ejected);
        assert!(stats.endpoints.iter().all(|e| e.outstanding == 0));
        assert!(events.lock().unwrap().iter().any(|e| matches!(
            e,
            Event::Ejected { name, reason: EjectReason::ConsecutiveFailures, .. } if &**name == "bad"
        )));

        // Repaired, and its ejection over: it takes its share again.
        bad.failing.store(false, Ordering::SeqCst);
        clock.advance(Duration::from_secs(30));
        for i in 0..30 {
            svc.clone().oneshot(i).await.unwrap();
        }
        assert!(bad.calls() >= 3 + 9, "bad got {} calls", bad.calls());
    });
}

#[test]
fn the_chosen_endpoints_readiness_is_awaited_and_counts_as_outstanding() {
    let clock = ManualClock::new();
    let only = Backend::new("only");
    only.set_ready(false);
    let set = set_of(&clock, &[&only], 5);
    let mut svc = ReplicaService::new(set.clone());
    let mut cx = Context::from_waker(Waker::noop());
    // The service itself is ready: the endpoint is chosen in `call`.
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let mut fut = pin!(svc.call(7));
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    assert_eq!(only.calls(), 0, "not called before it is ready");
    assert_eq!(set.stats().endpoints[0].outstanding, 1);

    clock.advance(Duration::from_millis(40));
    only.set_ready(true);
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Ok("only")) => {}
        other => panic!("expected the answer, got {other:?}"),
    }
    let stats = set.stats();
    assert_eq!(stats.endpoints[0].outstanding, 0);
    // The wait for readiness is part of the call's latency.
    assert_eq!(
        stats.endpoints[0].latency_estimate,
        Duration::from_millis(40)
    );
}

#[test]
fn a_readiness_error_is_a_failure_and_the_request_is_not_sent() {
    let clock = ManualClock::new();
    let (broken, good) = (Backend::new("broken"), Backend::new("good"));
    broken.broken.store(true, Ordering::SeqCst);
    let set = set_of(&clock, &[&broken, &good], 1);
    let svc = ReplicaService::new(set.clone());
    run(async {
        let mut refused = 0;
        for i in 0..10 {
            match svc.clone().oneshot(i).await {
                Ok(id) => assert_eq!(id, "good"),
                Err(ReplicaServiceError::Inner(e)) => {
                    assert_eq!(e, "broken: connection refused");
                    refused += 1;
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(refused, 1, "ejected by its first failure");
    });
    assert_eq!(broken.calls(), 0);
    assert!(set.stats().endpoints[0].ejected);
}

#[test]
fn a_dropped_response_future_counts_as_cancelled_not_as_a_failure() {
    let clock = ManualClock::new();
    let only = Backend::new("only");
    only.set_ready(false);
    let set = set_of(&clock, &[&only], 1);
    let mut svc = ReplicaService::new(set.clone());
    for i in 0..5 {
        let mut cx = Context::from_waker(Waker::noop());
        let mut fut = Box::pin(svc.call(i));
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        drop(fut);
    }
    let stats = set.stats();
    assert_eq!(stats.endpoints[0].outstanding, 0);
    assert!(!stats.endpoints[0].ejected, "cancellations do not eject");
}

#[test]
fn no_endpoint_resolves_to_unavailable_at_once() {
    let clock = ManualClock::new();
    let only = Backend::new("only");
    let set = set_of(&clock, &[&only], 1);
    set.set_healthy("only", false).unwrap();
    let err = run(ReplicaService::new(set).oneshot(1)).unwrap_err();
    assert!(matches!(
        err,
        ReplicaServiceError::Unavailable(SelectError::Unavailable(None))
    ));
    assert_eq!(
        err.to_string(),
        "no endpoint is available (all ejected, unhealthy, lagging, or excluded by the caller as tried already)"
    );
    assert_eq!(only.calls(), 0);
}

#[test]
fn clones_share_the_set_and_a_classifier_turns_answers_into_failures() {
    #[derive(Clone)]
    struct Status(u16, Arc<AtomicUsize>);
    impl Service<()> for Status {
        type Response = u16;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<u16, Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: ()) -> Self::Future {
            self.1.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(self.0))
        }
    }
    let (five, two) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let set = ReplicaSet::builder()
        .clock(ManualClock::new())
        .balance(Balance::RoundRobin)
        .outlier_detection(outliers(2))
        .member(Member::replica("503", Status(503, Arc::clone(&five))))
        .member(Member::replica("200", Status(200, Arc::clone(&two))))
        .build()
        .unwrap();
    let svc =
        ReplicaService::new(set.clone()).classify(|r: &Result<u16, std::convert::Infallible>| {
            match r {
                Ok(s) if *s >= 500 => Outcome::Failure,
                _ => Outcome::Success,
            }
        });
    run(async {
        // Two clones, as axum would make: their calls count toward one set.
        let (x, y) = (svc.clone(), svc.clone());
        for _ in 0..10 {
            x.clone().oneshot(()).await.unwrap();
            y.clone().oneshot(()).await.unwrap();
        }
    });
    assert_eq!(five.load(Ordering::SeqCst), 2, "two 503s in a row eject it");
    assert_eq!(two.load(Ordering::SeqCst), 18);
    assert!(set.stats().endpoints[0].ejected);
}
