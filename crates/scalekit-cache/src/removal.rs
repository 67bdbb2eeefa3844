//! Why an entry left the cache.

/// Why an entry left the cache, as told to the
/// [eviction listener](crate::CacheBuilder::eviction_listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemovalCause {
    /// Evicted to keep the cache within its capacity (or heavier than the
    /// whole capacity, so never kept).
    Size,
    /// Its time-to-live, time-to-idle or per-entry deadline passed.
    Expired,
    /// Removed by `remove`, `invalidate`, `invalidate_all`, `invalidate_if`, or
    /// a compute that returned [`Op::Remove`](crate::Op::Remove).
    Explicit,
    /// Its value was replaced by a newer write of the same key.
    Replaced,
}
