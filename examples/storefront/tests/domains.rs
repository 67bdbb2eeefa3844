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
    domain_router, Db, DomainStore, Order, OrderLine, OrderRepo, OrderSummary, Store, StoreError,
    StoreResult,
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
    for domain in ["users", "catalog", "orders"] {
        let pool = dbs.pool(domain).await;
        let dangling: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_constraint c JOIN pg_class t ON t.oid = c.confrelid \
             WHERE c.contype = 'f' AND t.relname IN ('users', 'products') \
             AND c.conrelid::regclass::text NOT IN ('sessions', 'cart_items', 'products')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(dangling, 0, "{domain}");
        pool.close().await;
    }
    store.ping().await.unwrap();
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
        store: store.clone(),
        passwords: Passwords::fast_insecure(),
        config: Arc::new(AppConfig::default()),
        ops: Arc::default(),
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
