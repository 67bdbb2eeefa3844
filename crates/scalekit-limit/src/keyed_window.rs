//! Keyed sliding window: Cloudflare's approximation per key, one packed word per
//! key in the keyed table (see `table`), read without locks, with a hard cap on
//! keys.

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use scalekit_core::{
    Admission, Clock, ConfigError, KeyedAdmission, MonotonicClock, Outcome, Rejected,
};

use crate::gcra::{Denied, DenyKind, RateLimitState};
use crate::table::{Table, DEFAULT_MAX_KEYS, DEFAULT_SHARDS};
use crate::window::{check_limit, check_window, decide};

/// The largest limit a [`KeyedSlidingWindow`] takes: a key's two counts are
/// 16 bits each, beside the window's number, in one 64-bit word.
pub const MAX_KEYED_WINDOW_LIMIT: u32 = 65_534;

const COMPONENT: &str = "keyed sliding window";

/// A key's state: the number of the window it last counted in (32 bits,
/// wrapping), the count of the window before it and its own (16 bits each).
/// Counts never exceed the limit (at most 65,534), so no state is
/// [`HANDING_OVER`](crate::table::HANDING_OVER).
#[inline]
fn pack(window: u64, previous: u64, current: u64) -> u64 {
    (window & 0xFFFF_FFFF) << 32 | (previous & 0xFFFF) << 16 | (current & 0xFFFF)
}

/// The counts as they stand in window `idx`: the previous window's and the
/// current one's.
#[inline]
fn counts_at(state: u64, idx: u64) -> (u64, u64) {
    let stored = (state >> 32) as u32;
    let (previous, current) = ((state >> 16) & 0xFFFF, state & 0xFFFF);
    match (idx as u32).wrapping_sub(stored) {
        0 => (previous, current),
        1 => (current, 0),
        _ => (0, 0),
    }
}

/// The sliding-window decision on one cell: one load, one compare-and-swap per
/// attempt. `owned(state)` is asked before each attempt (the keyed table checks
/// that the slot still holds its key); `None` once it says no.
#[inline]
fn check_cell(
    cell: &AtomicU64,
    limit: u64,
    w: u64,
    now: u64,
    n: u32,
    owned: impl Fn(u64) -> bool,
) -> Option<Result<RateLimitState, Denied>> {
    let idx = now / w;
    let elapsed = now % w;
    let mut state = cell.load(Ordering::Acquire);
    loop {
        if !owned(state) {
            return None;
        }
        let (previous, current) = counts_at(state, idx);
        let decision = decide(limit, w, previous, current, elapsed, u64::from(n));
        if decision.is_err() {
            return Some(decision);
        }
        let new = pack(idx, previous, current + u64::from(n));
        match cell.compare_exchange_weak(state, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(decision),
            Err(now_state) => state = now_state,
        }
    }
}

/// Builds a [`KeyedSlidingWindow`].
///
/// ```
/// use scalekit_limit::KeyedSlidingWindow;
/// use std::time::Duration;
///
/// let per_user = KeyedSlidingWindow::<str>::builder(100, Duration::from_secs(60))
///     .max_keys(50_000)
///     .build()?;
/// # let _ = per_user;
/// # Ok::<(), scalekit_limit::ConfigError>(())
/// ```
pub struct KeyedSlidingWindowBuilder<K: ?Sized, C = MonotonicClock> {
    limit: u32,
    window: Duration,
    max_keys: usize,
    shards: usize,
    seed: Option<u64>,
    clock: C,
    _keys: PhantomData<fn(&K)>,
}

impl<K: ?Sized, C: fmt::Debug> fmt::Debug for KeyedSlidingWindowBuilder<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedSlidingWindowBuilder")
            .field("limit", &self.limit)
            .field("window", &self.window)
            .field("max_keys", &self.max_keys)
            .field("shards", &self.shards)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl<K: ?Sized, C> KeyedSlidingWindowBuilder<K, C> {
    /// The most keys tracked at once (default 2^20); as
    /// [`KeyedRateLimiterBuilder::max_keys`](crate::KeyedRateLimiterBuilder::max_keys).
    /// A key is idle once neither its window nor the one before it counts
    /// anything.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Independent shards (default 64; a power of two up to 4096).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// Seeds the key hash (for reproducible tests; leave it random in service).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Reads time from `clock` instead (a [`ManualClock`](scalekit_core::ManualClock) in tests).
    pub fn clock<C2: Clock>(self, clock: C2) -> KeyedSlidingWindowBuilder<K, C2> {
        KeyedSlidingWindowBuilder {
            limit: self.limit,
            window: self.window,
            max_keys: self.max_keys,
            shards: self.shards,
            seed: self.seed,
            clock,
            _keys: PhantomData,
        }
    }

    /// Checks the settings and builds the limiter.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `limit` (1 to [`MAX_KEYED_WINDOW_LIMIT`]),
    /// `window` (1 ms to a year), `max_keys` or `shards` when it cannot work.
    pub fn build(self) -> Result<KeyedSlidingWindow<K, C>, ConfigError> {
        check_limit(COMPONENT, self.limit, MAX_KEYED_WINDOW_LIMIT)?;
        check_window(COMPONENT, self.window)?;
        Ok(KeyedSlidingWindow {
            table: Table::new(COMPONENT, self.max_keys, self.shards, self.seed)?,
            limit: u64::from(self.limit),
            window: self.window.as_nanos() as u64,
            unkeyed: AtomicU64::new(0),
            clock: self.clock,
            _keys: PhantomData,
        })
    }
}

/// At most `limit` requests per window for each key (client IP, user, token),
/// judged over a sliding window estimated from two fixed ones (Cloudflare's
/// approximation): the previous window's count, weighted by the share of it
/// still inside the sliding window, plus the current count.
///
/// The keyed form of [`SlidingWindow`](crate::SlidingWindow), on the same table
/// as [`KeyedRateLimiter`](crate::KeyedRateLimiter): one 64-bit word per key (the
/// window's number and both counts, so `limit` is at most
/// [`MAX_KEYED_WINDOW_LIMIT`]), 32 bytes a key at the cap, lock-free checks (one
/// compare-and-swap), a hard cap on keys and gradual eviction of idle ones (a
/// key is idle two windows after its last admission).
///
/// The estimate never exceeds the limit at an admission, and no fixed window
/// admits more than `limit`; over any span of one window length at most
/// `limit + previous * elapsed / window` are admitted, under `2 * limit`.
/// Window numbers are kept modulo 2^32: a key untouched for a multiple of 2^32
/// windows (49 days of 1 ms windows, 136 years of 1 s ones) may see its old
/// counts once, which can only deny, never admit too many.
///
/// ```
/// use scalekit_core::ManualClock;
/// use scalekit_limit::{DenyKind, KeyedSlidingWindow};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let w = KeyedSlidingWindow::<str, _>::builder(10, Duration::from_secs(60))
///     .clock(clock.clone())
///     .build()?;
/// for _ in 0..10 {
///     assert!(w.check_key("alice").is_ok());
/// }
/// assert_eq!(w.check_key("alice").unwrap_err().kind(), DenyKind::RateLimited);
/// assert!(w.check_key("bob").is_ok(), "each key has its own window");
/// // 45 s into the next minute a quarter of the last one still counts: 2.5.
/// clock.advance(Duration::from_secs(105));
/// assert_eq!(w.check_key("alice").unwrap().remaining(), 6);
/// # Ok::<(), scalekit_limit::ConfigError>(())
/// ```
pub struct KeyedSlidingWindow<K: ?Sized, C = MonotonicClock> {
    table: Table,
    limit: u64,
    window: u64,
    unkeyed: AtomicU64,
    clock: C,
    _keys: PhantomData<fn(&K)>,
}

impl<K: ?Sized, C: fmt::Debug> fmt::Debug for KeyedSlidingWindow<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedSlidingWindow")
            .field("limit", &self.limit)
            .field("window", &Duration::from_nanos(self.window))
            .field("table", &self.table)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + ?Sized> KeyedSlidingWindow<K> {
    /// A builder: `limit` requests per `window` for every key, at most 2^20
    /// keys, 64 shards.
    pub fn builder(limit: u32, window: Duration) -> KeyedSlidingWindowBuilder<K> {
        KeyedSlidingWindowBuilder {
            limit,
            window,
            max_keys: DEFAULT_MAX_KEYS,
            shards: DEFAULT_SHARDS,
            seed: None,
            clock: MonotonicClock,
            _keys: PhantomData,
        }
    }
}

impl<K: Hash + ?Sized, C: Clock> KeyedSlidingWindow<K, C> {
    /// When a key with `state` goes idle: once neither its window nor the one
    /// before counts anything.
    fn idle_at(&self) -> impl Fn(u64, u64) -> u64 + '_ {
        move |state, now| {
            let idx = now / self.window;
            match counts_at(state, idx) {
                (_, c) if c > 0 => (idx + 2).saturating_mul(self.window),
                (p, _) if p > 0 => (idx + 1).saturating_mul(self.window),
                _ => 0,
            }
        }
    }

    /// Counts one request for `key` if its estimate allows it.
    #[inline]
    pub fn check_key(&self, key: &K) -> Result<RateLimitState, Denied> {
        self.check_key_n(key, 1)
    }

    /// Counts `n` requests for `key` if its estimate allows them.
    #[inline]
    pub fn check_key_n(&self, key: &K, n: u32) -> Result<RateLimitState, Denied> {
        let (limit, w) = (self.limit, self.window);
        let now = self.clock.now_nanos();
        self.table.decide(
            self.table.hash(key),
            now,
            |slot, fp| check_cell(&slot.state, limit, w, now, n, |s| slot.held_by(fp, s)),
            self.idle_at(),
            || {
                let decision = decide(limit, w, 0, 0, now % w, u64::from(n));
                match decision {
                    Ok(_) => Ok((pack(now / w, 0, u64::from(n)), decision)),
                    Err(_) => Err(decision),
                }
            },
            || {
                let state = RateLimitState::new_window(limit, 0, Duration::from_nanos(w - now % w));
                Err(Denied::new(DenyKind::KeysFull, None, state))
            },
        )
    }

    /// Counts one request against the window shared by requests that have no
    /// key.
    pub fn check_unkeyed(&self) -> Result<RateLimitState, Denied> {
        let now = self.clock.now_nanos();
        match check_cell(&self.unkeyed, self.limit, self.window, now, 1, |_| true) {
            Some(decision) => decision,
            // The guard accepts every state.
            None => Err(Denied::new(
                DenyKind::RateLimited,
                None,
                RateLimitState::new_window(self.limit, self.limit, Duration::ZERO),
            )),
        }
    }

    /// Keys tracked now (live ones, and idle ones not yet handed over).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys whose windows still count something (a scan of every table).
    pub fn active_keys(&self) -> usize {
        self.table
            .active_keys(self.clock.now_nanos(), self.idle_at())
    }

    /// The most keys this limiter tracks at once.
    pub fn max_keys(&self) -> usize {
        self.table.max_keys()
    }

    /// Bytes held by the tables now (shards that have seen a key).
    pub fn memory_bytes(&self) -> usize {
        self.table.memory_bytes()
    }

    /// The limit per window.
    pub fn limit(&self) -> u32 {
        self.limit as u32
    }

    /// The window's length.
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window)
    }
}

impl<K: Hash + ?Sized, C: Clock> Admission for KeyedSlidingWindow<K, C> {
    type Permit = ();

    /// A request without a key counts against one shared window.
    fn try_acquire(&self) -> Result<(), Rejected> {
        self.check_unkeyed().map(|_| ()).map_err(Rejected::from)
    }

    fn record(&self, _permit: (), _outcome: Outcome, _latency: Duration) {}
}

impl<K: Hash + ?Sized, C: Clock> KeyedAdmission<K> for KeyedSlidingWindow<K, C> {
    #[inline]
    fn try_acquire_key(&self, key: &K) -> Result<(), Rejected> {
        self.check_key(key).map(|_| ()).map_err(Rejected::from)
    }
}

/// Keys as `Option<K>`: `None` counts against the shared window.
impl<K: Hash, C: Clock> KeyedAdmission<Option<K>> for KeyedSlidingWindow<K, C> {
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
    use crate::table::HANDING_OVER;

    #[test]
    fn packing_round_trips_and_windows_roll() {
        let s = pack(7, 3, 5);
        assert_eq!(counts_at(s, 7), (3, 5));
        assert_eq!(counts_at(s, 8), (5, 0));
        assert_eq!(counts_at(s, 9), (0, 0));
        // Window numbers wrap at 2^32: the next one after u32::MAX is 0.
        let s = pack(u64::from(u32::MAX), 1, 2);
        assert_eq!(counts_at(s, 1 << 32), (2, 0));
        // The largest counts never make the hand-over marker.
        let top = pack(
            u64::from(u32::MAX),
            u64::from(MAX_KEYED_WINDOW_LIMIT),
            u64::from(MAX_KEYED_WINDOW_LIMIT),
        );
        assert_ne!(top, HANDING_OVER);
    }
}
