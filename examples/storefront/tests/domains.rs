//! Stage 6, the business split: the storage contract against [`DomainStore`] over
//! three fresh databases on PostgreSQL (`SCALEKIT_PG_PRIMARY_URL`, else
//! `SCALEKIT_PG_URL`), each table in its own database, the order page composed from
//! two databases in one request, and checkout's compensation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[path = "common/suite.rs"]
mod suite;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use storefront::app::{router, AppConfig, AppState, Passwords};
use storefront::config::DomainsConfig;
use storefront::store::{
    domain_router, Db, DomainStore, Order, OrderLine, OrderRepo, OrderSummary, PgOrders, Store,
    StoreError, StoreResult,
};
use tower::ServiceExt;

use suite::*;

/// Three databases of a test's own (users, catalog, orders), dropped with this.
struct Databases {
    server: String,
    config: DomainsConfig,
    names: Vec<String>,
}

impl Databases {
    /// Fresh databases, or `None` (test skipped) without a server URL; under `CI`
    /// a missing variable or server fails the test.
    async fn new(test: &str) -> Option<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let server = ["SCALEKIT_PG_PRIMARY_URL", "SCALEKIT_PG_URL"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()));
        let Some(server) = server else {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: SCALEKIT_PG_PRIMARY_URL or SCALEKIT_PG_URL must be set under CI"
            );
            eprintln!(
                "skipped {test}: neither SCALEKIT_PG_PRIMARY_URL nor SCALEKIT_PG_URL is set \
                 (it needs a PostgreSQL server)"
            );
            return None;
        };
        let prefix = format!(
            "sf_dom_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            test.chars()
                .filter(char::is_ascii_alphanumeric)
                .take(16)
                .collect::<String>()
                .to_lowercase()
        );
        let mut conn = PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("{test}: cannot reach PostgreSQL at {server}: {e}"));
        let mut names = Vec::new();
        for domain in ["users", "catalog", "orders"] {
            let name = format!("{prefix}_{domain}");
            conn.execute(format!("CREATE DATABASE {name}").as_str())
                .await
                .expect("create database");
            names.push(name);
        }
        conn.close().await.ok();
        let config = DomainsConfig {
            users: with_database(&server, &names[0]),
            catalog: with_database(&server, &names[1]),
            orders: Some(with_database(&server, &names[2])),
            max_connections: 12,
        };
        Some(Self {
            server,
            config,
            names,
        })
    }

    /// A pool on one of the databases, for looking at it directly.
    async fn pool(&self, domain: &str) -> PgPool {
        let url = self
            .config
            .urls()
            .iter()
            .find(|(d, _)| *d == domain)
            .map(|(_, u)| u.to_string())
            .expect("a domain");
        PgPoolOptions::new()
            .max_connections(4)
            .connect_with(PgConnectOptions::from_str(&url).expect("url"))
            .await
            .expect("connect")
    }

    /// The tables of one database (without sqlx's bookkeeping).
    async fn tables(&self, domain: &str) -> Vec<String> {
        let pool = self.pool(domain).await;
        let tables = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' \
             ORDER BY table_name",
        )
        .fetch_all(&pool)
        .await
        .expect("tables");
        pool.close().await;
        tables
    }
}

impl Drop for Databases {
    fn drop(&mut self) {
        let server = self.server.clone();
        let names = std::mem::take(&mut self.names);
        // A runtime of its own: Drop may run inside or outside one.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    if let Ok(mut conn) = PgConnection::connect(&server).await {
                        for name in names {
                            let _ = conn
                                .execute(
                                    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                                )
                                .await;
                        }
                    }
                });
            }
        })
        .join();
    }
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let query = path.split_once('?').map(|(_, q)| q);
    match query {
        Some(q) => format!("{scheme}://{authority}/{database}?{q}"),
        None => format!("{scheme}://{authority}/{database}"),
    }
}

/// A [`DomainStore`] over fresh databases, or `None` (skipped).
async fn store(test: &str) -> Option<(Arc<dyn Store>, Databases)> {
    let dbs = Databases::new(test).await?;
    let store = DomainStore::connect(&dbs.config)
        .await
        .expect("connect and migrate");
    Some((Arc::new(store), dbs))
}

/// Writes a `#[tokio::test]` running each storage check against a fresh [`DomainStore`].
macro_rules! domain_store {
    ($($name:ident),* $(,)?) => {
        mod contract {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some((store, _dbs)) = crate::store(stringify!($name)).await else { return };
                    super::$name(store).await;
                }
            )*
        }
    };
}

domain_store!(
    catalog_lists_pages_and_categories,
    search_matches_every_word_and_binds_input,
    accounts_and_sessions,
    cart_adds_caps_and_removes,
    checkout_writes_the_order_and_empties_the_cart,
    checkout_refuses_what_is_not_in_stock,
    concurrent_checkouts_never_oversell,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_table_lives_in_its_own_database() {
    let Some((store, dbs)) = store("each_table").await else {
        return;
    };
    let ids = common::catalog(store.as_ref(), 3, 5).await;
    let u = user(store.as_ref(), "t@example.com").await;
    store.create_session("tok", u, 100).await.unwrap();
    store.add_to_cart(u, ids[0], 2).await.unwrap();
    store.checkout(u, 10).await.unwrap();
    store.add_to_cart(u, ids[1], 1).await.unwrap();

    assert_eq!(
        dbs.tables("users").await,
        ["cart_items", "sessions", "users"]
    );
    assert_eq!(dbs.tables("catalog").await, ["categories", "products"]);
    assert_eq!(dbs.tables("orders").await, ["order_items", "orders"]);

    // The rows are where the tables are, and no foreign key leaves its database
    // (none could: the tables they pointed to are elsewhere).
    let count = |pool: PgPool, table: &'static str| async move {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    };
    assert_eq!(count(dbs.pool("users").await, "users").await, 1);
    assert_eq!(count(dbs.pool("users").await, "sessions").await, 1);
    assert_eq!(count(dbs.pool("users").await, "cart_items").await, 1);
    assert_eq!(count(dbs.pool("catalog").await, "products").await, 3);
    assert_eq!(count(dbs.pool("orders").await, "orders").await, 1);
    assert_eq!(count(dbs.pool("orders").await, "order_items").await, 1);
    let stock: i64 = {
        let pool = dbs.pool("catalog").await;
        sqlx::query_scalar("SELECT stock FROM products WHERE id = $1")
            .bind(ids[0])
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(stock, 3);
    // Every foreign key joins two tables of its own database, by the domain routes.
    let mut seen = Vec::new();
    for domain in ["users", "catalog", "orders"] {
        let pool = dbs.pool(domain).await;
        let keys = foreign_keys(&pool).await;
        assert_eq!(crossing(domain, &keys), Vec::<String>::new(), "{domain}");
        seen.extend(keys);
        pool.close().await;
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("cart_items".to_owned(), "users".to_owned()),
            ("order_items".to_owned(), "orders".to_owned()),
            ("products".to_owned(), "categories".to_owned()),
            ("sessions".to_owned(), "users".to_owned()),
        ],
        "the foreign keys inside each domain"
    );
    // The check sees a key to another domain's table (a copy of it made here).
    let users = dbs.pool("users").await;
    users
        .execute(
            "CREATE TABLE products (id BIGINT PRIMARY KEY); \
             ALTER TABLE cart_items ADD FOREIGN KEY (product_id) REFERENCES products (id) NOT VALID",
        )
        .await
        .unwrap();
    assert_eq!(
        crossing("users", &foreign_keys(&users).await),
        ["cart_items -> products (catalog)"]
    );
    users.close().await;
    store.ping().await.unwrap();
}

/// Every foreign key of a database: (table, referenced table).
async fn foreign_keys(pool: &PgPool) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT t.relname::text, r.relname::text FROM pg_constraint c \
         JOIN pg_class t ON t.oid = c.conrelid JOIN pg_class r ON r.oid = c.confrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE c.contype = 'f' AND n.nspname = 'public'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The keys of `keys` (in database `domain`) whose tables the domain routes put
/// in another database.
fn crossing(domain: &str, keys: &[(String, String)]) -> Vec<String> {
    let router = domain_router().unwrap();
    let home = |table: &str| {
        router
            .locate(table, &scalekit_shard::Query::all())
            .map(|t| t.database.to_string())
            .unwrap_or_else(|_| format!("no domain ({table})"))
    };
    keys.iter()
        .filter(|(from, to)| home(from) != domain || home(to) != domain)
        .map(|(from, to)| format!("{from} -> {to} ({})", home(to)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_page_shows_product_names_in_one_request() {
    let Some((store, dbs)) = store("order_page").await else {
        return;
    };
    let ids = common::catalog(store.as_ref(), 3, 5).await;
    let u = user(store.as_ref(), "page@example.com").await;
    let token = "ab".repeat(32);
    store.create_session(&token, u, i64::MAX).await.unwrap();
    store.add_to_cart(u, ids[0], 1).await.unwrap();
    store.add_to_cart(u, ids[1], 2).await.unwrap();
    let order = store.checkout(u, 10).await.unwrap();
    let app = router(AppState {
        passwords: Passwords::fast_insecure(),
        ops: Arc::default(),
        ..AppState::new(store.clone(), AppConfig::default())
    });
    let page = |app: axum::Router| {
        let token = token.clone();
        async move {
            let req = Request::get(format!("/orders/{}", order.id))
                .header(header::COOKIE, format!("sf_session={token}"))
                .body(Body::empty())
                .unwrap();
            let reply = app.oneshot(req).await.unwrap();
            let status = reply.status();
            let body = http_body_util::BodyExt::collect(reply.into_body())
                .await
                .unwrap()
                .to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (status, body) = page(app.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (id, name) in [(ids[0], "Item 1 Blue Novel"), (ids[1], "Item 2 Red Kite")] {
        assert!(
            body.contains(&format!("<a href=\"/products/{id}\">{name}</a>")),
            "{body}"
        );
    }
    assert!(body.contains("$5.00"), "the total: {body}");
    // The names come from the catalog: rename a product there, and the same one
    // request shows the new name next to the order's lines.
    let catalog = dbs.pool("catalog").await;
    sqlx::query("UPDATE products SET name = 'Item 2 Green Kite' WHERE id = $1")
        .bind(ids[1])
        .execute(&catalog)
        .await
        .unwrap();
    catalog.close().await;
    let (status, body) = page(app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Item 2 Green Kite"), "{body}");
    assert!(body.contains("Item 1 Blue Novel"), "{body}");
}

/// An order repository whose writes always fail (reads find nothing).
#[derive(Debug)]
struct FailingOrders;

#[async_trait]
impl OrderRepo for FailingOrders {
    async fn place(&self, _user_id: i64, _lines: &[OrderLine], _now: i64) -> StoreResult<Order> {
        Err(StoreError::Database(sqlx::Error::PoolTimedOut))
    }
    async fn orders(&self, _user_id: i64) -> StoreResult<Vec<OrderSummary>> {
        Ok(Vec::new())
    }
    async fn order(&self, _user_id: i64, _order_id: i64) -> StoreResult<Option<Order>> {
        Ok(None)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_order_gives_the_stock_back() {
    let Some(dbs) = Databases::new("compensation").await else {
        return;
    };
    let mut pools = HashMap::new();
    for (domain, url) in dbs.config.urls() {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(PgConnectOptions::from_str(url).unwrap())
            .await
            .unwrap();
        pools.insert(domain.to_owned(), Db::single(pool));
    }
    let store: Arc<dyn Store> = Arc::new(
        DomainStore::new(&domain_router().unwrap(), &pools, Arc::new(FailingOrders))
            .await
            .unwrap(),
    );
    let ids = common::catalog(store.as_ref(), 3, 5).await;
    let u = user(store.as_ref(), "undo@example.com").await;
    store.add_to_cart(u, ids[2], 4).await.unwrap();
    store.add_to_cart(u, ids[0], 1).await.unwrap();
    let before = store.cart(u).await.unwrap();
    let result = store.checkout(u, 10).await;
    assert!(
        matches!(result, Err(StoreError::Database(sqlx::Error::PoolTimedOut))),
        "{result:?}"
    );
    // The stock taken in the catalog's transaction was given back, and the cart is
    // as it was.
    for &id in &ids {
        assert_eq!(store.product(id).await.unwrap().unwrap().stock, 5, "{id}");
    }
    assert_eq!(store.cart(u).await.unwrap(), before);
    // Stock is still taken for real: with 1 unit left, a second buyer of 4 fails.
    store.update_product(ids[2], 300, 1).await.unwrap();
    assert!(matches!(
        store.checkout(u, 11).await,
        Err(StoreError::OutOfStock { product_id, .. }) if product_id == ids[2]
    ));
    assert_eq!(store.product(ids[0]).await.unwrap().unwrap().stock, 5);
}

#[tokio::test]
async fn a_router_that_splits_a_join_is_refused() {
    let router =
        scalekit_shard::RouterConfig::from_toml(&storefront::store::DOMAIN_ROUTES.replace(
            "[tables.sessions]\ndatabase = \"users\"",
            "[tables.sessions]\ndatabase = \"catalog\"",
        ))
        .unwrap()
        .build(&scalekit_shard::Engines::new())
        .unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy("postgres://postgres@127.0.0.1:1/never_connected")
        .unwrap();
    let all: HashMap<String, Db> = ["users", "catalog", "orders"]
        .iter()
        .map(|d| (d.to_string(), Db::single(pool.clone())))
        .collect();
    let err = DomainStore::new(&router, &all, Arc::new(FailingOrders))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("users, sessions, cart_items must live in one database"),
        "{err}"
    );
}

/// Db handles on the three databases of `dbs`, with fake replicas (the primary's
/// own pool) when `replicas`: then [`Db::wrote`] records positions.
async fn db_handles(dbs: &Databases, replicas: bool) -> HashMap<String, Db> {
    let mut handles = HashMap::new();
    for (domain, url) in dbs.config.urls() {
        let pool = PgPoolOptions::new()
            .max_connections(12)
            .connect_with(PgConnectOptions::from_str(url).unwrap())
            .await
            .unwrap();
        let db = if replicas {
            Db::with_replicas(
                domain,
                ("primary".into(), pool.clone()),
                vec![("replica".into(), pool)],
                std::time::Duration::from_secs(1),
            )
            .unwrap()
        } else {
            Db::single(pool)
        };
        handles.insert(domain.to_owned(), db);
    }
    handles
}

/// A [`DomainStore`] over `dbs` with orders in `repo` (given the orders database).
async fn store_with<R: OrderRepo>(
    dbs: &Databases,
    replicas: bool,
    repo: impl FnOnce(PgOrders) -> R,
) -> Arc<DomainStore> {
    let handles = db_handles(dbs, replicas).await;
    let orders = PgOrders::new(handles["orders"].clone()).await.unwrap();
    Arc::new(
        DomainStore::new(&domain_router().unwrap(), &handles, Arc::new(repo(orders)))
            .await
            .unwrap(),
    )
}

/// Orders in a [`PgOrders`], placed only once the gate opens; `entered` is told
/// when a placement waits at the gate.
#[derive(Debug)]
struct GatedOrders {
    inner: PgOrders,
    gate: Arc<tokio::sync::Semaphore>,
    entered: Arc<tokio::sync::Notify>,
}

impl GatedOrders {
    fn new(inner: PgOrders) -> Self {
        Self {
            inner,
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
            entered: Arc::new(tokio::sync::Notify::new()),
        }
    }
}

#[async_trait]
impl OrderRepo for GatedOrders {
    async fn place(&self, user_id: i64, lines: &[OrderLine], now: i64) -> StoreResult<Order> {
        self.entered.notify_one();
        let _permit = self.gate.acquire().await;
        self.inner.place(user_id, lines, now).await
    }
    async fn orders(&self, user_id: i64) -> StoreResult<Vec<OrderSummary>> {
        self.inner.orders(user_id).await
    }
    async fn order(&self, user_id: i64, order_id: i64) -> StoreResult<Option<Order>> {
        self.inner.order(user_id, order_id).await
    }
}

/// Orders whose placement panics.
#[derive(Debug)]
struct PanickingOrders;

#[async_trait]
impl OrderRepo for PanickingOrders {
    async fn place(&self, _user_id: i64, _lines: &[OrderLine], _now: i64) -> StoreResult<Order> {
        panic!("a bug in the order repository")
    }
    async fn orders(&self, _user_id: i64) -> StoreResult<Vec<OrderSummary>> {
        Ok(Vec::new())
    }
    async fn order(&self, _user_id: i64, _order_id: i64) -> StoreResult<Option<Order>> {
        Ok(None)
    }
}

/// Waits (bounded: 10 s) for `entered`.
async fn entered(notify: &tokio::sync::Notify) {
    tokio::time::timeout(std::time::Duration::from_secs(10), notify.notified())
        .await
        .expect("the checkout reaches place()");
}

/// A product's stock read on the catalog's primary.
async fn stock_of(dbs: &Databases, id: i64) -> i64 {
    let pool = dbs.pool("catalog").await;
    let stock = sqlx::query_scalar("SELECT stock FROM products WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    stock
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_double_click_places_one_order() {
    let Some(dbs) = Databases::new("double_click").await else {
        return;
    };
    let store = store_with(&dbs, false, |o| o).await;
    let ids = common::catalog(store.as_ref(), 2, 100).await;
    let u = user(store.as_ref(), "twice@example.com").await;
    store.add_to_cart(u, ids[0], 2).await.unwrap();
    store.add_to_cart(u, ids[1], 1).await.unwrap();
    let clicks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.checkout(u, 10 + i).await })
        })
        .collect();
    let mut placed = 0;
    for click in clicks {
        match click.await.unwrap() {
            Ok(_) => placed += 1,
            Err(StoreError::EmptyCart) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(placed, 1);
    assert_eq!(store.orders(u).await.unwrap().len(), 1);
    assert_eq!(stock_of(&dbs, ids[0]).await, 98);
    assert_eq!(stock_of(&dbs, ids[1]).await, 99);
    assert!(store.cart(u).await.unwrap().lines.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_line_raised_during_checkout_keeps_the_raise() {
    let Some(dbs) = Databases::new("raised").await else {
        return;
    };
    let gated = Arc::new(std::sync::OnceLock::new());
    let store = store_with(&dbs, false, |o| {
        let g = GatedOrders::new(o);
        let _ = gated.set((g.gate.clone(), g.entered.clone()));
        g
    })
    .await;
    let (gate, entered_place) = gated.get().cloned().unwrap();
    let ids = common::catalog(store.as_ref(), 2, 10).await;
    let u = user(store.as_ref(), "raise@example.com").await;
    store.add_to_cart(u, ids[0], 2).await.unwrap();
    let checkout = tokio::spawn({
        let store = store.clone();
        async move { store.checkout(u, 10).await }
    });
    entered(&entered_place).await;
    // One more while the order is being placed: it is not part of this order.
    let raise = tokio::spawn({
        let store = store.clone();
        let id = ids[0];
        async move { store.add_to_cart(u, id, 1).await }
    });
    // The raise is done, or waits for a lock the checkout holds, before the order
    // goes through.
    let users = dbs.pool("users").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !raise.is_finished() {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&users)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the raise neither ran nor waits"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    users.close().await;
    gate.add_permits(1);
    let order = checkout.await.unwrap().unwrap();
    raise.await.unwrap().unwrap();
    assert_eq!(order.lines.len(), 1);
    assert_eq!(order.lines[0].quantity, 2);
    let cart = store.cart(u).await.unwrap();
    assert_eq!(cart.lines.len(), 1, "{cart:?}");
    assert_eq!(cart.lines[0].quantity, 1, "{cart:?}");
    assert_eq!(stock_of(&dbs, ids[0]).await, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_place_gives_the_stock_back() {
    let Some(dbs) = Databases::new("panic").await else {
        return;
    };
    let store = store_with(&dbs, false, |_| PanickingOrders).await;
    let ids = common::catalog(store.as_ref(), 2, 5).await;
    let u = user(store.as_ref(), "panic@example.com").await;
    store.add_to_cart(u, ids[0], 3).await.unwrap();
    store.add_to_cart(u, ids[1], 1).await.unwrap();
    let before = store.cart(u).await.unwrap();
    let result = store.checkout(u, 10).await;
    let message = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("a bug in the order repository"),
        "{message}"
    );
    assert_eq!(stock_of(&dbs, ids[0]).await, 5);
    assert_eq!(stock_of(&dbs, ids[1]).await, 5);
    assert_eq!(store.cart(u).await.unwrap(), before);
}

#[test]
fn a_runtime_shutdown_mid_checkout_gives_the_stock_back() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(dbs) = rt.block_on(Databases::new("shutdown")) else {
        return;
    };
    let ids = rt.block_on(async {
        let gated = Arc::new(std::sync::OnceLock::new());
        let store = store_with(&dbs, false, |o| {
            let g = GatedOrders::new(o);
            let _ = gated.set(g.entered.clone());
            g
        })
        .await;
        let ids = common::catalog(store.as_ref(), 1, 5).await;
        let u = user(store.as_ref(), "shutdown@example.com").await;
        store.add_to_cart(u, ids[0], 4).await.unwrap();
        tokio::spawn(async move { store.checkout(u, 10).await });
        entered(gated.get().unwrap()).await;
        ids
    });
    // The gate never opens: the saga is dropped with the runtime, stock taken.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let stock = stock_of(&dbs, ids[0]).await;
            if stock == 5 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "stock {stock}, not 5");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saga_records_its_writes_for_the_request() {
    use storefront::store::context::{scope, RequestContext};
    let Some(dbs) = Databases::new("context").await else {
        return;
    };
    let lsn = || async {
        let pool = dbs.pool("catalog").await;
        let lsn: i64 = sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0')::bigint")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        u64::try_from(lsn).unwrap()
    };
    // A checkout whose order fails still wrote (stock taken and given back).
    let handles = db_handles(&dbs, true).await;
    let failing = DomainStore::new(&domain_router().unwrap(), &handles, Arc::new(FailingOrders))
        .await
        .unwrap();
    let ids = common::catalog(&failing, 1, 5).await;
    let u = user(&failing, "ryw@example.com").await;
    failing.add_to_cart(u, ids[0], 1).await.unwrap();
    let before = lsn().await;
    let ctx = RequestContext::new(None);
    assert!(scope(ctx.clone(), failing.checkout(u, 10)).await.is_err());
    let written = ctx.written().map(|p| p.get());
    assert!(
        written.is_some_and(|w| w > before),
        "{written:?} after {before}"
    );
    // A placed order: the request's position covers the cart's last write.
    let store = store_with(&dbs, true, |o| o).await;
    let before = lsn().await;
    let ctx = RequestContext::new(None);
    scope(ctx.clone(), store.checkout(u, 11)).await.unwrap();
    let written = ctx.written().map(|p| p.get());
    assert!(
        written.is_some_and(|w| w > before),
        "{written:?} after {before}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_skips_and_removes_products_gone_from_the_catalog() {
    let Some(dbs) = Databases::new("gone").await else {
        return;
    };
    let store = store_with(&dbs, false, |o| o).await;
    let ids = common::catalog(store.as_ref(), 3, 5).await;
    let u = user(store.as_ref(), "gone@example.com").await;
    store.add_to_cart(u, ids[0], 1).await.unwrap();
    store.add_to_cart(u, ids[1], 2).await.unwrap();
    let catalog = dbs.pool("catalog").await;
    let delete = |id: i64| {
        let catalog = catalog.clone();
        async move {
            sqlx::query("DELETE FROM products WHERE id = $1")
                .bind(id)
                .execute(&catalog)
                .await
                .unwrap();
        }
    };
    delete(ids[1]).await;
    let order = store.checkout(u, 10).await.unwrap();
    assert_eq!(
        order.lines.iter().map(|l| l.product_id).collect::<Vec<_>>(),
        [ids[0]]
    );
    let users = dbs.pool("users").await;
    let lines = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM cart_items WHERE user_id = $1")
            .bind(u)
            .fetch_one(&users)
            .await
            .unwrap()
    };
    assert_eq!(lines().await, 0, "the gone line left the cart too");
    // A cart of gone products only is empty, and emptied.
    store.add_to_cart(u, ids[2], 1).await.unwrap();
    delete(ids[2]).await;
    assert!(matches!(
        store.checkout(u, 11).await,
        Err(StoreError::EmptyCart)
    ));
    assert_eq!(lines().await, 0);
    assert_eq!(stock_of(&dbs, ids[0]).await, 4);
    catalog.close().await;
    users.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_up_checkout_still_invalidates_the_product_cache() {
    let Some(config) = common::cache_config("hung_up_checkout") else {
        return;
    };
    let Some(dbs) = Databases::new("hung_up").await else {
        return;
    };
    let gated = Arc::new(std::sync::OnceLock::new());
    let store = store_with(&dbs, false, |o| {
        let g = GatedOrders::new(o);
        let _ = gated.set((g.gate.clone(), g.entered.clone()));
        g
    })
    .await;
    let (gate, entered_place) = gated.get().cloned().unwrap();
    let ids = common::catalog(store.as_ref(), 1, 5).await;
    let u = user(store.as_ref(), "hangup@example.com").await;
    store.add_to_cart(u, ids[0], 2).await.unwrap();
    let cached = storefront::cache::CachedStore::connect(store.clone(), &config)
        .await
        .unwrap();
    assert_eq!(cached.product(ids[0]).await.unwrap().unwrap().stock, 5);
    // The client hangs up while the order is being placed.
    let hung_up = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        tokio::select! {
            _ = cached.checkout(u, 10) => panic!("the gate is closed"),
            () = entered(&entered_place) => {}
        }
    })
    .await;
    assert!(hung_up.is_ok());
    gate.add_permits(1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let stock = cached.product(ids[0]).await.unwrap().unwrap().stock;
        if stock == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cache still shows {stock}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
