//! Stage 7 on the ops page: the rows in each shard database and the resharding
//! state, as the control database records them.
//!
//! A background task ([`watch`]) reads them every [`INTERVAL`] (each read bounded
//! by [`READ_TIMEOUT`]); the snapshot, the page and `/metrics` show the last
//! reading, so a page view or a scrape costs no query. In `/ops/data.json` they
//! are under `shards` ([`ShardsView`]): `shards.rows` is a list of
//! `{database, in_use, orders, order_items}`, `shards.phase` the resharding phase.
//! Every process reads the same databases, so the gateway shows one instance's
//! reading, not a sum. The reading is the [`ShardsView`] part
//! ([`Ops::add_part`]): it says itself how the page and `/metrics` show it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::RwLock;
pub use storefront_contract::ops::shards::{ShardRows, ShardsView};

use super::Ops;

/// How often the shard figures are read.
pub const INTERVAL: Duration = Duration::from_millis(1500);
/// The longest one reading may take (it is given up and tried at the next tick).
pub const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// The last reading, shared by the task that makes it and the recorder.
#[derive(Debug, Default)]
struct Latest(RwLock<Option<ShardsView>>);

/// Shows the shard figures `read` returns on `ops` from now on: reads them at
/// once and then every [`INTERVAL`] until `ops` is dropped; a reading that fails
/// or takes over [`READ_TIMEOUT`] keeps the last figures with the error. Returns
/// the task.
pub fn watch<F, Fut>(ops: &Arc<Ops>, read: F) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<ShardsView, String>> + Send,
{
    let latest = Arc::new(Latest::default());
    let shown = Arc::clone(&latest);
    ops.add_part(move || shown.0.read().clone());
    let ops: Weak<Ops> = Arc::downgrade(ops);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if ops.strong_count() == 0 {
                break;
            }
            let result = match tokio::time::timeout(READ_TIMEOUT, read()).await {
                Ok(Ok(view)) => Ok(view),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(format!("no answer within {READ_TIMEOUT:?}")),
            };
            let mut last = latest.0.write();
            match result {
                Ok(view) => *last = Some(view),
                Err(e) => {
                    tracing::debug!("cannot read the shard figures: {e}");
                    let mut view = last.take().unwrap_or_default();
                    view.error = Some(e);
                    *last = Some(view);
                }
            }
        }
    })
}
