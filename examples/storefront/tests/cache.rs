//! Stage 3 against a real Redis (`SCALEKIT_REDIS_URL`), and against a real Redis
//! Cluster (`SCALEKIT_REDIS_CLUSTER_URLS`): two instances over one database, each
//! with its own L1 and the shared Redis L2. Skipped without the variables; under
//! `CI` a missing server fails. Each test uses its own namespace.
//!
//! A test here is one scenario told top to bottom against the real parts; a few
//! run past 100 lines, kept whole so that each step and its check stay together.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use storefront_cache::CachedStore;
use storefront_storage::prelude::*;
use storefront_storage::{NewUser, Page, Store};

const P1: Page = Page {
    number: 1,
    size: 10,
};

/// Polls `condition` every 10 ms for up to 5 s.
async fn eventually<F: Future<Output = bool>>(mut condition: impl FnMut() -> F) -> bool {
    for _ in 0..500 {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Instances A and B, the database they share, the product ids, and the
/// database's folder (kept alive while the test runs).
type Instances = Option<(
    Arc<CachedStore>,
    Arc<CachedStore>,
    Arc<dyn Store>,
    Vec<i64>,
    tempfile::TempDir,
)>;

/// Two instances (A and B) over one SQLite database and one Redis namespace.
async fn instances(test: &str) -> Instances {
    instances_on(common::cache_config(test)?).await
}

/// The same on the Redis Cluster.
async fn cluster_instances(test: &str) -> Instances {
    instances_on(common::cluster_cache_config(test)?).await
}

async fn instances_on(config: storefront_stage::config::CacheConfig) -> Instances {
    let (db, dir) = common::sqlite().await;
    let ids = common::catalog(db.as_ref(), 4, 3).await;
    let a = Arc::new(
        CachedStore::connect(db.clone(), &config)
            .await
            .expect("instance A"),
    );
    let b = Arc::new(
        CachedStore::connect(db.clone(), &config)
            .await
            .expect("instance B"),
    );
    assert!(
        a.subscribed() && b.subscribed(),
        "invalidation subscriptions"
    );
    Some((a, b, db, ids, dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_updates_invalidate_across_instances() {
    let Some((a, b, _db, ids, _dir)) = instances("update").await else {
        return;
    };
    updates_invalidate_across(&a, &b, &ids).await;
}

/// Stage 3 with its caches on a Redis Cluster: the same coherence, the
/// invalidations travelling as sharded messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_product_updates_invalidate_across_instances() {
    let Some((a, b, _db, ids, _dir)) = cluster_instances("cluster-update").await else {
        return;
    };
    updates_invalidate_across(&a, &b, &ids).await;
    // Listings come from L2 on the cluster too.
    let first = b.list_products(None, P1).await.unwrap();
    assert_eq!(a.list_products(None, P1).await.unwrap(), first);
}

async fn updates_invalidate_across(a: &CachedStore, b: &CachedStore, ids: &[i64]) {
    let id = ids[0];
    assert_eq!(a.product(id).await.unwrap().unwrap().price_cents, 100);
    assert_eq!(b.product(id).await.unwrap().unwrap().price_cents, 100);
    let before = b.stats().products;
    assert_eq!(b.product(id).await.unwrap().unwrap().price_cents, 100);
    assert_eq!(
        b.stats().products.l1.hits,
        before.l1.hits + 1,
        "B serves the product from its L1"
    );

    a.update_product(id, 999, 7).await.unwrap();
    let p = a.product(id).await.unwrap().unwrap();
    assert_eq!(
        (p.price_cents, p.stock),
        (999, 7),
        "A sees its own change at once"
    );
    assert!(
        eventually(|| async { b.product(id).await.unwrap().unwrap().price_cents == 999 }).await,
        "B's L1 was invalidated through Redis"
    );
    assert!(b.stats().products.invalidations_received >= 1);
    // A missing product is not cached.
    assert!(a.product(999_999).await.unwrap().is_none());
    assert!(a.product(999_999).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_and_search_are_served_from_the_caches() {
    let Some((a, b, db, ids, _dir)) = instances("listings").await else {
        return;
    };
    let first = a.list_products(None, P1).await.unwrap();
    assert_eq!(first.total, 4);
    let hits = a.stats().listings.l1.hits;
    assert_eq!(a.list_products(None, P1).await.unwrap(), first);
    assert_eq!(a.stats().listings.l1.hits, hits + 1);
    // B finds A's listing in Redis (L2), not in the database.
    let l2 = b.stats().listings.l2_hits;
    assert_eq!(b.list_products(None, P1).await.unwrap(), first);
    assert_eq!(b.stats().listings.l2_hits, l2 + 1);

    let kites = a.search("  Red   KITE ", P1).await.unwrap();
    assert_eq!(kites.total, 2);
    let hits = a.stats().listings.l1.hits;
    assert_eq!(
        a.search("red kite", P1).await.unwrap(),
        kites,
        "one entry for the same words"
    );
    assert_eq!(a.stats().listings.l1.hits, hits + 1);
    assert_eq!(a.categories().await.unwrap().len(), 2);
    assert_eq!(a.categories().await.unwrap().len(), 2);

    // Listings expire rather than follow each product: a change made behind the
    // caches' back shows on the product page after invalidation, on listings after
    // their TTL.
    db.update_product(ids[0], 5, 3).await.unwrap();
    assert_eq!(
        a.list_products(None, P1).await.unwrap().items[0].price_cents,
        100
    );
    assert_eq!(
        db.list_products(None, P1).await.unwrap().items[0].price_cents,
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_in_one_instance_refreshes_stock_in_the_other() {
    let Some((a, b, _db, ids, _dir)) = instances("checkout").await else {
        return;
    };
    let id = ids[1];
    assert_eq!(a.product(id).await.unwrap().unwrap().stock, 3);
    let user = b
        .create_user(
            &NewUser {
                email: "c@example.com".into(),
                name: "C".into(),
                password_hash: "x".into(),
            },
            1,
        )
        .await
        .unwrap();
    b.add_to_cart(user.id, id, 2).await.unwrap();
    b.checkout(user.id, 2).await.unwrap();
    assert!(
        eventually(|| async { a.product(id).await.unwrap().unwrap().stock == 1 }).await,
        "A's cached stock was invalidated"
    );
}

/// A `redis-server` of the test's own on `port` (no persistence), killed and
/// reaped on drop.
struct RedisServer(std::process::Child);

impl RedisServer {
    /// Starts it and waits (at most 5 s) until it answers `PING`.
    fn start(program: &std::path::Path, port: u16) -> Self {
        let child = std::process::Command::new(program)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server");
        let server = Self(child);
        let answers = || -> std::io::Result<bool> {
            use std::io::{Read, Write};
            let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port))?;
            tcp.set_read_timeout(Some(Duration::from_secs(1)))?;
            tcp.write_all(b"PING\r\n")?;
            let mut reply = [0u8; 7];
            tcp.read_exact(&mut reply)?;
            Ok(&reply == b"+PONG\r\n")
        };
        for _ in 0..500 {
            if answers().unwrap_or(false) {
                return server;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server on port {port} did not answer PING within 5 s");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `redis-server`, or `None` (test skipped) when it is not installed. Under `CI`,
/// a missing program fails.
fn redis_server(test: &str) -> Option<std::path::PathBuf> {
    let found = common::find_program("redis-server", &["/usr/sbin", "/usr/local/bin"]);
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: redis-server must be installed under CI"
        );
        eprintln!("skipped {test}: redis-server is not installed");
    }
    found
}

async fn get(app: &axum::Router, path: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let request = axum::http::Request::get(path)
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Stage 3 over a Redis that dies and comes back: the shop keeps serving, stops
/// asking Redis once its breaker opens, says why on `/readyz`, `/metrics` and
/// `/ops`, and takes Redis back when it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_is_skipped_reported_and_taken_back() {
    use scalekit_core::ManualClock;
    use storefront_cache::TierOptions;
    use storefront_ops::Ops;
    use storefront_stage::config::CacheConfig;
    use storefront_storage::MeteredStore;
    use storefront_web::{router, AppConfig, AppState};

    let Some(program) = redis_server("degraded") else {
        return;
    };
    let port = common::procs::free_addr().port();
    let redis = RedisServer::start(&program, port);
    let (db, _dir) = common::sqlite().await;
    let ids = common::catalog(db.as_ref(), 40, 3).await;
    let config = CacheConfig {
        redis_url_env: None,
        redis_url: format!("redis://127.0.0.1:{port}"),
        redis_cluster_env: None,
        redis_cluster: Vec::new(),
        namespace: "storefront-test:degraded".into(),
        l1_capacity: 1_000,
        product_ttl_secs: 600,
        listing_ttl_secs: 600,
    };
    let clock = ManualClock::new();
    let options = TierOptions {
        clock: Arc::new(clock.clone()),
        ..TierOptions::default()
    };
    let open_for = options.open_for;
    let ops = Arc::new(Ops::default());
    let cached = Arc::new(
        CachedStore::connect_with(
            MeteredStore::wrap(db, ops.db_query_counter()),
            &config,
            options,
        )
        .await
        .unwrap(),
    );
    ops.set_cache(cached.clone());
    let app = router(AppState::new(cached.clone(), AppConfig::default()).with_ops(ops.clone()));

    assert_eq!(get(&app, "/readyz").await, (200, "ready\n".into()));
    assert_eq!(get(&app, &format!("/products/{}", ids[0])).await.0, 200);
    let misses = cached.stats().remote.misses;
    assert!(misses >= 1, "{:?}", cached.stats().remote);

    drop(redis);
    // Every page is still served; the breaker opens after a few failed calls.
    let mut next = ids[1..].iter();
    for id in next.by_ref() {
        assert_eq!(get(&app, &format!("/products/{id}")).await.0, 200);
        if !cached.stats().remote.up {
            break;
        }
    }
    let open = cached.stats().remote;
    assert!(!open.up && open.errors > 0, "{open:?}");
    // Open: misses go to the database without asking Redis.
    for id in next.by_ref().take(5) {
        let (status, body) = get(&app, &format!("/products/{id}")).await;
        assert_eq!(status, 200, "{body}");
    }
    let skipped = cached.stats().remote;
    assert_eq!(
        skipped.errors, open.errors,
        "no call reached Redis: {skipped:?}"
    );
    assert_eq!(
        skipped.misses, misses,
        "failures are not misses: {skipped:?}"
    );
    assert!(skipped.skipped >= open.skipped + 5, "{skipped:?}");

    let (status, ready) = get(&app, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    let cause =
        format!("degraded: cache tier redis://127.0.0.1:{port} unreachable (circuit open): ");
    assert!(
        ready.starts_with(&cause) && ready.len() > cause.len() + 5,
        "{ready}"
    );
    let (_, metrics) = get(&app, "/metrics").await;
    for line in [
        format!(
            "storefront_cache_tier_errors_total{{tier=\"l2\"}} {}",
            skipped.errors
        ),
        format!(
            "storefront_cache_tier_skipped_total{{tier=\"l2\"}} {}",
            skipped.skipped
        ),
        format!("storefront_cache_requests_total{{tier=\"l2\",result=\"miss\"}} {misses}"),
    ] {
        assert!(metrics.contains(&line), "no {line} in\n{metrics}");
    }
    let (_, page) = get(&app, "/ops").await;
    assert!(page.contains("L2 tier errors / calls skipped"), "{page}");
    assert!(page.contains("unreachable (circuit open)"), "{page}");

    // Back on the same port: the breaker's probes find it (time moves by hand;
    // the polling waits on the real server and the subscription's reconnection).
    let _redis = RedisServer::start(&program, port);
    let mut ready = String::new();
    for round in 0..300 {
        clock.advance(open_for);
        let (status, _) = get(&app, &format!("/search?q=probe{round}")).await;
        assert_eq!(status, 200);
        ready = get(&app, "/readyz").await.1;
        if ready == "ready\n" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ready, "ready\n");
    let back = cached.stats().remote;
    assert!(
        back.up && back.misses > misses,
        "Redis answers again: {back:?}"
    );
}
