//! Stage 7's figures: the shard layout, any resharding, and rows per shard
//! database.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::parts::{metric_label, Cell, Fact, Figures, View};

/// One shard database's rows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRows {
    /// The database's name.
    pub database: String,
    /// Whether the routing in force uses it (a resharding's target is not yet).
    pub in_use: bool,
    /// Orders in it, current and archived (during a move, copies count in both).
    pub orders: i64,
    /// Their lines.
    pub order_items: i64,
}

/// The shard layout and any resharding, at the last reading.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardsView {
    /// The routing table's version.
    pub epoch: i64,
    /// `idle`, a migration phase (`copy`, `dual write`, `verify`, `switch reads`,
    /// `switch writes`, `clean up`), `done` or `rolled back`.
    pub phase: String,
    /// The databases in use.
    pub databases: Vec<String>,
    /// Where the running (or last) resharding moves slots to.
    #[serde(default)]
    pub target_databases: Vec<String>,
    /// The slots it moves.
    #[serde(default)]
    pub moving_slots: Vec<u32>,
    /// Orders it copied so far.
    #[serde(default)]
    pub rows_copied: i64,
    /// Rows per configured database, by name.
    pub rows: Vec<ShardRows>,
    /// When this was read (Unix milliseconds).
    pub read_at_ms: u64,
    /// The last reading's error, if it failed (the figures are then older).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ShardsView {
    /// Whether a resharding is under way.
    pub fn moving(&self) -> bool {
        !matches!(self.phase.as_str(), "idle" | "done" | "rolled back" | "")
    }
}

/// One figure of a shard database's row.
type RowFigure = fn(&ShardRows) -> i64;

impl Figures for ShardsView {
    const KEY: &'static str = "shards";
    const TITLE: &'static str = "Shards";

    /// The routing and any resharding, then the rows per database.
    fn view(&self) -> Option<View> {
        let mut figures = vec![
            Fact::new("Routing epoch", self.epoch),
            Fact {
                class: if self.moving() { "highlight" } else { "" }.into(),
                ..Fact::new("Resharding", &self.phase)
            },
            Fact::new("Orders copied", self.rows_copied),
            Fact::new("Moving slots", self.moving_slots.len()),
        ];
        if let Some(e) = &self.error {
            figures.push(Fact {
                class: "bad".into(),
                ..Fact::new("Last reading", e)
            });
        }
        let rows = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    Cell::new(&r.database),
                    Cell::new(if r.in_use { "in use" } else { "spare" }),
                    Cell::new(r.orders),
                    Cell::new(r.order_items),
                ]
            })
            .collect();
        let columns = ["Database", "State", "Orders", "Order lines"];
        Some(View {
            figures,
            columns: columns.map(String::from).to_vec(),
            rows,
        })
    }

    /// Rows per shard database, and the resharding's phase and progress.
    fn metrics(&self) -> Option<String> {
        let mut out = String::new();
        let per_database: [(&str, &str, RowFigure); 2] = [
            (
                "storefront_shard_orders",
                "Orders (current and archived) in a shard database.",
                |r| r.orders,
            ),
            (
                "storefront_shard_order_items",
                "Order lines in a shard database.",
                |r| r.order_items,
            ),
        ];
        for (name, help, value) in per_database {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for r in &self.rows {
                let database = metric_label(&r.database);
                let _ = writeln!(out, "{name}{{database=\"{database}\"}} {}", value(r));
            }
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
            metric_label(&self.phase),
            self.rows_copied,
            self.moving_slots.len(),
            self.epoch
        );
        Some(out)
    }
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
    fn json_path_page_and_metrics() {
        let v = view();
        assert!(v.moving());
        let json = serde_json::to_value(&v).unwrap_or_default();
        assert_eq!(json["rows"][0]["database"], "o0");
        assert_eq!(json["rows"][0]["orders"], 5);
        assert!(json.get("error").is_none());
        let back: ShardsView = serde_json::from_value(json).unwrap_or_default();
        assert_eq!(back, v);
        let text = v.metrics().unwrap_or_default();
        assert!(text.contains("storefront_shard_orders{database=\"o0\"} 5\n"));
        assert!(text.contains("storefront_reshard_phase{phase=\"dual write\"} 1\n"));
        assert!(text.contains("storefront_reshard_moving_slots 2\n"));
        assert!(text.ends_with("storefront_shard_epoch 1\n"), "{text}");
        let page = v.view().unwrap_or_default();
        assert_eq!(page.rows[1][1].text, "spare");
        assert_eq!(
            page.figures[1].class, "highlight",
            "a resharding under way stands out"
        );
        let failed = ShardsView {
            error: Some("timeout".into()),
            ..ShardsView::default()
        };
        let page = failed.view().unwrap_or_default();
        assert_eq!(page.figures.last().map(|f| f.class.as_str()), Some("bad"));
    }
}
