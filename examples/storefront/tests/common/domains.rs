//! Three databases of a test's own on PostgreSQL (users, catalog, orders) for
//! the business split's tests (`domains.rs`, `domains_checkout.rs`), dropped
//! with the value.

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use storefront_stage::config::DomainsConfig;
use storefront_storage::{
    DomainStore, Order, OrderLine, OrderRepo, OrderSummary, Store, StoreError, StoreResult,
};

/// Three databases of a test's own (users, catalog, orders), dropped with this.
pub struct Databases {
    pub server: String,
    pub config: DomainsConfig,
    pub names: Vec<String>,
}

impl Databases {
    /// Fresh databases, or `None` (test skipped) without a server URL; under `CI`
    /// a missing variable or server fails the test.
    pub async fn new(test: &str) -> Option<Self> {
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
    pub async fn pool(&self, domain: &str) -> PgPool {
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
    pub async fn tables(&self, domain: &str) -> Vec<String> {
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
pub fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let query = path.split_once('?').map(|(_, q)| q);
    match query {
        Some(q) => format!("{scheme}://{authority}/{database}?{q}"),
        None => format!("{scheme}://{authority}/{database}"),
    }
}

/// A [`DomainStore`] over fresh databases, or `None` (skipped).
pub async fn store(test: &str) -> Option<(Arc<dyn Store>, Databases)> {
    let dbs = Databases::new(test).await?;
    let store = DomainStore::connect(&dbs.config)
        .await
        .expect("connect and migrate");
    Some((Arc::new(store), dbs))
}

/// An order repository whose writes always fail (reads find nothing).
#[derive(Debug)]
pub struct FailingOrders;

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
