//! The breaker behind the core tower layer: every clone shares one breaker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use scalekit_breaker::{CircuitBreaker, State, Window};
use scalekit_core::tower::{AdmissionError, AdmissionLayer};
use scalekit_core::{ManualClock, Outcome, RejectReason};
use tower::{service_fn, Layer, ServiceExt};

#[test]
fn clones_share_the_breaker_and_the_classifier_decides() {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async {
            let clock = ManualClock::new();
            let breaker = Arc::new(
                CircuitBreaker::builder()
                    .window(Window::ConsecutiveFailures(3))
                    .clock(clock.clone())
                    .build()
                    .unwrap(),
            );
            // Status codes: 5xx is a failure, 404 is ignored.
            let layer = AdmissionLayer::from_arc(Arc::clone(&breaker))
                .with_clock(clock.clone())
                .classify_with(|r: &Result<u16, ()>| match r {
                    Ok(404) => Outcome::Ignored,
                    Ok(s) if *s >= 500 => Outcome::Failure,
                    Ok(_) => Outcome::Success,
                    Err(_) => Outcome::Failure,
                });
            let svc = layer.layer(service_fn(|status: u16| async move { Ok::<_, ()>(status) }));
            for _ in 0..10 {
                assert_eq!(svc.clone().oneshot(404).await.unwrap(), 404);
            }
            assert_eq!(breaker.state(), State::Closed);
            for _ in 0..3 {
                assert_eq!(svc.clone().oneshot(503).await.unwrap(), 503);
            }
            assert_eq!(breaker.state(), State::Open);
            match svc.clone().oneshot(200).await {
                Err(AdmissionError::Rejected(r)) => {
                    assert_eq!(r.reason(), RejectReason::CircuitOpen);
                    assert_eq!(r.retry_after_hint(), Some(Duration::from_secs(60)));
                }
                other => panic!("expected a rejection, got {other:?}"),
            }
        });
}
