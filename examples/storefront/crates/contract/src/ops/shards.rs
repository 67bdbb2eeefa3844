//! Stage 7's figures: the shard layout, any resharding, and rows per shard
//! database.

use serde::{Deserialize, Serialize};

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
