//! A table's routing rule: its kind, dimensions and strategies.

use std::sync::Arc;

use ahash::AHashMap;

use crate::interval::Interval;

/// How a hash strategy turns a key into a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotHash {
    /// `stable_hash(key) mod slots`.
    Stable,
    /// Redis Cluster's CRC16 slot (16384 slots).
    Redis,
}

#[derive(Clone, Debug)]
pub(crate) enum Strategy {
    /// Always this shard (a table dimension with no split).
    Fixed(u32),
    /// Key -> slot -> shard, the slot table filled from a placement engine.
    Slots { owner: Vec<u32>, hash: SlotHash },
    /// `key mod n` for integers, `stable_hash mod n` for text.
    Modulo { shards: Vec<u32> },
    /// Contiguous half-open ranges: `starts[i] <= key < starts[i+1]` (or `< end`).
    Ranges {
        starts: Vec<i64>,
        end: Option<i64>,
        shards: Vec<u32>,
    },
    /// One table per interval.
    Time {
        interval: Interval,
        retention: Option<u32>,
        ahead: u32,
    },
}

/// One dimension of a sharded table: which database, or which table.
#[derive(Clone, Debug)]
pub(crate) struct Dim {
    pub(crate) key: Option<Arc<str>>,
    /// Every shard the dimension can return, sorted (not used by `Time`).
    pub(crate) all: Vec<u32>,
    pub(crate) directory: AHashMap<Box<str>, u32>,
    pub(crate) strategy: Strategy,
}

/// What a dimension resolved to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Pick {
    Shard(u32),
    Interval(i64),
}

#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // one a table, built once
pub(crate) enum RuleKind {
    /// A table that lives in one database (domain split).
    Single { database: u32 },
    /// A reference table copied to every listed database.
    Broadcast { databases: Vec<u32> },
    /// Split by a database dimension and a table dimension.
    Sharded {
        db: Dim,
        table: Dim,
        /// Physical names by table-dimension shard (for non-time dimensions).
        physical: Vec<Arc<str>>,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct TableRule {
    pub(crate) name: Arc<str>,
    /// The table this one is bound to (sharded alike), if any.
    pub(crate) bound_to: Option<Arc<str>>,
    pub(crate) kind: RuleKind,
}
