//! Keyed GCRA: one timestamp per key in the keyed table (see `table`), read
//! without locks, with a hard cap on keys; idle keys give their slot to new ones.

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use scalekit_core::{
    Admission, Clock, ConfigError, KeyedAdmission, MonotonicClock, Outcome, Rejected,
};

use crate::gcra::{
    check_cell, check_cell_if, decide, state_at, AtomicQuota, Denied, DenyKind, RateLimitState,
};
use crate::quota::Quota;
use crate::table::{Table, DEFAULT_MAX_KEYS, DEFAULT_SHARDS, HANDING_OVER};

/// A GCRA key is idle once its bucket is full again: its TAT is not ahead of now.
#[inline]
fn idle_at(tat: u64, _now: u64) -> u64 {
    tat
}

/// Builds a [`KeyedRateLimiter`].
///
/// ```
/// use scalekit_limit::{KeyedRateLimiter, Quota};
/// use std::net::IpAddr;
/// use std::num::NonZeroU32;
///
/// let limiter = KeyedRateLimiter::<IpAddr>::builder(Quota::per_second(NonZeroU32::new(20).unwrap()))
///     .max_keys(100_000)
///     .build()?;
/// # let _ = limiter;
/// # Ok::<(), scalekit_limit::ConfigError>(())
/// ```
pub struct KeyedRateLimiterBuilder<K: ?Sized, C = MonotonicClock> {
    quota: Quota,
    max_keys: usize,
    shards: usize,
    seed: Option<u64>,
    clock: C,
    _keys: PhantomData<fn(&K)>,
}

impl<K: ?Sized, C: fmt::Debug> fmt::Debug for KeyedRateLimiterBuilder<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiterBuilder")
            .field("quota", &self.quota)
            .field("max_keys", &self.max_keys)
            .field("shards", &self.shards)
            .field("seeded", &self.seed.is_some())
            .field("clock", &self.clock)
            .finish()
    }
}

impl<K: ?Sized, C> KeyedRateLimiterBuilder<K, C> {
    /// The most keys tracked at once (default 2^20, at most 2^36). A new key
    /// beyond it gets the slot of an idle key (one whose bucket is full again):
    /// whenever its shard holds one (see [`KeyedRateLimiter`] for the one rare
    /// exception); if there is none, its requests are denied with
    /// [`DenyKind::KeysFull`].
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Independent shards (default 64; a power of two up to 4096): each holds
    /// `max_keys / shards` keys and has its own lock for inserting new keys.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// Seeds the key hash (for reproducible tests). Leave it random in service:
    /// with the seed known, an attacker can pick keys that share a fingerprint or
    /// crowd one part of a shard.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Reads time from `clock` instead (a [`ManualClock`](scalekit_core::ManualClock) in tests).
    pub fn clock<C2: Clock>(self, clock: C2) -> KeyedRateLimiterBuilder<K, C2> {
        KeyedRateLimiterBuilder {
            quota: self.quota,
            max_keys: self.max_keys,
            shards: self.shards,
            seed: self.seed,
            clock,
            _keys: PhantomData,
        }
    }

    /// Checks the settings and builds the limiter. A shard allocates its table
    /// (for its share of the cap) when its first key arrives.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `shards` or `max_keys` when it is out of range.
    pub fn build(self) -> Result<KeyedRateLimiter<K, C>, ConfigError> {
        Ok(KeyedRateLimiter {
            table: Table::new("keyed rate limiter", self.max_keys, self.shards, self.seed)?,
            quota: AtomicQuota::new(self.quota),
            unkeyed: AtomicU64::new(0),
            clock: self.clock,
            _keys: PhantomData,
        })
    }
}

/// A rate limit per key (client IP, user, API token): GCRA, 32 bytes per key.
///
/// * **Hot path, no lock**: hash the key (ahash, seeded at random per limiter),
///   probe the shard's table for its 64-bit fingerprint (fingerprint and
///   timestamp share a 16-byte slot: one cache line), one compare-and-swap. A
///   new key takes its shard's lock once.
/// * **Keys are fingerprints**: the table stores the key's 64-bit keyed hash,
///   not the key, so any `Hash` type works (`str` included) and every key costs
///   the same. Two keys with the same fingerprint would share a bucket; with a
///   random seed per limiter that takes about 2^32 live keys to become likely,
///   and cannot be aimed at.
/// * **Bounded memory**: at most [`max_keys`](KeyedRateLimiterBuilder::max_keys)
///   keys; a shard allocates its table for its share of the cap with its first
///   key: 16 bytes a slot, 2 slots a key,
///   [`bytes_per_key`](Self::bytes_per_key) = 32 bytes a key, whatever the key
///   type. Nothing grows past that, however many distinct keys arrive.
/// * **Idle keys are evicted gradually**: a key whose bucket is full again
///   (idle: forgetting it changes no decision) hands its slot to a new key. A
///   new key takes the first free or idle slot among the 128 from its home slot;
///   at the cap, when none of those is idle, the shard's clock hand sweeps the
///   whole shard for an idle key and frees its slot. So a new key is admitted
///   whenever its shard holds an idle key, unless all 128 slots from its home
///   hold keys (at most one slot in two holds a key, so that has a chance of
///   about e^-25 per new key). With no idle key the new key is denied
///   ([`DenyKind::KeysFull`]) rather than evicting a key that is still limited
///   (which would hand an attacker a reset); a shard remembers when its first
///   key goes idle, so until then a refusal costs no sweep. Every key goes idle
///   at most `burst * interval` after its last admission.
///
/// ```
/// use scalekit_limit::{DenyKind, KeyedRateLimiter, Quota};
/// use scalekit_core::ManualClock;
/// use std::num::NonZeroU32;
///
/// let limiter = KeyedRateLimiter::<str, _>::builder(Quota::per_second(NonZeroU32::new(1).unwrap()))
///     .clock(ManualClock::new())
///     .build()?;
/// assert!(limiter.check_key("alice").is_ok());
/// assert!(limiter.check_key("bob").is_ok()); // another key, its own bucket
/// assert_eq!(limiter.check_key("alice").unwrap_err().kind(), DenyKind::RateLimited);
/// assert_eq!(limiter.len(), 2);
/// # Ok::<(), scalekit_limit::ConfigError>(())
/// ```
pub struct KeyedRateLimiter<K: ?Sized, C = MonotonicClock> {
    table: Table,
    quota: AtomicQuota,
    unkeyed: AtomicU64,
    clock: C,
    _keys: PhantomData<fn(&K)>,
}

impl<K: ?Sized, C: fmt::Debug> fmt::Debug for KeyedRateLimiter<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiter")
            .field("quota", &self.quota.load())
            .field("table", &self.table)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + ?Sized> KeyedRateLimiter<K> {
    /// A builder: `quota` for every key, at most 2^20 keys, 64 shards.
    pub fn builder(quota: Quota) -> KeyedRateLimiterBuilder<K> {
        KeyedRateLimiterBuilder {
            quota,
            max_keys: DEFAULT_MAX_KEYS,
            shards: DEFAULT_SHARDS,
            seed: None,
            clock: MonotonicClock,
            _keys: PhantomData,
        }
    }
}

impl<K: Hash + ?Sized, C: Clock> KeyedRateLimiter<K, C> {
    /// Takes one unit from `key`'s bucket.
    #[inline]
    pub fn check_key(&self, key: &K) -> Result<RateLimitState, Denied> {
        self.check_key_n(key, 1)
    }

    /// Takes `n` units from `key`'s bucket.
    #[inline]
    pub fn check_key_n(&self, key: &K, n: u32) -> Result<RateLimitState, Denied> {
        let q = self.quota.load();
        let now = self.clock.now_nanos();
        self.table.decide(
            self.table.hash(key),
            now,
            |slot, fp| check_cell_if(&slot.state, &q, now, n, |tat| slot.held_by(fp, tat)),
            idle_at,
            || match decide(&q, 0, now, n) {
                Ok((tat, state)) => Ok((tat, Ok(state))),
                Err(denied) => Err(Err(denied)),
            },
            || {
                Err(Denied::new(
                    DenyKind::KeysFull,
                    None,
                    state_at(&q, now, now),
                ))
            },
        )
    }

    /// `key`'s state now, taking nothing (a key never seen has a full bucket).
    pub fn state_of(&self, key: &K) -> RateLimitState {
        let q = self.quota.load();
        let now = self.clock.now_nanos();
        let hash = self.table.hash(key);
        let tat = match self.table.find(hash) {
            Some(slot) => match slot.state.load(std::sync::atomic::Ordering::Acquire) {
                HANDING_OVER => 0,
                t => t,
            },
            None => 0,
        };
        state_at(&q, now, tat.max(now))
    }

    /// Slots holding a key (keys still limited, and idle ones not yet handed
    /// over to a new key).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys whose bucket is not full now (a scan of every table).
    pub fn active_keys(&self) -> usize {
        self.table.active_keys(self.clock.now_nanos(), idle_at)
    }

    /// The most keys this limiter tracks at once.
    pub fn max_keys(&self) -> usize {
        self.table.max_keys()
    }

    /// Bytes held by the tables now (shards that have seen a key).
    pub fn memory_bytes(&self) -> usize {
        self.table.memory_bytes()
    }

    /// Bytes per key at the cap: a 16-byte slot over the load factor (1/2): 32,
    /// whatever the key type (keys are stored as fingerprints).
    pub fn bytes_per_key() -> f64 {
        Table::bytes_per_key()
    }

    /// The quota in force for every key.
    pub fn quota(&self) -> Quota {
        self.quota.load()
    }

    /// Changes every key's quota from the next check on.
    pub fn set_quota(&self, quota: Quota) {
        self.quota.store(quota);
    }

    /// Takes one unit from the shared bucket for requests that have no key.
    pub fn check_unkeyed(&self) -> Result<RateLimitState, Denied> {
        check_cell(&self.unkeyed, &self.quota.load(), self.clock.now_nanos(), 1)
    }
}

impl<K: Hash + ?Sized, C: Clock> Admission for KeyedRateLimiter<K, C> {
    type Permit = ();

    /// A request without a key draws from one shared bucket.
    fn try_acquire(&self) -> Result<(), Rejected> {
        self.check_unkeyed().map(|_| ()).map_err(Rejected::from)
    }

    fn record(&self, _permit: (), _outcome: Outcome, _latency: Duration) {}
}

impl<K: Hash + ?Sized, C: Clock> KeyedAdmission<K> for KeyedRateLimiter<K, C> {
    #[inline]
    fn try_acquire_key(&self, key: &K) -> Result<(), Rejected> {
        self.check_key(key).map(|_| ()).map_err(Rejected::from)
    }
}

/// Keys as `Option<K>`: `None` (no client IP known) draws from the shared bucket.
impl<K: Hash, C: Clock> KeyedAdmission<Option<K>> for KeyedRateLimiter<K, C> {
    #[inline]
    fn try_acquire_key(&self, key: &Option<K>) -> Result<(), Rejected> {
        match key {
            Some(k) => self.try_acquire_key(k),
            None => self.try_acquire(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scalekit_core::ManualClock;
    use std::num::NonZeroU32;

    #[test]
    fn idle_keys_hand_their_slots_over_and_live_keys_keep_theirs() {
        let clock = ManualClock::new();
        let l = KeyedRateLimiter::<u64, _>::builder(Quota::per_second(
            NonZeroU32::MIN.saturating_add(1),
        ))
        .max_keys(3000)
        .shards(1)
        .clock(clock.clone())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
        for k in 0..3000u64 {
            assert!(l.check_key(&k).is_ok());
        }
        assert_eq!(l.len(), 3000);
        let bytes = l.memory_bytes();
        // Even keys take another unit and stay limited past the 1 s mark.
        clock.advance(Duration::from_millis(600));
        for k in (0..3000u64).filter(|k| k % 2 == 0) {
            assert!(l.check_key(&k).is_ok());
            assert!(l.check_key(&k).is_ok());
        }
        clock.advance(Duration::from_millis(400));
        assert_eq!(l.active_keys(), 1500);
        // New keys reuse idle slots; the table does not grow.
        let mut admitted = 0;
        for k in 10_000..11_000u64 {
            if l.check_key(&k).is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 1000, "1,500 idle keys for 1,000 new ones");
        assert_eq!(l.memory_bytes(), bytes);
        // Every even key still has its (empty) bucket.
        for k in (0..3000u64).filter(|k| k % 2 == 0) {
            assert_eq!(l.state_of(&k).remaining(), 0, "key {k}");
            assert!(l.check_key(&k).is_err());
        }
    }
}
