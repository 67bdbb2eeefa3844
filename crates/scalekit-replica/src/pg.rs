//! PostgreSQL helpers (feature `postgres`): WAL positions as [`Position`]s,
//! replica lag, and a [`HealthCheck`] for `sqlx::PgPool` endpoints.
//!
//! Read-your-writes with streaming replication:
//!
//! 1. after a write commits, read [`current_wal_lsn`] on the primary: that is
//!    the write's token;
//! 2. replicas report [`last_replay_lsn`] (the [`PgCheck`] health check does,
//!    with the lag, through [`ReplicaSet::check_health`](crate::ReplicaSet::check_health));
//! 3. a read with the token goes to a replica whose replay position has reached
//!    it ([`ReplicaSet::select_at`](crate::ReplicaSet::select_at)), or waits a
//!    bounded time for one, or falls back to the primary.
//!
//! sqlx is used because the storefront's data layer is sqlx (SQLite by default,
//! PostgreSQL from stage 2), so the helpers take the pool or connection it
//! already holds. Only `sqlx::query` is used: no macros, no offline data.
//!
//! ```no_run
//! use scalekit_replica::{pg, Member, ReplicaSet};
//! use sqlx::PgPool;
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let primary = PgPool::connect("postgres://postgres@127.0.0.1:5434/app").await?;
//! let replica = PgPool::connect("postgres://postgres@127.0.0.1:5433/app").await?;
//! let set = ReplicaSet::builder()
//!     .max_lag(Duration::from_secs(1))
//!     .member(Member::primary("primary", primary))
//!     .member(Member::replica("replica", replica))
//!     .build()?;
//!
//! // A write, and its token.
//! let w = set.select_primary()?;
//! sqlx::query("INSERT INTO carts (user_id) VALUES (1)").execute(&*w).await?;
//! let token = pg::current_wal_lsn(&*w).await?;
//! w.success();
//!
//! // Refresh positions and lag (run this on a timer), then read your write.
//! set.check_health(&pg::PgCheck, Duration::from_secs(1)).await;
//! let r = set.select_at_within(token, Duration::from_millis(50)).await?;
//! let n: i64 = sqlx::query_scalar("SELECT count(*) FROM carts").fetch_one(&*r).await?;
//! r.success();
//! # let _ = n; Ok(()) }
//! ```

use crate::health::{Health, HealthCheck};
use crate::member::Position;
use async_trait::async_trait;
use sqlx::{PgExecutor, PgPool, Row};
use std::error::Error;
use std::fmt;
use std::time::Duration;

/// A WAL position that is not of PostgreSQL's `X/Y` hexadecimal form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LsnError {
    text: String,
}

impl fmt::Display for LsnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a PostgreSQL WAL position (expected two hexadecimal numbers of at most 8 digits, as `16/B374D848`)",
            self.text
        )
    }
}

impl Error for LsnError {}

/// A PostgreSQL error, or a WAL position the server sent that could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum PgError {
    /// The query failed.
    Query(sqlx::Error),
    /// The server answered with something that is not a WAL position.
    Lsn(LsnError),
    /// The server is a replica where a primary was expected, or the reverse.
    WrongRole(&'static str),
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgError::Query(e) => write!(f, "PostgreSQL query failed: {e}"),
            PgError::Lsn(e) => write!(f, "PostgreSQL answered an unreadable WAL position: {e}"),
            PgError::WrongRole(what) => f.write_str(what),
        }
    }
}

impl Error for PgError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            PgError::Query(e) => Some(e),
            PgError::Lsn(e) => Some(e),
            PgError::WrongRole(_) => None,
        }
    }
}

impl From<sqlx::Error> for PgError {
    fn from(e: sqlx::Error) -> Self {
        PgError::Query(e)
    }
}

/// Reads a WAL position as PostgreSQL prints it (`16/B374D848`).
///
/// ```
/// use scalekit_replica::{pg, Position};
///
/// assert_eq!(pg::parse_lsn("16/B374D848")?, Position::new(0x16_B374_D848));
/// assert_eq!(pg::format_lsn(Position::new(0x16_B374_D848)), "16/B374D848");
/// assert!(pg::parse_lsn("16-B374D848").is_err());
/// # Ok::<(), pg::LsnError>(())
/// ```
pub fn parse_lsn(text: &str) -> Result<Position, LsnError> {
    let err = || LsnError {
        text: text.to_owned(),
    };
    let (hi, lo) = text.trim().split_once('/').ok_or_else(err)?;
    let part = |s: &str| {
        if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        u32::from_str_radix(s, 16).map_err(|_| err())
    };
    Ok(Position::new(
        (u64::from(part(hi)?) << 32) | u64::from(part(lo)?),
    ))
}

/// Prints a position as PostgreSQL does.
pub fn format_lsn(position: Position) -> String {
    let v = position.get();
    format!("{:X}/{:X}", v >> 32, v & 0xFFFF_FFFF)
}

fn lsn(text: Option<String>) -> Result<Option<Position>, PgError> {
    text.map(|t| parse_lsn(&t).map_err(PgError::Lsn))
        .transpose()
}

/// The primary's current WAL write position: after a commit, the token of
/// that write. Fails with [`PgError::WrongRole`] on a replica.
pub async fn current_wal_lsn<'e>(executor: impl PgExecutor<'e>) -> Result<Position, PgError> {
    let row = sqlx::query(
        "SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END",
    )
    .fetch_one(executor)
    .await?;
    lsn(row.try_get(0)?)?.ok_or(PgError::WrongRole(
        "pg_current_wal_lsn() asked of a replica (it is in recovery)",
    ))
}

/// The WAL position a replica has replayed (`pg_last_wal_replay_lsn()`);
/// `None` on a primary.
///
/// A primary that went through crash recovery keeps reporting the last
/// position that recovery replayed; this asks `pg_is_in_recovery()` first so
/// such a primary still answers `None`.
pub async fn last_replay_lsn<'e>(
    executor: impl PgExecutor<'e>,
) -> Result<Option<Position>, PgError> {
    let row =
        sqlx::query("SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text END")
            .fetch_one(executor)
            .await?;
    lsn(row.try_get(0)?)
}

/// What one query tells about a server: its role, applied position and lag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerState {
    /// True on a replica (in recovery).
    pub in_recovery: bool,
    /// The replay position on a replica, the write position on a primary.
    pub applied: Position,
    /// On a replica, the time since the last replayed transaction committed on
    /// the primary, unless it has replayed all it received and its WAL receiver
    /// is running (then zero). A replica whose receiver has stopped has replayed
    /// all it received while the primary moves on: it is counted as lagging by
    /// the age of its last replayed transaction, not as caught up. Zero on a
    /// primary.
    pub lag: Duration,
}

/// Reads role, position and lag in one round trip.
pub async fn server_state<'e>(executor: impl PgExecutor<'e>) -> Result<ServerState, PgError> {
    let row = sqlx::query(
        "SELECT pg_is_in_recovery(), \
                (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text, \
                (CASE WHEN NOT pg_is_in_recovery() THEN 0 \
                      WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() \
                           AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver) THEN 0 \
                      ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END)::float8",
    )
    .fetch_one(executor)
    .await?;
    let in_recovery: bool = row.try_get(0)?;
    let applied = lsn(row.try_get(1)?)?.unwrap_or_default();
    let lag: f64 = row.try_get(2)?;
    Ok(ServerState {
        in_recovery,
        applied,
        lag: Duration::try_from_secs_f64(lag.max(0.0)).unwrap_or(Duration::MAX),
    })
}

/// A health check for `PgPool` endpoints: up if the server answers; reports
/// the applied position and, on replicas, the lag.
#[derive(Clone, Copy, Debug, Default)]
pub struct PgCheck;

#[async_trait]
impl HealthCheck<PgPool> for PgCheck {
    async fn check(&self, pool: &PgPool) -> Health {
        match server_state(pool).await {
            Ok(s) => Health::up().applied(s.applied).lag(s.lag),
            Err(_) => Health::down(),
        }
    }
}
