//! The cache builder.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::time::Duration;

use scalekit_core::{Clock, ConfigError, MonotonicClock};

use crate::cache::Cache;
use crate::config::Settings;
use crate::expiry::Expiry;
use crate::removal::RemovalCause;

/// Below this many entries per shard, the cache uses fewer shards: a policy
/// needs room to tell popular keys from the rest.
const MIN_SHARD_CAPACITY: u64 = 1024;
/// A sketch sized up front for at most this many entries when the count is
/// unknown (weighted or unbounded caches); it grows with the entry count.
const UNKNOWN_ENTRIES: u64 = 4096;
/// The most shards a cache may have.
const MAX_SHARDS: usize = 1 << 16;

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache holding at most `max_capacity` entries, with every other option at
    /// its default. Use [`Cache::builder`] for the rest.
    pub fn new(max_capacity: u64) -> Self {
        // Nothing but the capacity is set, and every capacity works.
        Self::builder().max_capacity(max_capacity).assemble()
    }

    /// A builder with every option.
    pub fn builder() -> CacheBuilder<K, V> {
        CacheBuilder {
            settings: Settings {
                capacity: None,
                shards: None,
                hasher: ahash::RandomState::new(),
                clock: MonotonicClock,
                ttl: None,
                tti: None,
                expiry: None,
                weigher: None,
                listener: None,
                stale: None,
                refresh_beta: 0.0,
                negative: None,
            },
            _types: PhantomData,
        }
    }
}

/// Builds a [`Cache`]; from [`Cache::builder`]. Every option has a default;
/// only the capacity is usually set. [`build`](Self::build) refuses a
/// setting that cannot work with a [`ConfigError`].
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
///     .build()?;
/// cache.insert("k".into(), vec![0; 10]);
/// assert_eq!(cache.weighted_size(), 11);
/// # Ok::<(), scalekit_cache::ConfigError>(())
/// ```
pub struct CacheBuilder<K, V, S = ahash::RandomState, C = MonotonicClock> {
    settings: Settings<K, V, S, C>,
    _types: PhantomData<fn(K, V)>,
}

impl<K, T, S, C> CacheBuilder<K, Option<T>, S, C> {
    /// Negative caching: a `None` value ("not found") expires after `ttl`,
    /// usually much shorter than the time-to-live of found values, so a
    /// missing row is not looked up on every request yet appears soon once
    /// created.
    ///
    /// ```
    /// use std::time::Duration;
    /// use scalekit_cache::Cache;
    /// use scalekit_core::ManualClock;
    ///
    /// let clock = ManualClock::new();
    /// let users: Cache<u64, Option<String>, _, ManualClock> = Cache::builder()
    ///     .max_capacity(10_000)
    ///     .time_to_live(Duration::from_secs(300))
    ///     .negative_ttl(Duration::from_secs(5))
    ///     .clock(clock.clone())
    ///     .build()?;
    /// let lookup = |id: u64| if id == 1 { Some("ada".to_string()) } else { None };
    /// assert_eq!(users.get_with(1, || lookup(1)), Some("ada".to_string()));
    /// assert_eq!(users.get_with(2, || lookup(2)), None);
    /// clock.advance(Duration::from_secs(6));
    /// assert!(users.contains_key(&1));
    /// assert!(!users.contains_key(&2)); // "not found" was forgotten
    /// # Ok::<(), scalekit_cache::ConfigError>(())
    /// ```
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.settings.negative = Some((ttl, Option::is_none));
        self
    }
}

impl<K, V, S, C> CacheBuilder<K, V, S, C> {
    /// The most the cache holds: a number of entries, or a total weight when a
    /// [`weigher`](Self::weigher) is set. Without it the cache is unbounded.
    ///
    /// ```
    /// # use scalekit_cache::Cache;
    /// let cache: Cache<u32, u32> = Cache::builder().max_capacity(2).build()?;
    /// for i in 0..10 { cache.insert(i, i); }
    /// assert!(cache.entry_count() <= 2);
    /// # Ok::<(), scalekit_cache::ConfigError>(())
    /// ```
    pub fn max_capacity(mut self, capacity: u64) -> Self {
        self.settings.capacity = Some(capacity);
        self
    }

    /// Weighs each entry (for example its size in bytes); the capacity is then
    /// a total weight. An entry heavier than the whole capacity is not kept.
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        self.settings.weigher = Some(Box::new(weigher));
        self
    }

    /// Entries expire this long after they were last written.
    ///
    /// ```
    /// use std::time::Duration;
    /// use scalekit_cache::Cache;
    /// use scalekit_core::ManualClock;
    ///
    /// let clock = ManualClock::new();
    /// let cache: Cache<u32, u32, _, ManualClock> = Cache::builder()
    ///     .max_capacity(100)
    ///     .time_to_live(Duration::from_secs(10))
    ///     .clock(clock.clone())
    ///     .build()?;
    /// cache.insert(1, 1);
    /// clock.advance(Duration::from_secs(9));
    /// assert_eq!(cache.get(&1), Some(1));
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(cache.get(&1), None);
    /// # Ok::<(), scalekit_cache::ConfigError>(())
    /// ```
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.settings.ttl = Some(ttl);
        self
    }

    /// Entries expire this long after they were last read or written (never
    /// later than their time-to-live).
    pub fn time_to_idle(mut self, tti: Duration) -> Self {
        self.settings.tti = Some(tti);
        self
    }

    /// A deadline per entry, computed from its key and value (see [`Expiry`]).
    /// Combined with the time-to-live and time-to-idle, the earliest wins.
    pub fn expire_after(mut self, expiry: impl Expiry<K, V> + 'static) -> Self {
        self.settings.expiry = Some(Box::new(expiry));
        self
    }

    /// Told of every entry that leaves the cache and why. Called after the
    /// cache's internal lock is released, on the thread that caused the
    /// removal, so it may use the cache; keep it short.
    pub fn eviction_listener(
        mut self,
        listener: impl Fn(K, V, RemovalCause) + Send + Sync + 'static,
    ) -> Self {
        self.settings.listener = Some(Box::new(listener));
        self
    }

    /// Stale-while-revalidate: for `period` after an entry's deadline, the
    /// loading methods ([`Cache::get_with`] and friends) still return its old
    /// value at once, while one caller reloads it; [`Cache::get`] treats it as
    /// absent. A failed reload keeps serving the stale value until the period
    /// ends.
    ///
    /// ```
    /// use std::time::Duration;
    /// use scalekit_cache::Cache;
    /// use scalekit_core::ManualClock;
    ///
    /// let clock = ManualClock::new();
    /// let prices: Cache<&str, u32, _, ManualClock> = Cache::builder()
    ///     .max_capacity(100)
    ///     .time_to_live(Duration::from_secs(60))
    ///     .stale_while_revalidate(Duration::from_secs(30))
    ///     .clock(clock.clone())
    ///     .build()?;
    /// prices.insert("tea", 3);
    /// clock.advance(Duration::from_secs(70));
    /// assert_eq!(prices.get("tea"), None);                     // stale
    /// let failing = || Err::<u32, &str>("database down");
    /// assert_eq!(prices.try_get_with("tea", failing), Ok(3));  // served stale
    /// assert_eq!(prices.get_with("tea", || 4), 4);             // refreshed
    /// # Ok::<(), scalekit_cache::ConfigError>(())
    /// ```
    pub fn stale_while_revalidate(mut self, period: Duration) -> Self {
        self.settings.stale = Some(period);
        self
    }

    /// Probabilistic early refresh (XFetch, Vattani et al., VLDB 2015): a
    /// loading call may reload an entry shortly before its deadline, with a
    /// probability that grows as the deadline nears and with how long the
    /// last load took, so that a popular key is reloaded by one caller before
    /// it expires instead of by a stampede after. `beta` scales the
    /// eagerness: 1.0 is the paper's default; 0 turns it off. `build` refuses
    /// a `beta` that is negative or not finite.
    ///
    /// A load's time is measured on the cache's clock, so a test drives it
    /// with a [`ManualClock`](scalekit_core::ManualClock) advanced inside the
    /// loader.
    pub fn refresh_ahead(mut self, beta: f64) -> Self {
        self.settings.refresh_beta = beta;
        self
    }

    /// The clock that drives expiry and times loads (for early refresh and
    /// the stats): the real [`MonotonicClock`] by default. Tests pass a
    /// [`ManualClock`](scalekit_core::ManualClock), whose clones share its
    /// time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use scalekit_cache::Cache;
    /// use scalekit_core::ManualClock;
    ///
    /// let clock = ManualClock::new();
    /// let cache: Cache<u32, u32, _, ManualClock> = Cache::builder()
    ///     .time_to_live(Duration::from_secs(5))
    ///     .clock(clock.clone())
    ///     .build()?;
    /// cache.insert(1, 1);
    /// clock.advance(Duration::from_secs(5));
    /// assert_eq!(cache.get(&1), None);
    /// # Ok::<(), scalekit_cache::ConfigError>(())
    /// ```
    pub fn clock<C2: Clock>(self, clock: C2) -> CacheBuilder<K, V, S, C2> {
        CacheBuilder {
            settings: self.settings.with_clock(clock),
            _types: PhantomData,
        }
    }

    /// The number of shards (rounded up to a power of two). Each shard has its
    /// own lock and policy. The default is sixteen per core (so that threads
    /// rarely meet on one lock), fewer for small
    /// capacities so that each shard keeps at least 1,024 entries. `build`
    /// refuses 0 and more than 65,536.
    pub fn shards(mut self, shards: usize) -> Self {
        self.settings.shards = Some(shards);
        self
    }

    /// The hasher for keys in memory (not stable across processes; placement
    /// never uses it). A fixed-seed hasher makes eviction decisions, and so hit
    /// ratios, reproducible from run to run.
    pub fn hasher<S2: BuildHasher>(self, hasher: S2) -> CacheBuilder<K, V, S2, C> {
        CacheBuilder {
            settings: self.settings.with_hasher(hasher),
            _types: PhantomData,
        }
    }

    /// Builds the cache, or says which setting cannot work: a number of
    /// [`shards`](Self::shards) of 0 or above 65,536, or a
    /// [`refresh_ahead`](Self::refresh_ahead) factor that is negative or not
    /// finite.
    ///
    /// ```
    /// # use scalekit_cache::Cache;
    /// let err = Cache::<u32, u32>::builder().refresh_ahead(-1.0).build().unwrap_err();
    /// assert_eq!(err.field(), "refresh_ahead");
    /// ```
    pub fn build(self) -> Result<Cache<K, V, S, C>, ConfigError>
    where
        K: Hash + Eq,
        V: Clone,
        S: BuildHasher,
        C: Clock,
    {
        let s = &self.settings;
        if let Some(shards) = s.shards {
            if shards == 0 || shards > MAX_SHARDS {
                return Err(ConfigError::new(
                    "cache",
                    "shards",
                    shards,
                    "a number of shards from 1 to 65536 (rounded up to a power of two)",
                ));
            }
        }
        if !s.refresh_beta.is_finite() || s.refresh_beta < 0.0 {
            return Err(ConfigError::new(
                "cache",
                "refresh_ahead",
                s.refresh_beta,
                "a finite factor >= 0 (1.0 is XFetch's default; 0 turns early refresh off)",
            ));
        }
        Ok(self.assemble())
    }

    /// Builds from settings already checked.
    fn assemble(self) -> Cache<K, V, S, C>
    where
        K: Hash + Eq,
        V: Clone,
        S: BuildHasher,
        C: Clock,
    {
        let s = &self.settings;
        let capacity = s.capacity.unwrap_or(u64::MAX);
        let shards = s.shards.unwrap_or_else(|| default_shards(capacity));
        let sketch_entries = if s.weigher.is_some() || s.capacity.is_none() {
            capacity.min(UNKNOWN_ENTRIES)
        } else {
            capacity
        };
        Cache::from_settings(self.settings, shards, sketch_entries)
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

impl<K, V, S, C> fmt::Debug for CacheBuilder<K, V, S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        f.debug_struct("CacheBuilder")
            .field("capacity", &s.capacity)
            .field("shards", &s.shards)
            .field("ttl", &s.ttl)
            .field("tti", &s.tti)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused_with_what_to_write() {
        let err = Cache::<u32, u32>::builder().shards(0).build().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid cache setting `shards` = 0: expected a number of shards from 1 to 65536 (rounded up to a power of two)"
        );
        let err = Cache::<u32, u32>::builder()
            .shards(MAX_SHARDS + 1)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "shards");
        for beta in [f64::NAN, -1.0, f64::INFINITY] {
            let err = Cache::<u32, u32>::builder()
                .refresh_ahead(beta)
                .build()
                .unwrap_err();
            assert_eq!((err.component(), err.field()), ("cache", "refresh_ahead"));
        }
        assert!(Cache::<u32, u32>::builder()
            .shards(MAX_SHARDS)
            .refresh_ahead(0.0)
            .build()
            .is_ok());
    }
}
