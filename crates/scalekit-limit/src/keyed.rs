//! Keyed GCRA: one timestamp per key in a sharded open-addressing table with a
//! hard cap on keys and gradual eviction of idle ones.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use scalekit_core::{Admission, Clock, KeyedAdmission, MonotonicClock, Outcome, Rejected};

use crate::gcra::{check_cell, AtomicQuota, DenyKind};
use crate::{ConfigError, Denied, Quota, RateLimitState};

/// A key's slot: the key and its GCRA timestamp, side by side in the table so
/// that a lookup touches one cache line.
struct Slot<K> {
    key: Option<K>,
    tat: AtomicU64,
}

impl<K> Slot<K> {
    fn empty() -> Self {
        Self {
            key: None,
            tat: AtomicU64::new(0),
        }
    }
}

/// Linear probing over a table whose size need not be a power of two (the home
/// slot is `hash * len >> 64`), so that the last growth step lands on exactly the
/// capacity the key cap needs.
struct Table<K> {
    slots: Vec<Slot<K>>,
    len: usize,
    /// Where the gradual eviction sweep goes on.
    cursor: usize,
}

#[inline]
fn home(hash: u64, len: usize) -> usize {
    ((u128::from(hash) * len as u128) >> 64) as usize
}

impl<K> Table<K> {
    fn new() -> Self {
        Self {
            slots: Vec::new(),
            len: 0,
            cursor: 0,
        }
    }
}

impl<K: Hash + Eq> Table<K> {
    #[inline]
    fn find(&self, hash: u64, key: &K) -> Result<usize, usize> {
        let n = self.slots.len();
        if n == 0 {
            return Err(usize::MAX);
        }
        let mut i = home(hash, n);
        for _ in 0..n {
            match self.slots.get(i).and_then(|s| s.key.as_ref()) {
                None => return Err(i),
                Some(k) if k == key => return Ok(i),
                Some(_) => {
                    i += 1;
                    if i == n {
                        i = 0;
                    }
                }
            }
        }
        Err(usize::MAX)
    }

    /// Removes slot `i`, shifting later members of its probe run back (no
    /// tombstones).
    fn remove_at<S: BuildHasher>(&mut self, mut i: usize, hasher: &S) {
        let n = self.slots.len();
        let mut j = i;
        loop {
            j += 1;
            if j == n {
                j = 0;
            }
            let Some(key) = self.slots.get(j).and_then(|s| s.key.as_ref()) else {
                break;
            };
            let h = home(hasher.hash_one(key), n);
            // The entry at j may move to i unless its home lies cyclically in (i, j].
            let stays = if i <= j {
                i < h && h <= j
            } else {
                i < h || h <= j
            };
            if !stays {
                self.slots.swap(i, j);
                i = j;
            }
        }
        if let Some(s) = self.slots.get_mut(i) {
            *s = Slot::empty();
        }
        self.len -= 1;
    }

    fn rebuild<S: BuildHasher>(&mut self, new_len: usize, hasher: &S) {
        let old = std::mem::replace(
            &mut self.slots,
            (0..new_len).map(|_| Slot::empty()).collect(),
        );
        self.cursor = 0;
        for slot in old {
            if let Some(key) = slot.key {
                if let Err(i) = self.find(hasher.hash_one(&key), &key) {
                    if let Some(s) = self.slots.get_mut(i) {
                        s.tat = slot.tat;
                        s.key = Some(key);
                    }
                }
            }
        }
    }

    /// Sweeps up to `budget` slots from the cursor, removing idle keys (a key whose
    /// bucket is full again: forgetting it changes no decision). Returns how many
    /// were removed.
    fn sweep<S: BuildHasher>(&mut self, budget: usize, now: u64, hasher: &S) -> usize {
        let n = self.slots.len();
        if n == 0 {
            return 0;
        }
        let mut removed = 0;
        for _ in 0..budget {
            let i = self.cursor % n;
            let idle = self
                .slots
                .get_mut(i)
                .is_some_and(|s| s.key.is_some() && *s.tat.get_mut() <= now);
            if idle {
                // The slot now holds a shifted-back entry (or nothing): look at it
                // again on the next step.
                self.remove_at(i, hasher);
                removed += 1;
            } else {
                self.cursor = (i + 1) % n;
            }
        }
        removed
    }
}

struct Shard<K> {
    table: RwLock<Table<K>>,
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
#[derive(Debug)]
pub struct KeyedBuilder<K, C = MonotonicClock> {
    quota: Quota,
    max_keys: usize,
    shards: usize,
    clock: C,
    _keys: std::marker::PhantomData<fn(K)>,
}

/// The default cap on keys.
pub const DEFAULT_MAX_KEYS: usize = 1 << 20;
/// Slots swept for idle keys on every insert of a new key.
const SWEEP_PER_INSERT: usize = 2;
/// Slots swept when a shard is at its cap, before a new key is refused.
const SWEEP_WHEN_FULL: usize = 64;
/// Maximum load: 7 keys in 8 slots.
const LOAD_NUM: usize = 7;
const LOAD_DEN: usize = 8;

impl<K, C> KeyedBuilder<K, C> {
    /// The most keys tracked at once (default 2^20). A new key beyond it is
    /// tracked only once an idle key can be forgotten; until then its requests
    /// are denied with [`DenyKind::KeysFull`].
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Independent shards (default: 64; a power of two). Each holds `max_keys /
    /// shards` keys at most, behind its own lock.
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
            _keys: std::marker::PhantomData,
        }
    }

    /// Checks the settings and builds the limiter (no table is allocated until
    /// keys arrive).
    pub fn build(self) -> Result<KeyedRateLimiter<K, C>, ConfigError> {
        if !self.shards.is_power_of_two() || self.shards > 4096 {
            return Err(ConfigError::Count {
                field: "shards",
                value: self.shards as u64,
                min: 1,
                max: 4096,
            });
        }
        if self.max_keys == 0 || self.max_keys > 1 << 40 {
            return Err(ConfigError::Count {
                field: "max_keys",
                value: self.max_keys as u64,
                min: 1,
                max: 1 << 40,
            });
        }
        let per_shard = self.max_keys.div_ceil(self.shards);
        let max_slots = (per_shard * LOAD_DEN).div_ceil(LOAD_NUM).max(2);
        Ok(KeyedRateLimiter {
            shards: (0..self.shards)
                .map(|_| Shard {
                    table: RwLock::new(Table::new()),
                })
                .collect(),
            shard_mask: (self.shards - 1) as u64,
            per_shard,
            max_slots,
            hasher: ahash::RandomState::new(),
            quota: AtomicQuota::new(self.quota),
            unkeyed: AtomicU64::new(0),
            clock: self.clock,
        })
    }
}

/// A rate limit per key (client IP, user, API token): GCRA, one `u64` per key.
///
/// * **Hot path**: hash the key (ahash), take the shard's read lock, probe the
///   table (key and timestamp share a slot), one compare-and-swap. A new key
///   takes the shard's write lock once.
/// * **Bounded memory**: at most [`max_keys`](KeyedBuilder::max_keys) keys.
///   Every insert sweeps a few slots for idle keys, whose bucket is full again
///   (forgetting them changes no decision), so the table drains as traffic
///   moves on. At the cap a new key is tracked only if the sweep frees a slot;
///   otherwise its request is denied ([`DenyKind::KeysFull`]) rather than
///   evicting a key that is still limited (which would hand an attacker a reset).
///   Every key goes idle at most `burst * interval` after its last admission.
/// * **Memory**: [`bytes_per_key`](Self::bytes_per_key) reports the slot size
///   over the load factor: `size_of::<Option<K>>() + 8` (padded) / 0.875 at the
///   cap; for `u64` keys 27 bytes, for `IpAddr` 37 (17 of which are the key).
///
/// ```
/// use scalekit_limit::{DenyKind, KeyedRateLimiter, Quota};
/// use scalekit_core::ManualClock;
/// use std::num::NonZeroU32;
///
/// let limiter = KeyedRateLimiter::<u64, _>::builder(Quota::per_second(NonZeroU32::new(1).unwrap()))
///     .clock(ManualClock::new())
///     .build()?;
/// assert!(limiter.check_key(&1).is_ok());
/// assert!(limiter.check_key(&2).is_ok()); // another key, its own bucket
/// assert_eq!(limiter.check_key(&1).unwrap_err().kind(), DenyKind::RateLimited);
/// assert_eq!(limiter.len(), 2);
/// # Ok::<(), scalekit_limit::ConfigError>(())
/// ```
pub struct KeyedRateLimiter<K, C = MonotonicClock> {
    shards: Box<[Shard<K>]>,
    shard_mask: u64,
    per_shard: usize,
    max_slots: usize,
    hasher: ahash::RandomState,
    quota: AtomicQuota,
    unkeyed: AtomicU64,
    clock: C,
}

impl<K, C: fmt::Debug> fmt::Debug for KeyedRateLimiter<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiter")
            .field("quota", &self.quota.load())
            .field("shards", &self.shards.len())
            .field("max_keys_per_shard", &self.per_shard)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> KeyedRateLimiter<K> {
    /// A builder: `quota` for every key, at most 2^20 keys, 64 shards.
    pub fn builder(quota: Quota) -> KeyedBuilder<K> {
        KeyedBuilder {
            quota,
            max_keys: DEFAULT_MAX_KEYS,
            shards: 64,
            clock: MonotonicClock,
            _keys: std::marker::PhantomData,
        }
    }
}

impl<K: Hash + Eq + Clone, C: Clock> KeyedRateLimiter<K, C> {
    #[inline]
    fn shard(&self, hash: u64) -> &Shard<K> {
        // The shard comes from the low bits, the home slot from the high ones.
        &self.shards[(hash & self.shard_mask) as usize]
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
        {
            let table = shard.table.read();
            if let Ok(i) = table.find(hash, key) {
                if let Some(slot) = table.slots.get(i) {
                    return check_cell(&slot.tat, &q, now, n);
                }
            }
        }
        self.insert_and_check(shard, hash, key, &q, now, n)
    }

    #[cold]
    fn insert_and_check(
        &self,
        shard: &Shard<K>,
        hash: u64,
        key: &K,
        q: &Quota,
        now: u64,
        n: u32,
    ) -> Result<RateLimitState, Denied> {
        // Decide first: a denied new key (n above the burst) is not stored.
        let (new_tat, state) = crate::gcra::decide(q, 0, now, n)?;
        let mut table = shard.table.write();
        if let Ok(i) = table.find(hash, key) {
            // Another thread inserted it meanwhile.
            if let Some(slot) = table.slots.get(i) {
                return check_cell(&slot.tat, q, now, n);
            }
        }
        table.sweep(SWEEP_PER_INSERT, now, &self.hasher);
        if table.len >= self.per_shard {
            table.sweep(SWEEP_WHEN_FULL, now, &self.hasher);
            if table.len >= self.per_shard {
                return Err(Denied::new(DenyKind::KeysFull, None, state));
            }
        }
        let slots = table.slots.len();
        if (table.len + 1) * LOAD_DEN > slots * LOAD_NUM {
            let grown = (slots * 2).clamp(16, self.max_slots.max(16));
            if grown > slots {
                table.rebuild(grown, &self.hasher);
            }
        }
        match table.find(hash, key) {
            Err(i) if i != usize::MAX => {
                if let Some(slot) = table.slots.get_mut(i) {
                    slot.key = Some(key.clone());
                    *slot.tat.get_mut() = new_tat;
                    table.len += 1;
                    return Ok(state);
                }
                Err(Denied::new(DenyKind::KeysFull, None, state))
            }
            _ => Err(Denied::new(DenyKind::KeysFull, None, state)),
        }
    }

    /// `key`'s state now, taking nothing (a key never seen has a full bucket).
    pub fn state_of(&self, key: &K) -> RateLimitState {
        let q = self.quota.load();
        let now = self.clock.now_nanos();
        let hash = self.hasher.hash_one(key);
        let table = self.shard(hash).table.read();
        let tat = match table.find(hash, key) {
            Ok(i) => table
                .slots
                .get(i)
                .map_or(0, |s| s.tat.load(Ordering::Acquire)),
            Err(_) => 0,
        };
        match crate::gcra::decide(&q, tat, now, 0) {
            Ok((_, st)) => st,
            Err(d) => d.state(),
        }
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.table.read().len).sum()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys this limiter tracks at once.
    pub fn max_keys(&self) -> usize {
        self.per_shard * self.shards.len()
    }

    /// Bytes held by the tables now (slots allocated, keys' own heap excluded).
    pub fn memory_bytes(&self) -> usize {
        let slots: usize = self.shards.iter().map(|s| s.table.read().slots.len()).sum();
        slots * std::mem::size_of::<Slot<K>>()
    }

    /// Bytes per key at the cap: the slot size over the maximum load (7/8), the
    /// key itself included (for heap-owning keys add their heap). Below the cap
    /// a table that just grew holds up to twice that per key.
    pub fn bytes_per_key() -> f64 {
        std::mem::size_of::<Slot<K>>() as f64 * LOAD_DEN as f64 / LOAD_NUM as f64
    }

    /// Sweeps every table once and forgets every idle key. Returns how many.
    /// Not needed for correctness (inserts sweep gradually); useful to hand memory
    /// back after a burst of one-off keys, followed by [`shrink`](Self::shrink).
    pub fn evict_idle(&self) -> usize {
        let now = self.clock.now_nanos();
        self.shards
            .iter()
            .map(|s| {
                let mut t = s.table.write();
                let n = t.slots.len();
                t.cursor = 0;
                // Enough budget to pass every slot even as entries shift back.
                t.sweep(2 * n, now, &self.hasher)
            })
            .sum()
    }

    /// Reallocates each table to fit its keys (after [`evict_idle`](Self::evict_idle)).
    pub fn shrink(&self) {
        for s in self.shards.iter() {
            let mut t = s.table.write();
            let want = if t.len == 0 {
                0
            } else {
                (t.len * LOAD_DEN)
                    .div_ceil(LOAD_NUM)
                    .max(16)
                    .min(self.max_slots.max(16))
            };
            if want < t.slots.len() {
                t.rebuild(want, &self.hasher);
            }
        }
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

impl<K: Hash + Eq + Clone + Send + Sync, C: Clock> Admission for KeyedRateLimiter<K, C> {
    type Permit = ();

    /// A request without a key draws from one shared bucket.
    fn try_acquire(&self) -> Result<(), Rejected> {
        self.check_unkeyed().map(|_| ()).map_err(Rejected::from)
    }

    fn record(&self, _permit: (), _outcome: Outcome, _latency: Duration) {}
}

impl<K: Hash + Eq + Clone + Send + Sync, C: Clock> KeyedAdmission<K> for KeyedRateLimiter<K, C> {
    #[inline]
    fn try_acquire_key(&self, key: &K) -> Result<(), Rejected> {
        self.check_key(key).map(|_| ()).map_err(Rejected::from)
    }
}

/// Keys as `Option<K>`: `None` (no client IP known) draws from the shared bucket.
impl<K: Hash + Eq + Clone + Send + Sync, C: Clock> KeyedAdmission<Option<K>>
    for KeyedRateLimiter<K, C>
{
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

    fn limiter(
        max_keys: usize,
        shards: usize,
        clock: &ManualClock,
    ) -> KeyedRateLimiter<u64, ManualClock> {
        KeyedRateLimiter::builder(Quota::per_second(
            NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN),
        ))
        .max_keys(max_keys)
        .shards(shards)
        .clock(clock.clone())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn removal_keeps_every_other_key_findable() {
        let clock = ManualClock::new();
        let l = limiter(10_000, 1, &clock);
        for k in 0..5000u64 {
            assert!(l.check_key(&k).is_ok());
        }
        // Half the keys go idle (full buckets) at 1 s; the other half take another unit.
        clock.advance(Duration::from_millis(600));
        for k in (0..5000u64).filter(|k| k % 2 == 0) {
            assert!(l.check_key(&k).is_ok());
            assert!(l.check_key(&k).is_ok());
        }
        clock.advance(Duration::from_millis(400));
        assert_eq!(l.len(), 5000);
        for k in 0..5000u64 {
            assert_eq!(
                l.state_of(&k).remaining(),
                if k % 2 == 0 { 0 } else { 2 },
                "key {k} before"
            );
        }
        let removed = l.evict_idle();
        assert_eq!(removed, 2500);
        assert_eq!(l.len(), 2500);
        // Every even key is still there with its bucket (state) intact.
        for k in (0..5000u64).filter(|k| k % 2 == 0) {
            assert_eq!(l.state_of(&k).remaining(), 0, "key {k}");
        }
        l.shrink();
        for k in (0..5000u64).filter(|k| k % 2 == 0) {
            assert_eq!(l.state_of(&k).remaining(), 0, "key {k} after shrink");
        }
    }
}
