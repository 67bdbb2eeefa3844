//! The tiered cache: L1 (in process) -> L2 (a [`Tier`]) -> loader.

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use scalekit_core::{Clock, ConfigError, MonotonicClock};

use crate::cache::Cache;
use crate::stats::CacheStats;
use crate::tier::{Tier, TierError};

/// What a write through a [`TieredCache`] does to the remote tier.
///
/// Either way the entry leaves every other process's L1 (when coherence is
/// on), so no process keeps serving the old value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WritePolicy {
    /// Deletes the key from L2 and from L1 (here and, through coherence,
    /// everywhere); the next read loads it from the source. The default: a
    /// delete is idempotent, so two racing writers cannot leave the older
    /// value behind in L2.
    #[default]
    InvalidateOnWrite,
    /// Stores the new value in L2 and in this process's L1, and removes it
    /// from every other L1, which then read the new value from L2.
    WriteThrough,
}

/// A two-level cache: an in-process [`Cache`] (L1) in front of a remote
/// [`Tier`] (L2, for example Redis) in front of a loader (the database).
///
/// - Reads are read-through: L1, then L2 (a hit there is promoted into L1),
///   then the loader, whose value is stored in both tiers. Concurrent reads
///   of one key in one process run L2 and the loader once (L1's single
///   flight, [`Cache::try_get_with_async`]).
/// - An L2 that errs or is slower than its time limit never fails a read: it
///   counts as an L2 miss (see [`TieredStats`]) and the loader answers. L1 keeps
///   serving meanwhile, and once L2 answers again it is used again; nothing has
///   to be reset by hand.
/// - Writes follow the [`WritePolicy`]. With coherence (feature `redis`, see
///   `RedisCoherence`), a write or an invalidation also removes the key from
///   the L1 of every other process sharing the namespace.
///
/// Cloning is cheap and shares everything. The cache runs on Tokio (time
/// limits use `tokio::time`). When the last clone is dropped, the coherence
/// tasks stop.
///
/// ```
/// # tokio_test::block_on(async {
/// use std::time::Duration;
/// use scalekit_cache::{Cache, TieredCache};
/// # use scalekit_cache::{Tier, TierError};
/// # #[derive(Default)]
/// # struct MemoryTier(parking_lot::Mutex<std::collections::HashMap<u64, String>>);
/// # #[async_trait::async_trait]
/// # impl Tier<u64, String> for MemoryTier {
/// #     async fn get(&self, key: &u64) -> Result<Option<String>, TierError> { Ok(self.0.lock().get(key).cloned()) }
/// #     async fn set(&self, key: &u64, value: &String, _: Duration) -> Result<(), TierError> { self.0.lock().insert(*key, value.clone()); Ok(()) }
/// #     async fn delete(&self, key: &u64) -> Result<(), TierError> { self.0.lock().remove(key); Ok(()) }
/// # }
///
/// // Any `Tier` works as L2: `RedisTier` with the `redis` feature.
/// let l2 = MemoryTier::default();
/// let cache = TieredCache::builder(Cache::new(10_000), l2)
///     .l2_ttl(Duration::from_secs(600))
///     .build()?;
///
/// let name = cache.get_with(7, async { "user 7".to_string() }).await;
/// assert_eq!(name, "user 7");
/// // Now in both tiers: another process would find it in L2.
/// assert_eq!(cache.l1().get(&7).as_deref(), Some("user 7"));
/// assert_eq!(cache.stats().l2_misses, 1);
/// # Ok::<(), scalekit_cache::ConfigError>(())
/// # }).unwrap();
/// ```
pub struct TieredCache<K, V, S = ahash::RandomState, C = MonotonicClock> {
    shared: Arc<Shared<K, V, S, C>>,
}

impl<K, V, S, C> Clone for TieredCache<K, V, S, C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<K, V, S, C> {
    local: Local<K, V, S, C>,
    l2: Arc<dyn Tier<K, V>>,
    policy: WritePolicy,
    l2_ttl: Duration,
    l2_timeout: Duration,
    /// Tells other processes about writes; dropping it stops its tasks.
    bus: Option<Box<dyn Broadcast<K>>>,
}

/// Sends this process's invalidations to the others (coherence).
pub(crate) trait Broadcast<K>: Send + Sync {
    /// Queues an invalidation of `key` for the other processes.
    fn publish(&self, key: &K);
}

/// What the invalidation receiver needs of a tiered cache: its L1, the load
/// epochs and the counters. Shared with background tasks without keeping the
/// `TieredCache` itself alive.
pub(crate) struct Local<K, V, S, C> {
    pub(crate) l1: Cache<K, V, S, C>,
    pub(crate) epochs: Arc<Epochs>,
    pub(crate) counters: Arc<TierCounters>,
}

impl<K, V, S, C> Clone for Local<K, V, S, C> {
    fn clone(&self) -> Self {
        Self {
            l1: self.l1.clone(),
            epochs: Arc::clone(&self.epochs),
            counters: Arc::clone(&self.counters),
        }
    }
}

impl<K, V, S, C> Local<K, V, S, C>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
    C: Clock,
{
    /// Removes `key` from L1, and marks loads of it in flight as stale.
    pub(crate) fn invalidate(&self, key: &K) {
        self.epochs.bump(key);
        self.l1.invalidate(key);
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    /// Clears L1 (a repair after invalidations may have been lost), and marks
    /// every load in flight as stale.
    pub(crate) fn clear(&self) {
        self.epochs.bump_all();
        self.l1.invalidate_all();
        self.counters.l1_clears.fetch_add(1, Relaxed);
    }
}

/// Invalidation counters in stripes by key hash, plus one for "everything".
///
/// A load reads its key's stamp before it asks L2 and the loader, and again
/// after: if an invalidation of that key (or of a key in the same stripe, or a
/// clear) came in meanwhile, the loaded value may predate the write, so it is
/// returned to the caller but not kept in L1 or written to L2. False positives
/// (another key of the stripe) only cost a reload.
pub(crate) struct Epochs {
    stripes: Box<[AtomicU64]>,
    all: AtomicU64,
    hasher: ahash::RandomState,
}

const EPOCH_STRIPES: usize = 1024;

impl Epochs {
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..EPOCH_STRIPES).map(|_| AtomicU64::new(0)).collect(),
            all: AtomicU64::new(0),
            hasher: ahash::RandomState::new(),
        }
    }

    fn stripe<K: Hash>(&self, key: &K) -> &AtomicU64 {
        let i = self.hasher.hash_one(key) as usize & (EPOCH_STRIPES - 1);
        &self.stripes[i]
    }

    fn stamp<K: Hash>(&self, key: &K) -> (u64, u64) {
        // Both counters only grow, so any bump between two stamps shows.
        (self.all.load(Relaxed), self.stripe(key).load(Relaxed))
    }

    fn bump<K: Hash>(&self, key: &K) {
        self.stripe(key).fetch_add(1, Relaxed);
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn bump_all(&self) {
        self.all.fetch_add(1, Relaxed);
    }
}

/// The tiered cache's own counters (L1 counts its own in [`CacheStats`]).
#[derive(Default)]
pub(crate) struct TierCounters {
    l2_hits: AtomicU64,
    l2_misses: AtomicU64,
    l2_errors: AtomicU64,
    l2_timeouts: AtomicU64,
    l2_rejected: AtomicU64,
    l2_write_errors: AtomicU64,
    stale_loads: AtomicU64,
    pub(crate) invalidations_sent: AtomicU64,
    pub(crate) invalidations_received: AtomicU64,
    pub(crate) publish_errors: AtomicU64,
    pub(crate) sequence_gaps: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) l1_clears: AtomicU64,
    /// The invalidation subscription is up (coherence only).
    pub(crate) subscribed: AtomicBool,
    /// Woken whenever `subscribed` changes.
    pub(crate) subscription_changed: tokio::sync::Notify,
}

impl TierCounters {
    /// Records whether the invalidation subscription is up, and wakes waiters.
    #[cfg(feature = "redis")]
    pub(crate) fn set_subscribed(&self, up: bool) {
        self.subscribed
            .store(up, std::sync::atomic::Ordering::Release);
        self.subscription_changed.notify_waiters();
    }
}

impl TierCounters {
    fn read_error(&self, e: &TierError) {
        let counter = match e {
            TierError::Timeout { .. } => &self.l2_timeouts,
            TierError::Rejected(_) => &self.l2_rejected,
            _ => &self.l2_errors,
        };
        counter.fetch_add(1, Relaxed);
    }
}

/// A snapshot of a [`TieredCache`]'s counters.
///
/// ```
/// # use scalekit_cache::TieredStats;
/// fn l2_hit_ratio(stats: &TieredStats) -> f64 {
///     let asked = stats.l2_hits + stats.l2_misses;
///     if asked == 0 { 0.0 } else { stats.l2_hits as f64 / asked as f64 }
/// }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TieredStats {
    /// The L1 cache's own stats. Its hits are the tiered cache's L1 hits; its
    /// loads are L1 fills (an L2 hit or a loader run).
    pub l1: CacheStats,
    /// Reads that L1 missed and L2 answered (promoted into L1).
    pub l2_hits: u64,
    /// Reads that L1 and L2 missed, or for which L2 failed (then also counted
    /// in `l2_errors` or `l2_timeouts`): the loader answered.
    pub l2_misses: u64,
    /// L2 reads that failed with an error other than a timeout.
    pub l2_errors: u64,
    /// L2 calls (reads and writes) that passed the time limit.
    pub l2_timeouts: u64,
    /// L2 calls an admission policy refused ([`TierError::Rejected`], see
    /// [`GuardedTier`](crate::GuardedTier)): the tier was not asked.
    pub l2_rejected: u64,
    /// L2 writes (`set`, `delete`) that failed or timed out.
    pub l2_write_errors: u64,
    /// Loads that raced an invalidation of their key: the value went to the
    /// caller but was not kept in L1 nor written to L2.
    pub stale_loads: u64,
    /// Invalidations this process sent to the others.
    pub invalidations_sent: u64,
    /// Invalidations from other processes applied to this L1.
    pub invalidations_received: u64,
    /// Invalidations that could not be sent (queue full, L2 down): the other
    /// processes see a gap in this process's sequence and clear their L1.
    pub publish_errors: u64,
    /// Gaps seen in another process's sequence numbers (each cleared L1).
    pub sequence_gaps: u64,
    /// Times the invalidation subscription was (re)established.
    pub reconnects: u64,
    /// Times L1 was cleared because invalidations may have been lost.
    pub l1_clears: u64,
}

impl<K, V, S, C> TieredCache<K, V, S, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
    C: Clock + 'static,
{
    /// A builder for a tiered cache over `l1` and `l2`.
    ///
    /// L1's own options (capacity, time-to-live, listener) come from its
    /// [`CacheBuilder`](crate::CacheBuilder). Give L1 a time-to-live: it bounds
    /// how long a process can serve a value whose invalidation it missed.
    pub fn builder(
        l1: Cache<K, V, S, C>,
        l2: impl Tier<K, V> + 'static,
    ) -> TieredCacheBuilder<K, V, S, C> {
        TieredCacheBuilder {
            l1,
            l2: Arc::new(l2),
            policy: WritePolicy::default(),
            l2_ttl: Duration::from_secs(3600),
            l2_timeout: Duration::from_millis(250),
            bus: None,
        }
    }

    /// The L1 cache (for direct reads, its stats, or local-only changes).
    pub fn l1(&self) -> &Cache<K, V, S, C> {
        &self.shared.local.l1
    }

    /// The write policy.
    pub fn write_policy(&self) -> WritePolicy {
        self.shared.policy
    }

    /// The value for `key` from L1 or L2, without loading it. An L2 hit is
    /// promoted into L1; an L2 failure reads as `None`.
    pub async fn get(&self, key: &K) -> Option<V> {
        if let Some(value) = self.l1().get(key) {
            return Some(value);
        }
        let stamp = self.shared.local.epochs.stamp(key);
        let value = self.l2_get(key).await?;
        if self.shared.local.epochs.stamp(key) == stamp {
            self.l1().insert(key.clone(), value.clone());
        }
        Some(value)
    }

    /// The value for `key`: from L1, else from L2 (promoted into L1), else
    /// from `init`, whose value is stored in L2 and L1. Concurrent callers in
    /// this process share one load.
    pub async fn get_with(&self, key: K, init: impl Future<Output = V>) -> V {
        match self
            .try_get_with(key, async { Ok::<V, std::convert::Infallible>(init.await) })
            .await
        {
            Ok(value) => value,
            Err(never) => match *never {},
        }
    }

    /// Like [`get_with`](Self::get_with) with a loader that may fail. Only the
    /// loader's error is returned: an L2 failure falls back to the loader.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// # use std::time::Duration;
    /// # use scalekit_cache::{Cache, TieredCache, Tier, TierError};
    /// # struct DownTier;
    /// # #[async_trait::async_trait]
    /// # impl Tier<u64, String> for DownTier {
    /// #     async fn get(&self, _: &u64) -> Result<Option<String>, TierError> { Err(TierError::Unavailable("down".into())) }
    /// #     async fn set(&self, _: &u64, _: &String, _: Duration) -> Result<(), TierError> { Err(TierError::Unavailable("down".into())) }
    /// #     async fn delete(&self, _: &u64) -> Result<(), TierError> { Err(TierError::Unavailable("down".into())) }
    /// # }
    /// // L2 is down: reads still succeed through the loader.
    /// let cache = TieredCache::builder(Cache::new(100), DownTier).build()?;
    /// let v = cache.try_get_with(1, async { Ok::<_, std::io::Error>("one".to_string()) }).await;
    /// assert_eq!(v.unwrap(), "one");
    /// assert_eq!(cache.stats().l2_errors, 2); // the failed get, and the failed set
    /// # Ok::<(), scalekit_cache::ConfigError>(())
    /// # }).unwrap();
    /// ```
    pub async fn try_get_with<E>(
        &self,
        key: K,
        init: impl Future<Output = Result<V, E>>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let shared = &*self.shared;
        let epochs = &shared.local.epochs;
        let mut stamp = None;
        let load = async {
            stamp = Some(epochs.stamp(&key));
            if let Some(value) = self.l2_get(&key).await {
                return Ok(value);
            }
            let value = init.await?;
            if stamp == Some(epochs.stamp(&key)) {
                // Read-through: the next process finds it in L2.
                self.l2_set(&key, &value).await;
            }
            Ok(value)
        };
        let result = shared.local.l1.try_get_with_async(key.clone(), load).await;
        if let Some(stamp) = stamp {
            // This call led the load: if the key was invalidated meanwhile,
            // the value may predate the write. Serve it once, keep it nowhere.
            if result.is_ok() && epochs.stamp(&key) != stamp {
                shared.local.l1.invalidate(&key);
                shared.local.counters.stale_loads.fetch_add(1, Relaxed);
            }
        }
        result
    }

    /// The values for `keys` (in order) from L1, then the rest from L2 in one
    /// call ([`Tier::get_many`]; hits are promoted into L1). Nothing is loaded;
    /// an L2 failure reads as misses.
    pub async fn get_many(&self, keys: &[K]) -> Vec<Option<V>> {
        let mut values: Vec<Option<V>> = keys.iter().map(|k| self.l1().get(k)).collect();
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| values[i].is_none()).collect();
        if missing.is_empty() {
            return values;
        }
        let wanted: Vec<K> = missing.iter().map(|&i| keys[i].clone()).collect();
        let stamps: Vec<_> = wanted
            .iter()
            .map(|k| self.shared.local.epochs.stamp(k))
            .collect();
        let counters = &self.shared.local.counters;
        let found =
            match tokio::time::timeout(self.shared.l2_timeout, self.shared.l2.get_many(&wanted))
                .await
            {
                Ok(Ok(found)) if found.len() == wanted.len() => found,
                Ok(Err(e)) => {
                    counters.read_error(&e);
                    counters.l2_misses.fetch_add(wanted.len() as u64, Relaxed);
                    return values;
                }
                Ok(Ok(_)) => {
                    counters.l2_errors.fetch_add(1, Relaxed);
                    counters.l2_misses.fetch_add(wanted.len() as u64, Relaxed);
                    return values;
                }
                Err(_) => {
                    counters.l2_timeouts.fetch_add(1, Relaxed);
                    counters.l2_misses.fetch_add(wanted.len() as u64, Relaxed);
                    return values;
                }
            };
        for ((i, value), (key, stamp)) in missing
            .into_iter()
            .zip(found)
            .zip(wanted.into_iter().zip(stamps))
        {
            match value {
                Some(value) => {
                    counters.l2_hits.fetch_add(1, Relaxed);
                    if self.shared.local.epochs.stamp(&key) == stamp {
                        self.l1().insert(key, value.clone());
                    }
                    values[i] = Some(value);
                }
                None => {
                    counters.l2_misses.fetch_add(1, Relaxed);
                }
            }
        }
        values
    }

    /// Writes `value` for `key` after the source of truth was updated, as the
    /// [`WritePolicy`] says, and tells the other processes to drop the key from
    /// their L1.
    ///
    /// The local L1 and the other processes are updated even when L2 fails;
    /// the error then says L2 may still hold the old value (until its TTL).
    pub async fn insert(&self, key: K, value: V) -> Result<(), TierError> {
        let shared = &*self.shared;
        let result = match shared.policy {
            WritePolicy::WriteThrough => {
                let result = self
                    .l2_call("set", shared.l2.set(&key, &value, shared.l2_ttl))
                    .await;
                shared.local.epochs.bump(&key);
                shared.local.l1.insert(key.clone(), value);
                result
            }
            WritePolicy::InvalidateOnWrite => {
                let result = self.l2_call("delete", shared.l2.delete(&key)).await;
                shared.local.invalidate(&key);
                result
            }
        };
        self.broadcast(&key);
        result
    }

    /// Removes `key` from L2, from this L1 and (with coherence) from every
    /// other process's L1. Call it after the source of truth changed or
    /// deleted the key.
    pub async fn invalidate(&self, key: &K) -> Result<(), TierError> {
        let shared = &*self.shared;
        let result = self.l2_call("delete", shared.l2.delete(key)).await;
        shared.local.invalidate(key);
        self.broadcast(key);
        result
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TieredStats {
        let c = &self.shared.local.counters;
        TieredStats {
            l1: self.l1().stats(),
            l2_hits: c.l2_hits.load(Relaxed),
            l2_misses: c.l2_misses.load(Relaxed),
            l2_errors: c.l2_errors.load(Relaxed),
            l2_timeouts: c.l2_timeouts.load(Relaxed),
            l2_rejected: c.l2_rejected.load(Relaxed),
            l2_write_errors: c.l2_write_errors.load(Relaxed),
            stale_loads: c.stale_loads.load(Relaxed),
            invalidations_sent: c.invalidations_sent.load(Relaxed),
            invalidations_received: c.invalidations_received.load(Relaxed),
            publish_errors: c.publish_errors.load(Relaxed),
            sequence_gaps: c.sequence_gaps.load(Relaxed),
            reconnects: c.reconnects.load(Relaxed),
            l1_clears: c.l1_clears.load(Relaxed),
        }
    }

    /// Whether this cache hears the other processes' invalidations now: true
    /// when its coherence subscription is up, and always true without
    /// coherence (there is nothing to hear).
    ///
    /// A process should not report itself ready to serve before this holds:
    /// until it does, another process's write would not reach this L1 (L1's
    /// time-to-live still bounds how long a stale entry lives).
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// # use std::time::Duration;
    /// # use scalekit_cache::{Cache, TieredCache, Tier, TierError};
    /// # struct NoTier;
    /// # #[async_trait::async_trait]
    /// # impl Tier<u64, String> for NoTier {
    /// #     async fn get(&self, _: &u64) -> Result<Option<String>, TierError> { Ok(None) }
    /// #     async fn set(&self, _: &u64, _: &String, _: Duration) -> Result<(), TierError> { Ok(()) }
    /// #     async fn delete(&self, _: &u64) -> Result<(), TierError> { Ok(()) }
    /// # }
    /// let cache = TieredCache::builder(Cache::new(100), NoTier).build()?;
    /// assert!(cache.is_coherent()); // no coherence configured
    /// # Ok::<(), scalekit_cache::ConfigError>(())
    /// # }).unwrap();
    /// ```
    pub fn is_coherent(&self) -> bool {
        self.shared.bus.is_none() || self.shared.local.counters.subscribed.load(Acquire)
    }

    /// Waits until [`is_coherent`](Self::is_coherent) holds or `within` has
    /// passed, and returns it: at start-up, so that a process reports ready
    /// only once the invalidation subscription is up.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// # use std::time::Duration;
    /// # use scalekit_cache::{Cache, TieredCache, Tier, TierError};
    /// # struct NoTier;
    /// # #[async_trait::async_trait]
    /// # impl Tier<u64, String> for NoTier {
    /// #     async fn get(&self, _: &u64) -> Result<Option<String>, TierError> { Ok(None) }
    /// #     async fn set(&self, _: &u64, _: &String, _: Duration) -> Result<(), TierError> { Ok(()) }
    /// #     async fn delete(&self, _: &u64) -> Result<(), TierError> { Ok(()) }
    /// # }
    /// // With RedisCoherence this waits for the subscription (see the crate docs).
    /// let cache = TieredCache::builder(Cache::new(100), NoTier).build()?;
    /// assert!(cache.wait_coherent(Duration::from_secs(1)).await);
    /// # Ok::<(), scalekit_cache::ConfigError>(())
    /// # }).unwrap();
    /// ```
    pub async fn wait_coherent(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        let counters = &self.shared.local.counters;
        loop {
            let changed = counters.subscription_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.is_coherent() {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.is_coherent();
            }
        }
    }

    fn broadcast(&self, key: &K) {
        if let Some(bus) = &self.shared.bus {
            bus.publish(key);
        }
    }

    /// An L2 read, bounded in time; a failure reads as a miss.
    async fn l2_get(&self, key: &K) -> Option<V> {
        let counters = &self.shared.local.counters;
        match tokio::time::timeout(self.shared.l2_timeout, self.shared.l2.get(key)).await {
            Ok(Ok(Some(value))) => {
                counters.l2_hits.fetch_add(1, Relaxed);
                return Some(value);
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => counters.read_error(&e),
            Err(_) => {
                counters.l2_timeouts.fetch_add(1, Relaxed);
            }
        }
        counters.l2_misses.fetch_add(1, Relaxed);
        None
    }

    /// A read-through fill of L2; a failure is only counted.
    async fn l2_set(&self, key: &K, value: &V) {
        let shared = &*self.shared;
        if let Err(e) = self
            .l2_call("set", shared.l2.set(key, value, shared.l2_ttl))
            .await
        {
            // Counted as a read-side error too: it is part of a read.
            if !matches!(e, TierError::Timeout { .. } | TierError::Rejected(_)) {
                shared.local.counters.l2_errors.fetch_add(1, Relaxed);
            }
        }
    }

    async fn l2_call(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<(), TierError>>,
    ) -> Result<(), TierError> {
        let counters = &self.shared.local.counters;
        let limit = self.shared.l2_timeout;
        let result = match tokio::time::timeout(limit, call).await {
            Ok(result) => result,
            Err(_) => Err(TierError::Timeout {
                operation,
                after: limit,
            }),
        };
        if let Err(e) = &result {
            match e {
                TierError::Timeout { .. } => counters.l2_timeouts.fetch_add(1, Relaxed),
                TierError::Rejected(_) => counters.l2_rejected.fetch_add(1, Relaxed),
                _ => 0,
            };
            counters.l2_write_errors.fetch_add(1, Relaxed);
        }
        result
    }
}

impl<K, V, S, C> fmt::Debug for TieredCache<K, V, S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieredCache")
            .field("policy", &self.shared.policy)
            .field("l2_ttl", &self.shared.l2_ttl)
            .field("l2_timeout", &self.shared.l2_timeout)
            .field("coherence", &self.shared.bus.is_some())
            .finish_non_exhaustive()
    }
}

/// Options of a [`TieredCache`]; from [`TieredCache::builder`].
pub struct TieredCacheBuilder<K, V, S = ahash::RandomState, C = MonotonicClock> {
    l1: Cache<K, V, S, C>,
    l2: Arc<dyn Tier<K, V>>,
    policy: WritePolicy,
    l2_ttl: Duration,
    l2_timeout: Duration,
    bus: Option<BusFactory<K, V, S, C>>,
}

pub(crate) type BusFactory<K, V, S, C> =
    Box<dyn FnOnce(Local<K, V, S, C>) -> Box<dyn Broadcast<K>> + Send>;

impl<K, V, S, C> TieredCacheBuilder<K, V, S, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
    C: Clock + 'static,
{
    /// How writes treat L2 (default [`WritePolicy::InvalidateOnWrite`]).
    pub fn write_policy(mut self, policy: WritePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The time-to-live of values written to L2 (default one hour; at least
    /// 1 ms).
    pub fn l2_ttl(mut self, ttl: Duration) -> Self {
        self.l2_ttl = ttl;
        self
    }

    /// The time limit on each L2 call made by the tiered cache (default
    /// 250 ms). Past it, a read falls back to the loader. Set it a little
    /// above the tier's own limit, if the tier has one.
    pub fn l2_timeout(mut self, timeout: Duration) -> Self {
        self.l2_timeout = timeout;
        self
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn bus(mut self, factory: BusFactory<K, V, S, C>) -> Self {
        self.bus = Some(factory);
        self
    }

    /// Builds the tiered cache (and starts the coherence tasks, if set), or
    /// says which setting cannot work: an [`l2_ttl`](Self::l2_ttl) under a
    /// millisecond (Redis keeps times to live in whole milliseconds, and
    /// refuses zero), or an [`l2_timeout`](Self::l2_timeout) of zero (every
    /// L2 call would time out).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use scalekit_cache::{Cache, TieredCache, Tier, TierError};
    /// # struct NoTier;
    /// # #[async_trait::async_trait]
    /// # impl Tier<u64, String> for NoTier {
    /// #     async fn get(&self, _: &u64) -> Result<Option<String>, TierError> { Ok(None) }
    /// #     async fn set(&self, _: &u64, _: &String, _: Duration) -> Result<(), TierError> { Ok(()) }
    /// #     async fn delete(&self, _: &u64) -> Result<(), TierError> { Ok(()) }
    /// # }
    /// let err = TieredCache::builder(Cache::new(100), NoTier)
    ///     .l2_ttl(Duration::ZERO)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "l2_ttl");
    /// ```
    pub fn build(self) -> Result<TieredCache<K, V, S, C>, ConfigError> {
        if self.l2_ttl < Duration::from_millis(1) {
            return Err(ConfigError::new(
                "tiered cache",
                "l2_ttl",
                format_args!("{:?}", self.l2_ttl),
                "a time-to-live of at least 1 ms",
            ));
        }
        if self.l2_timeout.is_zero() {
            return Err(ConfigError::new(
                "tiered cache",
                "l2_timeout",
                format_args!("{:?}", self.l2_timeout),
                "a time limit above zero (the default is 250 ms)",
            ));
        }
        let local = Local {
            l1: self.l1,
            epochs: Arc::new(Epochs::new()),
            counters: Arc::new(TierCounters::default()),
        };
        let bus = self.bus.map(|factory| factory(local.clone()));
        Ok(TieredCache {
            shared: Arc::new(Shared {
                local,
                l2: self.l2,
                policy: self.policy,
                l2_ttl: self.l2_ttl,
                l2_timeout: self.l2_timeout,
                bus,
            }),
        })
    }
}

impl<K, V, S, C> fmt::Debug for TieredCacheBuilder<K, V, S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieredCacheBuilder")
            .field("policy", &self.policy)
            .field("l2_ttl", &self.l2_ttl)
            .field("l2_timeout", &self.l2_timeout)
            .field("coherence", &self.bus.is_some())
            .finish_non_exhaustive()
    }
}
