//! The checked configuration: what passed every check, ready to build.

use std::sync::Arc;

use crate::interval::Interval;
use crate::router::SlotHash;

/// The default number of hash slots.
pub const DEFAULT_SLOTS: u32 = 16384;
/// The most hash slots a table may have.
pub const MAX_SLOTS: u32 = 1 << 20;

#[derive(Clone, Debug)]
pub(crate) struct Where {
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) path: String,
}

#[derive(Clone, Debug)]
pub(crate) enum StrategySpec {
    Fixed(u32),
    Hash {
        shards: Vec<u32>,
        engine: String,
        at: Where,
        slots: u32,
        hash: SlotHash,
    },
    Modulo(Vec<u32>),
    Ranges {
        starts: Vec<i64>,
        end: Option<i64>,
        shards: Vec<u32>,
    },
    Time {
        interval: Interval,
        retention: Option<u32>,
        ahead: u32,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct DimSpec {
    pub(crate) key: Option<Arc<str>>,
    pub(crate) directory: Vec<(Box<str>, u32)>,
    pub(crate) strategy: StrategySpec,
}

#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // one a table, read once
pub(crate) enum KindSpec {
    Single(u32),
    Broadcast(Vec<u32>),
    Sharded {
        db: DimSpec,
        table: DimSpec,
        suffixes: Vec<Arc<str>>,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct TableSpec {
    pub(crate) name: Arc<str>,
    pub(crate) bound_to: Option<Arc<str>>,
    pub(crate) kind: KindSpec,
}

/// A routing configuration that passed every check; [`build`](Self::build) it
/// into a [`Router`](crate::Router) with your engines.
///
/// The TOML form (every strategy is described in the [guide](crate::_guide)):
///
/// ```toml
/// epoch = 1                          # the routing table's version
/// databases = ["users", "catalog", "orders_0", "orders_1"]
/// hot_keys = 32                      # track the 32 most routed keys (0: off)
///
/// [tables.users]                     # domain split: one database
/// database = "users"
///
/// [tables.currencies]                # copied to every database
/// broadcast = true
///
/// [tables.orders.databases]          # database by hash of the user id ...
/// key = "user_id"
/// hash = ["orders_0", "orders_1"]
/// engine = "ring"                    # registered by the application
/// directory = { "42" = "orders_1" }  # large tenants first
///
/// [tables.orders.tables]             # ... table by month of creation
/// key = "created_at"
/// time = "month"
/// retention = 24
/// ahead = 2
///
/// [tables.order_items]               # sharded alike: joins stay on one shard
/// bind = "orders"
/// ```
#[derive(Clone, Debug)]
pub struct RouterConfig {
    pub(crate) epoch: u64,
    pub(crate) databases: Vec<Arc<str>>,
    pub(crate) hot_keys: usize,
    pub(crate) tables: Vec<TableSpec>,
}
