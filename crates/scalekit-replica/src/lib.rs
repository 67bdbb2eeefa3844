#![doc = include_str!("../README.md")]
//!
//! # Modules
//!
//! * [`ReplicaSet`], [`Member`], [`Selected`]: membership and selection.
//! * [`OutlierDetection`], [`SuccessRate`]: passive ejection.
//! * [`HealthCheck`], [`Health`]: active checks.
//! * [`Position`]: read-your-writes tokens.
//! * [`Hedge`], [`Budget`]: hedged requests and the budget retries share.
//! * `pg` (feature `postgres`): WAL positions and lag from PostgreSQL.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod config;
mod endpoint;
mod error;
mod health;
mod hedge;
mod rng;
mod set;

#[cfg(feature = "postgres")]
pub mod pg;

pub use config::{Balance, OutlierDetection, PrimaryReads, SuccessRate};
pub use endpoint::{AlwaysAdmit, Member, Position, Role};
pub use error::{ConfigError, HedgeError, MembershipError, SelectError};
pub use health::{Health, HealthCheck};
pub use hedge::{Budget, BudgetBuilder, Hedge};
pub use set::{
    EjectReason, EndpointStats, Event, ReplicaSet, ReplicaSetBuilder, Selected, SetStats,
};

pub use scalekit_core::{Admission, Clock, Outcome, Rejected};
