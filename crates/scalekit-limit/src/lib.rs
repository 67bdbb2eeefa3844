#![doc = include_str!("../README.md")]
//!
//! # Choosing a limiter
//!
//! * A rate for one stream (an outgoing API quota, a worker): [`RateLimiter`].
//! * A rate per client, user or token at an entry point: [`KeyedRateLimiter`]
//!   (bounded memory, safe against a flood of distinct keys).
//! * The same limit across many processes: [`RedisRateLimiter`] (feature `redis`).
//! * "N per minute" with window semantics: [`SlidingWindow`].
//! * A cap on calls in flight: [`Bulkhead`] (fixed) or [`AdaptiveLimiter`]
//!   ([`Aimd`], [`Gradient2`], [`Vegas`]), with priority partitions that shed the
//!   lowest priority first.
//!
//! Every local limiter implements [`Admission`](scalekit_core::Admission) (the
//! keyed ones also [`KeyedAdmission`](scalekit_core::KeyedAdmission)), so the
//! core tower layer applies them, keyed through `AdmissionLayer::key_by`. See
//! `docs/limit.md` in the repository for how to pick quotas.

mod adaptive;
mod bulkhead;
mod error;
mod gcra;
mod keyed;
mod quota;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "tokio")]
mod wait;
mod window;

pub use adaptive::{
    AdaptiveBuilder, AdaptiveLimiter, AdaptivePermit, Aimd, Gradient2, LimitAlgorithm, Sample,
    Vegas,
};
pub use bulkhead::{Bulkhead, BulkheadGuard};
pub use error::ConfigError;
pub use gcra::{Denied, DenyKind, RateLimitState, RateLimiter};
pub use keyed::{KeyedBuilder, KeyedRateLimiter, DEFAULT_MAX_KEYS};
pub use quota::{Quota, MAX_INTERVAL, MAX_TOLERANCE};
#[cfg(feature = "redis")]
pub use redis::{OnError, RedisBuilder, RedisLimitError, RedisRateLimiter};
#[cfg(feature = "tokio")]
pub use wait::Jitter;
pub use window::SlidingWindow;
