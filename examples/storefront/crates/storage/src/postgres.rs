//! The server backend: PostgreSQL over TCP, through a [`Db`]: reads to the
//! replicas it has (stage 5), writes to the primary.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{PgPool, Postgres, Transaction};

use super::{Backend, Db, Reader, StoreResult};

/// The shop's data in PostgreSQL.
#[derive(Clone, Debug)]
pub struct PgStore {
    pub(crate) db: Db,
}

impl PgStore {
    pub(crate) const BACKEND: Backend = Backend::Postgres;

    /// Connects to `url` (`postgres://user@host:port/db`) and migrates the schema.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(PgConnectOptions::from_str(url)?, 16).await
    }

    /// Connects with `options` and a pool of at most `max_connections`, and migrates.
    /// Tests give each run its own schema with `options.options([("search_path", ..)])`.
    pub async fn connect_with(
        options: PgConnectOptions,
        max_connections: u32,
    ) -> StoreResult<Self> {
        Self::open(Db::connect_with(options, None, max_connections).await?).await
    }

    /// The store of database `db` (with its replicas, if it has any), its schema
    /// migrated on the primary. With replicas, waits (at most 10 s) until they
    /// have replayed the migration, so that the first reads find the tables.
    pub async fn open(db: Db) -> StoreResult<Self> {
        sqlx::migrate!("./migrations/postgres")
            .run(db.primary())
            .await?;
        if db.has_replicas() && !db.wait_for_replicas(Duration::from_secs(10)).await? {
            tracing::warn!(
                "the replicas have not replayed the schema after 10 s: reads go to the primary until they catch up"
            );
        }
        Ok(Self { db })
    }

    /// The database: its primary and replicas.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Write transactions: READ COMMITTED is enough, as stock is decremented with a
    /// conditional `UPDATE` that PostgreSQL re-checks after waiting for the row lock.
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.db.primary().begin().await
    }

    fn write_pool(&self) -> &PgPool {
        self.db.primary()
    }

    fn catalog_reader(&self) -> Reader {
        self.db.catalog_reader()
    }

    async fn session_reader(&self) -> StoreResult<Reader> {
        self.db.reader().await
    }

    async fn wrote(&self) {
        self.db.wrote().await;
    }
}

super::sql::impl_store!(PgStore, Postgres);
