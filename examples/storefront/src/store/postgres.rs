//! The server backend: PostgreSQL over TCP.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use super::{Backend, StoreResult};

/// The shop's data in PostgreSQL.
#[derive(Clone, Debug)]
pub struct PgStore {
    pub(crate) pool: PgPool,
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
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Write transactions: READ COMMITTED is enough, as stock is decremented with a
    /// conditional `UPDATE` that PostgreSQL re-checks after waiting for the row lock.
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }
}

super::sql::impl_store!(PgStore, Postgres);
