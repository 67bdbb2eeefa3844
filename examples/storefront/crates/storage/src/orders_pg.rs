//! [`PgOrders`]: the [`OrderRepo`] of stage 6, orders and their lines in one
//! PostgreSQL database of their own (`migrations/orders`).

use async_trait::async_trait;

use super::{Db, Order, OrderLine, OrderRepo, OrderSummary, StoreResult};

/// Orders in one database, through a [`Db`] (writes on its primary, reads where
/// [`Db::reader`] sends them).
#[derive(Clone, Debug)]
pub struct PgOrders {
    db: Db,
}

impl PgOrders {
    /// Orders in `db`, whose schema is brought up to date (`migrations/orders`).
    pub async fn new(db: Db) -> StoreResult<Self> {
        sqlx::migrate!("./migrations/orders")
            .run(db.primary())
            .await?;
        Ok(Self { db })
    }

    /// The database the orders live in.
    pub fn db(&self) -> &Db {
        &self.db
    }
}

#[async_trait]
impl OrderRepo for PgOrders {
    async fn place(&self, user_id: i64, lines: &[OrderLine], now: i64) -> StoreResult<Order> {
        let total_cents = OrderLine::total(lines);
        let mut tx = self.db.primary().begin().await?;
        let id: i64 = sqlx::query_scalar(crate::statements::INSERT_ORDER)
            .bind(user_id)
            .bind(total_cents)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        // 5 parameters a line: a chunk of 1,000 stays far under PostgreSQL's 65,535.
        for chunk in lines.chunks(1000) {
            let mut qb =
                sqlx::QueryBuilder::<sqlx::Postgres>::new(crate::statements::INSERT_ORDER_ITEMS);
            qb.push_values(chunk, |mut b, l| {
                b.push_bind(id)
                    .push_bind(l.product_id)
                    .push_bind(l.name.clone())
                    .push_bind(l.unit_price_cents)
                    .push_bind(l.quantity);
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.db.wrote().await;
        Ok(Order {
            id,
            total_cents,
            created_at: now,
            lines: lines.to_vec(),
        })
    }

    async fn orders(&self, user_id: i64) -> StoreResult<Vec<OrderSummary>> {
        let reader = self.db.reader().await?;
        Ok(sqlx::query_as(
            "SELECT id, total_cents, created_at FROM orders WHERE user_id = $1 ORDER BY id DESC",
        )
        .bind(user_id)
        .fetch_all(&*reader)
        .await?)
    }

    async fn order(&self, user_id: i64, order_id: i64) -> StoreResult<Option<Order>> {
        let reader = self.db.reader().await?;
        let head: Option<OrderSummary> = sqlx::query_as(
            "SELECT id, total_cents, created_at FROM orders WHERE id = $1 AND user_id = $2",
        )
        .bind(order_id)
        .bind(user_id)
        .fetch_optional(&*reader)
        .await?;
        let Some(head) = head else { return Ok(None) };
        let lines = sqlx::query_as(
            "SELECT product_id, name, unit_price_cents, quantity FROM order_items \
             WHERE order_id = $1 ORDER BY product_id",
        )
        .bind(order_id)
        .fetch_all(&*reader)
        .await?;
        Ok(Some(Order {
            id: head.id,
            total_cents: head.total_cents,
            created_at: head.created_at,
            lines,
        }))
    }
}
