//! Adaptive concurrency limits (AIMD, Gradient2, Vegas, after Netflix's
//! concurrency-limits) with priority partitions, load shedding and (feature
//! `tokio`) a queue of waiters.
//!
//! `algorithms` moves the limit; `limiter` applies it. `limiter` imports
//! `algorithms`, never the other way.

mod algorithms;
mod limiter;

pub use self::algorithms::{Aimd, Gradient2, LimitAlgorithm, Sample, Vegas};
pub use self::limiter::{AdaptiveLimiter, AdaptiveLimiterBuilder, AdaptivePermit};
