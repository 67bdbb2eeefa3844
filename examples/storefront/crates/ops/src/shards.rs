//! Stage 7 on the ops page: the rows in each shard database and the resharding
//! state, as the control database records them.
//!
//! A background task ([`watch`]) reads them every [`INTERVAL`] (each read bounded
//! by [`READ_TIMEOUT`]); the snapshot, the page and `/metrics` show the last
//! reading, so a page view or a scrape costs no query. In `/ops/data.json` they
//! are under `shards` ([`ShardsView`]): `shards.rows` is a list of
//! `{database, in_use, orders, order_items}`, `shards.phase` the resharding phase.
//! Every process reads the same databases, so the gateway shows one instance's
//! reading, not a sum.

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
    ops.set_shards(Arc::new(move || shown.0.read().clone()));
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

/// One row of the ops page's shard table.
pub(crate) struct Row {
    pub(crate) database: String,
    pub(crate) state: &'static str,
    pub(crate) orders: i64,
    pub(crate) order_items: i64,
}

/// The ops page's shard table.
pub(crate) fn rows(view: &ShardsView) -> Vec<Row> {
    view.rows
        .iter()
        .map(|r| Row {
            database: r.database.clone(),
            state: if r.in_use { "in use" } else { "spare" },
            orders: r.orders,
            order_items: r.order_items,
        })
        .collect()
}

/// `/metrics` lines for the shards (OpenMetrics text).
pub(crate) fn render_metrics(out: &mut String, view: &ShardsView) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "# HELP storefront_shard_orders Orders (current and archived) in a shard database.\n\
         # TYPE storefront_shard_orders gauge"
    );
    for r in &view.rows {
        let _ = writeln!(
            out,
            "storefront_shard_orders{{database=\"{}\"}} {}",
            label(&r.database),
            r.orders
        );
    }
    let _ = writeln!(
        out,
        "# HELP storefront_shard_order_items Order lines in a shard database.\n\
         # TYPE storefront_shard_order_items gauge"
    );
    for r in &view.rows {
        let _ = writeln!(
            out,
            "storefront_shard_order_items{{database=\"{}\"}} {}",
            label(&r.database),
            r.order_items
        );
    }
    let _ = writeln!(
        out,
        "# HELP storefront_reshard_phase The resharding phase (1 for the current one).\n\
         # TYPE storefront_reshard_phase gauge\n\
         storefront_reshard_phase{{phase=\"{}\"}} 1\n\
         # HELP storefront_reshard_rows_copied Orders the resharding copied so far.\n\
         # TYPE storefront_reshard_rows_copied gauge\n\
         storefront_reshard_rows_copied {}\n\
         # HELP storefront_reshard_moving_slots Slots the resharding moves.\n\
         # TYPE storefront_reshard_moving_slots gauge\n\
         storefront_reshard_moving_slots {}\n\
         # HELP storefront_shard_epoch The routing table's version.\n\
         # TYPE storefront_shard_epoch gauge\n\
         storefront_shard_epoch {}",
        label(&view.phase),
        view.rows_copied,
        view.moving_slots.len(),
        view.epoch
    );
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> ShardsView {
        ShardsView {
            epoch: 1,
            phase: "dual write".into(),
            databases: vec!["o0".into(), "o1".into()],
            target_databases: vec!["o0".into(), "o2".into(), "o1".into(), "o3".into()],
            moving_slots: vec![2, 3],
            rows_copied: 7,
            rows: vec![
                ShardRows {
                    database: "o0".into(),
                    in_use: true,
                    orders: 5,
                    order_items: 9,
                },
                ShardRows {
                    database: "o2".into(),
                    in_use: false,
                    orders: 0,
                    order_items: 0,
                },
            ],
            read_at_ms: 1,
            error: None,
        }
    }

    #[test]
    fn json_path_and_metrics() {
        let v = view();
        assert!(v.moving());
        let json = serde_json::to_value(&v).unwrap_or_default();
        assert_eq!(json["rows"][0]["database"], "o0");
        assert_eq!(json["rows"][0]["orders"], 5);
        assert!(json.get("error").is_none());
        let back: ShardsView = serde_json::from_value(json).unwrap_or_default();
        assert_eq!(back, v);
        let mut text = String::new();
        render_metrics(&mut text, &v);
        assert!(text.contains("storefront_shard_orders{database=\"o0\"} 5\n"));
        assert!(text.contains("storefront_reshard_phase{phase=\"dual write\"} 1\n"));
        assert!(text.contains("storefront_reshard_moving_slots 2\n"));
        assert_eq!(rows(&v)[1].state, "spare");
    }
}
