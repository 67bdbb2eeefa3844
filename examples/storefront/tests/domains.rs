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
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool};
use storefront_storage::{domain_router, Db, DomainStore, Store, StoreError};
use storefront_web::{router, AppConfig, AppState, Passwords};
use tower::ServiceExt;

use common::domains::*;
use suite::*;

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
        scalekit_shard::RouterConfig::from_toml(&storefront_storage::DOMAIN_ROUTES.replace(
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
