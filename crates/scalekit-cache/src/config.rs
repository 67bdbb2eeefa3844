//! What a cache is built from: the builder fills it, the cache consumes it.
//! Neither imports the other's module for it, so the builder depends on the
//! cache and not the other way round.

use std::time::Duration;

use crate::expiry::Expiry;
use crate::removal::RemovalCause;

pub(crate) type Listener<K, V> = dyn Fn(K, V, RemovalCause) + Send + Sync;
pub(crate) type Weigher<K, V> = dyn Fn(&K, &V) -> u32 + Send + Sync;
/// Negative caching: a lifetime and the predicate that picks negative values.
pub(crate) type Negative<V> = (Duration, fn(&V) -> bool);

/// Every setting of a cache, as the builder collected them.
pub(crate) struct Settings<K, V, S, C> {
    pub(crate) capacity: Option<u64>,
    pub(crate) shards: Option<usize>,
    pub(crate) hasher: S,
    pub(crate) clock: C,
    pub(crate) ttl: Option<Duration>,
    pub(crate) tti: Option<Duration>,
    pub(crate) expiry: Option<Box<dyn Expiry<K, V>>>,
    pub(crate) weigher: Option<Box<Weigher<K, V>>>,
    pub(crate) listener: Option<Box<Listener<K, V>>>,
    pub(crate) stale: Option<Duration>,
    pub(crate) refresh_beta: f64,
    pub(crate) negative: Option<Negative<V>>,
}

impl<K, V, S, C> Settings<K, V, S, C> {
    /// The same settings with another hasher.
    pub(crate) fn with_hasher<S2>(self, hasher: S2) -> Settings<K, V, S2, C> {
        Settings {
            capacity: self.capacity,
            shards: self.shards,
            hasher,
            clock: self.clock,
            ttl: self.ttl,
            tti: self.tti,
            expiry: self.expiry,
            weigher: self.weigher,
            listener: self.listener,
            stale: self.stale,
            refresh_beta: self.refresh_beta,
            negative: self.negative,
        }
    }

    /// The same settings with another clock.
    pub(crate) fn with_clock<C2>(self, clock: C2) -> Settings<K, V, S, C2> {
        Settings {
            capacity: self.capacity,
            shards: self.shards,
            hasher: self.hasher,
            clock,
            ttl: self.ttl,
            tti: self.tti,
            expiry: self.expiry,
            weigher: self.weigher,
            listener: self.listener,
            stale: self.stale,
            refresh_beta: self.refresh_beta,
            negative: self.negative,
        }
    }
}

/// A duration in clock nanoseconds (saturating).
pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
