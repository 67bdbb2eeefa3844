//! What the ops page shows of the shards (stage 7): the layout, the resharding
//! state and the rows in each database.

use std::time::{SystemTime, UNIX_EPOCH};

use storefront_contract::ops::shards::{ShardRows, ShardsView};

use super::ShardedOrders;
use crate::StoreResult;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl ShardedOrders {
    /// Reads the layout, the resharding state and the rows of every database (one
    /// query per database: two `count(*)`s).
    pub async fn view(&self) -> StoreResult<ShardsView> {
        let orders = self;
        let state = orders.state().await?;
        let databases = state.databases;
        let mut rows = Vec::new();
        for name in orders.database_names() {
            let db = orders.db(&name)?;
            let (n, items): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM all_orders), (SELECT count(*) FROM all_order_items)",
            )
            .fetch_one(&*db.reader().await?)
            .await?;
            rows.push(ShardRows {
                in_use: databases.contains(&name),
                database: name,
                orders: n,
                order_items: items,
            });
        }
        Ok(ShardsView {
            epoch: state.epoch,
            phase: state.phase,
            databases,
            target_databases: state.target_databases,
            moving_slots: state.moving_slots,
            rows_copied: state.rows_copied,
            rows,
            read_at_ms: unix_ms(),
            error: None,
        })
    }
}
