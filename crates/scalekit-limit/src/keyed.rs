//! Keyed GCRA: one timestamp per key in a fixed open-addressing table per shard,
//! read without locks, with a hard cap on keys; idle keys give their slot to new
//! ones.

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::Mutex;
use scalekit_core::{Admission, Clock, KeyedAdmission, MonotonicClock, Outcome, Rejected};

use crate::gcra::{check_cell, check_cell_if, decide, AtomicQuota, DenyKind};
use crate::{ConfigError, Denied, Quota, RateLimitState};

/// A key's slot: its 64-bit fingerprint (0: empty) and its GCRA timestamp.
#[derive(Debug, Default)]
struct Slot {
    fingerprint: AtomicU64,
    tat: AtomicU64,
}

/// A slot being handed from an idle key to a new one; readers that see it go to
/// the shard's lock, which the writer holds until the hand-over is complete.
const HANDING_OVER: u64 = u64::MAX;

/// How far from its home slot a key may be placed (and a lookup searches).
/// Linear probing at half load makes a run this long vanishingly rare (about
/// e^-25 per insert), so keys fit up to the cap.
const MAX_PROBE: usize = 128;
/// Keys per slot at the cap: 1 in 2.
const LOAD_NUM: usize = 1;
const LOAD_DEN: usize = 2;

#[derive(Debug)]
struct Shard {
    slots: OnceLock<Box<[Slot]>>,
    /// Slots ever filled (they are never emptied: idle ones are handed over).
    used: Mutex<usize>,
}

#[inline]
fn home(hash: u64, len: usize) -> usize {
    ((u128::from(hash) * len as u128) >> 64) as usize
}

#[inline]
fn fingerprint(hash: u64) -> u64 {
    // 0 marks an empty slot.
    hash.max(1)
}

/// The default cap on keys.
pub const DEFAULT_MAX_KEYS: usize = 1 << 20;

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
pub struct KeyedBuilder<K: ?Sized, C = MonotonicClock> {
    quota: Quota,
    max_keys: usize,
    shards: usize,
    clock: C,
    _keys: PhantomData<fn(&K)>,
}

impl<K: ?Sized, C: fmt::Debug> fmt::Debug for KeyedBuilder<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBuilder")
            .field("quota", &self.quota)
            .field("max_keys", &self.max_keys)
            .field("shards", &self.shards)
            .field("clock", &self.clock)
            .finish()
    }
}

impl<K: ?Sized, C> KeyedBuilder<K, C> {
    /// The most keys tracked at once (default 2^20). A new key beyond it gets the
    /// slot of an idle key (one whose bucket is full again) near its home slot;
    /// if there is none, its requests are denied with [`DenyKind::KeysFull`].
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Independent shards (default 64; a power of two): each holds `max_keys /
    /// shards` keys and has its own lock for inserting new keys.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// Reads time from `clock` instead.
    pub fn clock<C2>(self, clock: C2) -> KeyedBuilder<K, C2> {
        KeyedBuilder {
            quota: self.quota,
            max_keys: self.max_keys,
            shards: self.shards,
            clock,
            _keys: PhantomData,
        }
    }

    /// Checks the settings and builds the limiter. A shard allocates its table
    /// (for its share of the cap) when its first key arrives.
    pub fn build(self) -> Result<KeyedRateLimiter<K, C>, ConfigError> {
        if !self.shards.is_power_of_two() || self.shards > 4096 {
            return Err(ConfigError::Count {
                field: "shards (a power of two)",
                value: self.shards as u64,
                min: 1,
                max: 4096,
            });
        }
        if self.max_keys == 0 || self.max_keys > 1 << 36 {
            return Err(ConfigError::Count {
                field: "max_keys",
                value: self.max_keys as u64,
                min: 1,
                max: 1 << 36,
            });
        }
        let per_shard = self.max_keys.div_ceil(self.shards);
        let slots_per_shard = (per_shard * LOAD_DEN).div_ceil(LOAD_NUM).max(2);
        Ok(KeyedRateLimiter {
            shards: (0..self.shards)
                .map(|_| Shard {
                    slots: OnceLock::new(),
                    used: Mutex::new(0),
                })
                .collect(),
            shard_mask: (self.shards - 1) as u64,
            per_shard,
            slots_per_shard,
            hasher: ahash::RandomState::new(),
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
/// * **Bounded memory**: at most [`max_keys`](KeyedBuilder::max_keys) keys; a
///   shard allocates its table for its share of the cap with its first key:
///   16 bytes a slot, 2 slots a key, [`bytes_per_key`](Self::bytes_per_key)
///   = 32 bytes a key, whatever the key type. Nothing grows past that, however
///   many distinct keys arrive.
/// * **Idle keys are evicted gradually**: a key whose bucket is full again
///   (idle: forgetting it changes no decision) hands its slot to the next new
///   key that probes past it. When the cap is reached and no idle key is near,
///   a new key is denied ([`DenyKind::KeysFull`]) rather than evicting a key that
///   is still limited (which would hand an attacker a reset). Every key goes idle
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
    shards: Box<[Shard]>,
    shard_mask: u64,
    per_shard: usize,
    slots_per_shard: usize,
    hasher: ahash::RandomState,
    quota: AtomicQuota,
    unkeyed: AtomicU64,
    clock: C,
    _keys: PhantomData<fn(&K)>,
}

impl<K: ?Sized, C: fmt::Debug> fmt::Debug for KeyedRateLimiter<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiter")
            .field("quota", &self.quota.load())
            .field("shards", &self.shards.len())
            .field("max_keys_per_shard", &self.per_shard)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + ?Sized> KeyedRateLimiter<K> {
    /// A builder: `quota` for every key, at most 2^20 keys, 64 shards.
    pub fn builder(quota: Quota) -> KeyedBuilder<K> {
        KeyedBuilder {
            quota,
            max_keys: DEFAULT_MAX_KEYS,
            shards: 64,
            clock: MonotonicClock,
            _keys: PhantomData,
        }
    }
}

/// What a lock-free lookup found.
enum Found<'a> {
    Slot(&'a Slot),
    Missing,
}

impl<K: Hash + ?Sized, C: Clock> KeyedRateLimiter<K, C> {
    #[inline]
    fn shard(&self, hash: u64) -> &Shard {
        // The shard comes from the low bits, the home slot from the high ones.
        &self.shards[(hash & self.shard_mask) as usize]
    }

    #[inline]
    fn lookup<'a>(slots: &'a [Slot], hash: u64) -> Found<'a> {
        let fp = fingerprint(hash);
        let n = slots.len();
        let mut i = home(hash, n);
        for _ in 0..MAX_PROBE.min(n) {
            let Some(slot) = slots.get(i) else {
                return Found::Missing;
            };
            // Empty slots do not end the search: a new key may be placed in any
            // free or idle slot of its window (a miss is the slow path anyway).
            if slot.fingerprint.load(Ordering::Acquire) == fp {
                return Found::Slot(slot);
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
        Found::Missing
    }

    /// GCRA on a found slot, checking that it still belongs to `fp`.
    #[inline]
    fn check_slot(
        slot: &Slot,
        fp: u64,
        q: &Quota,
        now: u64,
        n: u32,
    ) -> Option<Result<RateLimitState, Denied>> {
        check_cell_if(&slot.tat, q, now, n, |tat| {
            tat != HANDING_OVER && slot.fingerprint.load(Ordering::Acquire) == fp
        })
    }

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
        let hash = self.hasher.hash_one(key);
        let shard = self.shard(hash);
        if let Some(slots) = shard.slots.get() {
            if let Found::Slot(slot) = Self::lookup(slots, hash) {
                if let Some(decision) = Self::check_slot(slot, fingerprint(hash), &q, now, n) {
                    return decision;
                }
            }
        }
        self.insert_and_check(shard, hash, &q, now, n)
    }

    #[cold]
    fn insert_and_check(
        &self,
        shard: &Shard,
        hash: u64,
        q: &Quota,
        now: u64,
        n: u32,
    ) -> Result<RateLimitState, Denied> {
        let fp = fingerprint(hash);
        let slots = shard
            .slots
            .get_or_init(|| (0..self.slots_per_shard).map(|_| Slot::default()).collect());
        let mut used = shard.used.lock();
        // Under the lock no hand-over is half done: search the key's whole window.
        let len = slots.len();
        let mut i = home(hash, len);
        let mut idle = None;
        let mut empty = None;
        for _ in 0..MAX_PROBE.min(len) {
            let Some(slot) = slots.get(i) else { break };
            match slot.fingerprint.load(Ordering::Acquire) {
                0 => {
                    if empty.is_none() && idle.is_none() {
                        empty = Some(slot);
                    }
                }
                f if f == fp => {
                    drop(used);
                    return match Self::check_slot(slot, fp, q, now, n) {
                        Some(decision) => decision,
                        // Only a hand-over changes a slot, and we held the lock.
                        None => Err(Denied::new(DenyKind::KeysFull, None, fresh_state(q, now))),
                    };
                }
                _ => {
                    if idle.is_none() && (empty.is_none() || *used >= self.per_shard) {
                        let tat = slot.tat.load(Ordering::Acquire);
                        if tat != HANDING_OVER && tat <= now {
                            idle = Some((slot, tat));
                        }
                    }
                }
            }
            i += 1;
            if i == len {
                i = 0;
            }
        }
        // A new key: decide on a full bucket first (a request above the burst is
        // denied without taking a slot).
        let (new_tat, state) = decide(q, 0, now, n)?;
        // The earliest usable slot of the window: an empty one while under the
        // cap, else the first idle key's.
        if empty.is_some() && *used < self.per_shard {
            idle = None;
        }
        if let Some((slot, tat)) = idle {
            // Hand the idle key's slot over: lock it, relabel it, set the state.
            if slot
                .tat
                .compare_exchange(tat, HANDING_OVER, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                slot.fingerprint.store(fp, Ordering::Release);
                slot.tat.store(new_tat, Ordering::Release);
                return Ok(state);
            }
        }
        match empty {
            Some(slot) if *used < self.per_shard => {
                slot.tat.store(new_tat, Ordering::Release);
                slot.fingerprint.store(fp, Ordering::Release);
                *used += 1;
                Ok(state)
            }
            _ => Err(Denied::new(DenyKind::KeysFull, None, state)),
        }
    }

    /// `key`'s state now, taking nothing (a key never seen has a full bucket).
    pub fn state_of(&self, key: &K) -> RateLimitState {
        let q = self.quota.load();
        let now = self.clock.now_nanos();
        let hash = self.hasher.hash_one(key);
        let tat = match self.shard(hash).slots.get().map(|s| Self::lookup(s, hash)) {
            Some(Found::Slot(slot)) => match slot.tat.load(Ordering::Acquire) {
                HANDING_OVER => 0,
                t => t,
            },
            _ => 0,
        };
        crate::gcra::state_at(&q, now, tat.max(now))
    }

    /// Slots holding a key (keys still limited, and idle ones not yet handed
    /// over to a new key).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| *s.used.lock()).sum()
    }

    /// Whether no key was ever tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys whose bucket is not full now (a scan of every table).
    pub fn active_keys(&self) -> usize {
        let now = self.clock.now_nanos();
        self.shards
            .iter()
            .filter_map(|s| s.slots.get())
            .flat_map(|slots| slots.iter())
            .filter(|s| {
                s.fingerprint.load(Ordering::Acquire) != 0 && s.tat.load(Ordering::Acquire) > now
            })
            .count()
    }

    /// The most keys this limiter tracks at once.
    pub fn max_keys(&self) -> usize {
        self.per_shard * self.shards.len()
    }

    /// Bytes held by the tables now (shards that have seen a key).
    pub fn memory_bytes(&self) -> usize {
        let slots: usize = self
            .shards
            .iter()
            .filter_map(|s| s.slots.get())
            .map(|s| s.len())
            .sum();
        slots * std::mem::size_of::<Slot>()
    }

    /// Bytes per key at the cap: a 16-byte slot over the load factor (1/2): 32,
    /// whatever the key type (keys are stored as fingerprints).
    pub fn bytes_per_key() -> f64 {
        std::mem::size_of::<Slot>() as f64 * LOAD_DEN as f64 / LOAD_NUM as f64
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

fn fresh_state(q: &Quota, now: u64) -> RateLimitState {
    crate::gcra::state_at(q, now, now)
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
        assert!(admitted > 900, "{admitted}");
        assert_eq!(l.memory_bytes(), bytes);
        // Every even key still has its (empty) bucket.
        for k in (0..3000u64).filter(|k| k % 2 == 0) {
            assert_eq!(l.state_of(&k).remaining(), 0, "key {k}");
            assert!(l.check_key(&k).is_err());
        }
    }
}
