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
/// use storefront_storage::prelude::*; // the domains' traits: Catalog, Accounts, ...
/// use storefront_storage::SqliteStore;
/// let store = SqliteStore::in_memory().await?;
/// assert_eq!(store.count_products().await?, 0);
/// # Ok::<_, storefront_storage::StoreError>(()) });
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
    ///
    /// What it creates only its owner can read: folders 0700, the database file
    /// 0600, and so its `-wal` and `-shm` files (SQLite gives those the database
    /// file's mode). See [`private_file`].
    pub async fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private_dir(dir).map_err(|e| io_error(e, "create the data folder", dir))?;
        }
        private_file(path).map_err(|e| io_error(e, "create the database file", path))?;
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

fn io_error(e: std::io::Error, what: &str, path: &Path) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        e.kind(),
        format!("cannot {what} {}: {e}", path.display()),
    ))
}

/// Creates `dir` and its missing parents, each only its owner may enter (0700 on
/// Unix). Folders that exist are left as they are.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates the database file at `path`, if it is missing, readable and writable
/// by its owner only (0600 on Unix), before SQLite opens it.
///
/// Why not the process umask (`umask(077)` at start): it is process-wide state,
/// so it would also apply to every other file the process writes (charts, logs,
/// a tool's output) and to nothing when the store is opened by another program
/// or a test; and it is racy to change while other threads create files. Making
/// the one file ourselves is local and explicit, and SQLite creates the `-wal`
/// and `-shm` files with the database file's mode (its Unix VFS copies it), so
/// they follow. A file that exists keeps its mode: an operator may have chosen
/// it (a backup group); one readable by others is logged.
pub fn private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(
                        "{} can be read by other users (mode {:o}): chmod 600 it (and its -wal and -shm files) unless that is meant",
                        path.display(),
                        mode & 0o777
                    );
                }
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
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
