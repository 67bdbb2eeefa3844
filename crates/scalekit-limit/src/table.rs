//! The keyed limiters' table: one 64-bit state word per key in a fixed
//! open-addressing array per shard, read without locks, with a hard cap on keys.
//!
//! Each slot holds a key's fingerprint (its 64-bit keyed hash; 0 marks an empty
//! slot) and the limiter's state for the key (GCRA's TAT, the sliding window's
//! packed counts). The table does not know what the state means, only when a key
//! becomes *idle* (forgetting it changes no decision): the limiter passes an
//! `idle_at(state, now)` function, and a key is idle once `idle_at <= now`. A
//! key's `idle_at` only moves forward while it is live (admissions push it out),
//! which is what lets a shard remember a lower bound on when its next key goes
//! idle.
//!
//! The cap and idle keys: a new key takes the first free or idle slot of its
//! window (the [`MAX_PROBE`] slots from its home slot); at the cap, when its
//! window holds no idle key, the shard's clock hand sweeps the whole shard for
//! one, frees its slot, and the new key takes a free slot of its window. So a new
//! key is refused only when its shard holds no idle key, or when all 128 slots of
//! its window hold keys, which at the load the cap keeps (at most one key in two
//! slots) has a chance of about e^-25 per new key.

use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use parking_lot::Mutex;
use scalekit_core::{mix64, ConfigError};

/// A key's slot: its fingerprint (0: empty) and its state. 16 bytes: both words
/// share a cache line.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    pub(crate) fingerprint: AtomicU64,
    pub(crate) state: AtomicU64,
}

impl Slot {
    /// Whether this slot, its state read as `state`, still holds the key with
    /// fingerprint `fp` (and is not being handed over).
    #[inline]
    pub(crate) fn held_by(&self, fp: u64, state: u64) -> bool {
        state != HANDING_OVER && self.fingerprint.load(Ordering::Acquire) == fp
    }
}

/// A slot being handed from an idle key to a new one (or freed); readers that
/// see it go to the shard's lock, which the writer holds until it is done.
pub(crate) const HANDING_OVER: u64 = u64::MAX;

/// How far from its home slot a key may be placed (and a lookup searches).
pub(crate) const MAX_PROBE: usize = 128;
/// Keys per slot at the cap: 1 in 2.
const LOAD_NUM: usize = 1;
const LOAD_DEN: usize = 2;

/// The default cap on keys.
pub const DEFAULT_MAX_KEYS: usize = 1 << 20;
/// The default number of shards.
pub(crate) const DEFAULT_SHARDS: usize = 64;

#[derive(Debug)]
struct Sweep {
    /// Slots holding a key (never more than the shard's share of the cap).
    used: usize,
    /// Where the next sweep for an idle key starts.
    hand: usize,
    /// No key of the shard is idle before this time (a lower bound on every
    /// live key's `idle_at`, known after a sweep that found none).
    next_idle_at: u64,
}

/// One shard: its array (read on every check) and its lock. A cache line of
/// its own, so that a check reads one line for the array's address.
#[derive(Debug)]
#[repr(align(64))]
struct Shard {
    slots: OnceLock<Box<[Slot]>>,
    sweep: Mutex<Sweep>,
}

#[inline]
fn home(hash: u64, len: usize) -> usize {
    ((u128::from(hash) * len as u128) >> 64) as usize
}

/// The fingerprint stored for a hash (0 marks an empty slot).
#[inline]
pub(crate) fn fingerprint(hash: u64) -> u64 {
    hash.max(1)
}

/// What [`Table::insert`] did with a key it did not find without the lock.
pub(crate) enum Insert<'a, R> {
    /// The key was there after all (another thread placed it): decide on its slot.
    Existing(&'a Slot),
    /// The key was placed with the state `fresh` gave; here is its decision.
    Placed(R),
    /// `fresh` refused (the request does not fit a full bucket): nothing placed.
    Refused(R),
    /// No slot could be had: the shard is at its cap with no idle key (or the
    /// key's window is full). The decision `fresh` gave is returned unused.
    Full(R),
}

/// The table of a keyed limiter.
pub(crate) struct Table {
    shards: Box<[Shard]>,
    shard_mask: u64,
    per_shard: usize,
    slots_per_shard: usize,
    hasher: ahash::RandomState,
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("shards", &self.shards.len())
            .field("max_keys_per_shard", &self.per_shard)
            .finish_non_exhaustive()
    }
}

impl Table {
    /// A table for `max_keys` keys over `shards` shards (a power of two), hashing
    /// with a random seed, or `seed` when given. `component` names the limiter in
    /// configuration errors.
    pub(crate) fn new(
        component: &'static str,
        max_keys: usize,
        shards: usize,
        seed: Option<u64>,
    ) -> Result<Self, ConfigError> {
        if !shards.is_power_of_two() || shards > 4096 {
            return Err(ConfigError::new(
                component,
                "shards",
                shards,
                "a power of two from 1 to 4096 (64 by default)",
            ));
        }
        if max_keys == 0 || max_keys > 1 << 36 {
            return Err(ConfigError::new(
                component,
                "max_keys",
                max_keys,
                "1 to 2^36 keys (the concurrent clients you expect, times 2 to 4)",
            ));
        }
        let per_shard = max_keys.div_ceil(shards);
        let slots_per_shard = (per_shard * LOAD_DEN).div_ceil(LOAD_NUM).max(2);
        let hasher = match seed {
            Some(s) => ahash::RandomState::with_seeds(
                mix64(s),
                mix64(s ^ 0x9E37_79B9_7F4A_7C15),
                mix64(s.wrapping_add(0x5851_F42D_4C95_7F2D)),
                mix64(!s),
            ),
            None => ahash::RandomState::new(),
        };
        Ok(Self {
            shards: (0..shards)
                .map(|_| Shard {
                    slots: OnceLock::new(),
                    sweep: Mutex::new(Sweep {
                        used: 0,
                        hand: 0,
                        next_idle_at: 0,
                    }),
                })
                .collect(),
            shard_mask: (shards - 1) as u64,
            per_shard,
            slots_per_shard,
            hasher,
        })
    }

    /// The key's 64-bit keyed hash.
    #[inline]
    pub(crate) fn hash<K: Hash + ?Sized>(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Shard {
        // The shard comes from the low bits, the home slot from the high ones.
        let i = (hash & self.shard_mask) as usize;
        // `shard_mask` is `shards.len() - 1`: always in range.
        &self.shards[i]
    }

    /// The key's slot, found without a lock, or `None` (not there, or its shard
    /// has no table yet). The caller checks the fingerprint again as it updates.
    #[inline]
    pub(crate) fn find(&self, hash: u64) -> Option<&Slot> {
        let slots = self.shard(hash).slots.get()?;
        let fp = fingerprint(hash);
        let n = slots.len();
        let mut i = home(hash, n);
        for _ in 0..MAX_PROBE.min(n) {
            let slot = slots.get(i)?;
            // Empty slots do not end the search: a new key may be placed in any
            // free or idle slot of its window (a miss is the slow path anyway).
            if slot.fingerprint.load(Ordering::Acquire) == fp {
                return Some(slot);
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
        None
    }

    /// A keyed limiter's decision for the key with `hash`: `check` on its slot
    /// (found without a lock) when it is there, else the slow path: the key is
    /// found or placed under its shard's lock (see [`insert`](Self::insert)),
    /// twice at most, since a slot may change hands between being found and
    /// checked (it was idle and a new key took it). `check` gets the slot and
    /// the key's fingerprint and answers `None` once the slot is not the key's
    /// ([`Slot::held_by`]); `full` is the answer when no slot can be had.
    #[inline]
    pub(crate) fn decide<R>(
        &self,
        hash: u64,
        now: u64,
        check: impl Fn(&Slot, u64) -> Option<R>,
        idle_at: impl Fn(u64, u64) -> u64,
        fresh: impl Fn() -> Result<(u64, R), R>,
        full: impl FnOnce() -> R,
    ) -> R {
        if let Some(slot) = self.find(hash) {
            if let Some(decision) = check(slot, fingerprint(hash)) {
                return decision;
            }
        }
        self.decide_slow(hash, now, check, idle_at, fresh, full)
    }

    #[cold]
    fn decide_slow<R>(
        &self,
        hash: u64,
        now: u64,
        check: impl Fn(&Slot, u64) -> Option<R>,
        idle_at: impl Fn(u64, u64) -> u64,
        fresh: impl Fn() -> Result<(u64, R), R>,
        full: impl FnOnce() -> R,
    ) -> R {
        for _ in 0..2 {
            match self.insert(hash, now, &idle_at, &fresh) {
                Insert::Existing(slot) => {
                    if let Some(decision) = check(slot, fingerprint(hash)) {
                        return decision;
                    }
                }
                Insert::Placed(decision) | Insert::Refused(decision) => return decision,
                Insert::Full(_) => break,
            }
        }
        full()
    }

    /// The slow path for a key [`find`](Self::find) missed, under its shard's
    /// lock: finds it, or decides on a full bucket with `fresh` and places it.
    /// `fresh` gives the new key's state and its decision, or a refusal that
    /// takes no slot.
    fn insert<R>(
        &self,
        hash: u64,
        now: u64,
        idle_at: impl Fn(u64, u64) -> u64,
        fresh: impl FnOnce() -> Result<(u64, R), R>,
    ) -> Insert<'_, R> {
        let fp = fingerprint(hash);
        let shard = self.shard(hash);
        let slots = shard
            .slots
            .get_or_init(|| (0..self.slots_per_shard).map(|_| Slot::default()).collect());
        let mut sweep = shard.sweep.lock();
        // Under the lock no hand-over is half done: search the key's whole window
        // for the key, the first empty slot and the first idle key.
        let len = slots.len();
        let mut i = home(hash, len);
        // Positions are steps from the home slot (the window may wrap).
        let mut idle = None;
        let mut empty = None;
        for step in 0..MAX_PROBE.min(len) {
            let Some(slot) = slots.get(i) else { break };
            match slot.fingerprint.load(Ordering::Acquire) {
                0 => {
                    if empty.is_none() {
                        empty = Some((step, slot));
                    }
                }
                f if f == fp => return Insert::Existing(slot),
                _ => {
                    if idle.is_none() {
                        let state = slot.state.load(Ordering::Acquire);
                        if state != HANDING_OVER && idle_at(state, now) <= now {
                            idle = Some((step, slot, state));
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
        let (state, decision) = match fresh() {
            Ok(placed) => placed,
            Err(refused) => return Insert::Refused(refused),
        };
        let under_cap = sweep.used < self.per_shard;
        // The first idle key of the window, unless an empty slot comes first
        // while under the cap: hand its slot over.
        if let Some((at, slot, old)) = idle {
            let empty_first = under_cap && empty.is_some_and(|(e, _)| e < at);
            if !empty_first && hand_over(slot, old, fp, state) {
                sweep.next_idle_at = sweep.next_idle_at.min(idle_at(state, now));
                return Insert::Placed(decision);
            }
        }
        let Some((_, empty)) = empty else {
            return Insert::Full(decision);
        };
        if !under_cap && !self.evict_one(slots, &mut sweep, now, &idle_at) {
            return Insert::Full(decision);
        }
        empty.state.store(state, Ordering::Release);
        empty.fingerprint.store(fp, Ordering::Release);
        sweep.used += 1;
        sweep.next_idle_at = sweep.next_idle_at.min(idle_at(state, now));
        Insert::Placed(decision)
    }

    /// Frees the slot of one idle key anywhere in the shard, sweeping from the
    /// clock hand; `false` when there is none. A sweep that finds none remembers
    /// when the first live key goes idle, so that until then no new key pays
    /// for another.
    fn evict_one(
        &self,
        slots: &[Slot],
        sweep: &mut Sweep,
        now: u64,
        idle_at: &impl Fn(u64, u64) -> u64,
    ) -> bool {
        if now < sweep.next_idle_at {
            return false;
        }
        let len = slots.len();
        let mut earliest = u64::MAX;
        let mut i = sweep.hand % len.max(1);
        for _ in 0..len {
            let Some(slot) = slots.get(i) else { break };
            i += 1;
            if i == len {
                i = 0;
            }
            if slot.fingerprint.load(Ordering::Acquire) == 0 {
                continue;
            }
            let state = slot.state.load(Ordering::Acquire);
            if state == HANDING_OVER {
                continue;
            }
            let at = idle_at(state, now);
            if at > now {
                earliest = earliest.min(at);
                continue;
            }
            // Idle: lock the slot (a racing admission moves its state and makes
            // the swap fail: then it is not idle any more), clear the key, then
            // the state, so that a reader never sees the key with a blank state.
            if slot
                .state
                .compare_exchange(state, HANDING_OVER, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                slot.fingerprint.store(0, Ordering::Release);
                slot.state.store(0, Ordering::Release);
                sweep.used -= 1;
                sweep.hand = i;
                return true;
            }
        }
        sweep.next_idle_at = earliest;
        false
    }

    /// Slots holding a key (keys still limited, and idle ones not yet handed
    /// over to a new key).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.sweep.lock().used).sum()
    }

    /// Keys that are not idle at `now` (a scan of every table).
    pub(crate) fn active_keys(&self, now: u64, idle_at: impl Fn(u64, u64) -> u64) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.slots.get())
            .flat_map(|slots| slots.iter())
            .filter(|s| {
                let state = s.state.load(Ordering::Acquire);
                s.fingerprint.load(Ordering::Acquire) != 0
                    && state != HANDING_OVER
                    && idle_at(state, now) > now
            })
            .count()
    }

    /// The most keys the table holds at once.
    pub(crate) fn max_keys(&self) -> usize {
        self.per_shard * self.shards.len()
    }

    /// Bytes held by the shards' arrays now (shards that have seen a key).
    pub(crate) fn memory_bytes(&self) -> usize {
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
    pub(crate) fn bytes_per_key() -> f64 {
        std::mem::size_of::<Slot>() as f64 * LOAD_DEN as f64 / LOAD_NUM as f64
    }
}

/// Hands an idle key's slot to a new key: lock it (the swap fails if the old
/// key was used meanwhile), relabel it, set the state.
fn hand_over(slot: &Slot, old: u64, fp: u64, state: u64) -> bool {
    if slot
        .state
        .compare_exchange(old, HANDING_OVER, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return false;
    }
    slot.fingerprint.store(fp, Ordering::Release);
    slot.state.store(state, Ordering::Release);
    true
}
