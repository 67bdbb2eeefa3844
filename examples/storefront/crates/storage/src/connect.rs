//! Opening a PostgreSQL database at start: fast, and with a message that says
//! which database and why.
//!
//! sqlx's pool takes a refused connection for a server still starting up and tries
//! again until its acquire timeout (30 s by default), then fails with "pool timed
//! out": neither the address nor the reason. So every database a stage opens
//! (stages 2 and 5 to 7: the primary, the domain databases, the shards) is first
//! reached with one plain connection, within [`CONNECT_TIMEOUT`]; a refusal, a
//! wrong host, a missing database or a rejected password fail the start at once
//! as [`StoreError::Unreachable`], naming `host:port/database` (never the user or
//! password) and the reason. Replicas are not checked: they are connected lazily,
//! and one that is down at start counts as down until it answers.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use super::{StoreError, StoreResult};

/// How long reaching one database may take at start (each of the checking
/// connection and the pool's first connection), before the start fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

/// Where a database is, for messages: `host:port/database`, without the user
/// and password.
///
/// ```
/// use std::str::FromStr;
/// use sqlx::postgres::PgConnectOptions;
/// use storefront_storage::db_address;
///
/// let options = PgConnectOptions::from_str("postgres://shop:secret@db.internal:6432/orders")?;
/// assert_eq!(db_address(&options), "db.internal:6432/orders");
/// # Ok::<(), sqlx::Error>(())
/// ```
pub fn db_address(options: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("postgres")
    )
}

fn unreachable(options: &PgConnectOptions, source: sqlx::Error) -> StoreError {
    StoreError::Unreachable {
        address: db_address(options),
        source,
    }
}

fn timed_out(what: &str) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} within {} s", CONNECT_TIMEOUT.as_secs()),
    ))
}

/// A pool of `pool` over `options`, once one connection to the database has
/// been made within [`CONNECT_TIMEOUT`]; else [`StoreError::Unreachable`] with the
/// address and the reason.
pub async fn connect_pool(options: &PgConnectOptions, pool: PgPoolOptions) -> StoreResult<PgPool> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(Ok(conn)) => {
            // A polite goodbye if it is quick; dropping it closes the socket anyway.
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.close()).await;
        }
        Ok(Err(e)) => return Err(unreachable(options, e)),
        Err(_) => return Err(unreachable(options, timed_out("no answer"))),
    }
    // Reachable a moment ago: the pool's first connection should follow at once,
    // and is bounded all the same (by this call only: the pool's own acquire
    // timeout, for requests later, is left as `pool` says).
    match tokio::time::timeout(CONNECT_TIMEOUT, pool.connect_with(options.clone())).await {
        Ok(Ok(pool)) => Ok(pool),
        Ok(Err(e)) => Err(unreachable(options, e)),
        Err(_) => Err(unreachable(options, timed_out("no pool connection"))),
    }
}
