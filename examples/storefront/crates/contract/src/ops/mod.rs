//! The ops figures as `/ops/data.json` serves them: one process's
//! [`Snapshot`], how several processes' add up ([`Snapshot::merge`]), and the
//! figures of the stages' components in it.

pub mod gateway;
pub mod parts;
pub mod replicas;
pub mod shards;
mod snapshot;
pub mod topology;

pub use parts::Figures;
pub use snapshot::{
    CacheTotals, Point, Snapshot, StageRef, TierFaults, TierTotals, Totals, Window,
};
pub use topology::Topology;
