//! [`OrderRepo`]: where orders and their lines live, from stage 6 on, when orders
//! have a database of their own (stage 6) or are sharded over several (stage 7).
//! The store of those stages composes it with the users and catalog databases.

use async_trait::async_trait;

use super::{Order, OrderLine, OrderSummary, StoreResult};

/// Orders and their lines (binding tables: an order's lines always live with it).
#[async_trait]
pub trait OrderRepo: Send + Sync + std::fmt::Debug + 'static {
    /// Writes an order and its lines in one transaction and returns it with the id
    /// it was given. `lines` carry the prices paid and the names at the time.
    async fn place(&self, user_id: i64, lines: &[OrderLine], now: i64) -> StoreResult<Order>;
    /// A user's orders, newest first.
    async fn orders(&self, user_id: i64) -> StoreResult<Vec<OrderSummary>>;
    /// One of a user's orders with its lines.
    async fn order(&self, user_id: i64, order_id: i64) -> StoreResult<Option<Order>>;
}
