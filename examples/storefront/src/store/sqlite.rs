//! The embedded backend: SQLite in WAL mode, one file under the data dir (or in
//! memory for tests and demos).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::{Backend, StoreResult};

/// The shop's data in SQLite.
///
/// ```
/// # tokio_test_block(async {
/// use storefront::store::{SqliteStore, Store};
/// let store = SqliteStore::in_memory().await?;
/// assert_eq!(store.count_products().await?, 0);
/// # Ok::<_, storefront::store::StoreError>(()) });
/// # fn tokio_test_block<F: std::future::Future<Output = Result<(), E>>, E: std::fmt::Debug>(f: F) {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f).unwrap();
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
}

impl SqliteStore {
    pub(crate) const BACKEND: Backend = Backend::Sqlite;

    /// Opens (creating if needed) the database file at `path` and migrates it.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        Self::migrated(pool).await
    }

    /// A private in-memory database (one connection), migrated.
    pub async fn in_memory() -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Self::migrated(pool).await
    }

    async fn migrated(pool: SqlitePool) -> StoreResult<Self> {
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Write transactions take SQLite's write lock up front, so two of them never
    /// deadlock upgrading from a read (the loser would fail with SQLITE_BUSY).
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    fn write_pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn catalog_reader(&self) -> LocalReader<'_> {
        LocalReader(&self.pool)
    }

    async fn session_reader(&self) -> StoreResult<LocalReader<'_>> {
        Ok(LocalReader(&self.pool))
    }

    async fn wrote(&self) {}
}

/// SQLite reads its one pool: the same shape as PostgreSQL's [`Reader`](super::Reader).
struct LocalReader<'a>(&'a SqlitePool);

impl LocalReader<'_> {
    fn check<T>(&self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        result
    }
}

impl std::ops::Deref for LocalReader<'_> {
    type Target = SqlitePool;
    fn deref(&self) -> &SqlitePool {
        self.0
    }
}

super::sql::impl_store!(SqliteStore, Sqlite);
