//! Stage 7 end to end on real PostgreSQL (`SCALEKIT_PG_PRIMARY_URL`, else
//! `SCALEKIT_PG_URL`): the app served in process over fresh databases (users,
//! catalog, 4 shard databases), `storefront loadgen` buying while the orders
//! move from 2 databases to 4, after rollbacks at two steps; then a checksum over
//! every order. The same again with each database on a cluster of its own with
//! its streaming replica (`SCALEKIT_PG_FLEET_URL`: `deploy/services.sh`'s fleet),
//! as stage 7 runs. Also the admin pages' protection and contents.
//!
//! A test here is one scenario told top to bottom against the real parts; a few
//! run past 100 lines, kept whole so that each step and its check stay together.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use scalekit_shard::Phase;
use sqlx::{Connection, Executor, PgConnection};
use storefront_stage::config::StageConfig;
use storefront_storage::sharded::analytics::OrderAnalytics;
use storefront_storage::sharded::reshard::Resharder;
use storefront_storage::sharded::{Checksum, ShardedOrders};
use storefront_storage::{OrderLine, OrderRepo};
use storefront_tools::loadgen::{HttpClient, LoadOptions, Loadgen, Mix, Mode, Workload};
use storefront_web::admin::{self, Admin};
use storefront_web::{AppConfig, AppState, Passwords};
use tower::ServiceExt;

/// The six databases, in the order [`Databases::names`] gives them.
const WHAT: [&str; 6] = ["users", "catalog", "o0", "o1", "o2", "o3"];

/// Fresh databases (`users`, `catalog`, `o0`..`o3`), dropped on drop: all on one
/// server, or each on its own cluster of `deploy/services.sh`'s fleet with the
/// cluster's streaming replica taking reads, as stage 7 runs.
struct Databases {
    /// Each database's server URL (`postgres://user@host:port`), as in `WHAT`.
    servers: Vec<String>,
    /// In the fleet: each server's replica server, as in `servers`.
    replicas: Option<Vec<String>>,
    prefix: String,
}

/// `postgres://u@h:p/db?x` → `postgres://u@h:p`.
fn server_of(url: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    url[scheme_end..]
        .find(['/', '?'])
        .map_or(url.to_owned(), |i| url[..scheme_end + i].to_owned())
}

/// `postgres://u@h:p` → (`postgres://u@h`, `p`).
fn port_of(server: &str) -> (String, u16) {
    let (rest, port) = server.rsplit_once(':').expect("a port");
    (rest.to_owned(), port.parse().expect("a port"))
}

impl Databases {
    /// All six on the server of `SCALEKIT_PG_PRIMARY_URL`, else `SCALEKIT_PG_URL`.
    async fn new(test: &str) -> Option<Self> {
        let url = ["SCALEKIT_PG_PRIMARY_URL", "SCALEKIT_PG_URL"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()));
        let Some(url) = url else {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: SCALEKIT_PG_PRIMARY_URL or SCALEKIT_PG_URL must be set under CI"
            );
            eprintln!(
                "skipped {test}: no PostgreSQL URL (SCALEKIT_PG_PRIMARY_URL, SCALEKIT_PG_URL)"
            );
            return None;
        };
        Self::create(test, vec![server_of(&url); WHAT.len()], None).await
    }

    /// Each on a cluster of its own: the fleet from `SCALEKIT_PG_FLEET_URL` (its
    /// first server; primaries every second port, replicas on the port after
    /// each), laid out as stage 7's file lays it: users, catalog, then (past
    /// stage 6's orders) the four shards.
    async fn fleet(test: &str) -> Option<Self> {
        let Some(url) = std::env::var("SCALEKIT_PG_FLEET_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: SCALEKIT_PG_FLEET_URL must be set under CI"
            );
            eprintln!("skipped {test}: SCALEKIT_PG_FLEET_URL is not set (deploy/services.sh up makes the fleet)");
            return None;
        };
        let (host, first) = port_of(&server_of(&url));
        let ports = [0, 2, 6, 8, 10, 12].map(|k| first + k);
        let servers = ports.iter().map(|p| format!("{host}:{p}")).collect();
        let replicas = ports.iter().map(|p| format!("{host}:{}", p + 1)).collect();
        Self::create(test, servers, Some(replicas)).await
    }

    async fn create(
        test: &str,
        servers: Vec<String>,
        replicas: Option<Vec<String>>,
    ) -> Option<Self> {
        let tag = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ std::process::id())
            .unwrap_or(0);
        let this = Self {
            servers,
            replicas,
            prefix: format!("sf_{test}_{tag:08x}"),
        };
        for (server, name) in this.servers.iter().zip(this.names()) {
            let mut conn = PgConnection::connect(&format!("{server}/postgres"))
                .await
                .unwrap_or_else(|e| panic!("reach PostgreSQL at {server}: {e}"));
            conn.execute(format!("CREATE DATABASE {name}").as_str())
                .await
                .expect("create database");
            conn.close().await.ok();
        }
        // A replica has the database once it has replayed its creation.
        for (replica, name) in this.replicas.iter().flatten().zip(this.names()) {
            let mut conn = PgConnection::connect(&format!("{replica}/postgres"))
                .await
                .unwrap_or_else(|e| panic!("reach the replica {replica}: {e}"));
            let deadline = Instant::now() + Duration::from_secs(30);
            while sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_database WHERE datname = $1",
            )
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .unwrap_or(0)
                != 1
            {
                assert!(Instant::now() < deadline, "{name} never reached {replica}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Some(this)
    }

    fn name(&self, what: &str) -> String {
        format!("{}_{what}", self.prefix)
    }

    fn names(&self) -> Vec<String> {
        WHAT.iter().map(|w| self.name(w)).collect()
    }

    fn server(&self, what: &str) -> &str {
        let i = WHAT.iter().position(|w| *w == what).expect("a database");
        &self.servers[i]
    }

    fn db_url(&self, what: &str) -> String {
        format!("{}/{}", self.server(what), self.name(what))
    }

    /// A stage 7 file over these databases (no caches, no gateway).
    fn stage(&self) -> StageConfig {
        let mut shard_servers = String::new();
        for what in ["o0", "o1", "o2", "o3"] {
            shard_servers.push_str(&format!(
                "{} = \"{}\"\n",
                self.name(what),
                self.server(what)
            ));
        }
        let mut replicas = String::new();
        if let Some(list) = &self.replicas {
            replicas.push_str("[replicas]\nmax_lag_ms = 1000\ncheck_interval_ms = 250\n");
            for (server, replica) in self.servers.iter().zip(list) {
                let primary = server.rsplit_once('@').map_or(server.as_str(), |(_, h)| h);
                replicas.push_str(&format!(
                    "[[replicas.cluster]]\nprimary = \"{primary}\"\nservers = [\"{replica}\"]\n"
                ));
            }
        }
        let text = format!(
            r#"
[stage]
number = 7
name = "sharding"
title = "Horizontal sharding"
adds = "test"
needs = "test"

[server]
addr = "127.0.0.1:0"
page_size = 24

[database]
backend = "postgres"
url = "{catalog}"

[domains]
users = "{users}"
catalog = "{catalog}"
max_connections = 6

[sharding]
databases = ["{o0}", "{o1}"]
reshard_to = ["{o0}", "{o2}", "{o1}", "{o3}"]
routing_ttl_ms = 300
max_connections = 6

[sharding.servers]
{shard_servers}
[admin]
token_env = "SF_TEST_ADMIN_TOKEN_UNSET"

{replicas}"#,
            catalog = self.db_url("catalog"),
            users = self.db_url("users"),
            o0 = self.name("o0"),
            o1 = self.name("o1"),
            o2 = self.name("o2"),
            o3 = self.name("o3"),
        );
        StageConfig::parse("test stage 7", &text).expect("stage file")
    }
}

impl Drop for Databases {
    fn drop(&mut self) {
        let targets: Vec<(String, String)> =
            self.servers.iter().cloned().zip(self.names()).collect();
        // Best effort, on a thread of its own (Drop may run inside a runtime).
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                for (server, name) in targets {
                    if let Ok(mut conn) = PgConnection::connect(&format!("{server}/postgres")).await
                    {
                        let _ = conn
                            .execute(
                                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                            )
                            .await;
                    }
                }
            });
        })
        .join();
    }
}

async fn get_json(http: &HttpClient, path: &str) -> Option<serde_json::Value> {
    let answer = http.get(path, None).await.ok()?;
    serde_json::from_slice(&answer.body).ok()
}

/// Waits (at most `limit`) until the shop's `/ops/data.json` shows `phase`.
async fn ops_shows(http: &HttpClient, phase: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(v) = get_json(http, "/ops/data.json").await {
            if v["shards"]["phase"] == phase {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Orders in the databases in use, as `/ops/data.json` shows them.
async fn ops_orders(http: &HttpClient) -> i64 {
    let Some(v) = get_json(http, "/ops/data.json").await else {
        return -1;
    };
    v["shards"]["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter(|r| r["in_use"] == true)
                .filter_map(|r| r["orders"].as_i64())
                .sum()
        })
        .unwrap_or(-1)
}

/// Waits (at most `limit`) until the databases in use hold more than `than` orders.
async fn orders_grow(http: &HttpClient, than: i64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ops_orders(http).await > than {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resharding_under_load_loses_and_duplicates_nothing() {
    let Some(dbs) = Databases::new("e2e").await else {
        return;
    };
    let _serial = SERIAL.lock().await;
    reshard_under_load(dbs).await;
}

/// The same on a cluster per database, as stage 7 runs: the moves go from one
/// cluster to another, and every database is read on its cluster's replica
/// (the order page right after a checkout too, through the session's cookie,
/// whose position may be another cluster's).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resharding_across_clusters_with_replicas_loses_and_duplicates_nothing() {
    let Some(dbs) = Databases::fleet("fleet").await else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let split = storefront_storage::split::read_split_now();
    let order_page_errors = reshard_under_load(dbs).await;
    let split = storefront_storage::split::read_split_now().since(&split);
    eprintln!("reads: {split:?}");
    assert!(
        split.replica_reads > split.primary_reads,
        "most reads on the replicas: {split:?}"
    );
    assert_eq!(
        order_page_errors, 0,
        "every order page after a checkout shows the order"
    );
}

/// Held by the tests that count this process's reads, and by the others while
/// they read.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Stage 7 over `dbs` under load while the orders move from 2 databases to 4
/// (after rollbacks at two steps); what was stored checked against what the
/// load placed. Returns the errors of the order pages the load read.
async fn reshard_under_load(dbs: Databases) -> u64 {
    let started = Instant::now();
    let config = dbs.stage();
    let sharding_config = config.sharding.clone().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let opened = storefront_storage::open_parts(&config.databases(), data_dir.path())
        .await
        .expect("open the stage 7 store");
    let sharding = opened.sharding.clone().expect("sharded orders");
    let passwords = Passwords::fast_insecure();
    storefront_stage::seed::seed(
        opened.store.as_ref(),
        storefront_stage::seed::SeedOptions {
            products: 300,
            users: 8,
            seed: 7,
        },
        &passwords,
        &|_| {},
    )
    .await
    .expect("seed");

    // The shop, served in process, with the shard figures on its ops page.
    let ops = Arc::new(storefront_stage::compose::ops_for(&config));
    let watcher = storefront_stage::compose::watch_shards(&ops, sharding.clone());
    let store =
        storefront_storage::MeteredStore::wrap(opened.store.clone(), ops.db_query_counter());
    let mut state = AppState::new(
        store,
        AppConfig {
            stage: (7, "Horizontal sharding".into()),
            ..AppConfig::default()
        },
    )
    .with_ops(ops.clone());
    state.passwords = passwords;
    let sampler = ops.start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, storefront_web::router(state)).await;
    });
    let http = HttpClient::new(&base, Duration::from_secs(5)).unwrap();
    assert!(
        ops_shows(&http, "idle", Duration::from_secs(10)).await,
        "the ops page shows the shards"
    );

    // The load: buying, in short runs until the resharding is over.
    let loadgen = Arc::new(
        Loadgen::connect(LoadOptions {
            target: base.clone(),
            mode: Mode::Closed { concurrency: 6 },
            workload: Workload::Journeys(Mix {
                browse: 10,
                search: 0,
                buy: 90,
            }),
            users: 8,
            zipf: 0.5,
            seed: 11,
            timeout: Duration::from_secs(10),
            max_in_flight: 64,
        })
        .await
        .expect("loadgen connects"),
    );
    let moving_done = Arc::new(AtomicBool::new(false));
    let load = {
        let loadgen = Arc::clone(&loadgen);
        let done = Arc::clone(&moving_done);
        tokio::spawn(async move {
            let mut reports = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline {
                reports.push(loadgen.run(Duration::from_secs(2), None).await);
                if done.load(Ordering::Relaxed) {
                    break;
                }
            }
            reports
        })
    };
    assert!(
        orders_grow(&http, 0, Duration::from_secs(30)).await,
        "the load places orders"
    );

    // The mover: a process of its own (its own pools and routing).
    let mover_orders = ShardedOrders::connect(&sharding_config).await.unwrap();
    let mut seen = Vec::new();
    for rollback_at in [Phase::Verify, Phase::SwitchWrites] {
        let mover = Resharder::start(&mover_orders, &sharding_config.reshard_to)
            .await
            .expect("start");
        assert!(
            ops_shows(&http, "copy", Duration::from_secs(15)).await,
            "the ops page shows the copy"
        );
        while mover.phase() != rollback_at {
            let phase = mover.step().await.expect("step");
            let shown = phase.to_string();
            assert!(
                ops_shows(&http, &shown, Duration::from_secs(15)).await,
                "the ops page shows {shown}"
            );
            seen.push(shown);
        }
        mover.rollback().await.expect("rollback");
        assert!(
            ops_shows(&http, "rolled back", Duration::from_secs(15)).await,
            "the ops page shows the rollback"
        );
        // The new databases hold nothing; the shop keeps taking orders.
        for (db, n) in sharding.rows_per_database().await.unwrap() {
            if db == dbs.name("o2") || db == dbs.name("o3") {
                assert_eq!(n, 0, "{db} is empty after a rollback at {rollback_at}");
            }
        }
        let before = ops_orders(&http).await;
        assert!(
            orders_grow(&http, before, Duration::from_secs(30)).await,
            "orders are placed after a rollback at {rollback_at}"
        );
    }
    let mover = Resharder::start(&mover_orders, &sharding_config.reshard_to)
        .await
        .expect("start");
    assert!(
        ops_shows(&http, "copy", Duration::from_secs(15)).await,
        "the ops page shows the copy"
    );
    while mover.phase() != Phase::Done {
        let phase = mover.step().await.expect("step");
        let shown = match phase {
            Phase::Done => "done".to_owned(),
            p => p.to_string(),
        };
        assert!(
            ops_shows(&http, &shown, Duration::from_secs(15)).await,
            "the ops page shows {shown}"
        );
        seen.push(shown);
    }
    // Some load after the move too.
    let before = ops_orders(&http).await;
    assert!(
        orders_grow(&http, before, Duration::from_secs(30)).await,
        "orders are placed after the move"
    );
    // The page and /metrics show the shards too.
    let page = http.get("/ops", None).await.unwrap();
    let page = String::from_utf8_lossy(&page.body).into_owned();
    assert!(page.contains("<h2>Shards</h2>") && page.contains(&dbs.name("o3")));
    let metrics = http.get("/metrics", None).await.unwrap();
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        metrics.contains("storefront_reshard_phase{phase=\"done\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "storefront_shard_orders{{database=\"{}\"}}",
        dbs.name("o3")
    )));
    moving_done.store(true, Ordering::Relaxed);
    let reports = tokio::time::timeout(Duration::from_secs(90), load)
        .await
        .expect("the load ends")
        .unwrap();
    eprintln!("phases shown: {seen:?}");

    // What the load placed.
    let (mut attempts, mut failed, mut sold_out) = (0u64, 0u64, 0u64);
    for r in &reports {
        for row in r.steps.iter().filter(|s| s.name == "POST /checkout") {
            attempts += row.count;
            failed += row.errors;
            sold_out += row.sold_out;
        }
    }
    // Each checkout that answered with its order was followed by the order's
    // page (a 404 there would be an error of `GET /orders/{id}`).
    let placed = attempts - failed - sold_out;
    let errors: Vec<_> = reports.iter().flat_map(|r| r.error_kinds.clone()).collect();
    eprintln!(
        "checkouts: {attempts} tried, {placed} placed, {sold_out} sold out, {failed} failed {errors:?}"
    );
    assert!(placed > 0);

    // Every order once: rows in every database, distinct ids, the analytics
    // (reading each slot where it is served) and each order read back through
    // the routing all agree.
    let rows = sharding.rows_per_database().await.unwrap();
    let total: i64 = rows.iter().map(|(_, n)| n).sum();
    assert!(
        rows.iter().all(|(_, n)| *n > 0),
        "every database holds orders: {rows:?}"
    );
    let sum = sharding.checksum().await.unwrap();
    assert_eq!(sum.orders as i64, total);
    let counted = OrderAnalytics::count_orders(&sharding).await.unwrap();
    assert_eq!(counted as i64, total, "no order in two databases");
    let all = sharding.latest_orders(0, counted).await.unwrap();
    let ids: BTreeSet<i64> = all.iter().map(|o| o.id).collect();
    assert_eq!(ids.len() as i64, total, "ids are unique");
    assert!(
        total as u64 >= placed,
        "{total} orders stored, {placed} checkouts succeeded: none lost"
    );
    // A journey under way when a run's window ends goes on, unrecorded: at most
    // one checkout per customer and run is placed but not counted.
    let unrecorded = 6 * reports.len() as u64;
    assert!(
        total as u64 <= attempts - sold_out + unrecorded,
        "{total} orders stored, at most {} checkouts could have placed one",
        attempts - sold_out + unrecorded
    );
    let mut read_back = Checksum::default();
    for o in &all {
        let order = sharding
            .order(o.user_id, o.id)
            .await
            .unwrap()
            .expect("an order listed reads back");
        read_back.add_order(o.user_id, &order);
    }
    assert_eq!(read_back, sum, "every order reads back whole, once");
    // The shop still sells.
    let lines = [OrderLine {
        product_id: 1,
        name: "x".into(),
        unit_price_cents: 100,
        quantity: 1,
    }];
    sharding
        .place(1, &lines, 1)
        .await
        .expect("an order after the move");

    watcher.abort();
    sampler.abort();
    server.abort();
    eprintln!("took {:.1} s", started.elapsed().as_secs_f64());
    reports
        .iter()
        .flat_map(|r| &r.steps)
        .filter(|s| s.name == "GET /orders/{id}")
        .map(|s| s.errors)
        .sum()
}

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, String, Option<String>) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let cookie = resp
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned(), cookie)
}

fn get(path: &str, auth: Option<&str>) -> Request<Body> {
    let mut req = Request::get(path);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    req.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn admin_pages_need_the_token_and_read_every_shard() {
    let Some(dbs) = Databases::new("admin").await else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let config = dbs.stage();
    let sharding = ShardedOrders::connect(config.sharding.as_ref().unwrap())
        .await
        .unwrap();
    let line = |p: i64, q: i64| OrderLine {
        product_id: p,
        name: format!("Product {p}"),
        unit_price_cents: 250,
        quantity: q,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for user in 1..=60 {
        sharding
            .place(
                user,
                &[line(user % 5 + 1, 2), line(9, 1)],
                now - user * 3600,
            )
            .await
            .unwrap();
    }
    let analytics: Arc<dyn OrderAnalytics> = Arc::new(sharding.clone());
    let shop = || async {
        let (store, _dir) = {
            let dir = tempfile::tempdir().unwrap();
            let store = storefront_storage::SqliteStore::open(&dir.path().join("shop.db"))
                .await
                .unwrap();
            (Arc::new(store), dir)
        };
        storefront_web::router(AppState::new(store, AppConfig::default()))
    };

    // No token configured, or no shards: 404.
    for admin in [
        Admin::new(None, Some(analytics.clone())),
        Admin::new(Some("t0ken"), None),
    ] {
        let app = shop().await.merge(admin::router(admin));
        for path in [
            "/admin/orders",
            "/admin/revenue",
            "/admin/top-products",
            "/admin/login",
        ] {
            assert_eq!(
                send(&app, get(path, None)).await.0,
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
    }

    let app = shop().await.merge(admin::router(Admin::new(
        Some("t0ken"),
        Some(analytics.clone()),
    )));
    // Missing or wrong token: 401.
    for auth in [
        None,
        Some("Bearer nope"),
        Some("Bearer t0ke"),
        Some("Basic t0ken"),
    ] {
        for path in ["/admin/orders", "/admin/revenue", "/admin/top-products"] {
            let (status, body, _) = send(&app, get(path, auth)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} with {auth:?}");
            assert!(!body.contains("Product 9"));
        }
    }
    let bearer = Some("Bearer t0ken");
    // Latest orders, 50 a page: what the analytics list.
    let first = analytics
        .latest_orders(0, admin::ORDERS_PER_PAGE)
        .await
        .unwrap();
    let (status, body, _) = send(&app, get("/admin/orders", bearer)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("60 orders in all · page 1 of 2"), "{body}");
    for o in &first {
        assert!(body.contains(&format!("<td>{}</td>", o.id)));
    }
    assert!(body.contains("/admin/orders?page=2"));
    let second = analytics.latest_orders(50, 50).await.unwrap();
    assert_eq!(second.len(), 10);
    let (_, body, _) = send(&app, get("/admin/orders?page=2", bearer)).await;
    for o in &second {
        assert!(body.contains(&format!("<td>{}</td>", o.id)));
    }
    assert!(!body.contains(&format!("<td>{}</td>", first[0].id)));
    for bad in ["/admin/orders?page=0", "/admin/orders?page=x"] {
        let status = send(&app, get(bad, bearer)).await.0;
        assert!(status.is_client_error(), "{bad}: {status}");
    }
    // Revenue per day and top products.
    let (status, body, _) = send(&app, get("/admin/revenue?days=5", bearer)).await;
    assert_eq!(status, StatusCode::OK);
    let days = analytics.revenue_per_day(0).await.unwrap();
    let today = days.last().unwrap();
    assert!(body.contains(&storefront_web::money(today.revenue_cents)));
    let (status, body, _) = send(&app, get("/admin/top-products", bearer)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("Product 9") && body.contains("<td>60</td>"),
        "{body}"
    );
    let (status, body, _) = send(&app, get("/admin/top-products?by=revenue", bearer)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("$150.00"), "{body}");

    // The login form: a wrong token is 401; the right one sets the cookie.
    let form = |token: &str| {
        Request::post("/admin/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={token}")))
            .unwrap()
    };
    assert_eq!(send(&app, form("nope")).await.0, StatusCode::UNAUTHORIZED);
    let (status, _, cookie) = send(&app, form("t0ken")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = cookie.unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let pair = cookie.split(';').next().unwrap().to_owned();
    let req = Request::get("/admin/orders")
        .header(header::COOKIE, format!("other=1; {pair}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, req).await.0, StatusCode::OK);
    let req = Request::get("/admin/orders")
        .header(header::COOKIE, "sk_admin=t0kenx")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, req).await.0, StatusCode::UNAUTHORIZED);
}
