//! Stage 8 under faults, with its real parts: the network of namespaces, two
//! stage-4 gateways (each with its instances, the built `storefront`), two
//! balancer hosts with keepalived and the nftables datapath.
//!
//! 1. Under an open-loop load through the virtual IP (each request a new
//!    connection, 40 a second), the balancer that holds the address dies
//!    (`kill -9` of its daemon and keepalived, its link down): the address
//!    moves, new connections succeed, and only requests in flight through the
//!    dead balancer may fail.
//! 2. Under closed-loop shoppers (kept-alive connections, sign-up, cart,
//!    checkout), a gateway dies (`kill -9`): it leaves the balancers' table,
//!    the shoppers go on through the other, and no order is lost: every order
//!    a shopper saw exists once, no more than the checkouts with an unknown
//!    outcome appeared unseen, and stock is conserved.
//!
//! Needs root, network namespaces, nft and keepalived (`storefront services
//! up`), PostgreSQL and Redis; skipped without them, except under `CI`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use scalekit_test_support::services::runnable;
use serde_json::json;
use storefront_l4::stage::{Layout, Stage};
use storefront_stage::config::StageConfig;

fn ready(test: &str) -> bool {
    runnable(
        test,
        storefront_l4::net::available_with(&["nft", "keepalived"]),
    )
}

/// Stage 8's file on the test's schema and cache namespace, no seeding, and
/// no limit per client address (every connection reaches a gateway from a
/// balancer's address).
fn stage_file(pg_url: &str, redis_url: &str, namespace: &str) -> String {
    let text = storefront_stage::config::BuiltinStage::find(8)
        .expect("stage 8 is built in")
        .file;
    let mut doc: toml::Table = toml::from_str(text).unwrap();
    let set = |doc: &mut toml::Table, section: &str, key: &str, value: toml::Value| {
        doc.get_mut(section)
            .and_then(toml::Value::as_table_mut)
            .unwrap()
            .insert(key.into(), value);
    };
    set(
        &mut doc,
        "database",
        "seed_if_empty",
        toml::Value::Integer(0),
    );
    set(
        &mut doc,
        "database",
        "url",
        toml::Value::String(pg_url.into()),
    );
    set(
        &mut doc,
        "cache",
        "redis_url",
        toml::Value::String(redis_url.into()),
    );
    for (section, key) in [("database", "url_env"), ("cache", "redis_url_env")] {
        doc.get_mut(section)
            .and_then(toml::Value::as_table_mut)
            .unwrap()
            .remove(key);
    }
    set(
        &mut doc,
        "cache",
        "namespace",
        toml::Value::String(namespace.into()),
    );
    set(
        &mut doc,
        "gateway",
        "rate_per_sec",
        toml::Value::Integer(1_000_000),
    );
    set(
        &mut doc,
        "gateway",
        "burst",
        toml::Value::Integer(1_000_000),
    );
    let text = toml::to_string(&doc).unwrap();
    StageConfig::parse("stage 8 (test)", &text).expect("a valid stage file");
    text
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// One request, bounded by 5 s: the status and body, or why not.
async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> Result<(StatusCode, String), String> {
    let mut req = Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(json) => {
            req = req.header("content-type", "application/json");
            Bytes::from(json.to_string())
        }
        None => Bytes::new(),
    };
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let fut = async {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .unwrap_or_else(|_| Err("no answer within 5 s".into()))
}

/// Runs `f` on a runtime of its own on the client host.
fn on_client<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(
    stage: &Stage,
    f: impl FnOnce() -> F + Send + 'static,
) -> std::thread::JoinHandle<Result<T, storefront_l4::net::NetError>> {
    stage
        .net()
        .spawn_in("client", move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f())
        })
        .unwrap()
}

/// Open loop: a request every 25 ms, each on a new connection, for `span`;
/// per request its start, its end, and whether it succeeded.
async fn open_loop(base: String, span: Duration) -> Vec<(Instant, Instant, bool)> {
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let done = Arc::new(Mutex::new(Vec::new()));
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    while start.elapsed() < span {
        tick.tick().await;
        let (client, url, done) = (
            client.clone(),
            format!("{base}/api/products?page=1"),
            done.clone(),
        );
        tasks.spawn(async move {
            let began = Instant::now();
            let ok = matches!(send(&client, Method::GET, &url, None, None).await, Ok((s, _)) if s.is_success());
            done.lock().unwrap().push((began, Instant::now(), ok));
        });
    }
    while tasks.join_next().await.is_some() {}
    let out = done.lock().unwrap().clone();
    out
}

#[derive(Default)]
struct Tally {
    orders: Mutex<Vec<i64>>,
    /// When each failed request was sent.
    failed_at: Mutex<Vec<Instant>>,
    failed_checkouts: AtomicU64,
    failures: AtomicU64,
    requests: AtomicU64,
    after_kill_ok: AtomicU64,
}

/// Closed loop: `shoppers` kept-alive shoppers (sign-up, then product,
/// cart, checkout in turn) until `deadline`.
async fn shoppers(
    base: String,
    ids: Vec<i64>,
    shoppers: u64,
    deadline: Instant,
    killed: Arc<AtomicU64>,
    tally: Arc<Tally>,
) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..shoppers {
        let (client, base, ids, killed, tally) = (
            client.clone(),
            base.clone(),
            ids.clone(),
            killed.clone(),
            tally.clone(),
        );
        tasks.spawn(async move {
            let signup = send(
                &client,
                Method::POST,
                &format!("{base}/api/signup"),
                None,
                Some(json!({"name": format!("L4 {t}"), "email": format!("l4-{t}@example.com"), "password": "storefront"})),
            )
            .await
            .expect("sign-up");
            assert_eq!(signup.0, StatusCode::CREATED, "{}", signup.1);
            let token: serde_json::Value = serde_json::from_str(&signup.1).unwrap();
            let token = token["token"].as_str().unwrap().to_owned();
            let mut i = 0usize;
            while Instant::now() < deadline {
                i += 1;
                let id = ids[(t as usize + i) % ids.len()];
                for (method, url, body) in [
                    (Method::GET, format!("{base}/products/{id}"), None),
                    (Method::POST, format!("{base}/api/cart/items"), Some(json!({"product_id": id, "quantity": 1}))),
                    (Method::POST, format!("{base}/api/checkout"), None),
                ] {
                    let checkout = url.ends_with("/checkout");
                    tally.requests.fetch_add(1, Ordering::Relaxed);
                    let was_killed = killed.load(Ordering::Relaxed) > 0;
                    let sent = Instant::now();
                    match send(&client, method, &url, Some(&token), body).await {
                        Ok((s, body)) if !s.is_server_error() => {
                            if was_killed {
                                tally.after_kill_ok.fetch_add(1, Ordering::Relaxed);
                            }
                            if checkout && s == StatusCode::CREATED {
                                let order: serde_json::Value = serde_json::from_str(&body).unwrap();
                                tally.orders.lock().unwrap().push(order["id"].as_i64().unwrap());
                            } else {
                                assert!(s.is_success() || (checkout && s == StatusCode::CONFLICT), "{url}: {s} {body}");
                            }
                        }
                        _ => {
                            tally.failed_at.lock().unwrap().push(sent);
                            tally.failures.fetch_add(1, Ordering::Relaxed);
                            if checkout {
                                tally.failed_checkouts.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_8_survives_a_dead_balancer_and_a_dead_gateway() {
    if !ready("stage_8_survives_a_dead_balancer_and_a_dead_gateway") {
        return;
    }
    let Some((store, schema)) = common::postgres("l4_stage").await else {
        return;
    };
    let Some(cache) = common::cache_config("l4_stage") else {
        return;
    };
    let ids = common::catalog(store.as_ref(), 8, 100_000).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stage.toml");
    let text = stage_file(&schema.url(), &cache.redis_url(), &cache.namespace);
    std::fs::write(&file, &text).unwrap();
    let config = StageConfig::load(&file).unwrap();
    let layout = Layout {
        l4: config.l4.clone().unwrap(),
        exe: env!("CARGO_BIN_EXE_storefront").into(),
        gateway_file: text,
        gateway_args: vec!["--data-dir".into(), dir.path().into()],
        ready_timeout: Duration::from_secs(60),
        logs: Some(dir.path().to_owned()),
    };
    let mut stage = Stage::start(&layout).await.expect("stage 8 starts");
    let port = layout.l4.port;
    let base = format!("http://{}", stage.vip(port));

    // 1. The balancer holding the virtual IP dies under an open loop.
    let first = stage.holder().expect("a balancer holds the virtual IP");
    let load = {
        let base = base.clone();
        on_client(&stage, move || open_loop(base, Duration::from_secs(5)))
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let died = Instant::now();
    stage.kill_balancer(first).unwrap();
    // From here it is off the network: what was sent before may have gone
    // through it.
    let down = Instant::now();
    let requests = tokio::task::spawn_blocking(move || load.join().unwrap().unwrap())
        .await
        .unwrap();
    let second = stage.holder().expect("a balancer holds the virtual IP");
    assert_ne!(first, second, "the other balancer took the virtual IP over");
    let in_flight = requests
        .iter()
        .filter(|(b, e, _)| *b < down && *e > died)
        .count();
    let failed = requests.iter().filter(|(_, _, ok)| !ok).count();
    let back = requests
        .iter()
        .filter(|(b, _, ok)| *b > down && *ok)
        .map(|(_, e, _)| e.duration_since(down))
        .min()
        .expect("requests succeeded after the balancer died");
    let after = requests.iter().filter(|(b, _, _)| *b > down).count();
    let failed_after = requests
        .iter()
        .filter(|(b, _, ok)| *b > down && !ok)
        .count();
    eprintln!(
        "balancer failover: {} requests, {failed} failed ({in_flight} were in flight through the dead balancer); the first request sent afterwards to succeed ended {back:?} after; {failed_after} of {after} sent afterwards failed",
        requests.len()
    );
    assert!(requests.len() > 150, "{} requests", requests.len());
    assert!(
        failed <= in_flight,
        "{failed} failed, {in_flight} in flight"
    );
    assert_eq!(
        failed_after, 0,
        "requests sent after the balancer died failed"
    );

    // 2. A gateway dies under shoppers.
    let killed = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + Duration::from_secs(6);
    let load = {
        let (base, ids, killed, tally) = (base.clone(), ids.clone(), killed.clone(), tally.clone());
        on_client(&stage, move || {
            shoppers(base, ids, 4, deadline, killed, tally)
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let gateway_killed = Instant::now();
    stage.kill_gateway(0);
    killed.store(1, Ordering::Relaxed);
    tokio::task::spawn_blocking(move || load.join().unwrap().unwrap())
        .await
        .unwrap();
    stage.stop(Duration::from_secs(5));

    let requests = tally.requests.load(Ordering::Relaxed);
    let failures = tally.failures.load(Ordering::Relaxed);
    let failed_checkouts = tally.failed_checkouts.load(Ordering::Relaxed) as usize;
    let seen = tally.orders.lock().unwrap().clone();
    eprintln!(
        "gateway killed: {requests} requests, {failures} failed, {} orders seen, {failed_checkouts} checkouts with unknown outcome",
        seen.len()
    );
    assert!(requests > 100, "too little load: {requests}");
    assert!(
        tally.after_kill_ok.load(Ordering::Relaxed) > 50,
        "shoppers go on after the kill"
    );
    // What fails is what was in flight on the dead gateway, or sent on a kept
    // connection to it before the shopper's pool saw it close: all of it at
    // the kill, none once the balancers have taken the gateway out (two
    // checks of 200 ms) and the pools have let its connections go.
    let late: Vec<Duration> = tally
        .failed_at
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.saturating_duration_since(gateway_killed))
        .filter(|d| *d > Duration::from_millis(1_500))
        .collect();
    assert!(
        late.is_empty(),
        "requests sent well after the kill failed: {late:?}"
    );
    common::assert_no_order_lost(&schema.url(), &seen, failed_checkouts, 8 * 100_000).await;
}
