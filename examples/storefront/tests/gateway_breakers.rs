//! Stage 4's gateway and its instances' health: what opens a breaker (an instance
//! that says it is unwell), what does not (one client's failing requests, clients
//! that go away), against in-process upstreams on port 0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{any, get};
use axum::Router;
use common::procs::Http;
use common::stubs::{instance, serve, upstream};
use storefront_gateway::Gateway;
use storefront_stage::config::GatewayConfig;

/// An instance that answers 503 (the app's answer when its database is
/// unavailable) is unwell: its breaker opens.
#[tokio::test]
async fn a_breaker_opens_on_a_failing_instance_and_the_gateway_stops_sending_there() {
    let addrs = [
        upstream("bad", StatusCode::SERVICE_UNAVAILABLE, 0).await,
        upstream("good", StatusCode::OK, 20).await,
    ];
    let mut config = GatewayConfig::default();
    config.breaker.window = 10;
    config.breaker.minimum_calls = 4;
    config.breaker.failure_rate = 50;
    config.breaker.open_secs = 60;
    // The breaker alone: no ejection, and failures not penalised in the latency
    // estimate (which would steer requests away after the first one).
    config.ejection.consecutive_failures = 0;
    config.ejection.failure_penalty_factor = 1;
    let gw = Gateway::new(&config, &addrs).unwrap();
    let (base, _stop) = serve(&gw).await;
    let http = Http::default();
    // The failing instance answers at once, the good one in 20 ms: left to
    // latency alone, every request would go to the failing one.
    let mut errors = 0;
    for _ in 0..30 {
        let r = http.get(&format!("{base}/")).await.unwrap();
        if r.status == StatusCode::SERVICE_UNAVAILABLE {
            errors += 1;
            assert!(r.body.starts_with("bad|"), "{}", r.body);
        }
    }
    let snap = gw.snapshot();
    let bad = instance(&snap, "app-1");
    assert_eq!(bad.breaker, "open", "{snap:?}");
    assert_eq!(bad.requests, 4, "four failures open it: {snap:?}");
    assert_eq!(errors, 4);
    // While open, nothing more goes there.
    for _ in 0..10 {
        let r = http.get(&format!("{base}/")).await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let snap = gw.snapshot();
    assert_eq!(instance(&snap, "app-1").requests, 4);
    assert_eq!(instance(&snap, "app-2").breaker, "closed");
}

/// With the default failure penalty, a fast-failing (503) instance is avoided
/// after its first failure, before any breaker or ejection acts.
#[tokio::test]
async fn a_fast_failing_instance_is_avoided_by_the_latency_estimate() {
    let addrs = [
        upstream("bad", StatusCode::SERVICE_UNAVAILABLE, 0).await,
        upstream("good", StatusCode::OK, 20).await,
    ];
    let mut config = GatewayConfig::default();
    config.breaker.failure_rate = 100; // opens only if all of 20 calls fail
    config.ejection.consecutive_failures = 0; // no ejection
    let gw = Gateway::new(&config, &addrs).unwrap();
    let (base, _stop) = serve(&gw).await;
    let http = Http::default();
    let mut errors = 0;
    for _ in 0..30 {
        if http.get(&format!("{base}/")).await.unwrap().status != StatusCode::OK {
            errors += 1;
        }
    }
    assert!(errors <= 2, "{errors} of 30 went to the failing instance");
    let snap = gw.snapshot();
    assert_eq!(instance(&snap, "app-1").breaker, "closed");
}

/// An upstream like the shop: `/api/search` answers 500 at once (as the shop did
/// for `?q=%00`), anything else 200 after 1 ms.
async fn shop_like(name: &'static str) -> SocketAddr {
    let app = Router::new()
        .route(
            "/api/search",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "internal") }),
        )
        .route("/readyz", get(|| async { "ready\n" }))
        .fallback(any(move || async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            name
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Issue 15: one client sending requests that make the app answer 500, well
/// within its rate limit, opened every breaker and took the shop offline. A 500
/// is one request's error: it counts against no instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clients_failing_requests_open_no_breaker_and_cost_others_nothing() {
    let addrs = [
        shop_like("a").await,
        shop_like("b").await,
        shop_like("c").await,
    ];
    // Every client is 127.0.0.1 here: the per-IP limit out of the way.
    let config = GatewayConfig {
        rate_per_sec: 100_000,
        burst: 100_000,
        ..GatewayConfig::default()
    };
    let gw = Gateway::new(&config, &addrs).unwrap();
    let (base, _stop) = serve(&gw).await;
    let attacking = Arc::new(AtomicBool::new(true));
    let mut browsers = Vec::new();
    for _ in 0..3 {
        let (base, attacking) = (base.clone(), attacking.clone());
        browsers.push(tokio::spawn(async move {
            let http = Http::default();
            let (mut ok, mut errors) = (0u64, Vec::new());
            while attacking.load(Ordering::Relaxed) {
                let r = http.get(&format!("{base}/products/1")).await.unwrap();
                if r.status == StatusCode::OK {
                    ok += 1;
                } else {
                    errors.push(format!("{} {}", r.status, r.body));
                }
            }
            (ok, errors)
        }));
    }
    let mut attackers = Vec::new();
    for _ in 0..4 {
        let base = base.clone();
        attackers.push(tokio::spawn(async move {
            let http = Http::default();
            let mut answers: HashMap<StatusCode, u32> = HashMap::new();
            for _ in 0..250 {
                let r = http.get(&format!("{base}/api/search?q=%00")).await.unwrap();
                *answers.entry(r.status).or_default() += 1;
            }
            answers
        }));
    }
    let mut attacker_saw: HashMap<StatusCode, u32> = HashMap::new();
    for a in attackers {
        for (status, n) in a.await.unwrap() {
            *attacker_saw.entry(status).or_default() += n;
        }
    }
    attacking.store(false, Ordering::Relaxed);
    let (mut ok, mut errors) = (0, Vec::new());
    for b in browsers {
        let (o, e) = b.await.unwrap();
        ok += o;
        errors.extend(e);
    }
    assert!(
        errors.is_empty(),
        "{} errors: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(ok > 0, "the others browsed");
    // The attacker got the app's answer every time: passed on, not retried.
    assert_eq!(
        attacker_saw,
        HashMap::from([(StatusCode::INTERNAL_SERVER_ERROR, 1_000)])
    );
    let snap = gw.snapshot();
    for i in &snap.instances {
        assert_eq!(i.breaker, "closed", "{snap:?}");
        assert!(!i.ejected && i.failures == 0, "{snap:?}");
    }
    assert_eq!(
        snap.instances.iter().map(|i| i.app_errors).sum::<u64>(),
        1_000,
        "{snap:?}"
    );
    assert_eq!(
        (snap.totals.unavailable, snap.totals.retries),
        (0, 0),
        "{snap:?}"
    );
}

/// Clients that give up while an instance works cost the instance nothing: no
/// failure in its breaker, no ejection (else one impatient client could take every
/// instance out of rotation).
#[tokio::test]
async fn clients_that_go_away_do_not_count_against_the_instance() {
    let addrs = [upstream("slow", StatusCode::OK, 300).await];
    let mut config = GatewayConfig::default();
    config.breaker.window = 10;
    config.breaker.minimum_calls = 4;
    config.ejection.consecutive_failures = 3;
    let gw = Gateway::new(&config, &addrs).unwrap();
    let (base, _stop) = serve(&gw).await;
    let http = Http::default();
    for _ in 0..8 {
        let gave_up =
            tokio::time::timeout(Duration::from_millis(30), http.get(&format!("{base}/"))).await;
        assert!(gave_up.is_err(), "the instance takes 300 ms");
    }
    // The gateway notices each disconnect when it next polls the connection.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let snap = gw.snapshot();
    let slow = instance(&snap, "app-1");
    assert_eq!(slow.breaker, "closed", "{snap:?}");
    assert!(!slow.ejected && slow.failures == 0, "{snap:?}");
    assert_eq!(slow.in_flight, 0, "{snap:?}");
    let r = http.get(&format!("{base}/")).await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
