#![doc = include_str!("../README.md")]

mod builder;
mod cache;
#[cfg(feature = "redis")]
mod coherence;
mod list;
mod loading;
#[cfg(feature = "redis")]
mod redis;
mod sketch;
mod stats;
mod store;
mod tier;
mod tiered;
mod wheel;

use std::time::Duration;

pub use builder::CacheBuilder;
pub use cache::Cache;
#[cfg(feature = "redis")]
pub use coherence::RedisCoherence;
#[cfg(feature = "redis")]
pub use redis::{RedisTier, RedisTierBuilder};
pub use stats::CacheStats;
pub use tier::{Tier, TierError};
pub use tiered::{TieredCache, TieredCacheBuilder, TieredStats, WritePolicy};

/// The attribute to implement [`Tier`] with (re-exported from `async-trait`).
pub use async_trait::async_trait;

/// Why an entry left the cache, as told to the
/// [eviction listener](CacheBuilder::eviction_listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemovalCause {
    /// Evicted to keep the cache within its capacity (or too heavy to keep).
    Size,
    /// Its time-to-live, time-to-idle or per-entry deadline passed.
    Expired,
    /// Removed by `remove`, `invalidate`, `invalidate_all` or `invalidate_if`.
    Explicit,
    /// Its value was replaced by a newer insert of the same key.
    Replaced,
}

/// A deadline per entry, from its key and value.
///
/// Returning `None` means no deadline from this policy (the cache's
/// time-to-live and time-to-idle still apply).
///
/// ```
/// use std::time::Duration;
/// use scalekit_cache::{Cache, Expiry};
///
/// /// "Not found" answers are kept for a shorter time than found ones.
/// struct Negative;
/// impl Expiry<u64, Option<String>> for Negative {
///     fn expire_after_create(&self, _: &u64, value: &Option<String>) -> Option<Duration> {
///         Some(if value.is_some() { Duration::from_secs(300) } else { Duration::from_secs(5) })
///     }
/// }
///
/// let cache: Cache<u64, Option<String>> =
///     Cache::builder().max_capacity(1_000).expire_after(Negative).build();
/// cache.insert(1, None);
/// assert_eq!(cache.get(&1), Some(None));
/// ```
pub trait Expiry<K, V>: Send + Sync {
    /// The lifetime of a new entry.
    fn expire_after_create(&self, key: &K, value: &V) -> Option<Duration>;

    /// The lifetime of an entry whose value was replaced; by default the same
    /// as a new one.
    fn expire_after_update(&self, key: &K, value: &V) -> Option<Duration> {
        self.expire_after_create(key, value)
    }
}
