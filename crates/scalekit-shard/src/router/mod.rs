//! The router: logical tables to physical `(database, table)` targets.
//!
//! * `target`: [`Target`], [`Route`], [`ShardNode`].
//! * `rule`: a table's rule, its dimensions and strategies.
//! * `lookup`: [`Router`] itself: `locate`, `route`, `time_tables`.
//! * `pick`: what a dimension resolves a query to; `names`: physical names.
//! * `stats`: counters and [`RouterStats`].

mod lookup;
mod names;
mod pick;
mod rule;
mod stats;
mod target;

pub use lookup::{Router, TimeTables};
pub use pick::MAX_TIME_TARGETS;
pub use stats::RouterStats;
pub use target::{Route, ShardNode, Target};

pub(crate) use pick::pick_strategy;
pub(crate) use rule::{Dim, Pick, RuleKind, SlotHash, Strategy, TableRule};
