//! The axum example, tested without a socket: fresh clones of the router for
//! every request, as axum makes per connection, share one limit per client IP.
#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../examples/axum_per_ip.rs"]
mod example;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use scalekit_core::ManualClock;
use scalekit_limit::{KeyedRateLimiter, Quota};
use tower::ServiceExt;

fn request(ip: [u8; 4]) -> Request<Body> {
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), 40_000);
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

fn header(r: &axum::response::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn each_client_gets_its_quota_and_then_429_with_retry_after() {
    let clock = ManualClock::new();
    let limiter = Arc::new(
        KeyedRateLimiter::<IpAddr, _>::builder(Quota::per_minute(NonZeroU32::new(3).unwrap()))
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    let app = example::app(Arc::clone(&limiter));

    let mut statuses = vec![];
    for _ in 0..5 {
        // A fresh clone for every request: the limit must hold across clones.
        let r = app.clone().oneshot(request([192, 0, 2, 1])).await.unwrap();
        statuses.push(r.status());
        if r.status() == StatusCode::OK {
            assert_eq!(header(&r, "ratelimit-limit").as_deref(), Some("3"));
        } else {
            assert_eq!(header(&r, "retry-after").as_deref(), Some("20"));
            assert_eq!(header(&r, "ratelimit-remaining").as_deref(), Some("0"));
            // Reset: until the bucket is full again (3 units at 20 s each).
            assert_eq!(header(&r, "ratelimit-reset").as_deref(), Some("60"));
        }
    }
    use StatusCode as S;
    assert_eq!(
        statuses,
        [
            S::OK,
            S::OK,
            S::OK,
            S::TOO_MANY_REQUESTS,
            S::TOO_MANY_REQUESTS
        ]
    );

    // Remaining counts down on admitted responses.
    let other = [198, 51, 100, 9];
    let r = app.clone().oneshot(request(other)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "ratelimit-remaining").as_deref(), Some("2"));
    assert_eq!(header(&r, "ratelimit-reset").as_deref(), Some("20"));

    // After the retry-after, the first client gets one more.
    clock.advance(Duration::from_secs(20));
    let r = app.clone().oneshot(request([192, 0, 2, 1])).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(limiter.len(), 2);
}

#[tokio::test]
async fn requests_without_an_address_share_one_bucket() {
    let limiter = Arc::new(
        KeyedRateLimiter::<IpAddr, _>::builder(Quota::per_hour(NonZeroU32::new(1).unwrap()))
            .clock(ManualClock::new())
            .build()
            .unwrap(),
    );
    let app = example::app(limiter);
    let bare = || Request::get("/").body(Body::empty()).unwrap();
    assert_eq!(
        app.clone().oneshot(bare()).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        app.clone().oneshot(bare()).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // A client with an address is not affected.
    assert_eq!(
        app.oneshot(request([203, 0, 113, 5]))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}
