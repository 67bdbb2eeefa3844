//! The ops page, `/ops/data.json` and `/metrics`, driven through the router without a
//! socket: request counting by route template, errors (5xx only), database queries
//! below the caches, the topology picture, and the Prometheus text.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use sqlx::{Connection, Executor};
use storefront_cache::CachedStore;
use storefront_ops::{Ops, Snapshot};
use storefront_stage::config::StageConfig;
use storefront_storage::MeteredStore;
use storefront_storage::{SqliteStore, Store};
use storefront_web::{router, AppConfig, AppState, Passwords};
use tower::ServiceExt;

async fn get(app: &Router, uri: &str) -> (StatusCode, String, String) {
    let res = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

async fn data(app: &Router) -> Value {
    let (status, _, body) = get(app, "/ops/data.json").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn total(data: &Value, key: &str) -> u64 {
    data["totals"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no totals.{key} in {data}"))
}

/// An app over `store`, recording into an [`Ops`] for `stage`; the store is metered.
fn app_over(store: Arc<dyn Store>, stage: u32) -> (Router, Arc<Ops>) {
    let config = StageConfig::builtin(stage).unwrap();
    let ops = Arc::new(storefront_stage::compose::ops_for(&config));
    let metered = MeteredStore::wrap(store, ops.db_query_counter());
    (app_with(metered, &ops), ops)
}

fn app_with(store: Arc<dyn Store>, ops: &Arc<Ops>) -> Router {
    let mut state = AppState::new(store, AppConfig::default()).with_ops(ops.clone());
    state.passwords = Passwords::fast_insecure();
    router(state)
}

/// Checks the Prometheus text: each line a comment or `name{labels} value`.
fn parse_metrics(text: &str) -> Vec<(String, String, f64)> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|e| panic!("bad value in {line:?}: {e}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let labels = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
                for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair
                        .split_once("=\"")
                        .unwrap_or_else(|| panic!("bad label {pair:?} in {line:?}"));
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{line:?}"
                    );
                    assert!(!v.contains('\n'), "{line:?}");
                }
                (name, labels.to_owned())
            }
            None => (series, String::new()),
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name in {line:?}"
        );
        samples.push((name.to_owned(), labels, value));
    }
    samples
}

fn sample(samples: &[(String, String, f64)], name: &str, labels: &str) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && l == labels)
        .map(|s| s.2)
}

#[tokio::test]
async fn requests_are_counted_by_route_template() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let ids = common::catalog(store.as_ref(), 5, 3).await;
    let (app, ops) = app_over(store, 1);
    let before = data(&app).await;
    for id in &ids {
        let (status, _, _) = get(&app, &format!("/products/{id}")).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(get(&app, "/livez").await.0, StatusCode::OK);
    let api = format!("/api/products/{}", ids[0]);
    assert_eq!(get(&app, &api).await.0, StatusCode::OK);
    let after = data(&app).await;
    // The five product pages, /livez and the API call; the ops routes are not
    // counted.
    assert_eq!(
        total(&after, "requests"),
        total(&before, "requests") + ids.len() as u64 + 2
    );
    assert_eq!(total(&after, "errors"), 0);
    assert_eq!(after["stage"]["number"], 1);
    assert_eq!(after["totals"]["cache"], serde_json::json!({}));
    assert!(after["window"]["rps"].as_f64().unwrap() > 0.0, "{after}");
    assert!(after["window"]["l1_hit_ratio"].is_null());
    assert!(after["gateway"].is_null());

    let (status, content_type, text) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let samples = parse_metrics(&text);
    assert_eq!(
        sample(
            &samples,
            "storefront_http_requests_total",
            "route=\"/products/{id}\",status=\"200\""
        ),
        Some(ids.len() as f64),
        "{text}"
    );
    assert_eq!(
        sample(
            &samples,
            "storefront_http_requests_total",
            "route=\"/api/products/{id}\",status=\"200\""
        ),
        Some(1.0),
        "{text}"
    );
    // Never the raw path.
    assert!(!text.contains(&format!("/products/{}\"", ids[0])), "{text}");
    assert_eq!(
        sample(
            &samples,
            "storefront_http_request_duration_seconds_count",
            "route=\"/products/{id}\""
        ),
        Some(ids.len() as f64)
    );
    assert_eq!(
        sample(
            &samples,
            "storefront_http_request_duration_seconds_bucket",
            "le=\"+Inf\",route=\"/products/{id}\""
        ),
        Some(ids.len() as f64)
    );
    let db = sample(&samples, "storefront_db_queries_total", "").unwrap();
    assert!(db >= ids.len() as f64, "{text}");
    for name in [
        "storefront_http_requests_total",
        "storefront_http_request_duration_seconds_bucket",
        "storefront_http_request_duration_seconds_sum",
        "storefront_db_queries_total",
    ] {
        assert!(samples.iter().any(|s| s.0 == name), "no {name} in {text}");
    }
    assert!(text.ends_with("# EOF\n"));

    // A point of history per tick.
    ops.tick();
    let d = data(&app).await;
    assert_eq!(d["history"].as_array().map(Vec::len), Some(1), "{d}");
    assert!(d["history"][0]["t"].as_f64().is_some());
}

#[tokio::test]
async fn only_5xx_are_errors() {
    let (store, dir) = common::sqlite().await;
    let ids = common::catalog(store.as_ref(), 2, 3).await;
    let (app, _ops) = app_over(store, 1);
    assert_eq!(get(&app, "/no/such/page").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/products/999999").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/products/x").await.0.as_u16() / 100, 4);
    let d = data(&app).await;
    assert_eq!(total(&d, "requests"), 3);
    assert_eq!(total(&d, "errors"), 0);
    // The database loses its products table: product pages fail with a 500.
    let path = dir.path().join("shop.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    conn.execute("DROP TABLE order_lines").await.ok();
    conn.execute("DROP TABLE cart_items").await.ok();
    conn.execute("DROP TABLE products").await.unwrap();
    conn.close().await.ok();
    let (status, _, _) = get(&app, &format!("/products/{}", ids[0])).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let d = data(&app).await;
    assert_eq!(total(&d, "requests"), 4);
    assert_eq!(total(&d, "errors"), 1);
    let (_, _, text) = get(&app, "/metrics").await;
    let samples = parse_metrics(&text);
    assert_eq!(
        sample(
            &samples,
            "storefront_http_requests_total",
            "route=\"unmatched\",status=\"404\""
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &samples,
            "storefront_http_requests_total",
            "route=\"/products/{id}\",status=\"500\""
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn ops_page_draws_stage_one_without_javascript() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let ids = common::catalog(store.as_ref(), 2, 3).await;
    let (app, ops) = app_over(store, 1);
    get(&app, &format!("/products/{}", ids[0])).await;
    ops.tick();
    let (status, content_type, html) = get(&app, "/ops").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"));
    assert!(html.contains("<svg class=\"topology\""), "{html}");
    assert!(html.contains("SQLite file") && html.contains("storefront.db"));
    assert!(!html.contains("Redis") && !html.contains("PostgreSQL"));
    assert!(html.contains("Ops · stage 1: Single machine"));
    // The figures are in the page itself, with a sparkline each.
    for key in ["rps", "p50_ms", "p99_ms", "db_qps"] {
        assert!(html.contains(&format!("data-figure=\"{key}\"")), "{key}");
        assert!(
            html.contains(&format!("data-spark=\"{key}\" points=\"120.0,")),
            "{key}"
        );
    }
    assert!(!html.contains("data-figure=\"l1_hit_ratio\""));
    assert!(
        html.contains("<td data-total=\"requests\">1</td>"),
        "{html}"
    );
    // The live refresh is a script file (the CSP runs no inline script).
    assert!(html.contains("<script src=\"/ops/ops.js\""));
    let (status, _, script) = get(&app, "/ops/ops.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(script.contains("fetch(\"/ops/data.json\""));
}

#[tokio::test]
async fn gateway_figures_show_on_the_page() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let (app, ops) = app_over(store, 1);
    assert!(!get(&app, "/ops").await.2.contains("<h2>Gateway</h2>"));
    use storefront_gateway::{GatewayFigures, GatewayTotals, InstanceFigures};
    let instance = |n: u16, healthy, breaker: &str, requests, failures| InstanceFigures {
        name: format!("app-{n}"),
        addr: format!("127.0.0.1:900{n}"),
        healthy,
        breaker: breaker.into(),
        requests,
        failures,
        ..InstanceFigures::default()
    };
    ops.add_part(move || {
        Some(GatewayFigures {
            instances: vec![
                instance(1, true, "closed", 10, 0),
                instance(2, false, "open", 4, 4),
            ],
            totals: GatewayTotals {
                rate_limited: 12,
                retries: 3,
                upstream_errors: 4,
                ..GatewayTotals::default()
            },
        })
    });
    let (_, _, html) = get(&app, "/ops").await;
    assert!(html.contains("<h2>Gateway</h2>"));
    assert!(html.contains("Rate-limit rejections"));
    assert!(html.contains("<td class=\"bad\">open</td>"), "{html}");
    assert!(html.contains("<td class=\"bad\">down</td>"));
    assert!(html.contains("<td class=\"good\">healthy</td>"));
    let d = data(&app).await;
    assert_eq!(d["gateway"]["totals"]["rate_limited"], 12);
    let (_, _, text) = get(&app, "/metrics").await;
    let samples = parse_metrics(&text);
    assert_eq!(
        sample(&samples, "storefront_gateway_rate_limited_total", ""),
        Some(12.0)
    );
}

#[tokio::test]
async fn snapshots_of_two_instances_add_up() {
    let mut snapshots = Vec::new();
    for n in [2_usize, 3] {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
        let (app, ops) = app_over(store, 1);
        for _ in 0..n {
            get(&app, "/livez").await;
        }
        ops.tick();
        let snapshot: Snapshot = serde_json::from_value(data(&app).await).unwrap();
        snapshots.push(snapshot);
    }
    let mut all = snapshots[0].clone();
    all.merge(&snapshots[1]);
    assert_eq!(all.totals.requests, 5);
    assert_eq!(
        all.totals.db_queries,
        snapshots[0].totals.db_queries + snapshots[1].totals.db_queries
    );
    assert_eq!(all.history.len(), 1);
    let rps = snapshots[0].window.rps + snapshots[1].window.rps;
    assert!((all.window.rps - rps).abs() < 1e-9);
}

#[tokio::test]
async fn stage_three_counts_cache_hits_and_no_query_on_a_hit() {
    let Some(cache) = common::cache_config("ops_stage3") else {
        return;
    };
    let Some((pg, _schema)) = common::postgres("ops_stage3").await else {
        return;
    };
    let ids = common::catalog(pg.as_ref(), 3, 5).await;
    let ops = Arc::new(storefront_stage::compose::ops_for(
        &StageConfig::builtin(3).unwrap(),
    ));
    // Stage 3 keeps its ops routes behind the admin token (tests/security.rs);
    // here they are read without one.
    ops.set_access(storefront_ops::OpsAccess::Open);
    let metered = MeteredStore::wrap(pg, ops.db_query_counter());
    let cached = Arc::new(CachedStore::connect(metered, &cache).await.unwrap());
    ops.set_cache(cached.clone());
    // Until the invalidation channel is up, L1 may be cleared (a possible gap).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !cached.subscribed() {
        assert!(
            std::time::Instant::now() < deadline,
            "the caches' invalidation channel did not come up in 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let app = app_with(cached, &ops);

    let start = data(&app).await;
    assert_eq!(start["totals"]["cache"]["l1"]["hits"], 0, "{start}");
    let product = format!("/products/{}", ids[0]);
    assert_eq!(get(&app, &product).await.0, StatusCode::OK);
    let first = data(&app).await;
    // A miss everywhere: the database answered.
    assert!(total(&first, "db_queries") > total(&start, "db_queries"));
    assert_eq!(get(&app, &product).await.0, StatusCode::OK);
    let second = data(&app).await;
    // An L1 hit: no query.
    assert_eq!(total(&second, "db_queries"), total(&first, "db_queries"));
    assert!(
        second["totals"]["cache"]["l1"]["hits"].as_u64().unwrap() >= 1,
        "{second}"
    );
    assert!(second["totals"]["cache"]["l2"]["misses"].as_u64().unwrap() >= 1);
    assert!(
        second["window"]["l1_hit_ratio"].as_f64().is_some(),
        "{second}"
    );

    let (_, _, html) = get(&app, "/ops").await;
    assert!(html.contains("<svg class=\"topology\""));
    assert!(html.contains("PostgreSQL") && html.contains("Redis L2") && html.contains(">L1<"));
    assert!(
        html.contains("data-figure=\"l1_hit_ratio\"")
            && html.contains("data-figure=\"l2_hit_ratio\"")
    );
    assert!(html.contains("Ops · stage 3: Caches"));

    let (_, _, text) = get(&app, "/metrics").await;
    let samples = parse_metrics(&text);
    let l1_hits = sample(
        &samples,
        "storefront_cache_requests_total",
        "tier=\"l1\",result=\"hit\"",
    );
    assert!(l1_hits.unwrap_or(0.0) >= 1.0, "{text}");
    assert!(sample(
        &samples,
        "storefront_cache_requests_total",
        "tier=\"l2\",result=\"miss\""
    )
    .is_some());
}
