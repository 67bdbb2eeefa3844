//! Counters and their snapshot.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::removal::RemovalCause;

/// A snapshot of a cache's counters, cheap to take (plain atomics).
///
/// Hits and misses count [`Cache::get`](crate::Cache::get) and the loading
/// methods' lookups; loads count the loader's runs (one per single flight).
/// Hits and misses are counted per thread without locked instructions: exact
/// up to 64 threads counting at once, and beyond that a count may rarely be
/// lost when two threads share a stripe.
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

const STRIPES: usize = 64;

/// A counter split over cache lines by thread, so that threads counting hits
/// at the same time do not fight over one line.
///
/// Each thread gets a stripe of its own (round robin over 64) and adds with a
/// plain load and store, not a locked read-modify-write: a locked add is a full
/// barrier that stalls the read path behind it, and cost a third of a read's
/// time. The count is exact while no two running threads share a stripe (up
/// to 64 threads that count at once); beyond, two threads adding to the same
/// stripe in the same instant can lose one count.
#[derive(Debug)]
pub(crate) struct Striped {
    cells: Box<[CachePadded<AtomicU64>]>,
}

impl Default for Striped {
    fn default() -> Self {
        Self {
            cells: (0..STRIPES)
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
        }
    }
}

/// This thread's stripe. The thread-local is const-initialised (no lazy
/// registration to check on every read) and takes its number on first use.
#[inline]
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    }
    STRIPE
        .try_with(|s| {
            let mut stripe = s.get();
            if stripe == usize::MAX {
                stripe = NEXT.fetch_add(1, Relaxed) % STRIPES;
                s.set(stripe);
            }
            stripe
        })
        .unwrap_or(0)
}

impl Striped {
    #[inline]
    pub(crate) fn increment(&self) {
        let cell = &self.cells[stripe()];
        cell.store(cell.load(Relaxed) + 1, Relaxed);
    }

    pub(crate) fn sum(&self) -> u64 {
        self.cells.iter().map(|c| c.load(Relaxed)).sum()
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: Striped,
    pub(crate) misses: Striped,
    load_successes: AtomicU64,
    load_failures: AtomicU64,
    load_nanos: AtomicU64,
}

impl Counters {
    pub(crate) fn record_load(&self, success: bool, nanos: u64) {
        if success {
            self.load_successes.fetch_add(1, Relaxed);
        } else {
            self.load_failures.fetch_add(1, Relaxed);
        }
        self.load_nanos.fetch_add(nanos, Relaxed);
    }

    /// `removals` by `RemovalCause as usize`, summed over the shards.
    pub(crate) fn snapshot(&self, removals: [u64; 4]) -> CacheStats {
        CacheStats {
            hits: self.hits.sum(),
            misses: self.misses.sum(),
            evicted_size: removals[RemovalCause::Size as usize],
            evicted_expired: removals[RemovalCause::Expired as usize],
            removed_explicit: removals[RemovalCause::Explicit as usize],
            replaced: removals[RemovalCause::Replaced as usize],
            load_successes: self.load_successes.load(Relaxed),
            load_failures: self.load_failures.load(Relaxed),
            load_nanos: self.load_nanos.load(Relaxed),
        }
    }
}
