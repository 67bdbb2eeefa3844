//! The admin's queries over every order ([`OrderAnalytics`]): across the shard
//! databases by scatter-gather ([`ShardedOrders`]), or in one database with
//! plain SQL ([`PlainAnalytics`]). Both give the same answers on the same rows
//! (tests/sharding.rs checks it).
//!
//! Each shard database is asked only for the slots it serves for reads (by the
//! routing table), so the copies a resharding leaves in two databases for a
//! while are counted once.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use async_trait::async_trait;
use scalekit_shard::{
    merge_groups, merge_order_by, per_shard_limit, Aggregate, MergeAggregate, MergeOverflow,
    ShardExecutor, Target,
};
use serde::Serialize;

use super::ShardedOrders;
use crate::{Db, StoreError, StoreResult};

/// An order as the admin lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AdminOrder {
    /// Its id.
    pub id: i64,
    /// Whose.
    pub user_id: i64,
    /// What was paid, in cents.
    pub total_cents: i64,
    /// When (Unix seconds).
    pub created_at: i64,
}

/// Orders and revenue of one day (UTC).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DayRevenue {
    /// Days since 1970-01-01.
    pub day: i64,
    /// Orders placed that day.
    pub orders: u64,
    /// Their totals, in cents.
    pub revenue_cents: i64,
}

/// What sold of one product.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProductSales {
    /// The product's id.
    pub product_id: i64,
    /// Its name in the orders (the least, byte-wise, if it changed).
    pub name: String,
    /// Units sold.
    pub units: i64,
    /// Revenue, in cents.
    pub revenue_cents: i64,
}

/// How to rank products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopBy {
    /// Units sold, most first (then product id).
    Units,
    /// Revenue, most first (then product id).
    Revenue,
}

/// The admin's queries over every order.
#[async_trait]
pub trait OrderAnalytics: Send + Sync {
    /// Orders newest first (`created_at DESC, id DESC`), `limit` after skipping
    /// `offset`.
    async fn latest_orders(&self, offset: u64, limit: u64) -> StoreResult<Vec<AdminOrder>>;
    /// How many orders there are.
    async fn count_orders(&self) -> StoreResult<u64>;
    /// Orders and revenue per day, for orders placed at or after `since`, by day.
    async fn revenue_per_day(&self, since: i64) -> StoreResult<Vec<DayRevenue>>;
    /// The `limit` best-selling products.
    async fn top_products(&self, by: TopBy, limit: u64) -> StoreResult<Vec<ProductSales>>;
}

fn overflow(e: MergeOverflow) -> StoreError {
    super::config_error(format!("merging shard answers: {e}"))
}

fn to_i64(v: i128) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| overflow(MergeOverflow::Sum))
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Ranks merged product totals the way the SQL does.
fn rank(mut rows: Vec<ProductSales>, by: TopBy, limit: u64) -> Vec<ProductSales> {
    rows.sort_by(|a, b| {
        let key = |p: &ProductSales| match by {
            TopBy::Units => p.units,
            TopBy::Revenue => p.revenue_cents,
        };
        key(b).cmp(&key(a)).then(a.product_id.cmp(&b.product_id))
    });
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    rows
}

fn top_sql(by: TopBy) -> &'static str {
    match by {
        TopBy::Units => "units DESC, product_id",
        TopBy::Revenue => "revenue DESC, product_id",
    }
}

/// [`OrderAnalytics`] with plain SQL over one database's `orders` and
/// `order_items` tables (the single-database reference; the stage 2 and
/// stage 6 schemas have both).
#[derive(Clone, Debug)]
pub struct PlainAnalytics {
    db: Db,
}

impl PlainAnalytics {
    /// Over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

#[async_trait]
impl OrderAnalytics for PlainAnalytics {
    async fn latest_orders(&self, offset: u64, limit: u64) -> StoreResult<Vec<AdminOrder>> {
        Ok(sqlx::query_as(
            "SELECT id, user_id, total_cents, created_at FROM orders \
             ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2",
        )
        .bind(clamp(limit))
        .bind(clamp(offset))
        .fetch_all(&*self.db.reader().await?)
        .await?)
    }

    async fn count_orders(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
            .fetch_one(&*self.db.reader().await?)
            .await?;
        Ok(n.max(0) as u64)
    }

    async fn revenue_per_day(&self, since: i64) -> StoreResult<Vec<DayRevenue>> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT floor(created_at / 86400.0)::int8 AS day, count(*), sum(total_cents)::int8 \
             FROM orders WHERE created_at >= $1 GROUP BY day ORDER BY day",
        )
        .bind(since)
        .fetch_all(&*self.db.reader().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(day, n, sum)| DayRevenue {
                day,
                orders: n.max(0) as u64,
                revenue_cents: sum,
            })
            .collect())
    }

    async fn top_products(&self, by: TopBy, limit: u64) -> StoreResult<Vec<ProductSales>> {
        let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(&format!(
            "SELECT product_id, min(name COLLATE \"C\"), sum(quantity)::int8 AS units, \
                    sum(unit_price_cents * quantity)::int8 AS revenue \
             FROM order_items GROUP BY product_id ORDER BY {} LIMIT $1",
            top_sql(by)
        ))
        .bind(clamp(limit))
        .fetch_all(&*self.db.reader().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(product_id, name, units, revenue_cents)| ProductSales {
                product_id,
                name,
                units,
                revenue_cents,
            })
            .collect())
    }
}

/// What one shard database is asked.
#[derive(Debug)]
enum Ask {
    Latest { limit: i64 },
    Count,
    Revenue { since: i64 },
    Top,
}

/// What one shard database answers.
#[derive(Debug)]
enum Answer {
    Latest(Vec<AdminOrder>),
    Count(u64),
    Revenue(Vec<(i64, Aggregate)>),
    Top(Vec<(i64, ProductTotals)>),
}

/// A product's partial totals from one shard.
#[derive(Clone, Debug)]
struct ProductTotals {
    name: String,
    units: i128,
    revenue: i128,
}

impl MergeAggregate for ProductTotals {
    fn merge_from(&mut self, other: Self) -> Result<(), MergeOverflow> {
        self.units = self
            .units
            .checked_add(other.units)
            .ok_or(MergeOverflow::Sum)?;
        self.revenue = self
            .revenue
            .checked_add(other.revenue)
            .ok_or(MergeOverflow::Sum)?;
        if other.name < self.name {
            self.name = other.name;
        }
        Ok(())
    }
}

/// Runs an [`Ask`] on one shard database, over the slots it serves for reads.
struct Executor {
    orders: ShardedOrders,
    slots: BTreeMap<String, Vec<i64>>,
}

#[async_trait]
impl ShardExecutor for Executor {
    type Request = Ask;
    type Response = Answer;
    type Error = StoreError;

    async fn execute(&self, target: &Target, ask: &Ask) -> Result<Answer, StoreError> {
        let slots = self
            .slots
            .get(&*target.database)
            .cloned()
            .unwrap_or_default();
        let db = self.orders.db(&target.database)?;
        let pool = db.reader().await?;
        Ok(match ask {
            Ask::Latest { limit } => Answer::Latest(
                sqlx::query_as(
                    "SELECT id, user_id, total_cents, created_at FROM all_orders \
                     WHERE (id & 15) = ANY($1) ORDER BY created_at DESC, id DESC LIMIT $2",
                )
                .bind(&slots)
                .bind(*limit)
                .fetch_all(&*pool)
                .await?,
            ),
            Ask::Count => {
                let n: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM all_orders WHERE (id & 15) = ANY($1)")
                        .bind(&slots)
                        .fetch_one(&*pool)
                        .await?;
                Answer::Count(n.max(0) as u64)
            }
            Ask::Revenue { since } => {
                let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
                    "SELECT floor(created_at / 86400.0)::int8 AS day, count(*), sum(total_cents)::int8 \
                     FROM all_orders WHERE (id & 15) = ANY($1) AND created_at >= $2 GROUP BY day",
                )
                .bind(&slots)
                .bind(*since)
                .fetch_all(&*pool)
                .await?;
                Answer::Revenue(
                    rows.into_iter()
                        .map(|(day, n, sum)| {
                            (
                                day,
                                Aggregate {
                                    count: n.max(0) as u64,
                                    sum: i128::from(sum),
                                    ..Aggregate::default()
                                },
                            )
                        })
                        .collect(),
                )
            }
            Ask::Top => {
                let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
                    "SELECT product_id, min(name COLLATE \"C\"), sum(quantity)::int8, \
                            sum(unit_price_cents * quantity)::int8 \
                     FROM all_order_items WHERE (order_id & 15) = ANY($1) GROUP BY product_id",
                )
                .bind(&slots)
                .fetch_all(&*pool)
                .await?;
                Answer::Top(
                    rows.into_iter()
                        .map(|(id, name, units, revenue)| {
                            (
                                id,
                                ProductTotals {
                                    name,
                                    units: i128::from(units),
                                    revenue: i128::from(revenue),
                                },
                            )
                        })
                        .collect(),
                )
            }
        })
    }
}

impl ShardedOrders {
    /// Runs `ask` on every database that serves a slot for reads.
    async fn scatter(&self, ask: Ask) -> StoreResult<Vec<Answer>> {
        let read = self.read_routing().await?;
        let mut slots: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (slot, db) in read.iter().enumerate() {
            slots.entry(db.clone()).or_default().push(slot as i64);
        }
        let targets: Vec<Target> = slots
            .keys()
            .map(|db| Target::new(db.as_str(), "orders"))
            .collect();
        let executor = Executor {
            orders: self.clone(),
            slots,
        };
        let gathered = self
            .gather()
            .run(&executor, &targets, &ask)
            .await
            .map_err(|e| match e.failure {
                scalekit_shard::ShardFailure::Error(inner) => inner,
                other => super::config_error(format!("shard {}: {other}", e.target)),
            })?;
        Ok(gathered.responses.into_iter().map(|(_, a)| a).collect())
    }
}

#[async_trait]
impl OrderAnalytics for ShardedOrders {
    async fn latest_orders(&self, offset: u64, limit: u64) -> StoreResult<Vec<AdminOrder>> {
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let per_shard = i64::try_from(per_shard_limit(offset, limit)).unwrap_or(i64::MAX);
        let shards: Vec<Vec<AdminOrder>> = self
            .scatter(Ask::Latest { limit: per_shard })
            .await?
            .into_iter()
            .filter_map(|a| match a {
                Answer::Latest(rows) => Some(rows),
                _ => None,
            })
            .collect();
        let newest_first = |a: &AdminOrder, b: &AdminOrder| -> Ordering {
            (b.created_at, b.id).cmp(&(a.created_at, a.id))
        };
        Ok(merge_order_by(shards, newest_first, offset, limit).collect())
    }

    async fn count_orders(&self) -> StoreResult<u64> {
        let mut total = 0u64;
        for a in self.scatter(Ask::Count).await? {
            if let Answer::Count(n) = a {
                total.merge_from(n).map_err(overflow)?;
            }
        }
        Ok(total)
    }

    async fn revenue_per_day(&self, since: i64) -> StoreResult<Vec<DayRevenue>> {
        let shards = self
            .scatter(Ask::Revenue { since })
            .await?
            .into_iter()
            .filter_map(|a| match a {
                Answer::Revenue(rows) => Some(rows),
                _ => None,
            });
        merge_groups(shards)
            .map_err(overflow)?
            .into_iter()
            .map(|(day, agg)| {
                Ok(DayRevenue {
                    day,
                    orders: agg.count,
                    revenue_cents: to_i64(agg.sum)?,
                })
            })
            .collect()
    }

    async fn top_products(&self, by: TopBy, limit: u64) -> StoreResult<Vec<ProductSales>> {
        let shards = self
            .scatter(Ask::Top)
            .await?
            .into_iter()
            .filter_map(|a| match a {
                Answer::Top(rows) => Some(rows),
                _ => None,
            });
        let rows = merge_groups(shards)
            .map_err(overflow)?
            .into_iter()
            .map(|(product_id, t)| {
                Ok(ProductSales {
                    product_id,
                    name: t.name,
                    units: to_i64(t.units)?,
                    revenue_cents: to_i64(t.revenue)?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(rank(rows, by, limit))
    }
}
