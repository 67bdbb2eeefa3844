//! Stores for tests: SQLite in a temporary directory, and PostgreSQL in a schema of
//! its own (from `SCALEKIT_PG_URL`; skipped without it, a failure under `CI`).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::hash::BuildHasher;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};
use storefront_stage::config::CacheConfig;
use storefront_storage::{NewProduct, PgStore, SqliteStore, Store};

pub mod domains;
pub mod procs;
pub mod shop;
pub mod stubs;
pub mod web;

/// Cache settings on Redis from `SCALEKIT_REDIS_URL`, in a namespace of this test's
/// own, or `None` (test skipped) without it. Under `CI`, a missing variable fails.
pub fn cache_config(test: &str) -> Option<CacheConfig> {
    let url = match std::env::var("SCALEKIT_REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: SCALEKIT_REDIS_URL must be set under CI"
            );
            eprintln!("skipped {test}: SCALEKIT_REDIS_URL is not set (it needs a Redis server)");
            return None;
        }
    };
    let salt = std::collections::hash_map::RandomState::new().hash_one(test);
    Some(CacheConfig {
        redis_url_env: None,
        redis_url: url,
        redis_cluster_env: None,
        redis_cluster: Vec::new(),
        namespace: format!("storefront-test:{test}:{salt:016x}"),
        l1_capacity: 1_000,
        product_ttl_secs: 600,
        listing_ttl_secs: 600,
    })
}

/// The same settings on the Redis Cluster from `SCALEKIT_REDIS_CLUSTER_URLS`, as
/// a stage file names one (`redis_cluster = [...]`), or `None` (test skipped)
/// without it. Under `CI`, a missing variable fails.
pub fn cluster_cache_config(test: &str) -> Option<CacheConfig> {
    let urls = match std::env::var("SCALEKIT_REDIS_CLUSTER_URLS") {
        Ok(urls) if !urls.is_empty() => urls,
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: SCALEKIT_REDIS_CLUSTER_URLS must be set under CI"
            );
            eprintln!(
                "skipped {test}: SCALEKIT_REDIS_CLUSTER_URLS is not set (it needs a Redis Cluster)"
            );
            return None;
        }
    };
    let salt = std::collections::hash_map::RandomState::new().hash_one(test);
    Some(CacheConfig {
        redis_url_env: None,
        redis_url: "redis://127.0.0.1:6379".into(),
        redis_cluster_env: None,
        redis_cluster: urls.split(',').map(str::to_owned).collect(),
        namespace: format!("storefront-test:{test}:{salt:016x}"),
        l1_capacity: 1_000,
        product_ttl_secs: 600,
        listing_ttl_secs: 600,
    })
}

/// A program on `PATH` or in one of `also_in` (sbin directories are often not on
/// `PATH`).
pub fn find_program(name: &str, also_in: &[&str]) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(also_in.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A SQLite store in a temporary directory (kept alive by the returned guard).
pub async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("shop.db"))
        .await
        .expect("open sqlite");
    (Arc::new(store), dir)
}

/// A PostgreSQL schema that is dropped when this is dropped (best effort).
pub struct PgSchema {
    url: String,
    name: String,
}

impl PgSchema {
    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL whose connections use this schema (for processes started by a test).
    pub fn url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.url, self.name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let url = self.url.clone();
        let name = self.name.clone();
        // A runtime of its own: Drop may run inside or outside one.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    if let Ok(mut conn) = PgConnection::connect(&url).await {
                        let _ = conn
                            .execute(format!("DROP SCHEMA IF EXISTS {name} CASCADE").as_str())
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

/// A PostgreSQL store in a fresh schema, or `None` (test skipped) without
/// `SCALEKIT_PG_URL`. Under `CI`, a missing variable or server fails the test.
pub async fn postgres(test: &str) -> Option<(Arc<dyn Store>, PgSchema)> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let url = match std::env::var("SCALEKIT_PG_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: SCALEKIT_PG_URL must be set under CI"
            );
            eprintln!("skipped {test}: SCALEKIT_PG_URL is not set (it needs a PostgreSQL server)");
            return None;
        }
    };
    let name = format!(
        "sf_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        test.chars()
            .filter(char::is_ascii_alphanumeric)
            .take(20)
            .collect::<String>()
            .to_lowercase()
    );
    let mut conn = PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{test}: cannot reach PostgreSQL at {url}: {e}"));
    conn.execute(format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}").as_str())
        .await
        .expect("create schema");
    conn.close().await.ok();
    let guard = PgSchema {
        url: url.clone(),
        name: name.clone(),
    };
    let options = PgConnectOptions::from_str(&url)
        .expect("url")
        .options([("search_path", name.as_str())]);
    let store = PgStore::connect_with(options, 12)
        .await
        .expect("connect and migrate");
    Some((Arc::new(store), guard))
}

/// Two categories and `n` products (ids 1..=n in order), each with `stock` units and
/// a price of 100 cents times its number.
pub async fn catalog(store: &dyn Store, n: i64, stock: i64) -> Vec<i64> {
    let cats = store
        .insert_categories(&[
            ("books".into(), "Books".into()),
            ("toys".into(), "Toys".into()),
        ])
        .await
        .expect("categories");
    let products: Vec<NewProduct> = (1..=n)
        .map(|i| NewProduct {
            category_id: cats[((i + 1) % 2) as usize].id,
            name: format!(
                "Item {i} {}",
                if i % 2 == 0 { "Red Kite" } else { "Blue Novel" }
            ),
            description: format!("Item number {i}"),
            price_cents: 100 * i,
            stock,
        })
        .collect();
    store
        .insert_products(&products, 1_000)
        .await
        .expect("products");
    let page = store
        .list_products(
            None,
            storefront_storage::Page {
                number: 1,
                size: 100,
            },
        )
        .await
        .expect("list");
    page.items.iter().map(|p| p.id).collect()
}

/// After a fault under load, in the database at `url`: every order a client
/// saw (`seen`) exists exactly once, no more than `unknown` (checkouts whose
/// outcome the client never learnt) appeared unseen, and stock is conserved:
/// what is left plus what was ordered is `stock`, the stock there was.
pub async fn assert_no_order_lost(url: &str, seen: &[i64], unknown: usize, stock: i64) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let in_db: Vec<i64> = sqlx::query_scalar("SELECT id FROM orders ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    for id in seen {
        assert_eq!(in_db.iter().filter(|x| *x == id).count(), 1, "order {id}");
    }
    assert!(
        in_db.len() >= seen.len() && in_db.len() <= seen.len() + unknown,
        "{} orders in the database, {} seen, {unknown} checkouts with unknown outcome",
        in_db.len(),
        seen.len()
    );
    let left: i64 = sqlx::query_scalar("SELECT SUM(stock)::BIGINT FROM products")
        .fetch_one(&pool)
        .await
        .unwrap();
    let ordered: i64 =
        sqlx::query_scalar("SELECT COALESCE(SUM(quantity), 0)::BIGINT FROM order_items")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(left + ordered, stock, "stock is conserved");
    assert!(ordered >= seen.len() as i64);
    pool.close().await;
}
