#![doc = include_str!("../README.md")]
//!
//! # The model
//!
//! * A **logical table** is what the application names (`orders`).
//! * A **physical target** is a [`Target`]: a database and a table in it
//!   (`orders_1.orders_202611`).
//! * A sharded table has two dimensions, each with its own key and strategy:
//!   which database, then which table in it. Either may be fixed.
//! * **Binding tables** (`bind = "orders"`) are sharded exactly like their root,
//!   so rows with the same key land in the same database, in tables with the
//!   same suffix. **Broadcast tables** are copied to every database: a read goes
//!   to one copy, a write to all.
//!
//! # Where to start
//!
//! * [`RouterConfig::from_toml`] then [`RouterConfig::build`] with your
//!   [`Engines`]: a [`Router`].
//! * [`Router::locate`] for one row, [`Router::route`] for a statement that may
//!   reach several targets, [`Router::time_tables`] for the tables to create and
//!   drop.
//! * [`ScatterGather`] runs a request on many targets through your
//!   [`ShardExecutor`]; [`merge_order_by`], [`Aggregate`] and [`merge_groups`]
//!   combine the answers.
//! * [`plan`] compares two routing tables; [`Migration`] walks a move online.
//! * [`redis_cluster_slot`]: Redis Cluster's key slot.
//!
//! # Why hand-written
//!
//! The routing, the merges and the migration state machine are the point of the
//! crate, so they are written here; the placement engines come from outside
//! (through the core [`Placement`](scalekit_core::Placement) trait), the
//! configuration from serde and `toml`, interval arithmetic from `chrono`, and
//! concurrency from tokio and `futures-util`.
//!
//! # Conventions
//!
//! Time comes from a `Clock` type parameter (the real `MonotonicClock` by
//! default; tests use `ManualClock`). Builders are `<Type>Builder`; `build()`
//! refuses a setting that cannot work with a `ConfigError` naming the setting,
//! the value and what it accepts.
//!
//! Here the settings come from a file, so [`ConfigError`] also says where
//! (file, line, column) and [`ConfigError::setting`] gives the kit's one
//! shape ([`scalekit_core::ConfigError`]). Routing reads no monotonic clock:
//! time-split tables are named by calendar time, which
//! [`route_at`](Router::route_at) and [`time_tables`](Router::time_tables)
//! take as an argument (Unix seconds) and [`route`](Router::route) reads from
//! the system's wall clock.
//!
//! [`_guide`] is the guide: every strategy, scatter-gather, resharding, and
//! how this compares with Vitess, ShardingSphere and Citus.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod _guide;
mod config;
mod error;
mod gather;
mod hot;
mod interval;
mod merge;
mod migration;
mod plan;
mod query;
mod router;
mod slot;

pub use config::{
    DynPlacement, Engines, RouterConfig, CONTIGUOUS_ENGINE, DEFAULT_SLOTS, MAX_SLOTS,
};
pub use error::{ConfigError, ConfigErrorKind, MergeOverflow, PlanError, RouteError};
pub use gather::{
    GatherError, GatherStats, Gathered, MissingShard, OnShardFailure, ScatterGather, ShardExecutor,
    ShardFailure,
};
pub use hot::{HotKey, SpaceSaving};
pub use interval::Interval;
pub use merge::{
    merge_groups, merge_order_by, per_shard_limit, Aggregate, KWayMerge, MergeAggregate,
};
pub use migration::{Migration, MigrationError, Phase};
pub use plan::{plan, Dimension, KeySet, Move, Plan, TablePlan, MAX_PLAN_RESIDUES};
pub use query::{Cond, Key, Op, OwnedKey, Query};
pub use router::{Route, Router, RouterStats, ShardNode, Target, TimeTables, MAX_TIME_TARGETS};
pub use slot::{crc16_xmodem, hash_tag, redis_cluster_slot, REDIS_CLUSTER_SLOTS};
