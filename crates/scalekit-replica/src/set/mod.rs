//! The replica set: membership, selection and the feedback that drives it.
//!
//! * `handle`: the [`ReplicaSet`] type and what its clones share.
//! * `builder`: [`ReplicaSetBuilder`], settings checked at `build()`.
//! * `snapshot`: the membership selection reads, replaced whole on change.
//! * `select`: the lock-free choice; `selected`: the chosen endpoint's guard.
//! * `membership`: add, remove, weights, failover, lag, positions, health.
//! * `serving`: which replicas take reads given their lag.
//! * `maintain`: periodic upkeep and the interval outlier tests.
//! * `stats`: the dashboard snapshot.

mod builder;
mod handle;
mod maintain;
mod membership;
mod select;
mod selected;
mod serving;
mod snapshot;
mod stats;

pub use builder::ReplicaSetBuilder;
pub use handle::ReplicaSet;
pub use selected::Selected;
pub use stats::{EndpointStats, SetStats};
