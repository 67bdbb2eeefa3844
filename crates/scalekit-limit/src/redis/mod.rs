//! Limits shared through Redis (feature `redis`): GCRA ([`RedisRateLimiter`])
//! and the sliding window ([`RedisSlidingWindow`]), each one Lua script run
//! atomically with `EVALSHA`.
//!
//! `common` holds what both share; `gcra` and `window` import it, and this
//! module only re-exports.

mod common;
mod gcra;
mod window;

pub use self::common::{OnError, RedisLimitError};
pub use self::gcra::{RedisRateLimiter, RedisRateLimiterBuilder};
pub use self::window::{RedisSlidingWindow, RedisSlidingWindowBuilder};
