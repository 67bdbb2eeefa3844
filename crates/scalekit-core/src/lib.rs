#![doc = include_str!("../README.md")]
//!
//! # Modules
//!
//! * [`clock`]: [`Clock`], [`MonotonicClock`], [`ManualClock`].
//! * [`config`]: [`ConfigError`], the one shape of a refused setting.
//! * [`hash`]: the pinned stable hash and what it promises.
//! * [`placement`]: the [`Placement`] trait.
//! * [`admission`]: the [`Admission`] and [`KeyedAdmission`] traits and their values.
//! * `tower` (feature `tower`): the generic admission layer.
//! * `redis` (feature `redis`): one Redis server or a Redis Cluster behind one
//!   connection type, for the crates' Redis parts.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod admission;
pub mod clock;
pub mod config;
pub mod hash;
pub mod placement;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "tower")]
pub mod tower;

pub use admission::{Admission, KeyedAdmission, Outcome, RejectReason, Rejected};
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use config::ConfigError;
pub use hash::{
    hash_pair, mix64, stable_hash, stable_hash_u64, StableHash, StableHasher, STABLE_HASH_K0,
    STABLE_HASH_K1,
};
pub use placement::Placement;
