#![doc = include_str!("../README.md")]
//!
//! # Modules
//!
//! * [`ReplicaSet`], [`Member`], [`Selected`]: membership and selection.
//! * [`OutlierDetection`], [`SuccessRate`], [`FailurePercentage`]: passive
//!   ejection.
//! * [`HealthCheck`], [`Health`]: active checks, with thresholds.
//! * [`Position`]: read-your-writes tokens.
//! * [`Hedge`], [`Budget`]: hedged requests (fixed or percentile delay) and the
//!   budget retries share.
//! * `pg` (feature `postgres`): WAL positions and lag from PostgreSQL.
//! * `tower` (feature `tower`): [`ReplicaService`](crate::tower::ReplicaService),
//!   a tower `Service` over a set of services.
//! * [`_guide`]: the guide, with the model behind each choice and the
//!   measurements.
//!
//! # Conventions
//!
//! Time comes from a `Clock` type parameter (the real `MonotonicClock` by
//! default; tests use `ManualClock`). Builders are `<Type>Builder`; `build()`
//! refuses a setting that cannot work with a `ConfigError` naming the setting,
//! the value and what it accepts.
//!
//! ```
//! use scalekit_core::ManualClock;
//! use scalekit_replica::{Member, ReplicaSet};
//!
//! // ReplicaSet<T, A = AlwaysAdmit, C = MonotonicClock>; `.clock(c)` swaps C.
//! let set = ReplicaSet::builder()
//!     .clock(ManualClock::new())
//!     .member(Member::replica("a", 1))
//!     .build()?;
//! # let _ = set;
//! let err = ReplicaSet::<u32>::builder().zone_spill_factor(0.5).build().unwrap_err();
//! assert_eq!((err.field(), err.value()), ("zone_spill_factor", "0.5"));
//! assert_eq!(err.expected(), "a finite number >= 1");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod _guide;
mod config;
mod endpoint;
mod error;
mod event;
mod health;
mod hedge;
mod member;
mod rng;
mod set;

#[cfg(feature = "postgres")]
pub mod pg;
#[cfg(feature = "tower")]
pub mod tower;

pub use config::{Balance, FailurePercentage, OutlierDetection, PrimaryReads, SuccessRate};
pub use error::{ConfigError, HedgeError, MembershipError, SelectError};
pub use event::{EjectReason, Event};
pub use health::{Health, HealthCheck};
pub use hedge::{Budget, BudgetBuilder, Hedge, HedgeBuilder};
pub use member::{AlwaysAdmit, Member, Position, Role};
pub use set::{EndpointStats, ReplicaSet, ReplicaSetBuilder, Selected, SetStats};

pub use scalekit_core::{Admission, Clock, Outcome, Rejected};
