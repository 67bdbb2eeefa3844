//! The concurrent in-process cache: its shards, and what reads and writes
//! share. Reads are in `read.rs`, writes and the capacity's upkeep in
//! `write.rs`, the loading methods in `load.rs`, the entry API in `entry.rs`
//! and iteration in `iter.rs`. The parent imports nothing from its children
//! (they add `impl Cache` blocks), so no import goes both ways.

pub(crate) mod entry;
pub(crate) mod iter;
pub(crate) mod load;
pub(crate) mod read;
pub(crate) mod write;

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::CachePadded;
use parking_lot::RwLock;
use scalekit_core::{mix64, Clock, MonotonicClock};

use crate::config::{nanos, Listener, Settings, Weigher};
use crate::expiry::Expiry;
use crate::flight::Flights;
use crate::stats::{CacheStats, Counters};
use crate::store::{Store, NEVER};

type NegativeNanos<V> = (u64, fn(&V) -> bool);

/// A concurrent, bounded, in-process cache.
///
/// Cloning a `Cache` is cheap and gives another handle to the same entries.
/// See the [crate docs](crate) for the design and [`Cache::builder`] for every
/// option. `S` hashes keys in memory; `C` is the clock that drives expiry
/// and times loads (the real [`MonotonicClock`] by default; tests pass a
/// [`ManualClock`](scalekit_core::ManualClock)).
///
/// ```
/// use scalekit_cache::Cache;
///
/// let cache: Cache<u64, String> = Cache::new(10_000);
/// cache.insert(1, "one".to_string());
/// assert_eq!(cache.get(&1).as_deref(), Some("one"));
/// assert_eq!(cache.get(&2), None);
/// ```
pub struct Cache<K, V, S = ahash::RandomState, C = MonotonicClock> {
    pub(crate) inner: Arc<Inner<K, V, S, C>>,
}

impl<K, V, S, C> Clone for Cache<K, V, S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// One shard: its store behind a lock, and how far the store is over its
/// room, for other shards' writers looking for weight to shed.
pub(crate) struct Shard<K, V> {
    pub(crate) store: RwLock<Store<K, V>>,
    /// `Store::over_room`, written under the store's exclusive lock.
    pub(crate) over: AtomicU64,
}

impl<K, V> Shard<K, V> {
    /// Publishes the store's weight beyond its room, writing only when it
    /// changed (mostly it stays 0, and the line stays in the writer's cache).
    #[inline]
    pub(crate) fn mark(&self, store: &Store<K, V>) {
        let over = store.over_room();
        if self.over.load(Relaxed) != over {
            self.over.store(over, Relaxed);
        }
    }
}

pub(crate) struct Inner<K, V, S, C> {
    pub(crate) shards: Box<[CachePadded<Shard<K, V>>]>,
    shard_mask: usize,
    hasher: S,
    pub(crate) clock: C,
    /// Whether any entry can have a deadline (reads then check the clock).
    /// Set at build time, or by the first `insert_with_ttl`; never cleared.
    pub(crate) expiring: AtomicBool,
    /// Whether reads may move a deadline (time-to-idle, an `Expiry`).
    pub(crate) on_read: bool,
    /// Stale-while-revalidate period, nanoseconds (0: none).
    pub(crate) stale: u64,
    /// XFetch's beta (0: no early refresh).
    pub(crate) refresh_beta: f64,
    /// Negative caching: the lifetime of values the predicate calls negative.
    pub(crate) negative: Option<NegativeNanos<V>>,
    /// Loads in progress, by shard: the single flights.
    pub(crate) flights: Box<[Flights<K, V>]>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) tti: Option<Duration>,
    pub(crate) expiry: Option<Box<dyn Expiry<K, V>>>,
    pub(crate) weigher: Option<Box<Weigher<K, V>>>,
    pub(crate) listener: Option<Box<Listener<K, V>>>,
    pub(crate) counters: Counters,
    pub(crate) capacity: u64,
    /// Whether a capacity was set (otherwise the total is not counted).
    pub(crate) bounded: bool,
    /// The weight of all shards together (counted only when bounded).
    pub(crate) total: CachePadded<AtomicU64>,
}

impl<K, V, S, C> Cache<K, V, S, C>
where
    K: Hash + Eq,
    V: Clone,
    S: BuildHasher,
    C: Clock,
{
    /// A cache from checked settings, in `shards` shards (a power of two)
    /// with sketches sized for `sketch_entries` in all.
    pub(crate) fn from_settings(
        settings: Settings<K, V, S, C>,
        shards: usize,
        sketch_entries: u64,
    ) -> Self {
        let Settings {
            capacity,
            hasher,
            clock,
            ttl,
            tti,
            expiry,
            weigher,
            listener,
            stale,
            refresh_beta,
            negative,
            ..
        } = settings;
        let bounded = capacity.is_some();
        let capacity = capacity.unwrap_or(u64::MAX);
        let now = clock.now_nanos();
        let shards = shards.max(1).next_power_of_two();
        // Shards share the capacity exactly: the first `capacity % shards` get one more.
        let (base, extra) = (capacity / shards as u64, capacity % shards as u64);
        let sketch_per_shard = sketch_entries.div_ceil(shards as u64);
        let shards_vec = (0..shards)
            .map(|i| {
                CachePadded::new(Shard {
                    store: RwLock::new(Store::new(
                        base + u64::from((i as u64) < extra),
                        capacity,
                        sketch_per_shard,
                        mix64(i as u64 + 1),
                        now,
                    )),
                    over: AtomicU64::new(0),
                })
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                shards: shards_vec,
                shard_mask: shards - 1,
                hasher,
                expiring: AtomicBool::new(
                    ttl.is_some() || tti.is_some() || expiry.is_some() || negative.is_some(),
                ),
                on_read: tti.is_some() || expiry.is_some(),
                negative: negative.map(|(ttl, is_negative)| (nanos(ttl), is_negative)),
                stale: stale.map_or(0, nanos),
                refresh_beta,
                flights: (0..shards).map(|_| Flights::default()).collect(),
                clock,
                ttl,
                tti,
                expiry,
                weigher,
                listener,
                counters: Counters::default(),
                capacity,
                bounded,
                total: CachePadded::new(AtomicU64::new(0)),
            }),
        }
    }

    #[inline]
    pub(crate) fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.inner.hasher.hash_one(key)
    }

    #[inline]
    pub(crate) fn shard_index(&self, hash: u64) -> usize {
        // The table uses the hash's low bits (buckets) and top seven (tags);
        // the shard takes bits from the middle.
        (hash >> 32) as usize & self.inner.shard_mask
    }

    #[inline]
    pub(crate) fn shard(&self, hash: u64) -> &RwLock<Store<K, V>> {
        &self.inner.shards[self.shard_index(hash)].store
    }

    /// Whether an entry with this (hard) deadline is fresh at `now`: neither
    /// expired nor in its stale-while-revalidate period.
    #[inline]
    pub(crate) fn is_fresh(&self, deadline: u64, now: u64) -> bool {
        deadline == NEVER || now < deadline.saturating_sub(self.inner.stale)
    }

    #[inline]
    pub(crate) fn is_expiring(&self) -> bool {
        self.inner.expiring.load(Relaxed)
    }

    /// The clock's reading, or 0 when no entry can have a deadline (reads
    /// then never look at the clock).
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        if self.is_expiring() {
            self.inner.clock.now_nanos()
        } else {
            0
        }
    }

    /// The number of entries, including expired ones not yet removed.
    pub fn entry_count(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|s| s.store.read().len() as u64)
            .sum()
    }

    /// The total weight of the entries (their count without a weigher).
    pub fn weighted_size(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|s| s.store.read().weight())
            .sum()
    }

    /// The capacity given to the builder (`u64::MAX` when none was).
    pub fn max_capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// The number of shards (independent locks and policies).
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// A snapshot of the counters: hits, misses, evictions by cause, loads.
    ///
    /// ```
    /// # use scalekit_cache::Cache;
    /// let cache: Cache<u32, u32> = Cache::new(100);
    /// cache.insert(1, 1);
    /// cache.get(&1);
    /// cache.get(&2);
    /// let stats = cache.stats();
    /// assert_eq!((stats.hits, stats.misses), (1, 1));
    /// assert_eq!(stats.hit_ratio(), 0.5);
    /// ```
    pub fn stats(&self) -> CacheStats {
        let mut removals = [0u64; 4];
        for shard in self.inner.shards.iter() {
            let store = shard.store.read();
            for (total, count) in removals.iter_mut().zip(store.removals) {
                *total += count;
            }
        }
        self.inner.counters.snapshot(removals)
    }

    /// The window share of each shard's capacity, as the adaptation set it.
    #[doc(hidden)]
    pub fn window_sizes(&self) -> Vec<u64> {
        self.inner
            .shards
            .iter()
            .map(|s| s.store.read().window_max())
            .collect()
    }
}

impl<K, V, S, C> fmt::Debug for Cache<K, V, S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("capacity", &self.inner.capacity)
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}
