//! The cache builder.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use scalekit_core::{Clock, MonotonicClock};

use crate::cache::{Listener, Negative, Weigher};
use crate::{Cache, Expiry, RemovalCause};

/// Below this many entries per shard, the cache uses fewer shards: a policy
/// needs room to tell popular keys from the rest.
const MIN_SHARD_CAPACITY: u64 = 1024;
/// A sketch sized up front for at most this many entries when the count is
/// unknown (weighted or unbounded caches); it grows with the entry count.
const UNKNOWN_ENTRIES: u64 = 4096;

/// Builds a [`Cache`]. Every option has a default; only the capacity is
/// usually set.
///
/// ```
/// use std::time::Duration;
/// use scalekit_cache::Cache;
///
/// let cache: Cache<String, Vec<u8>> = Cache::builder()
///     .max_capacity(64 * 1024 * 1024)          // bytes, with the weigher below
///     .weigher(|key: &String, value: &Vec<u8>| (key.len() + value.len()) as u32)
///     .time_to_live(Duration::from_secs(300))
///     .time_to_idle(Duration::from_secs(60))
///     .eviction_listener(|key, _value, cause| println!("{key} left: {cause:?}"))
///     .build();
/// cache.insert("k".into(), vec![0; 10]);
/// assert_eq!(cache.weighted_size(), 11);
/// ```
pub struct CacheBuilder<K, V, S = ahash::RandomState> {
    pub(crate) capacity: Option<u64>,
    pub(crate) shards: Option<usize>,
    pub(crate) hasher: S,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) tti: Option<Duration>,
    pub(crate) expiry: Option<Box<dyn Expiry<K, V>>>,
    pub(crate) weigher: Option<Box<Weigher<K, V>>>,
    pub(crate) listener: Option<Box<Listener<K, V>>>,
    pub(crate) stale: Option<Duration>,
    pub(crate) refresh_beta: f64,
    pub(crate) negative: Option<Negative<V>>,
    pub(crate) _types: PhantomData<fn(K, V)>,
}

impl<K, V> CacheBuilder<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            capacity: None,
            shards: None,
            hasher: ahash::RandomState::new(),
            clock: Arc::new(MonotonicClock),
            ttl: None,
            tti: None,
            expiry: None,
            weigher: None,
            listener: None,
            stale: None,
            refresh_beta: 0.0,
            negative: None,
            _types: PhantomData,
        }
    }
}

impl<K, T, S> CacheBuilder<K, Option<T>, S> {
    /// Negative caching: a `None` value ("not found") expires after `ttl`,
    /// usually much shorter than the time-to-live of found values, so a
    /// missing row is not looked up on every request yet appears soon once
    /// created.
    ///
    /// ```
    /// use std::{sync::Arc, time::Duration};
    /// use scalekit_cache::Cache;
    /// use scalekit_core::ManualClock;
    ///
    /// let clock = ManualClock::new();
    /// let users: Cache<u64, Option<String>> = Cache::builder()
    ///     .max_capacity(10_000)
    ///     .time_to_live(Duration::from_secs(300))
    ///     .negative_ttl(Duration::from_secs(5))
    ///     .clock(Arc::new(clock.clone()))
    ///     .build();
    /// let lookup = |id: u64| if id == 1 { Some("ada".to_string()) } else { None };
    /// assert_eq!(users.get_with(1, || lookup(1)), Some("ada".to_string()));
    /// assert_eq!(users.get_with(2, || lookup(2)), None);
    /// clock.advance(Duration::from_secs(6));
    /// assert!(users.contains_key(&1));
    /// assert!(!users.contains_key(&2)); // "not found" was forgotten
    /// ```
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative = Some((ttl, Option::is_none));
        self
    }
}

impl<K, V, S> CacheBuilder<K, V, S> {
    /// The most the cache holds: a number of entries, or a total weight when a
    /// [`weigher`](Self::weigher) is set. Without it the cache is unbounded.
    ///
    /// ```
    /// # use scalekit_cache::Cache;
    /// let cache: Cache<u32, u32> = Cache::builder().max_capacity(2).build();
    /// for i in 0..10 { cache.insert(i, i); }
    /// assert!(cache.entry_count() <= 2);
    /// ```
    pub fn max_capacity(mut self, capacity: u64) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Weighs each entry (for example its size in bytes); the capacity is then
    /// a total weight. An entry heavier than the whole capacity is not kept.
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Box::new(weigher));
        self
    }

    /// Entries expire this long after they were last written.
    ///
    /// ```
    /// use std::{sync::Arc, time::Duration};
    /// use scalekit_cache::Cache;
    /// use scalekit_core::ManualClock;
    ///
    /// let clock = ManualClock::new();
    /// let cache: Cache<u32, u32> = Cache::builder()
    ///     .max_capacity(100)
    ///     .time_to_live(Duration::from_secs(10))
    ///     .clock(Arc::new(clock.clone()))
    ///     .build();
    /// cache.insert(1, 1);
    /// clock.advance(Duration::from_secs(9));
    /// assert_eq!(cache.get(&1), Some(1));
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(cache.get(&1), None);
    /// ```
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Entries expire this long after they were last read or written (never
    /// later than their time-to-live).
    pub fn time_to_idle(mut self, tti: Duration) -> Self {
        self.tti = Some(tti);
        self
    }

    /// A deadline per entry, computed from its key and value (see [`Expiry`]).
    /// Combined with the time-to-live and time-to-idle, the earliest wins.
    pub fn expire_after(mut self, expiry: impl Expiry<K, V> + 'static) -> Self {
        self.expiry = Some(Box::new(expiry));
        self
    }

    /// Told of every entry that leaves the cache and why. Called after the
    /// cache's internal lock is released, on the thread that caused the
    /// removal, so it may use the cache; keep it short.
    pub fn eviction_listener(
        mut self,
        listener: impl Fn(K, V, RemovalCause) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Box::new(listener));
        self
    }

    /// Stale-while-revalidate: for `period` after an entry's deadline, the
    /// loading methods ([`Cache::get_with`] and friends) still return its old
    /// value at once, while one caller reloads it; [`Cache::get`] treats it as
    /// absent. A failed reload keeps serving the stale value until the period
    /// ends.
    ///
    /// ```
    /// use std::{sync::Arc, time::Duration};
    /// use scalekit_cache::Cache;
    /// use scalekit_core::ManualClock;
    ///
    /// let clock = ManualClock::new();
    /// let prices: Cache<&str, u32> = Cache::builder()
    ///     .max_capacity(100)
    ///     .time_to_live(Duration::from_secs(60))
    ///     .stale_while_revalidate(Duration::from_secs(30))
    ///     .clock(Arc::new(clock.clone()))
    ///     .build();
    /// prices.insert("tea", 3);
    /// clock.advance(Duration::from_secs(70));
    /// assert_eq!(prices.get("tea"), None);                     // stale
    /// let failing = || Err::<u32, &str>("database down");
    /// assert_eq!(prices.try_get_with("tea", failing), Ok(3));  // served stale
    /// assert_eq!(prices.get_with("tea", || 4), 4);             // refreshed
    /// ```
    pub fn stale_while_revalidate(mut self, period: Duration) -> Self {
        self.stale = Some(period);
        self
    }

    /// Probabilistic early refresh (XFetch, Vattani et al., VLDB 2015): a
    /// loading call may reload an entry shortly before its deadline, with a
    /// probability that grows as the deadline nears and with how long the
    /// last load took, so that a popular key is reloaded by one caller before
    /// it expires instead of by a stampede after. `beta` scales the
    /// eagerness: 1.0 is the paper's default; 0 turns it off.
    pub fn refresh_ahead(mut self, beta: f64) -> Self {
        self.refresh_beta = if beta.is_finite() { beta.max(0.0) } else { 0.0 };
        self
    }

    /// The time source for expiry. Tests pass a
    /// [`ManualClock`](scalekit_core::ManualClock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The number of shards (rounded up to a power of two). Each shard has its
    /// own lock and policy. The default is sixteen per core (so that threads
    /// rarely meet on one lock), fewer for small
    /// capacities so that each shard keeps at least 1,024 entries.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards.max(1));
        self
    }

    /// The hasher for keys in memory (not stable across processes; placement
    /// never uses it). A fixed-seed hasher makes eviction decisions, and so hit
    /// ratios, reproducible from run to run.
    pub fn hasher<S2: BuildHasher>(self, hasher: S2) -> CacheBuilder<K, V, S2> {
        CacheBuilder {
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
            _types: PhantomData,
        }
    }

    /// Builds the cache.
    pub fn build(self) -> Cache<K, V, S>
    where
        K: Hash + Eq,
        V: Clone,
        S: BuildHasher,
    {
        let capacity = self.capacity.unwrap_or(u64::MAX);
        let shards = self.shards.unwrap_or_else(|| default_shards(capacity));
        let sketch_entries = if self.weigher.is_some() || self.capacity.is_none() {
            capacity.min(UNKNOWN_ENTRIES)
        } else {
            capacity
        };
        Cache::from_builder(self, capacity, shards, sketch_entries)
    }
}

fn default_shards(capacity: u64) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = (cores * 16).next_power_of_two() as u64;
    let most = (capacity / MIN_SHARD_CAPACITY).max(1);
    // The largest power of two within both bounds.
    let shards = wanted.min(most);
    (1u64 << (63 - shards.leading_zeros())) as usize
}

impl<K, V, S> fmt::Debug for CacheBuilder<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("capacity", &self.capacity)
            .field("shards", &self.shards)
            .field("ttl", &self.ttl)
            .field("tti", &self.tti)
            .finish_non_exhaustive()
    }
}
