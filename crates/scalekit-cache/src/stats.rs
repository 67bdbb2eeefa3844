//! Counters and their snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::RemovalCause;

/// A snapshot of a cache's counters, cheap to take (plain atomics).
///
/// Hits and misses count [`Cache::get`](crate::Cache::get) and the loading
/// methods' lookups; loads count the loader's runs (one per single flight).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing (or an expired entry).
    pub misses: u64,
    /// Entries evicted to keep within the capacity.
    pub evicted_size: u64,
    /// Entries removed because their time was up.
    pub evicted_expired: u64,
    /// Entries removed by `remove`, `invalidate*`.
    pub removed_explicit: u64,
    /// Values replaced by a newer insert of the same key.
    pub replaced: u64,
    /// Loader runs that produced a value.
    pub load_successes: u64,
    /// Loader runs that failed (an error, a panic or a cancellation).
    pub load_failures: u64,
    /// Total time spent in loaders, in nanoseconds.
    pub load_nanos: u64,
}

impl CacheStats {
    /// Hits over lookups, or 1.0 before any lookup (nothing missed yet).
    pub fn hit_ratio(&self) -> f64 {
        let requests = self.hits + self.misses;
        if requests == 0 {
            1.0
        } else {
            self.hits as f64 / requests as f64
        }
    }

    /// Entries evicted for any cause but replacement and explicit removal.
    pub fn evictions(&self) -> u64 {
        self.evicted_size + self.evicted_expired
    }

    /// Mean time per load, if anything was loaded.
    pub fn average_load_time(&self) -> Option<Duration> {
        let loads = self.load_successes + self.load_failures;
        (loads > 0).then(|| Duration::from_nanos(self.load_nanos / loads))
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    evicted_size: AtomicU64,
    evicted_expired: AtomicU64,
    removed_explicit: AtomicU64,
    replaced: AtomicU64,
    load_successes: AtomicU64,
    load_failures: AtomicU64,
    load_nanos: AtomicU64,
}

impl Counters {
    pub(crate) fn record_removal(&self, cause: RemovalCause) {
        let counter = match cause {
            RemovalCause::Size => &self.evicted_size,
            RemovalCause::Expired => &self.evicted_expired,
            RemovalCause::Explicit => &self.removed_explicit,
            RemovalCause::Replaced => &self.replaced,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn record_load(&self, success: bool, nanos: u64) {
        if success {
            self.load_successes.fetch_add(1, Relaxed);
        } else {
            self.load_failures.fetch_add(1, Relaxed);
        }
        self.load_nanos.fetch_add(nanos, Relaxed);
    }

    pub(crate) fn snapshot(&self, hits: u64, misses: u64) -> CacheStats {
        CacheStats {
            hits,
            misses,
            evicted_size: self.evicted_size.load(Relaxed),
            evicted_expired: self.evicted_expired.load(Relaxed),
            removed_explicit: self.removed_explicit.load(Relaxed),
            replaced: self.replaced.load(Relaxed),
            load_successes: self.load_successes.load(Relaxed),
            load_failures: self.load_failures.load(Relaxed),
            load_nanos: self.load_nanos.load(Relaxed),
        }
    }
}
