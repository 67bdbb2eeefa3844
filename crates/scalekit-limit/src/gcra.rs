//! GCRA, the generic cell rate algorithm: a token bucket kept as one timestamp.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use scalekit_core::{Admission, Clock, MonotonicClock, Outcome, RejectReason, Rejected};

use crate::quota::Quota;

/// What a rate limit looks like after a decision: the values of the `RateLimit`
/// and `Retry-After` HTTP headers (IETF draft `RateLimit` header fields).
///
/// ```
/// use scalekit_limit::{Quota, RateLimiter};
/// use scalekit_core::ManualClock;
/// use std::num::NonZeroU32;
///
/// let limiter = RateLimiter::with_clock(Quota::per_second(NonZeroU32::new(5).unwrap()), ManualClock::new());
/// let state = limiter.check().unwrap();
/// assert_eq!((state.limit(), state.remaining()), (5, 4));
/// // `RateLimit: limit=5, remaining=4, reset=1`
/// assert_eq!(state.reset_after().as_millis(), 200);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateLimitState {
    // All fields are u64 so a decision is returned as whole words (a mix of
    // widths made the compiler split and rejoin them, stalling the store buffer).
    limit: u64,
    /// Room left, in units of `unit` nanoseconds (remaining = room / unit): the
    /// division is done only when `remaining` is asked for, off the hot path.
    room: u64,
    unit: u64,
    reset_after_nanos: u64,
}

impl RateLimitState {
    pub(crate) fn new_window(limit: u64, used: u64, reset_after: Duration) -> Self {
        Self {
            limit: limit.min(u64::from(u32::MAX)),
            room: limit.saturating_sub(used),
            unit: 1,
            reset_after_nanos: reset_after.as_nanos() as u64,
        }
    }

    #[cfg(feature = "redis")]
    pub(crate) fn from_parts(limit: u32, remaining: u32, reset_after: Duration) -> Self {
        Self {
            limit: u64::from(limit),
            room: u64::from(remaining),
            unit: 1,
            reset_after_nanos: reset_after.as_nanos() as u64,
        }
    }

    /// The burst: units a full bucket holds.
    pub fn limit(&self) -> u32 {
        self.limit as u32
    }

    /// Units that may still be taken now.
    pub fn remaining(&self) -> u32 {
        (self.room / self.unit.max(1)).min(self.limit) as u32
    }

    /// Time until the bucket is full again (nothing consumed in between).
    pub fn reset_after(&self) -> Duration {
        Duration::from_nanos(self.reset_after_nanos)
    }

    /// `reset_after` rounded up to whole seconds, for headers.
    pub fn reset_after_secs(&self) -> u64 {
        self.reset_after_nanos.div_ceil(1_000_000_000)
    }
}

/// Why a rate limit said no.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DenyKind {
    /// Not enough units now; [`Denied::retry_after`] says when.
    RateLimited,
    /// More units were asked for than the burst: this request never fits.
    ExceedsBurst,
    /// A keyed limiter holds its maximum number of keys and none is idle: a new
    /// key cannot be tracked now.
    KeysFull,
    /// The shared store (Redis) did not answer and the limiter fails closed.
    Unavailable,
}

/// A denied request: why, when to retry, and the state for the headers. `Copy`:
/// a denial allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Denied {
    state: RateLimitState,
    /// Nanoseconds; `u64::MAX` for none (whole words, as in the state).
    retry_after_nanos: u64,
    kind: DenyKind,
}

impl Denied {
    pub(crate) fn new(
        kind: DenyKind,
        retry_after: Option<Duration>,
        state: RateLimitState,
    ) -> Self {
        Self {
            state,
            retry_after_nanos: retry_after.map_or(u64::MAX, |d| {
                u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
            }),
            kind,
        }
    }

    /// Why.
    pub fn kind(&self) -> DenyKind {
        self.kind
    }

    /// The earliest time a retry of the same request can succeed; `None` when
    /// waiting does not help ([`DenyKind::ExceedsBurst`]) or is unknown.
    pub fn retry_after(&self) -> Option<Duration> {
        (self.retry_after_nanos != u64::MAX).then(|| Duration::from_nanos(self.retry_after_nanos))
    }

    /// `retry_after` rounded up to whole seconds (at least 1), for a
    /// `Retry-After` header.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after()
            .map(|d| (d.as_nanos().div_ceil(1_000_000_000) as u64).max(1))
    }

    /// The state for the `RateLimit` headers (`remaining` is what is left, less
    /// than what was asked for).
    pub fn state(&self) -> RateLimitState {
        self.state
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            DenyKind::RateLimited => write!(f, "rate limit exceeded")?,
            DenyKind::ExceedsBurst => write!(f, "request is larger than the burst")?,
            DenyKind::KeysFull => write!(f, "rate limiter is tracking its maximum number of keys")?,
            DenyKind::Unavailable => write!(f, "rate limit store is unavailable")?,
        }
        if let Some(wait) = self.retry_after() {
            write!(f, "; retry after {wait:?}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Denied {}

impl From<Denied> for Rejected {
    fn from(d: Denied) -> Rejected {
        let reason = match d.kind {
            DenyKind::KeysFull | DenyKind::Unavailable => RejectReason::Overloaded,
            _ => RejectReason::RateLimited,
        };
        let r = Rejected::new(reason);
        match d.retry_after() {
            Some(wait) => r.retry_after(wait),
            None => r,
        }
    }
}

/// A quota kept in atomics so that it can change at run time.
#[derive(Debug)]
pub(crate) struct AtomicQuota {
    interval: AtomicU64,
    burst: AtomicU32,
}

impl AtomicQuota {
    pub(crate) fn new(q: Quota) -> Self {
        Self {
            interval: AtomicU64::new(q.interval_nanos()),
            burst: AtomicU32::new(q.burst()),
        }
    }

    #[inline]
    pub(crate) fn load(&self) -> Quota {
        Quota::from_parts(
            self.interval.load(Ordering::Relaxed),
            self.burst.load(Ordering::Relaxed),
        )
    }

    /// A check racing with a change may see the new interval with the old burst
    /// once; both halves are valid quotas, so the bound holds for one of them.
    pub(crate) fn store(&self, q: Quota) {
        self.burst.store(q.burst(), Ordering::Relaxed);
        self.interval.store(q.interval_nanos(), Ordering::Relaxed);
    }
}

/// The state of a bucket whose TAT is `tat` (at least `now`).
pub(crate) fn state_at(q: &Quota, now: u64, tat: u64) -> RateLimitState {
    state(q, now, tat)
}

fn state(q: &Quota, now: u64, tat: u64) -> RateLimitState {
    let ahead = tat.saturating_sub(now);
    RateLimitState {
        limit: u64::from(q.burst()),
        room: q.tau_nanos().saturating_sub(ahead),
        unit: q.interval_nanos(),
        reset_after_nanos: ahead,
    }
}

/// The GCRA step itself: the new TAT when `cost` (nanoseconds of the rate)
/// fits under the tolerance `tau`, else `Err(base)`, the TAT the bucket has now.
#[inline(always)]
fn step(tat: u64, now: u64, cost: u64, tau: u64) -> Result<u64, u64> {
    let base = tat.max(now);
    let new_tat = base.saturating_add(cost);
    if new_tat - now > tau {
        Err(base)
    } else {
        Ok(new_tat)
    }
}

/// The cost of `n` units in nanoseconds. Saturating: a check racing a quota
/// change may pair the new interval with the old burst, beyond the 2^62 ns a
/// quota keeps to.
#[inline(always)]
fn cost(q: &Quota, n: u32) -> u64 {
    q.interval_nanos().saturating_mul(u64::from(n))
}

/// One GCRA decision: `Ok((new_tat, state))` or the denial. Pure: the keyed
/// limiter stores `new_tat` with a compare-and-swap, the Redis script does the
/// same sums.
#[inline]
pub(crate) fn decide(
    q: &Quota,
    tat: u64,
    now: u64,
    n: u32,
) -> Result<(u64, RateLimitState), Denied> {
    if n > q.burst() {
        return Err(exceeds_burst(q, now, tat.max(now)));
    }
    match step(tat, now, cost(q, n), q.tau_nanos()) {
        Ok(new_tat) => Ok((new_tat, state(q, now, new_tat))),
        Err(base) => Err(rate_limited(q, now, base, n)),
    }
}

/// Applies one decision to a GCRA cell stored in an atomic: one load, one CAS,
/// no lock. Returns the state after. The loop carries only the TAT; the state
/// is built once the swap has succeeded.
#[inline]
pub(crate) fn check_cell(
    cell: &AtomicU64,
    q: &Quota,
    now: u64,
    n: u32,
) -> Result<RateLimitState, Denied> {
    match check_cell_if(cell, q, now, n, |_| true) {
        Some(decision) => decision,
        // The guard accepts every TAT.
        None => Err(exceeds_burst(q, now, now)),
    }
}

/// [`check_cell`] for a cell that may change hands: `owned(tat)` is asked
/// before each attempt and `None` is returned once it says no (the keyed
/// limiter checks that the slot still holds its key).
#[inline(always)]
pub(crate) fn check_cell_if(
    cell: &AtomicU64,
    q: &Quota,
    now: u64,
    n: u32,
    owned: impl Fn(u64) -> bool,
) -> Option<Result<RateLimitState, Denied>> {
    let mut tat = cell.load(Ordering::Acquire);
    if n > q.burst() {
        return Some(Err(exceeds_burst(q, now, tat.max(now))));
    }
    let (cost, tau) = (cost(q, n), q.tau_nanos());
    loop {
        if !owned(tat) {
            return None;
        }
        let new_tat = match step(tat, now, cost, tau) {
            Ok(new_tat) => new_tat,
            Err(base) => return Some(Err(rate_limited(q, now, base, n))),
        };
        match cell.compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(Ok(state(q, now, new_tat))),
            Err(current) => tat = current,
        }
    }
}

// The denials are built out of line: the admitting path stays short.
#[cold]
#[inline(never)]
fn exceeds_burst(q: &Quota, now: u64, base: u64) -> Denied {
    Denied::new(DenyKind::ExceedsBurst, None, state(q, now, base))
}

#[cold]
#[inline(never)]
fn rate_limited(q: &Quota, now: u64, base: u64, n: u32) -> Denied {
    // `step` refused, so `base + cost - now > tau`.
    let wait = base.saturating_add(cost(q, n)) - now - q.tau_nanos();
    Denied::new(
        DenyKind::RateLimited,
        Some(Duration::from_nanos(wait)),
        state(q, now, base),
    )
}

/// A rate limiter for one stream of requests: GCRA in one atomic, no lock.
///
/// `check` costs a clock read, a load and a compare-and-swap. Clones are not
/// needed: share it by reference or `Arc`.
///
/// ```
/// use scalekit_limit::{DenyKind, Quota, RateLimiter};
/// use scalekit_core::ManualClock;
/// use std::num::NonZeroU32;
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let limiter = RateLimiter::with_clock(Quota::per_second(NonZeroU32::new(2).unwrap()), clock.clone());
/// assert!(limiter.check().is_ok());
/// assert!(limiter.check().is_ok());
/// let denied = limiter.check().unwrap_err();
/// assert_eq!(denied.kind(), DenyKind::RateLimited);
/// assert_eq!(denied.retry_after(), Some(Duration::from_millis(500)));
/// clock.advance(Duration::from_millis(500));
/// assert!(limiter.check().is_ok());
/// ```
pub struct RateLimiter<C = MonotonicClock> {
    tat: AtomicU64,
    quota: AtomicQuota,
    clock: C,
}

impl<C: fmt::Debug> fmt::Debug for RateLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("quota", &self.quota.load())
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter on the real clock.
    pub fn new(quota: Quota) -> Self {
        Self::with_clock(quota, MonotonicClock)
    }
}

impl<C: Clock> RateLimiter<C> {
    /// A limiter reading time from `clock` (a `ManualClock` in tests).
    pub fn with_clock(quota: Quota, clock: C) -> Self {
        Self {
            tat: AtomicU64::new(0),
            quota: AtomicQuota::new(quota),
            clock,
        }
    }

    /// Takes one unit if there is one.
    #[inline]
    pub fn check(&self) -> Result<RateLimitState, Denied> {
        self.check_n(1)
    }

    /// Takes `n` units if there are that many (a request's cost: bytes, rows).
    #[inline]
    pub fn check_n(&self, n: u32) -> Result<RateLimitState, Denied> {
        let q = self.quota.load();
        check_cell(&self.tat, &q, self.clock.now_nanos(), n)
    }

    /// The state now, taking nothing (for headers on a response that was not
    /// limited by this limiter).
    pub fn state(&self) -> RateLimitState {
        let q = self.quota.load();
        let now = self.clock.now_nanos();
        state(&q, now, self.tat.load(Ordering::Acquire).max(now))
    }

    /// The quota in force.
    pub fn quota(&self) -> Quota {
        self.quota.load()
    }

    /// Changes the quota from the next check on. Units already taken stay taken.
    pub fn set_quota(&self, quota: Quota) {
        self.quota.store(quota);
    }

    /// The clock the limiter reads.
    pub fn clock(&self) -> &C {
        &self.clock
    }
}

impl<C: Clock> Admission for RateLimiter<C> {
    type Permit = ();

    #[inline]
    fn try_acquire(&self) -> Result<(), Rejected> {
        self.check().map(|_| ()).map_err(Rejected::from)
    }

    #[inline]
    fn record(&self, _permit: (), _outcome: Outcome, _latency: Duration) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use scalekit_core::ManualClock;
    use std::num::NonZeroU32;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
    }

    #[test]
    fn burst_then_rate() {
        let clock = ManualClock::new();
        let l =
            RateLimiter::with_clock(Quota::per_second(nz(10)).allow_burst(nz(3)), clock.clone());
        for left in [2, 1, 0] {
            assert_eq!(l.check().map(|s| s.remaining()), Ok(left));
        }
        let d = l.check().unwrap_err();
        assert_eq!(d.retry_after(), Some(Duration::from_millis(100)));
        assert_eq!(d.state().remaining(), 0);
        assert_eq!(d.state().reset_after(), Duration::from_millis(300));
        clock.advance(Duration::from_millis(100));
        assert!(l.check().is_ok());
        assert!(l.check().is_err());
    }

    #[test]
    fn check_n_and_exceeding_the_burst() {
        let l = RateLimiter::with_clock(Quota::per_second(nz(4)), ManualClock::new());
        assert_eq!(l.check_n(3).map(|s| s.remaining()), Ok(1));
        let d = l.check_n(2).unwrap_err();
        assert_eq!(d.kind(), DenyKind::RateLimited);
        assert_eq!(d.retry_after(), Some(Duration::from_millis(250)));
        let d = l.check_n(5).unwrap_err();
        assert_eq!(d.kind(), DenyKind::ExceedsBurst);
        assert_eq!(d.retry_after(), None);
        assert_eq!(l.check_n(1).map(|s| s.remaining()), Ok(0));
    }

    #[test]
    fn quota_changes_at_run_time() {
        let clock = ManualClock::new();
        let l = RateLimiter::with_clock(Quota::per_second(nz(1)), clock.clone());
        assert!(l.check().is_ok());
        assert!(l.check().is_err());
        l.set_quota(Quota::per_second(nz(100)));
        // The unit taken at 1/s still occupies a whole second, all of the new
        // tolerance (100 x 10 ms): nothing fits now, and 10 units 100 ms later.
        assert!(l.check().is_err());
        clock.advance(Duration::from_millis(100));
        let mut n = 0;
        while l.check().is_ok() {
            n += 1;
        }
        assert_eq!(n, 10);
        assert_eq!(l.quota().burst(), 100);
    }

    #[test]
    fn extreme_quotas_do_not_overflow() {
        let clock = ManualClock::starting_at(Duration::from_secs(u64::MAX / 2_000_000_000));
        let q = Quota::with_interval(crate::quota::MAX_INTERVAL)
            .unwrap_or_else(|e| panic!("{e}"))
            .allow_burst(nz(u32::MAX));
        // The burst is capped at 146 years' worth of units.
        assert_eq!(q.burst(), 53_375);
        let l = RateLimiter::with_clock(q, clock.clone());
        assert_eq!(
            l.check_n(u32::MAX).unwrap_err().kind(),
            DenyKind::ExceedsBurst
        );
        assert!(l.check_n(q.burst()).is_ok());
        assert_eq!(l.check_n(1).unwrap_err().kind(), DenyKind::RateLimited);
        assert_eq!(l.state().remaining(), 0);
    }

    #[test]
    fn denials_read_well_and_convert() {
        let l = RateLimiter::with_clock(Quota::per_minute(nz(1)), ManualClock::new());
        let _ = l.check();
        let d = l.check().unwrap_err();
        assert_eq!(d.to_string(), "rate limit exceeded; retry after 60s");
        assert_eq!(d.retry_after_secs(), Some(60));
        let r = Rejected::from(d);
        assert_eq!(r.reason(), RejectReason::RateLimited);
        assert_eq!(r.retry_after_hint(), Some(Duration::from_secs(60)));
    }
}
