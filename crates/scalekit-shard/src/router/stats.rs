//! The router's counters, striped per thread, and their snapshot.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

use crate::hot::HotKey;

const STRIPES: usize = 32;
pub(crate) const SINGLE: usize = 0;
pub(crate) const MULTI: usize = 1;
pub(crate) const ALL: usize = 2;
pub(crate) const ERRORS: usize = 3;

/// Counters of the router, read with [`Router::stats`]: one cache line of four
/// counters per thread stripe, added with a plain load and store (no locked
/// instruction on the routing path, no line shared between routing threads).
/// Exact while no two running threads share a stripe (up to 32); beyond, two
/// threads counting in the same instant can lose one count.
#[derive(Debug)]
pub(crate) struct Counters {
    stripes: Box<[CachePadded<[AtomicU64; 4]>]>,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES)
                .map(|_| CachePadded::new(Default::default()))
                .collect(),
        }
    }
}

#[inline]
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.try_with(|s| *s).unwrap_or(0)
}

impl Counters {
    #[inline]
    pub(crate) fn add(&self, which: usize) {
        let cell = &self.stripes[stripe()][which];
        cell.store(cell.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    pub(crate) fn sum(&self, which: usize) -> u64 {
        self.stripes
            .iter()
            .map(|s| s[which].load(Ordering::Relaxed))
            .sum()
    }
}

/// A snapshot of the router's counters and hot keys.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouterStats {
    /// Routes that gave one target.
    pub single: u64,
    /// Routes that gave several targets but not every shard.
    pub multi: u64,
    /// Routes that had no key and went to every shard (scatter).
    pub all: u64,
    /// Routes that failed.
    pub errors: u64,
    /// The most routed keys, highest first (empty unless hot-key tracking is on).
    pub hot_keys: Vec<HotKey>,
}
