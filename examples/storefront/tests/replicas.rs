//! Stage 5 end to end, on a real PostgreSQL primary and its streaming replica
//! (`SCALEKIT_PG_PRIMARY_URL`, `SCALEKIT_PG_REPLICA_URL`: `.ci/pg-replica.sh`):
//! the app's router over a store whose reads go to the replica; read-your-writes
//! through the `sk_wal` cookie while replay is paused; catalog reads leaving the
//! lagging replica and coming back when it catches up; the ops figures. On the
//! first cluster of `deploy/services.sh`'s fleet (`SCALEKIT_PG_FLEET_URL`: a
//! cluster per database, stages 6 and 7): a session position of another cluster
//! still finds this cluster's write, and a replica of another cluster is refused.
//!
//! The tests take turns (`SERIAL`): two pause replay on a replica, and all count
//! the reads of this process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};
use storefront_ops::replicas::ReadSplit;
use storefront_stage::config::ReplicasConfig;
use storefront_storage::prelude::*;
use storefront_storage::split::read_split_now;
use storefront_storage::{Db, NewProduct, PgStore, Store};
use storefront_web::{router, AppConfig, AppState, Passwords};
use tower::ServiceExt;

/// Held by each test for its whole run.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The primary's and the replica's URLs, or `None` (skipped) without them.
fn urls() -> Option<(String, String)> {
    let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (
        get("SCALEKIT_PG_PRIMARY_URL"),
        get("SCALEKIT_PG_REPLICA_URL"),
    ) {
        (Some(p), Some(r)) => Some((p, r)),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "SCALEKIT_PG_PRIMARY_URL and SCALEKIT_PG_REPLICA_URL must be set under CI"
            );
            eprintln!(
                "skipped: SCALEKIT_PG_PRIMARY_URL / SCALEKIT_PG_REPLICA_URL are not set (they need a primary with a streaming replica: .ci/pg-replica.sh)"
            );
            None
        }
    }
}

/// The first primary of `deploy/services.sh`'s fleet (`SCALEKIT_PG_FLEET_URL`,
/// a server URL) and its replica's server (the next port), or `None` (skipped).
fn fleet() -> Option<(String, String)> {
    let Some(url) = std::env::var("SCALEKIT_PG_FLEET_URL")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "SCALEKIT_PG_FLEET_URL must be set under CI"
        );
        eprintln!(
            "skipped: SCALEKIT_PG_FLEET_URL is not set (deploy/services.sh up makes the fleet)"
        );
        return None;
    };
    let (server, _) = split_url(&url);
    let (host, port) = server
        .rsplit_once(':')
        .expect("a port in SCALEKIT_PG_FLEET_URL");
    let port: u16 = port.parse().expect("a port in SCALEKIT_PG_FLEET_URL");
    Some((server.clone(), format!("{host}:{}", port + 1)))
}

/// `postgres://u@h:p/db?x` → (`postgres://u@h:p`, `db`).
fn split_url(url: &str) -> (String, String) {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let path = url[scheme_end..]
        .find('/')
        .map_or(url.len(), |i| scheme_end + i);
    let db = url[path..].trim_start_matches('/');
    let db = db.split('?').next().unwrap_or("");
    (url[..path].to_owned(), db.to_owned())
}

/// Runs `sql` on `url` from a thread with a runtime of its own (Drop may run in a
/// runtime or outside one, and after a panic).
fn run_detached(url: String, sql: String) {
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&url).await {
                    let _ = conn.execute(sql.as_str()).await;
                }
            });
        }
    })
    .join();
}

/// Resumes WAL replay on the replica when dropped, whatever happened.
struct ReplayGuard {
    replica_url: String,
}

impl Drop for ReplayGuard {
    fn drop(&mut self) {
        run_detached(
            self.replica_url.clone(),
            "SELECT pg_wal_replay_resume()".into(),
        );
    }
}

/// Drops the test's database on the primary when dropped (best effort).
struct DatabaseGuard {
    primary_url: String,
    name: String,
}

impl Drop for DatabaseGuard {
    fn drop(&mut self) {
        run_detached(
            self.primary_url.clone(),
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

struct Reply {
    status: StatusCode,
    location: String,
    set_cookies: Vec<String>,
    body: String,
}

/// The shop, and the cookies a browser would keep, and the anti-forgery token of
/// the last page with a form.
struct Browser {
    app: Router,
    jar: BTreeMap<String, String>,
    token: Option<String>,
}

impl Browser {
    fn cookie_header(&self, with_wal: bool) -> String {
        self.jar
            .iter()
            .filter(|(k, _)| with_wal || k.as_str() != "sk_wal")
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, req: Request<Body>) -> Reply {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let location = res
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let set_cookies: Vec<String> = res
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        for c in &set_cookies {
            let pair = c.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                self.jar.insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&bytes).into_owned();
        let field = "name=\"csrf\" value=\"";
        if let Some(at) = body.find(field) {
            let token = body[at + field.len()..].split('"').next().unwrap_or("");
            self.token = Some(token.to_owned());
        }
        Reply {
            status,
            location,
            set_cookies,
            body,
        }
    }

    async fn get_with(&mut self, uri: &str, with_wal: bool) -> Reply {
        let cookie = self.cookie_header(with_wal);
        let mut req = Request::get(uri);
        if !cookie.is_empty() {
            req = req.header(header::COOKIE, cookie);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    async fn get(&mut self, uri: &str) -> Reply {
        self.get_with(uri, true).await
    }

    /// A form sent from the last page with one (the login page if none yet).
    async fn form(&mut self, uri: &str, body: &str) -> Reply {
        if self.token.is_none() {
            self.get("/login").await;
        }
        let token = self.token.clone().unwrap_or_default();
        let body = match body {
            "" => format!("csrf={token}"),
            body => format!("{body}&csrf={token}"),
        };
        let body = body.as_str();
        let cookie = self.cookie_header(true);
        let mut req =
            Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if !cookie.is_empty() {
            req = req.header(header::COOKIE, cookie);
        }
        self.send(req.body(Body::from(body.to_owned())).unwrap())
            .await
    }

    async fn ops(&mut self) -> Value {
        let r = self.get("/ops/data.json").await;
        assert_eq!(r.status, StatusCode::OK);
        serde_json::from_str(&r.body).unwrap()
    }
}

/// The replica's row of database `name` in the ops data.
fn replica_of(ops: &Value, name: &str) -> Value {
    ops["replicas"]
        .as_array()
        .and_then(|dbs| dbs.iter().find(|d| d["database"] == name))
        .map(|d| d["replicas"][0].clone())
        .unwrap_or(Value::Null)
}

/// Polls `check` every 20 ms until it holds, for at most `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads handed out by this process's databases while `f` runs.
async fn reads_during<F: std::future::Future>(f: F) -> (F::Output, ReadSplit) {
    let before = read_split_now();
    let out = f.await;
    (out, read_split_now().since(&before))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_split_and_read_your_writes() {
    let Some((primary_url, replica_url)) = urls() else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let (primary_server, _) = split_url(&primary_url);
    let (replica_server, _) = split_url(&replica_url);

    // A database of this run's own, on the primary; it replicates.
    let name = unique("sf_replicas");
    let mut admin = PgConnection::connect(&primary_url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the primary at {primary_url}: {e}"));
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create database");
    let _database = DatabaseGuard {
        primary_url: primary_url.clone(),
        name: name.clone(),
    };
    let mut replica = PgConnection::connect(&replica_url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the replica at {replica_url}: {e}"));
    // Left paused by a crashed run? Then nothing would arrive.
    replica.execute("SELECT pg_wal_replay_resume()").await.ok();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_one(&mut replica)
            .await
            .unwrap_or(0);
        if n == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never reached the replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The stage 5 store: max lag 300 ms, checks every 50 ms.
    let config = ReplicasConfig {
        servers: vec![replica_server.clone()],
        clusters: Vec::new(),
        max_lag_ms: 300,
        check_interval_ms: 50,
        check_timeout_ms: 1_000,
    };
    let db = Db::connect(&format!("{primary_server}/{name}"), Some(&config), 8)
        .await
        .expect("connect primary and replica");
    let store = PgStore::open(db.clone()).await.expect("migrate");
    let cats = store
        .insert_categories(&[("books".into(), "Books".into())])
        .await
        .expect("categories");
    let products: Vec<NewProduct> = (1..=5)
        .map(|i| NewProduct {
            category_id: cats[0].id,
            name: format!("Novel {i}"),
            description: "A book".into(),
            price_cents: 100 * i,
            stock: 10,
        })
        .collect();
    store.insert_products(&products, 1).await.expect("products");
    assert!(
        db.wait_for_replicas(Duration::from_secs(30))
            .await
            .expect("primary position"),
        "the replica did not catch up with the seed"
    );
    let store: Arc<dyn Store> = Arc::new(store);
    let state = AppState {
        passwords: Passwords::fast_insecure(),
        ..AppState::new(store.clone(), AppConfig::default())
    };
    let mut b = Browser {
        app: router(state),
        jar: BTreeMap::new(),
        token: None,
    };

    // Catalog reads go to the replica.
    let (r, split) = reads_during(b.get("/api/products")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        split.replica_reads >= 1 && split.primary_reads == 0,
        "{split:?}"
    );
    let product: i64 = serde_json::from_str::<Value>(&r.body).unwrap()["items"][0]["id"]
        .as_i64()
        .expect("a product id");

    // Writes set the WAL cookie.
    let r = b
        .form(
            "/signup",
            &format!("name=Ann&email=ann-{name}%40example.com&password=longenough"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(
        r.set_cookies.iter().any(|c| c.starts_with("sk_wal=")),
        "{:?}",
        r.set_cookies
    );
    let r = b
        .form("/cart/add", &format!("product_id={product}&quantity=2"))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = b.get("/cart").await;
    assert!(
        r.body.contains("Novel"),
        "the cart shows its line: {}",
        r.body
    );

    // Replay paused: the replica stops where it is.
    let paused = ReplayGuard {
        replica_url: replica_url.clone(),
    };
    replica
        .execute("SELECT pg_wal_replay_pause()")
        .await
        .expect("pause replay");
    let r = b.form("/checkout", "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let order_url = r.location.clone();
    assert!(order_url.starts_with("/orders/"), "{order_url}");
    let order_id: i64 = order_url["/orders/".len()..]
        .split('?')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("order id");
    let wal = b.jar.get("sk_wal").cloned().unwrap_or_default();
    assert!(!wal.is_empty());

    // The replica does not have the order ...
    let mut on_replica = PgConnection::connect(&format!("{replica_server}/{name}"))
        .await
        .expect("connect to the replica's copy");
    let there: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE id = $1")
        .bind(order_id)
        .fetch_one(&mut on_replica)
        .await
        .expect("count on the replica");
    assert_eq!(there, 0, "replay is paused: the replica lacks the order");
    // ... yet the user's own order page shows it: the cookie sent the read to the primary.
    let (r, split) = reads_during(b.get(&order_url)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains(&format!("#{order_id}")) || r.body.contains(&order_id.to_string()));
    assert!(split.primary_reads >= 1, "{split:?}");
    let r = b.get("/orders").await;
    assert!(
        r.body.contains(&format!("/orders/{order_id}")),
        "{}",
        r.body
    );

    // Writes on the primary that the paused replica does not replay: its lag grows
    // past the limit, the ops data says so, and catalog reads leave it.
    let mut writer = PgConnection::connect(&format!("{primary_server}/{name}"))
        .await
        .expect("connect");
    writer
        .execute("CREATE TABLE lag_maker (n int)")
        .await
        .expect("table");
    let lagging = |ops: &Value| replica_of(ops, &name)["state"] == "lagging";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        writer
            .execute("INSERT INTO lag_maker VALUES (1)")
            .await
            .expect("write");
        let ops = b.ops().await;
        if lagging(&ops) {
            let replica = replica_of(&ops, &name);
            assert!(replica["lag_ms"].as_u64().unwrap_or(0) > 300, "{replica}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the paused replica never showed as lagging: {}",
            ops["replicas"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (r, split) = reads_during(b.get("/api/products")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        split.replica_reads == 0 && split.primary_reads >= 1,
        "catalog reads leave the lagging replica: {split:?}"
    );
    // The metrics say it too.
    let metrics = b.get("/metrics").await.body;
    assert!(
        metrics.contains(&format!(
            "storefront_replica_serving{{database=\"{name}\",replica="
        )),
        "{metrics}"
    );
    assert!(metrics.contains("storefront_db_reads_total{on=\"replica\"}"));

    // Replay resumed: the replica catches up and takes the catalog reads again,
    // and the user's reads too (it has replayed their position).
    drop(paused);
    eventually(Duration::from_secs(30), "the replica serving again", || {
        let app = b.app.clone();
        let name = name.clone();
        async move {
            let res = app
                .oneshot(Request::get("/ops/data.json").body(Body::empty()).unwrap())
                .await
                .unwrap();
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            let ops: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            replica_of(&ops, &name)["state"] == "serving"
        }
    })
    .await;
    let (r, split) = reads_during(b.get("/api/products")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        split.replica_reads >= 1 && split.primary_reads == 0,
        "{split:?}"
    );
    let (r, split) = reads_during(b.get(&order_url)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        split.replica_reads >= 1 && split.primary_reads == 0,
        "{split:?}"
    );
    let there: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE id = $1")
        .bind(order_id)
        .fetch_one(&mut on_replica)
        .await
        .expect("count on the replica");
    assert_eq!(there, 1);

    // Right after a write, the user's read goes to the replica once it has
    // replayed the write: the store asks it instead of waiting for the next check.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let r = b
            .form("/cart/add", &format!("product_id={product}&quantity=1"))
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        // Give the replica a moment to replay (its replay is asynchronous).
        tokio::time::sleep(Duration::from_millis(5 * attempts)).await;
        let (r, split) = reads_during(b.get("/cart")).await;
        assert_eq!(r.status, StatusCode::OK);
        if split.replica_reads >= 1 && split.primary_reads == 0 {
            break;
        }
        assert!(
            attempts < 20,
            "reads after a write never reached the replica: {split:?}"
        );
    }

    // The ops data: reads on both, writes on the primary, rates and share.
    let ops = b.ops().await;
    let reads = &ops["totals"]["reads"];
    assert!(reads["replica_reads"].as_u64().unwrap_or(0) >= 3, "{reads}");
    assert!(reads["primary_reads"].as_u64().unwrap_or(0) >= 2, "{reads}");
    assert!(
        reads["primary_writes"].as_u64().unwrap_or(0) >= 5,
        "{reads}"
    );
    assert!(ops["window"]["split"]["primary_qps"].is_number(), "{ops}");
    let page = b.get("/ops").await.body;
    assert!(page.contains("Read/write splitting") && page.contains(&name));

    // A forged cookie beyond the primary cannot pin this client's reads on the
    // primary: the primary is asked where it is, and the position counts as that,
    // which the replica reaches. Far beyond, and just beyond (256 MiB: no margin
    // lets it through).
    let now: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(db.primary())
        .await
        .expect("the primary's position");
    let now = scalekit_replica::pg::parse_lsn(&now).expect("an LSN");
    let near = scalekit_replica::Position::new(now.get() + (256 << 20));
    for forged in [
        "FFFFFFFF/FFFFFFFF".to_owned(),
        scalekit_replica::pg::format_lsn(near),
    ] {
        b.jar.insert("sk_wal".into(), forged.clone());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (r, split) = reads_during(b.get(&order_url)).await;
            assert_eq!(r.status, StatusCode::OK);
            if split.replica_reads >= 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a forged position ({forged}) kept reads on the primary"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop(on_replica);
    drop(writer);
    drop(b);
    drop(store);
    drop(db);
}

/// A database name of this run's own.
fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_is_down_takes_no_reads() {
    let Some((primary_url, _)) = urls() else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let (primary_server, _) = split_url(&primary_url);
    let name = unique("sf_replica_down");
    let mut admin = PgConnection::connect(&primary_url).await.expect("primary");
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create database");
    let _database = DatabaseGuard {
        primary_url: primary_url.clone(),
        name: name.clone(),
    };
    // Nothing listens on port 1: the replica never answers its checks.
    let config = ReplicasConfig {
        servers: vec!["postgres://postgres@127.0.0.1:1".into()],
        clusters: Vec::new(),
        max_lag_ms: 1_000,
        check_interval_ms: 50,
        check_timeout_ms: 500,
    };
    let db = Db::connect(&format!("{primary_server}/{name}"), Some(&config), 4)
        .await
        .expect("a replica that is down does not stop the start");
    let store = PgStore::open(db.clone()).await.expect("migrate");
    store
        .insert_categories(&[("books".into(), "Books".into())])
        .await
        .expect("categories");
    let (categories, split) = reads_during(store.categories()).await;
    assert_eq!(categories.expect("read on the primary").len(), 1);
    assert_eq!(
        (split.replica_reads, split.primary_reads),
        (0, 1),
        "{split:?}"
    );
    let view = db.replica_view().expect("replicas");
    assert_eq!(view.database, name);
    let replica = &view.replicas[0];
    assert_eq!(replica.name, "127.0.0.1:1");
    assert_eq!(replica.state, storefront_ops::replicas::ReplicaState::Down);
    drop(store);
    drop(db);
}

/// With a cluster per database (stages 6 and 7) the session's cookie holds the
/// highest position of its writes in any cluster, which may lie far beyond this
/// cluster's: the primary is asked where it is, and a read waits for what the
/// session wrote here, even when this process has not seen that write (another
/// instance made it) and the position lies beyond the forgery margin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_of_another_cluster_still_sees_this_clusters_write() {
    let Some((primary_server, replica_server)) = fleet() else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let name = unique("sf_other_cluster");
    let primary_url = format!("{primary_server}/postgres");
    let replica_url = format!("{replica_server}/postgres");
    let mut admin = PgConnection::connect(&primary_url).await.expect("primary");
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create database");
    let _database = DatabaseGuard {
        primary_url: primary_url.clone(),
        name: name.clone(),
    };
    let primary = primary_server
        .rsplit_once('@')
        .map_or(primary_server.as_str(), |(_, h)| h)
        .to_owned();
    // Checks far apart: the second instance learns nothing by itself.
    let config = ReplicasConfig {
        servers: Vec::new(),
        clusters: vec![storefront_storage::config::ReplicaCluster {
            primary,
            servers: vec![replica_server.clone()],
        }],
        max_lag_ms: 60_000,
        check_interval_ms: 60_000,
        check_timeout_ms: 1_000,
    };
    let url = format!("{primary_server}/{name}");
    let mut replica = PgConnection::connect(&format!("{replica_server}/postgres"))
        .await
        .expect("replica");
    let deadline = Instant::now() + Duration::from_secs(30);
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(&mut replica)
        .await
        .unwrap_or(0)
        != 1
    {
        assert!(
            Instant::now() < deadline,
            "{name} never reached the replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let writer = Db::connect(&url, Some(&config), 2).await.expect("writer");
    let reader = Db::connect(&url, Some(&config), 2).await.expect("reader");
    assert!(writer.has_replicas() && reader.has_replicas());
    sqlx::query("CREATE TABLE t (x INT)")
        .execute(writer.primary())
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(writer.primary())
        .await
        .unwrap();
    writer.wrote().await;
    assert!(writer
        .wait_for_replicas(Duration::from_secs(10))
        .await
        .unwrap());
    // The reader knows the primary up to here, and so does the replica.
    reader.check_now(Duration::from_secs(1)).await;
    let _resume = ReplayGuard {
        replica_url: replica_url.clone(),
    };
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&mut replica)
        .await
        .unwrap();
    // The session writes here through the other instance...
    sqlx::query("INSERT INTO t VALUES (2)")
        .execute(writer.primary())
        .await
        .unwrap();
    let written: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(writer.primary())
        .await
        .unwrap();
    let written = scalekit_replica::pg::parse_lsn(&written).unwrap();
    // ...and its cookie carries a position of another cluster, 4 GiB further.
    let cookie = scalekit_replica::Position::new(written.get() + (4 << 30));
    let context = storefront_storage::context::RequestContext::new(Some(cookie));
    let (role, seen) = storefront_storage::context::scope(context, async {
        let pool = reader.reader().await.unwrap();
        let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&*pool)
            .await
            .unwrap();
        (pool.role(), seen)
    })
    .await;
    assert_eq!(
        (role, seen),
        (scalekit_replica::Role::Primary, 2),
        "the paused replica has not replayed the session's write"
    );
    // Replay resumed, the same cookie reads on the replica again.
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut replica)
        .await
        .unwrap();
    assert!(writer
        .wait_for_replicas(Duration::from_secs(10))
        .await
        .unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let context = storefront_storage::context::RequestContext::new(Some(cookie));
        let (role, seen) = storefront_storage::context::scope(context, async {
            let pool = reader.reader().await.unwrap();
            let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
                .fetch_one(&*pool)
                .await
                .unwrap();
            (pool.role(), seen)
        })
        .await;
        assert_eq!(seen, 2);
        if role == scalekit_replica::Role::Replica {
            break;
        }
        assert!(Instant::now() < deadline, "the reads stay on the primary");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(reader);
    drop(writer);
}

/// A replica server of another cluster (a `[replicas]` entry under the wrong
/// primary) is refused at the start, naming both; it would serve reads from
/// another database of the same name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_of_another_cluster_is_refused() {
    let (Some((fleet_server, _)), Some((_, other_replica))) = (fleet(), urls()) else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let (other_replica, _) = split_url(&other_replica);
    let config = ReplicasConfig {
        servers: vec![other_replica.clone()],
        clusters: Vec::new(),
        max_lag_ms: 1_000,
        check_interval_ms: 250,
        check_timeout_ms: 1_000,
    };
    let err = Db::connect(&format!("{fleet_server}/postgres"), Some(&config), 2)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    let replica_place = other_replica
        .rsplit_once('@')
        .map_or(other_replica.as_str(), |(_, h)| h);
    assert!(
        err.contains(&format!("{replica_place} is not a replica of")),
        "{err}"
    );
}
