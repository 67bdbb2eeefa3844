//! Monthly archive tables: orders (and their lines) older than the current month
//! move from `orders` to `orders_YYYYMM` (and `order_items_YYYYMM`) in the same
//! shard database, partitions of `orders_archive` (`order_items_archive`). The
//! names come from scalekit-shard's time split (`time = "month"`). Reads go
//! through the `all_orders` / `all_order_items` views, so every process sees an
//! archived order at once, without knowing which months exist.

use std::collections::BTreeSet;

use scalekit_shard::{Engines, Interval, Query, Router, RouterConfig};

use super::{config_error, ShardedOrders};
use crate::{Db, StoreResult};

/// The advisory lock (in the control database) that keeps an archive run and
/// the start of a resharding apart.
pub(crate) const ARCHIVE_LOCK: i64 = 70008;

/// What one archive run moved.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ArchiveReport {
    /// Orders moved to archive tables, over every database.
    pub orders: u64,
    /// The archive tables that received them (`database.table`), sorted.
    pub tables: Vec<String>,
}

/// The router that names monthly tables: `orders` split by month of
/// `created_at`, `order_items` bound to it.
fn month_router() -> StoreResult<Router> {
    RouterConfig::from_toml(
        "databases = [\"shard\"]\n[tables.orders]\ndatabase = \"shard\"\n\
         [tables.orders.tables]\nkey = \"created_at\"\ntime = \"month\"\n\
         [tables.order_items]\nbind = \"orders\"\n",
    )
    .and_then(|c| c.build(&Engines::new()))
    .map_err(|e| config_error(format!("archive routing table: {e}")))
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The first second of month number `m` (months since January 1970).
pub fn month_start(m: i64) -> i64 {
    days_from_civil(1970 + m.div_euclid(12), m.rem_euclid(12) + 1, 1) * 86_400
}

/// The month number of a time (months since January 1970).
pub fn month_of(unix_secs: i64) -> StoreResult<i64> {
    Interval::Month
        .index_of(unix_secs)
        .ok_or_else(|| config_error(format!("time {unix_secs} is outside years 1 to 9999")))
}

/// Creates the archive partitions of `months` in `db` (if missing); returns
/// their names.
pub(crate) async fn ensure_months(db: &Db, months: &BTreeSet<i64>) -> StoreResult<Vec<String>> {
    let router = month_router()?;
    let mut names = Vec::new();
    for &m in months {
        let (from, to) = (month_start(m), month_start(m + 1));
        for (table, parent) in [
            ("orders", "orders_archive"),
            ("order_items", "order_items_archive"),
        ] {
            let target = router
                .locate(table, &Query::key("created_at", from))
                .map_err(|e| config_error(format!("archive table name: {e}")))?;
            // Names are generated from integers (orders_202610): no input text.
            sqlx::query(&format!(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF {parent} FOR VALUES FROM ({from}) TO ({to})",
                target.table
            ))
            .execute(db.primary())
            .await?;
            if table == "orders" {
                names.push(target.table.to_string());
            }
        }
    }
    Ok(names)
}

impl ShardedOrders {
    /// Moves every order placed before the month of `now` (and its lines) into
    /// its monthly archive tables, in each database, one transaction per
    /// database. Refused while a resharding runs.
    pub async fn archive(&self, now: i64) -> StoreResult<ArchiveReport> {
        let cut = month_start(month_of(now)?);
        let mut lock = self.control().primary().acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(ARCHIVE_LOCK)
            .execute(&mut *lock)
            .await?;
        let result = self.archive_locked(cut).await;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(ARCHIVE_LOCK)
            .execute(&mut *lock)
            .await?;
        result
    }

    async fn archive_locked(&self, cut: i64) -> StoreResult<ArchiveReport> {
        let phase: String = sqlx::query_scalar("SELECT phase FROM shard_state")
            .fetch_one(self.control().primary())
            .await?;
        if !matches!(phase.as_str(), "idle" | "done" | "rolled back") {
            return Err(config_error(format!(
                "a resharding is in phase {phase}: archive after it ends"
            )));
        }
        let mut report = ArchiveReport::default();
        for name in self.database_names() {
            let db = self.db(&name)?;
            let times: Vec<i64> =
                sqlx::query_scalar("SELECT DISTINCT created_at FROM orders WHERE created_at < $1")
                    .bind(cut)
                    .fetch_all(db.primary())
                    .await?;
            let mut months = BTreeSet::new();
            for t in times {
                months.insert(month_of(t)?);
            }
            if months.is_empty() {
                continue;
            }
            for t in ensure_months(db, &months).await? {
                report.tables.push(format!("{name}.{t}"));
            }
            let mut tx = db.primary().begin().await?;
            // One snapshot for both statements: an order committed between them
            // would otherwise be moved without its lines (deleting it cascades).
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "WITH moved AS (DELETE FROM order_items WHERE created_at < $1 \
                   RETURNING order_id, product_id, name, unit_price_cents, quantity, created_at) \
                 INSERT INTO order_items_archive SELECT * FROM moved",
            )
            .bind(cut)
            .execute(&mut *tx)
            .await?;
            let moved = sqlx::query(
                "WITH moved AS (DELETE FROM orders WHERE created_at < $1 \
                   RETURNING id, user_id, total_cents, created_at) \
                 INSERT INTO orders_archive SELECT * FROM moved",
            )
            .bind(cut)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            report.orders += moved.rows_affected();
        }
        report.tables.sort();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_starts() {
        assert_eq!(month_start(0), 0);
        assert_eq!(month_start(1), 31 * 86_400);
        // 2026-10-01T00:00:00Z
        let oct = (2026 - 1970) * 12 + 9;
        assert_eq!(month_start(oct), 1_790_812_800);
        assert_eq!(month_of(1_790_812_800).unwrap(), oct);
        assert_eq!(month_of(1_790_812_799).unwrap(), oct - 1);
    }

    #[test]
    fn the_router_names_monthly_tables() {
        let r = month_router().unwrap();
        let t = r
            .locate("order_items", &Query::key("created_at", 1_790_812_800))
            .unwrap();
        assert_eq!(&*t.table, "order_items_202610");
    }
}
