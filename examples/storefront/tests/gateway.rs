//! Stage 4's gateway: against in-process upstreams on port 0 (choice, forwarding,
//! retry on connect failure, the per-IP limit with the limiter's clock), and
//! against real instance processes: three on PostgreSQL, one killed under load;
//! `storefront serve` restarting and stopping its own. Breakers and what counts
//! against an instance: tests/gateway_breakers.rs.
//!
//! A test here is one scenario told top to bottom against the real parts; a few
//! run past 100 lines, kept whole so that each step and its check stay together.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use common::procs::{free_addr, Http, Instances};
use common::stubs::{dead_addr, instance, serve, upstream};
use scalekit_core::{Clock, ManualClock};
use serde_json::json;
use storefront_gateway::Gateway;
use storefront_stage::config::GatewayConfig;
use storefront_stage::supervisor::wait_ready;

#[tokio::test]
async fn spreads_requests_and_forwards_headers() {
    let addrs = [
        upstream("a", StatusCode::OK, 2).await,
        upstream("b", StatusCode::OK, 2).await,
        upstream("c", StatusCode::OK, 2).await,
    ];
    let gw = Gateway::new(&GatewayConfig::default(), &addrs).unwrap();
    let (base, _stop) = serve(&gw).await;
    let http = Http::default();
    // Eight clients at once, so that requests overlap and load counts.
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (http, base) = (http.clone(), base.clone());
        clients.push(tokio::spawn(async move {
            let mut names = Vec::new();
            for _ in 0..10 {
                let r = http.get(&format!("{base}/products/1")).await.unwrap();
                assert_eq!(r.status, StatusCode::OK, "{}", r.body);
                names.push(r.body.split('|').next().unwrap().to_owned());
            }
            names
        }));
    }
    let mut seen: HashMap<String, u32> = HashMap::new();
    for c in clients {
        for name in c.await.unwrap() {
            *seen.entry(name).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 3, "every instance takes requests: {seen:?}");

    // Host kept, X-Forwarded-For appended, headers named in Connection dropped, body sent.
    let r = http
        .send(
            Method::POST,
            &format!("{base}/api/cart/items"),
            &[
                ("host", "shop.example"),
                ("x-forwarded-for", "198.51.100.7"),
                ("connection", "x-hop"),
                ("x-hop", "secret"),
            ],
            Some(json!({"product_id": 1})),
        )
        .await
        .unwrap();
    let fields: Vec<&str> = r.body.split('|').collect();
    assert_eq!(fields[1], "shop.example", "{}", r.body);
    assert_eq!(fields[2], "198.51.100.7, 127.0.0.1", "{}", r.body);
    assert_eq!(fields[3], "-", "hop-by-hop header forwarded: {}", r.body);
    assert_eq!(fields[4], r#"{"product_id":1}"#);

    // The gateway's own probes.
    assert_eq!(
        http.get(&format!("{base}/livez")).await.unwrap().status,
        200
    );
    gw.check_health().await;
    assert_eq!(
        http.get(&format!("{base}/readyz")).await.unwrap().status,
        200
    );
    let snap = gw.snapshot();
    assert_eq!(snap.totals.requests, 81);
    assert_eq!(snap.instances.iter().map(|i| i.requests).sum::<u64>(), 81);
    assert!(snap
        .instances
        .iter()
        .all(|i| i.in_flight == 0 && i.failures == 0));
    assert!(serde_json::to_string(&snap)
        .unwrap()
        .contains("\"breaker\":\"closed\""));
}

#[tokio::test]
async fn a_request_that_cannot_connect_goes_to_another_instance() {
    let live = upstream("live", StatusCode::OK, 2).await;
    let addrs = [dead_addr(), live, dead_addr()];
    let gw = Gateway::new(&GatewayConfig::default(), &addrs).unwrap();
    let (base, _stop) = serve(&gw).await;
    let http = Http::default();
    for i in 0..30 {
        // POSTs too: a request that never arrived is safe to send elsewhere.
        let method = if i % 2 == 0 {
            Method::GET
        } else {
            Method::POST
        };
        let r = http
            .send(method, &format!("{base}/x"), &[], Some(json!({"i": i})))
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK, "request {i}: {}", r.body);
        assert!(r.body.starts_with("live|"), "{}", r.body);
    }
    let snap = gw.snapshot();
    assert!(snap.totals.retries > 0, "{snap:?}");
    assert_eq!(snap.totals.retries, snap.totals.upstream_errors, "{snap:?}");
    assert!(instance(&snap, "app-1").failures + instance(&snap, "app-3").failures > 0);
    assert!(snap.instances.iter().all(|i| i.failed_after_send == 0));

    // With every instance gone, the client gets a clear 502 or 503, not a hang.
    let gw = Gateway::new(&GatewayConfig::default(), &[dead_addr(), dead_addr()]).unwrap();
    let (base, _stop) = serve(&gw).await;
    let r = http.get(&format!("{base}/")).await.unwrap();
    assert!(
        r.status == StatusCode::BAD_GATEWAY || r.status == StatusCode::SERVICE_UNAVAILABLE,
        "{r:?}"
    );
    assert!(r.body.contains("instance"), "{}", r.body);
    gw.check_health().await;
    assert_eq!(
        http.get(&format!("{base}/readyz")).await.unwrap().status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn too_many_requests_from_one_address_get_429_with_retry_after() {
    let addrs = [upstream("a", StatusCode::OK, 2).await];
    let clock = ManualClock::new();
    let config = GatewayConfig {
        rate_per_sec: 2,
        burst: 3,
        ..GatewayConfig::default()
    };
    let gw =
        Gateway::with_clock(&config, &addrs, Arc::new(clock.clone()) as Arc<dyn Clock>).unwrap();
    let (base, _stop) = serve(&gw).await;
    let http = Http::default();
    for _ in 0..3 {
        assert_eq!(http.get(&format!("{base}/")).await.unwrap().status, 200);
    }
    let r = http.get(&format!("{base}/")).await.unwrap();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // 500 ms until the next unit, rounded up to whole seconds.
    assert_eq!(r.header("retry-after"), "1");
    assert!(r.body.contains("retry in 1 s"), "{}", r.body);
    // Probes are not limited.
    assert_eq!(
        http.get(&format!("{base}/livez")).await.unwrap().status,
        200
    );
    clock.advance(Duration::from_millis(499));
    assert_eq!(http.get(&format!("{base}/")).await.unwrap().status, 429);
    clock.advance(Duration::from_millis(1));
    assert_eq!(http.get(&format!("{base}/")).await.unwrap().status, 200);
    let snap = gw.snapshot();
    assert_eq!((snap.totals.requests, snap.totals.rate_limited), (6, 2));
    assert_eq!(snap.instances[0].requests, 4);
}

/// A stage-4 file for instances on the test's schema.
fn stage_toml(pg_url: &str) -> String {
    format!(
        r#"
[stage]
number = 4
name = "load-balancing"
title = "Load balancing (test)"
adds = "-"
needs = "-"
[server]
addr = "127.0.0.1:0"
[database]
backend = "postgres"
url = "{pg_url}"
seed_if_empty = 0
[gateway]
instances = 3
"#
    )
}

#[derive(Default)]
struct Tally {
    /// Order ids the clients saw created.
    orders: Mutex<Vec<i64>>,
    /// Checkouts answered with a 5xx or not at all.
    failed_checkouts: AtomicU64,
    /// Requests answered with a 5xx (or a transport error), of any kind.
    failures: AtomicU64,
    requests: AtomicU64,
    after_kill_ok: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_an_instance_under_load_loses_no_order() {
    let Some((store, schema)) = common::postgres("gateway_kill").await else {
        return;
    };
    const PRODUCTS: i64 = 8;
    const STOCK: i64 = 10_000;
    const TASKS: u64 = 4;
    let ids = common::catalog(store.as_ref(), PRODUCTS, STOCK).await;
    let mut procs = Instances::start(&stage_toml(&schema.url()), 3);
    wait_ready(&procs.addrs, Duration::from_secs(25))
        .await
        .expect("instances ready");
    let config = GatewayConfig {
        rate_per_sec: 100_000,
        burst: 100_000,
        health_interval_ms: 200,
        ..GatewayConfig::default()
    };
    let gw = Gateway::new(&config, &procs.addrs).unwrap();
    let health = gw.spawn_health_checks();
    let (base, _stop) = serve(&gw).await;
    let http = Http::default();

    let tally = Arc::new(Tally::default());
    let killed = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (http, base, tally, killed, ids) = (
            http.clone(),
            base.clone(),
            tally.clone(),
            killed.clone(),
            ids.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let signup = http
                .send(
                    Method::POST,
                    &format!("{base}/api/signup"),
                    &[],
                    Some(json!({"name": format!("Load {t}"), "email": format!("load{t}@example.com"), "password": "storefront"})),
                )
                .await
                .unwrap();
            assert_eq!(signup.status, StatusCode::CREATED, "{}", signup.body);
            let token = signup.json()["token"].as_str().unwrap().to_owned();
            let auth = format!("Bearer {token}");
            let headers = [("authorization", auth.as_str())];
            let mut i = 0usize;
            while Instant::now() < deadline {
                i += 1;
                let id = ids[(t as usize + i) % ids.len()];
                let steps: [(Method, String, Option<serde_json::Value>); 4] = [
                    (Method::GET, format!("{base}/api/products?page=1"), None),
                    (Method::GET, format!("{base}/products/{id}"), None),
                    (
                        Method::POST,
                        format!("{base}/api/cart/items"),
                        Some(json!({"product_id": id, "quantity": 1})),
                    ),
                    (Method::POST, format!("{base}/api/checkout"), None),
                ];
                for (method, url, body) in steps {
                    let checkout = url.ends_with("/checkout");
                    tally.requests.fetch_add(1, Ordering::Relaxed);
                    let was_killed = killed.load(Ordering::Relaxed);
                    match http.send(method, &url, &headers, body).await {
                        Ok(r) if r.status.is_server_error() => {
                            tally.failures.fetch_add(1, Ordering::Relaxed);
                            if checkout {
                                tally.failed_checkouts.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(r) => {
                            if was_killed {
                                tally.after_kill_ok.fetch_add(1, Ordering::Relaxed);
                            }
                            if checkout && r.status == StatusCode::CREATED {
                                tally.orders.lock().unwrap().push(r.json()["id"].as_i64().unwrap());
                            } else {
                                // An empty cart (its add failed) is the only expected refusal.
                                assert!(
                                    r.status.is_success()
                                        || (checkout && r.status == StatusCode::CONFLICT),
                                    "{url}: {} {}",
                                    r.status,
                                    r.body
                                );
                            }
                        }
                        Err(e) => panic!("{url}: the gateway itself failed: {e}"),
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = gw.snapshot();
    procs.kill(1);
    killed.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    // The health checks saw it go.
    let until = Instant::now() + Duration::from_secs(5);
    while instance(&gw.snapshot(), "app-2").healthy {
        assert!(Instant::now() < until, "app-2 still looks healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    health.abort();
    let snap = gw.snapshot();
    let lost = instance(&snap, "app-2").failed_after_send;
    let failures = tally.failures.load(Ordering::Relaxed);
    let requests = tally.requests.load(Ordering::Relaxed);
    eprintln!(
        "{requests} requests, {failures} failed, {lost} in flight on the killed instance, {} retries, {} orders; before the kill: {:?}",
        snap.totals.retries,
        tally.orders.lock().unwrap().len(),
        before.instances.iter().map(|i| i.requests).collect::<Vec<_>>()
    );
    assert!(
        requests > 100,
        "too little load to say anything: {requests}"
    );
    assert!(
        before.instances.iter().all(|i| i.requests > 0),
        "{before:?}"
    );
    assert!(
        tally.after_kill_ok.load(Ordering::Relaxed) > 50,
        "requests go on after the kill"
    );
    assert!(
        failures <= lost,
        "{failures} client failures, but only {lost} requests were in flight on the killed instance"
    );
    assert!(
        lost <= TASKS,
        "each client has one request in flight at most: {lost}"
    );
    assert_eq!(
        snap.instances
            .iter()
            .map(|i| i.failed_after_send)
            .sum::<u64>(),
        lost
    );

    // Every order a client saw exists exactly once; no order came from nowhere.
    let seen = tally.orders.lock().unwrap().clone();
    let failed_checkouts = tally.failed_checkouts.load(Ordering::Relaxed) as usize;
    common::assert_no_order_lost(&schema.url(), &seen, failed_checkouts, PRODUCTS * STOCK).await;
}

/// The pid in the latest log line `instance {k} started on ... (pid N)`.
fn started_pid(log: &[String], k: u32) -> Option<i32> {
    let marker = format!("instance {k} started on ");
    log.iter()
        .rev()
        .find(|l| l.contains(&marker))
        .and_then(|l| {
            let rest = &l[l.find("(pid ")? + 5..];
            rest[..rest.find(')')?].parse().ok()
        })
}

fn alive(pid: i32) -> bool {
    rustix::process::Pid::from_raw(pid)
        .is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

/// `storefront serve` with a `[gateway]` stage: starts the instances, restarts one
/// killed with -9, and stops them all on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_restarts_and_stops_the_instances() {
    let (store, db_dir) = common::sqlite().await;
    let ids = common::catalog(store.as_ref(), 4, 5).await;
    drop(store);
    // Two consecutive free ports for the instances (from port 0, checked).
    let base = loop {
        let a = free_addr();
        if std::net::TcpListener::bind(("127.0.0.1", a.port() + 1)).is_ok() {
            break a.port();
        }
    };
    let gateway_addr = free_addr();
    let stage = format!(
        r#"
[stage]
number = 4
name = "load-balancing"
title = "Load balancing (serve test)"
adds = "-"
needs = "-"
[server]
addr = "{gateway_addr}"
[database]
backend = "sqlite"
file = "{}"
[gateway]
instances = 2
base_port = {base}
health_interval_ms = 100
"#,
        db_dir.path().join("shop.db").display()
    );
    let file = db_dir.path().join("stage.toml");
    std::fs::write(&file, stage).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_storefront"))
        .args(["serve", "--drain-timeout", "2s", "--config"])
        .arg(&file)
        .arg("--data-dir")
        .arg(db_dir.path())
        .env("RUST_LOG", "info,sqlx=warn")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(Option<std::process::Child>);
    impl Drop for Kill {
        fn drop(&mut self) {
            if let Some(c) = &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let stdout = child.stdout.take().unwrap();
    let mut guard = Kill(Some(child));
    {
        let log = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                log.lock().unwrap().push(line);
            }
        });
    }
    let http = Http::default();
    let url = format!("http://{gateway_addr}/api/products/{}", ids[0]);
    let wait_for = |what: &str, secs: u64| {
        let what = what.to_owned();
        let log = log.clone();
        let deadline = Instant::now() + Duration::from_secs(secs);
        move || {
            assert!(
                Instant::now() < deadline,
                "{what} within {secs} s; log:\n{}",
                log.lock().unwrap().join("\n")
            );
        }
    };
    let tick = wait_for("the gateway serving", 30);
    while !log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("gateway serving at"))
    {
        tick();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(http.get(&url).await.unwrap().status, StatusCode::OK);
    let first = started_pid(&log.lock().unwrap(), 1).unwrap();
    let second = started_pid(&log.lock().unwrap(), 2).unwrap();

    // kill -9 instance 2: requests keep working; the supervisor starts it again.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(second).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    for _ in 0..10 {
        assert_eq!(http.get(&url).await.unwrap().status, StatusCode::OK);
    }
    let tick = wait_for("instance 2 restarted", 15);
    let restarted = loop {
        if let Some(pid) = started_pid(&log.lock().unwrap(), 2).filter(|&p| p != second) {
            break pid;
        }
        tick();
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("instance 2 on") && l.contains("exited")));

    // SIGTERM: the gateway drains (a client holding half a request open is
    // dropped at the 2 s deadline), then stops its instances.
    let mut half = std::net::TcpStream::connect(gateway_addr).unwrap();
    std::io::Write::write_all(&mut half, b"POST /api/cart/items HTTP/1.1\r\nHost: x\r\n").unwrap();
    // Connections are accepted in order: once a later one is served, that one
    // was accepted (and its bytes read) before SIGTERM.
    assert_eq!(
        Http::default().get(&url).await.unwrap().status,
        StatusCode::OK
    );
    let sent = Instant::now();
    let mut child = guard.0.take().unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let tick = wait_for("the gateway stopping", 20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        tick();
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    assert!(
        sent.elapsed() < Duration::from_secs(2 + 5),
        "stopped {:?} after SIGTERM with a 2 s drain deadline",
        sent.elapsed()
    );
    assert!(
        !alive(first) && !alive(restarted),
        "instances outlived the gateway"
    );
    let log = log.lock().unwrap().join("\n");
    assert!(
        log.contains("the drain deadline (2s) passed: dropped 1 connection"),
        "{log}"
    );
    assert!(
        log.contains("instance 1 stopped") && log.contains("instance 2 stopped"),
        "{log}"
    );
    drop(half);
}

/// Two shop instances (one SQLite store, each its own ops recorder) behind a
/// gateway with its own: the gateway's `/ops/data.json` counts the requests it
/// proxied under `proxied`, shows its instances, and sums the instances' database
/// queries (the gateway itself queries none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_ops_page_shows_the_instances_and_sums_their_queries() {
    use storefront_ops::Ops;
    use storefront_storage::MeteredStore;
    use storefront_web::{router, AppConfig, AppState};

    let (store, _dir) = common::sqlite().await;
    let ids = common::catalog(store.as_ref(), 5, 10).await;
    let mut addrs = Vec::new();
    let mut recorders = Vec::new();
    for _ in 0..2 {
        let ops = Arc::new(Ops::default());
        let state = AppState::new(
            MeteredStore::wrap(store.clone(), ops.db_query_counter()),
            AppConfig::default(),
        )
        .with_ops(ops.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        recorders.push(ops);
    }
    let gw = Gateway::new(&GatewayConfig::default(), &addrs).unwrap();
    let ops = Arc::new(Ops::default());
    let poller = gw.attach_ops(ops.clone());
    let (base, _stop) = serve(&gw).await;
    let http = Http::default();

    for i in 0..20 {
        let id = ids[i % ids.len()];
        let r = http
            .get(&format!("{base}/api/products/{id}"))
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let instance_queries: u64 = recorders
        .iter()
        .map(|o| o.snapshot().totals.db_queries)
        .sum();
    assert!(
        instance_queries >= 20,
        "each product read is a query: {instance_queries}"
    );

    // The poller reads the instances every second: wait (bounded) for the sum.
    let deadline = Instant::now() + Duration::from_secs(10);
    let data = loop {
        let data = http
            .get(&format!("{base}/ops/data.json"))
            .await
            .unwrap()
            .json();
        if data["totals"]["db_queries"].as_u64() >= Some(instance_queries) {
            break data;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never showed the instances' {instance_queries} queries: {data}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        data["totals"]["requests"],
        json!(20),
        "the ops routes are not counted"
    );
    let instances = data["gateway"]["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 2);
    assert_eq!(data["gateway"]["totals"]["requests"], json!(20));
    let metrics = http.get(&format!("{base}/metrics")).await.unwrap().body;
    assert!(
        metrics.contains("route=\"proxied\""),
        "proxied requests are labelled so: {metrics}"
    );
    let page = http.get(&format!("{base}/ops")).await.unwrap();
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("app-2"), "the instance table");
    poller.abort();
}
