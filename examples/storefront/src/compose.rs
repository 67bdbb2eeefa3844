//! The composition root: what a stage file asks for, built from the parts.

use std::sync::Arc;

use storefront_ops::{Ops, OpsAccess, StageRef};
use storefront_storage::sharded::ShardedOrders;

use crate::config::StageConfig;

/// The ops recorder of a stage file: its number, title and topology, and who
/// may read its routes (`[ops]`, with the token from the environment: see
/// [`storefront_ops::access`]).
pub fn ops_for(config: &StageConfig) -> Ops {
    let ops = Ops::new(
        StageRef {
            number: config.stage.number,
            title: config.stage.title.clone(),
        },
        crate::topology::of(config),
    );
    ops.set_access(OpsAccess::from_config(config.ops.as_ref()));
    ops
}

/// Shows `orders`' layout, resharding state and rows on `ops` from now on (stage
/// 7): see [`storefront_ops::shards::watch`].
pub fn watch_shards(ops: &Arc<Ops>, orders: ShardedOrders) -> tokio::task::JoinHandle<()> {
    storefront_ops::shards::watch(ops, move || {
        let orders = orders.clone();
        async move { orders.view().await.map_err(|e| e.to_string()) }
    })
}
