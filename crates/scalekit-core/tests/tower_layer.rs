//! The admission layer shares one policy across every clone of the service.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "tower")]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use scalekit_core::tower::{AdmissionError, AdmissionLayer};
use scalekit_core::{Admission, ManualClock, Outcome, RejectReason, Rejected};
use std::sync::Mutex;
use tower::{service_fn, Layer, Service, ServiceExt};

/// Outcomes reported to a test policy.
#[derive(Default, Debug)]
struct Recorded(Mutex<Vec<(Outcome, Duration)>>);

/// At most `limit` admissions in total, ever: the simplest limit there is.
#[derive(Debug, Default)]
struct Quota {
    admitted: AtomicU32,
    limit: u32,
    recorded: Recorded,
}

impl Admission for Quota {
    type Permit = u32;

    fn try_acquire(&self) -> Result<u32, Rejected> {
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .map_err(|_| {
                Rejected::new(RejectReason::RateLimited).retry_after(Duration::from_secs(1))
            })
    }

    fn record(&self, _permit: u32, outcome: Outcome, latency: Duration) {
        self.recorded.0.lock().unwrap().push((outcome, latency));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

#[test]
fn a_limit_holds_across_a_thousand_clones() {
    runtime().block_on(async {
        let policy = Arc::new(Quota {
            limit: 10,
            ..Quota::default()
        });
        let layer = AdmissionLayer::from_arc(Arc::clone(&policy));
        let calls = Arc::new(AtomicU64::new(0));
        let inner = {
            let calls = Arc::clone(&calls);
            service_fn(move |_: ()| {
                calls.fetch_add(1, Ordering::Relaxed);
                async { Ok::<_, std::convert::Infallible>("ok") }
            })
        };
        let svc = layer.layer(inner);
        // As axum does: a fresh clone of the service for every request.
        let clones: Vec<_> = (0..1000).map(|_| svc.clone()).collect();
        let mut admitted = 0;
        let mut rejected = 0;
        for clone in clones {
            match clone.oneshot(()).await {
                Ok("ok") => admitted += 1,
                Err(AdmissionError::Rejected(r)) => {
                    assert_eq!(r.reason(), RejectReason::RateLimited);
                    assert_eq!(r.retry_after_hint(), Some(Duration::from_secs(1)));
                    rejected += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(admitted, 10);
        assert_eq!(rejected, 990);
        // Rejected calls never reached the inner service.
        assert_eq!(calls.load(Ordering::Relaxed), 10);
        assert_eq!(policy.recorded.0.lock().unwrap().len(), 10);
    });
}

#[test]
fn outcomes_and_latency_are_reported() {
    runtime().block_on(async {
        let policy = Arc::new(Quota {
            limit: 100,
            ..Quota::default()
        });
        let clock = ManualClock::new();
        let layer = AdmissionLayer::from_arc(Arc::clone(&policy))
            .with_clock(clock.clone())
            .classify_with(|r: &Result<u32, &'static str>| match r {
                Ok(404) => Outcome::Ignored,
                Ok(_) => Outcome::Success,
                Err(_) => Outcome::Failure,
            });
        let tick = clock.clone();
        let mut svc = layer.layer(service_fn(move |x: u32| {
            tick.advance(Duration::from_millis(u64::from(x)));
            async move {
                if x == 7 {
                    Err("boom")
                } else {
                    Ok(x)
                }
            }
        }));
        assert_eq!(svc.ready().await.unwrap().call(5).await.unwrap(), 5);
        assert!(matches!(
            svc.ready().await.unwrap().call(7).await,
            Err(AdmissionError::Inner("boom"))
        ));
        assert_eq!(svc.ready().await.unwrap().call(404).await.unwrap(), 404);

        // A call whose future is dropped before it completes is reported cancelled.
        let never = AdmissionLayer::from_arc(Arc::clone(&policy))
            .with_clock(clock.clone())
            .layer(service_fn(|_: ()| std::future::pending::<Result<(), ()>>()));
        let fut = never.clone().oneshot(());
        drop(fut); // oneshot never called the service: nothing admitted
        let mut never = never;
        let fut = never.ready().await.unwrap().call(());
        drop(fut);

        let recorded = policy.recorded.0.lock().unwrap().clone();
        assert_eq!(
            recorded,
            vec![
                (Outcome::Success, Duration::from_millis(5)),
                (Outcome::Failure, Duration::from_millis(7)),
                (Outcome::Ignored, Duration::from_millis(404)),
                (Outcome::Cancelled, Duration::ZERO),
            ]
        );
    });
}

#[test]
fn errors_read_well_and_keep_their_source() {
    use std::error::Error;
    let rejected: AdmissionError<std::io::Error> = AdmissionError::Rejected(
        Rejected::new(RejectReason::CircuitOpen).retry_after(Duration::from_millis(1500)),
    );
    assert_eq!(
        rejected.to_string(),
        "call rejected: circuit breaker is open; retry after 1.5s"
    );
    assert!(rejected.source().is_none());
    // Transparent: the inner error displays as itself and passes on its source,
    // so a chain prints each message once.
    let inner = AdmissionError::Inner(std::io::Error::other("disk on fire"));
    assert_eq!(inner.to_string(), "disk on fire");
    assert!(inner.source().is_none());
    assert!(inner.rejected().is_none());
    let boxed = AdmissionError::<std::io::Error>::Rejected(Rejected::new(RejectReason::Overloaded))
        .into_box_error();
    assert_eq!(
        boxed.downcast_ref::<Rejected>().map(Rejected::reason),
        Some(RejectReason::Overloaded)
    );
}

#[test]
fn a_panicking_classifier_or_call_still_hands_the_permit_back() {
    let policy = Arc::new(Quota {
        limit: 100,
        ..Quota::default()
    });
    let layer = AdmissionLayer::from_arc(Arc::clone(&policy)).classify_with(
        |r: &Result<u32, ()>| -> Outcome {
            if r == &Ok(13) {
                panic!("classifier bug");
            }
            Outcome::Success
        },
    );
    let svc = layer.layer(service_fn(|x: u32| async move {
        if x == 99 {
            panic!("handler bug");
        }
        Ok::<_, ()>(x)
    }));
    for x in [13u32, 99] {
        let svc = svc.clone();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime().block_on(svc.oneshot(x))
        }));
        assert!(outcome.is_err(), "call {x} should have panicked");
    }
    let recorded: Vec<Outcome> = policy
        .recorded
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(recorded, vec![Outcome::Failure, Outcome::Failure]);
}

/// At most `limit` admissions per key, ever; outcomes recorded with their key.
#[derive(Debug, Default)]
struct PerKeyQuota {
    admitted: Mutex<std::collections::HashMap<u32, u32>>,
    unkeyed: AtomicU32,
    limit: u32,
    recorded: Mutex<Vec<(u32, Outcome)>>,
}

impl Admission for PerKeyQuota {
    type Permit = u32;
    fn try_acquire(&self) -> Result<u32, Rejected> {
        self.unkeyed.fetch_add(1, Ordering::AcqRel);
        Ok(u32::MAX)
    }
    fn record(&self, key: u32, outcome: Outcome, _latency: Duration) {
        self.recorded.lock().unwrap().push((key, outcome));
    }
}

impl scalekit_core::KeyedAdmission<u32> for PerKeyQuota {
    fn try_acquire_key(&self, key: &u32) -> Result<u32, Rejected> {
        let mut map = self.admitted.lock().unwrap();
        let n = map.entry(*key).or_default();
        if *n < self.limit {
            *n += 1;
            Ok(*key)
        } else {
            Err(Rejected::new(RejectReason::RateLimited))
        }
    }
}

#[test]
fn a_keyed_limit_holds_per_key_across_clones() {
    runtime().block_on(async {
        let policy = Arc::new(PerKeyQuota {
            limit: 3,
            ..PerKeyQuota::default()
        });
        // Requests are (client, value); the key is the client.
        let layer = AdmissionLayer::from_arc(Arc::clone(&policy)).key_by(|req: &(u32, u32)| req.0);
        let inner = service_fn(|(_, x): (u32, u32)| async move {
            if x == 0 {
                Err(std::io::Error::other("zero"))
            } else {
                Ok(x)
            }
        });
        let svc = layer.layer(inner);
        let mut admitted = [0u32; 4];
        let mut rejected = [0u32; 4];
        for i in 0..40u32 {
            let client = i % 4;
            // A fresh clone for every call, as axum makes.
            match svc.clone().oneshot((client, 1 + i)).await {
                Ok(_) => admitted[client as usize] += 1,
                Err(AdmissionError::Rejected(r)) => {
                    assert_eq!(r.reason(), RejectReason::RateLimited);
                    rejected[client as usize] += 1;
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(admitted, [3, 3, 3, 3]);
        assert_eq!(rejected, [7, 7, 7, 7]);
        // The unkeyed path was never taken, and each permit came back with its key.
        assert_eq!(policy.unkeyed.load(Ordering::Acquire), 0);
        {
            let recorded = policy.recorded.lock().unwrap();
            assert_eq!(recorded.len(), 12);
            for client in 0..4 {
                assert_eq!(
                    recorded
                        .iter()
                        .filter(|(k, o)| *k == client && *o == Outcome::Success)
                        .count(),
                    3
                );
            }
        }
        // A fifth client is independent of the four exhausted ones; its failure is
        // reported as a failure under its key.
        let err = svc.clone().oneshot((4, 0)).await.unwrap_err();
        assert!(matches!(err, AdmissionError::Inner(_)));
        assert_eq!(
            policy.recorded.lock().unwrap().last(),
            Some(&(4, Outcome::Failure))
        );
    });
}
