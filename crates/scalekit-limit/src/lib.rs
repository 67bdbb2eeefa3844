#![doc = include_str!("../README.md")]
//!
//! # Choosing a limiter
//!
//! * A rate for one stream (an outgoing API quota, a worker): [`RateLimiter`].
//! * A rate per client, user or token at an entry point: [`KeyedRateLimiter`]
//!   (bounded memory, safe against a flood of distinct keys).
//! * "N per minute" with window semantics: [`SlidingWindow`], or per key
//!   [`KeyedSlidingWindow`].
//! * The same limit across many processes: [`RedisRateLimiter`] or
//!   [`RedisSlidingWindow`] (feature `redis`).
//! * A cap on calls in flight: [`Bulkhead`] (fixed) or [`AdaptiveLimiter`]
//!   ([`Aimd`], [`Gradient2`], [`Vegas`]), with priority partitions that shed the
//!   lowest priority first, and (feature `tokio`) a [`WaitQueue`] of callers
//!   served first or last in, with a timeout.
//!
//! Every local limiter implements [`Admission`](scalekit_core::Admission) (the
//! keyed ones also [`KeyedAdmission`](scalekit_core::KeyedAdmission)), so the
//! core tower layer applies them, keyed through `AdmissionLayer::key_by`. The
//! [guide](crate::_guide) explains the algorithms, how to pick quotas, the
//! measured speed and how the crate compares with governor, resilience4j and
//! tower.
//!
//! # Conventions
//!
//! Time comes from a `Clock` type parameter (the real `MonotonicClock` by
//! default; tests use `ManualClock`). Builders are `<Type>Builder`; `build()`
//! refuses a setting that cannot work with a `ConfigError` naming the setting,
//! the value and what it accepts.

pub mod _guide;
mod adaptive;
mod bulkhead;
mod gcra;
mod keyed;
mod keyed_window;
#[cfg(feature = "tokio")]
mod queue;
mod quota;
#[cfg(feature = "redis")]
mod redis;
mod table;
#[cfg(feature = "tokio")]
mod wait;
mod window;

pub use adaptive::{
    AdaptiveLimiter, AdaptiveLimiterBuilder, AdaptivePermit, Aimd, Gradient2, LimitAlgorithm,
    Sample, Vegas,
};
pub use bulkhead::{Bulkhead, BulkheadBuilder, BulkheadGuard};
pub use gcra::{Denied, DenyKind, RateLimitState, RateLimiter};
pub use keyed::{KeyedRateLimiter, KeyedRateLimiterBuilder};
pub use keyed_window::{KeyedSlidingWindow, KeyedSlidingWindowBuilder, MAX_KEYED_WINDOW_LIMIT};
#[cfg(feature = "tokio")]
pub use queue::{QueueOrder, WaitQueue, MAX_WAITERS};
pub use quota::{Quota, MAX_INTERVAL, MAX_TOLERANCE};
#[cfg(feature = "redis")]
pub use redis::{
    OnError, RedisLimitError, RedisRateLimiter, RedisRateLimiterBuilder, RedisSlidingWindow,
    RedisSlidingWindowBuilder,
};
pub use scalekit_core::ConfigError;
pub use table::DEFAULT_MAX_KEYS;
#[cfg(feature = "tokio")]
pub use wait::Jitter;
pub use window::SlidingWindow;
