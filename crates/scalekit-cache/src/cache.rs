//! The concurrent in-process cache.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::CachePadded;
use parking_lot::RwLock;
use scalekit_core::{mix64, Clock};

use crate::builder::CacheBuilder;
use crate::stats::{CacheStats, Counters};
use crate::store::{Store, NEVER};
use crate::{Expiry, RemovalCause};

pub(crate) type Listener<K, V> = dyn Fn(K, V, RemovalCause) + Send + Sync;
pub(crate) type Weigher<K, V> = dyn Fn(&K, &V) -> u32 + Send + Sync;
/// Negative caching: a lifetime and the predicate that picks negative values.
pub(crate) type Negative<V> = (Duration, fn(&V) -> bool);
type Shard<K, V> = CachePadded<RwLock<Store<K, V>>>;
type NegativeNanos<V> = (u64, fn(&V) -> bool);

/// A concurrent, bounded, in-process cache.
///
/// Cloning a `Cache` is cheap and gives another handle to the same entries.
/// See the [crate docs](crate) for the design and [`Cache::builder`] for every
/// option.
///
/// ```
/// use scalekit_cache::Cache;
///
/// let cache: Cache<u64, String> = Cache::new(10_000);
/// cache.insert(1, "one".to_string());
/// assert_eq!(cache.get(&1).as_deref(), Some("one"));
/// assert_eq!(cache.get(&2), None);
/// ```
pub struct Cache<K, V, S = ahash::RandomState> {
    pub(crate) inner: Arc<Inner<K, V, S>>,
}

impl<K, V, S> Clone for Cache<K, V, S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

pub(crate) struct Inner<K, V, S> {
    shards: Box<[Shard<K, V>]>,
    shard_mask: usize,
    hasher: S,
    pub(crate) clock: Arc<dyn Clock>,
    /// Whether any entry can have a deadline (reads then check the clock).
    /// Set at build time, or by the first `insert_with_ttl`; never cleared.
    expiring: AtomicBool,
    /// Stale-while-revalidate period, nanoseconds (0: none).
    pub(crate) stale: u64,
    /// XFetch's beta (0: no early refresh).
    pub(crate) refresh_beta: f64,
    /// Negative caching: the lifetime of values the predicate calls negative.
    negative: Option<NegativeNanos<V>>,
    /// Loads in progress, by shard: the single flights.
    pub(crate) flights: Box<[crate::loading::Flights<K, V>]>,
    ttl: Option<Duration>,
    tti: Option<Duration>,
    expiry: Option<Box<dyn Expiry<K, V>>>,
    weigher: Option<Box<Weigher<K, V>>>,
    listener: Option<Box<Listener<K, V>>>,
    pub(crate) counters: Counters,
    capacity: u64,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache holding at most `max_capacity` entries, with every other option at
    /// its default. Use [`Cache::builder`] for the rest.
    pub fn new(max_capacity: u64) -> Self {
        Self::builder().max_capacity(max_capacity).build()
    }

    /// A builder with every option.
    pub fn builder() -> CacheBuilder<K, V> {
        CacheBuilder::new()
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq,
    V: Clone,
    S: BuildHasher,
{
    pub(crate) fn from_builder(
        builder: CacheBuilder<K, V, S>,
        capacity: u64,
        shards: usize,
        sketch_entries: u64,
    ) -> Self {
        let CacheBuilder {
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
        } = builder;
        let now = clock.now_nanos();
        let shards = shards.max(1).next_power_of_two();
        // Shards share the capacity exactly: the first `capacity % shards` get one more.
        let (base, extra) = (capacity / shards as u64, capacity % shards as u64);
        let sketch_per_shard = sketch_entries.div_ceil(shards as u64);
        let shards_vec = (0..shards)
            .map(|i| {
                CachePadded::new(RwLock::new(Store::new(
                    base + u64::from((i as u64) < extra),
                    sketch_per_shard,
                    mix64(i as u64 + 1),
                    now,
                )))
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
                negative: negative.map(|(ttl, is_negative)| (nanos(ttl), is_negative)),
                stale: stale.map_or(0, nanos),
                refresh_beta,
                flights: (0..shards)
                    .map(|_| crate::loading::Flights::default())
                    .collect(),
                clock,
                ttl,
                tti,
                expiry,
                weigher,
                listener,
                counters: Counters::default(),
                capacity,
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
        &self.inner.shards[self.shard_index(hash)]
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

    #[inline]
    pub(crate) fn now(&self) -> u64 {
        if self.is_expiring() {
            self.inner.clock.now_nanos()
        } else {
            0
        }
    }

    /// The value for `key`, if present and not expired. Counts as an access
    /// for the eviction policy and for time-to-idle.
    ///
    /// ```
    /// # use scalekit_cache::Cache;
    /// let cache: Cache<String, u32> = Cache::new(100);
    /// cache.insert("a".to_string(), 1);
    /// assert_eq!(cache.get("a"), Some(1));
    /// ```
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.lookup(key, false) {
            Found::Fresh(value) => Some(value),
            Found::Refresh(_) | Found::Missing => None,
        }
    }

    /// Looks a key up, counting a hit or a miss. With `for_load`, an entry in
    /// its stale-while-revalidate period, or picked for early refresh, is
    /// returned as `Refresh`; otherwise such an entry is a miss.
    #[inline]
    pub(crate) fn lookup<Q>(&self, key: &Q, for_load: bool) -> Found<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let store = self.shard(hash).read();
        let now = self.now();
        if let Some(idx) = store.find(hash, key) {
            let node = store.node(idx);
            let deadline = node.expires_at.load(Relaxed);
            // Without deadlines `now` is 0 and every deadline NEVER.
            if now < deadline {
                let fresh_until = deadline.saturating_sub(self.inner.stale);
                let stale = now >= fresh_until && deadline != NEVER;
                if stale && !for_load {
                    drop(store);
                    self.inner.counters.misses.increment();
                    return Found::Missing;
                }
                if let Some(tti) = self.inner.tti {
                    if !stale {
                        let write_deadline = store.slab.timer(idx).write_deadline;
                        let idle = now.saturating_add(nanos(tti)).min(write_deadline);
                        let extended = idle.saturating_add(self.inner.stale);
                        if deadline != extended {
                            node.expires_at.store(extended, Relaxed);
                        }
                    }
                }
                store.record_read(node);
                self.inner.counters.hits.increment();
                let value = node.value.clone();
                if stale {
                    return Found::Refresh(value);
                }
                if for_load
                    && self.inner.refresh_beta > 0.0
                    && store.slab.timer(idx).load_nanos > 0
                    && fresh_until != NEVER
                {
                    // XFetch (Vattani et al., VLDB 2015): refresh early with a
                    // probability that grows as the deadline nears, scaled by
                    // how long a load takes.
                    let early = store.slab.timer(idx).load_nanos as f64
                        * self.inner.refresh_beta
                        * -crate::loading::ln_uniform();
                    if now as f64 + early >= fresh_until as f64 {
                        return Found::Refresh(value);
                    }
                }
                return Found::Fresh(value);
            }
        }
        drop(store);
        self.inner.counters.misses.increment();
        Found::Missing
    }

    /// Whether `key` is present and not expired. Not an access: it changes
    /// neither the policy's view nor the stats.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let store = self.shard(hash).read();
        let now = self.now();
        store
            .find(hash, key)
            .is_some_and(|idx| self.is_fresh(store.node(idx).expires_at.load(Relaxed), now))
    }

    /// Inserts or replaces the value for `key`. A replaced value is reported to
    /// the eviction listener as [`RemovalCause::Replaced`]; entries pushed out to
    /// make room as [`RemovalCause::Size`].
    ///
    /// ```
    /// # use scalekit_cache::Cache;
    /// let cache: Cache<u32, &str> = Cache::new(100);
    /// cache.insert(7, "seven");
    /// cache.insert(7, "SEVEN");
    /// assert_eq!(cache.get(&7), Some("SEVEN"));
    /// ```
    pub fn insert(&self, key: K, value: V) {
        self.insert_with_deadline(key, value, None, 0);
    }

    /// Inserts or replaces with a time-to-live for this entry only, overriding the
    /// cache's time-to-live and [`Expiry`] for it (time-to-idle still applies).
    ///
    /// ```
    /// # use scalekit_cache::Cache;
    /// # use std::time::Duration;
    /// let cache: Cache<u32, u32> = Cache::new(100);
    /// cache.insert_with_ttl(1, 10, Duration::from_secs(30));
    /// assert_eq!(cache.get(&1), Some(10));
    /// ```
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) {
        self.insert_with_deadline(key, value, Some(ttl), 0);
    }

    pub(crate) fn insert_with_deadline(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
        load_nanos: u64,
    ) {
        let hash = self.hash(&key);
        let weight = self.inner.weigher.as_ref().map_or(1, |w| w(&key, &value));
        if ttl.is_some() && !self.is_expiring() {
            self.inner.expiring.store(true, Relaxed);
        }
        let expiring = self.is_expiring();
        let now = if expiring {
            self.inner.clock.now_nanos()
        } else {
            0
        };
        let mut removed = Removed::new(self.inner.listener.is_some());
        {
            let mut store = self.shard(hash).write();
            let (write_deadline, deadline) = if expiring {
                let replacing = store.find(hash, &key).is_some();
                self.deadlines(&key, &value, now, ttl, replacing)
            } else {
                (NEVER, NEVER)
            };
            let mut sink = |k, v, cause| removed.push(k, v, cause);
            let (idx, new) = store.insert(hash, key, value, weight, deadline, now, &mut sink);
            if let Some(idx) = idx {
                store.set_write_info(idx, write_deadline, load_nanos);
            }
            // Replacing a value changes neither the policy's counts nor the
            // clock's: the periodic work waits for the next new key (or runs
            // now if entries expire).
            if new || expiring {
                store.maintain(now, false, &mut sink);
            }
        }
        removed.notify(self.inner.listener.as_deref());
    }

    /// (write deadline, effective deadline) for a new or replaced entry.
    fn deadlines(
        &self,
        key: &K,
        value: &V,
        now: u64,
        ttl: Option<Duration>,
        replacing: bool,
    ) -> (u64, u64) {
        let after = |d: Duration| now.saturating_add(nanos(d));
        let write = match ttl {
            Some(ttl) => after(ttl),
            None => {
                let mut deadline = self.inner.ttl.map_or(NEVER, after);
                if let Some(expiry) = &self.inner.expiry {
                    let custom = if replacing {
                        expiry.expire_after_update(key, value)
                    } else {
                        expiry.expire_after_create(key, value)
                    };
                    if let Some(d) = custom {
                        deadline = deadline.min(after(d));
                    }
                }
                if let Some((ttl, is_negative)) = self.inner.negative {
                    if is_negative(value) {
                        deadline = deadline.min(now.saturating_add(ttl));
                    }
                }
                deadline
            }
        };
        let idle = self.inner.tti.map_or(NEVER, after);
        (write, write.min(idle).saturating_add(self.inner.stale))
    }

    /// Removes `key`, returning its value if it was present (expired or not).
    /// The listener hears [`RemovalCause::Explicit`].
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let removed = self.shard(hash).write().remove(hash, key);
        let (key, value) = removed?;
        if let Some(listener) = &self.inner.listener {
            listener(key, value.clone(), RemovalCause::Explicit);
        }
        Some(value)
    }

    /// Removes `key`; the same as [`Cache::remove`] without returning the value.
    pub fn invalidate<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let _ = self.remove(key);
    }

    /// Removes every entry (the listener hears [`RemovalCause::Explicit`]) and
    /// forgets the popularity history.
    pub fn invalidate_all(&self) {
        for shard in self.inner.shards.iter() {
            let mut removed = Removed::new(self.inner.listener.is_some());
            shard
                .write()
                .clear(RemovalCause::Explicit, &mut |k, v, cause| {
                    removed.push(k, v, cause)
                });
            removed.notify(self.inner.listener.as_deref());
        }
    }

    /// Removes every entry for which `predicate` holds (the listener hears
    /// [`RemovalCause::Explicit`]). Runs shard by shard, so concurrent writes to
    /// other shards go on meanwhile.
    ///
    /// ```
    /// # use scalekit_cache::Cache;
    /// let cache: Cache<u32, u32> = Cache::new(100);
    /// for i in 0..10 { cache.insert(i, i * i); }
    /// cache.invalidate_if(|k, _| k % 2 == 0);
    /// assert_eq!(cache.entry_count(), 5);
    /// ```
    pub fn invalidate_if(&self, mut predicate: impl FnMut(&K, &V) -> bool) {
        for shard in self.inner.shards.iter() {
            let mut removed = Removed::new(self.inner.listener.is_some());
            shard.write().retain(
                |k, v| !predicate(k, v),
                RemovalCause::Explicit,
                &mut |k, v, cause| removed.push(k, v, cause),
            );
            removed.notify(self.inner.listener.as_deref());
        }
    }

    /// Runs pending maintenance now: expires what is due and adapts the policy.
    /// Writes do this as they go; call it when a cache may sit idle with
    /// expired entries you want gone (and reported to the listener).
    pub fn run_pending_tasks(&self) {
        let now = self.now();
        for shard in self.inner.shards.iter() {
            let mut removed = Removed::new(self.inner.listener.is_some());
            shard
                .write()
                .maintain(now, true, &mut |k, v, cause| removed.push(k, v, cause));
            removed.notify(self.inner.listener.as_deref());
        }
    }

    /// The number of entries, including expired ones not yet removed.
    pub fn entry_count(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|s| s.read().len() as u64)
            .sum()
    }

    /// The total weight of the entries (their count without a weigher).
    pub fn weighted_size(&self) -> u64 {
        self.inner.shards.iter().map(|s| s.read().weight()).sum()
    }

    /// The capacity given to the builder.
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
            let store = shard.read();
            for (total, count) in removals.iter_mut().zip(store.removals) {
                *total += count;
            }
        }
        self.inner.counters.snapshot(removals)
    }

    /// The window share of each shard's capacity, as the hill climber set it.
    #[doc(hidden)]
    pub fn window_sizes(&self) -> Vec<u64> {
        self.inner
            .shards
            .iter()
            .map(|s| s.read().window_max())
            .collect()
    }
}

impl<K, V, S> fmt::Debug for Cache<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("capacity", &self.inner.capacity)
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}

/// What a lookup found.
pub(crate) enum Found<V> {
    Fresh(V),
    /// A value to serve while one caller refreshes it.
    Refresh(V),
    Missing,
}

/// Entries removed under a shard's lock, handed to the listener after it is
/// released (so a listener may use the cache). Collected only when a listener
/// is set; otherwise they are dropped in place.
struct Removed<K, V> {
    collect: bool,
    entries: Vec<(K, V, RemovalCause)>,
}

impl<K, V> Removed<K, V> {
    fn new(collect: bool) -> Self {
        Self {
            collect,
            entries: Vec::new(),
        }
    }

    fn push(&mut self, key: K, value: V, cause: RemovalCause) {
        if self.collect {
            self.entries.push((key, value, cause));
        }
    }

    fn notify(self, listener: Option<&Listener<K, V>>) {
        if let Some(listener) = listener {
            for (key, value, cause) in self.entries {
                listener(key, value, cause);
            }
        }
    }
}
