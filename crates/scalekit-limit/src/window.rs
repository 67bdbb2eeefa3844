//! Sliding-window counter (Cloudflare's approximation): the decision itself
//! (shared with the keyed and the Redis windows) and the unkeyed limiter.

use std::fmt;
use std::time::Duration;

use parking_lot::Mutex;
use scalekit_core::{Admission, Clock, MonotonicClock, Outcome, Rejected};

use scalekit_core::ConfigError;

use crate::gcra::{Denied, DenyKind, RateLimitState};

#[derive(Debug, Default)]
struct Counts {
    window: u64,
    previous: u64,
    current: u64,
}

/// At most `limit` requests per window, judged over a sliding window estimated
/// from two fixed ones (Cloudflare's approximation): the previous window's count,
/// weighted by the share of it still inside the sliding window, plus the current
/// count.
///
/// For users who want "N per minute" window semantics; GCRA
/// ([`RateLimiter`](crate::RateLimiter)) is smoother and lock-free.
///
/// ```
/// use scalekit_limit::SlidingWindow;
/// use scalekit_core::ManualClock;
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let w = SlidingWindow::with_clock(10, Duration::from_secs(60), clock.clone())?;
/// for _ in 0..10 {
///     assert!(w.check().is_ok());
/// }
/// assert!(w.check().is_err());
/// // 45 s into the next minute, a quarter of the last one still counts: 2.5.
/// clock.advance(Duration::from_secs(105));
/// assert_eq!(w.check().unwrap().remaining(), 6);
/// # Ok::<(), scalekit_limit::ConfigError>(())
/// ```
pub struct SlidingWindow<C = MonotonicClock> {
    limit: u64,
    window: u64,
    counts: Mutex<Counts>,
    clock: C,
}

impl<C: fmt::Debug> fmt::Debug for SlidingWindow<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlidingWindow")
            .field("limit", &self.limit)
            .field("window", &Duration::from_nanos(self.window))
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl SlidingWindow {
    /// `limit` requests per `window`, on the real clock.
    pub fn new(limit: u32, window: Duration) -> Result<Self, ConfigError> {
        Self::with_clock(limit, window, MonotonicClock)
    }
}

impl<C: Clock> SlidingWindow<C> {
    /// `limit` requests per `window`, reading time from `clock`.
    pub fn with_clock(limit: u32, window: Duration, clock: C) -> Result<Self, ConfigError> {
        check_limit("sliding window", limit, u32::MAX)?;
        check_window("sliding window", window)?;
        Ok(Self {
            limit: u64::from(limit),
            window: window.as_nanos() as u64,
            counts: Mutex::new(Counts::default()),
            clock,
        })
    }

    /// Counts one request if the estimate allows it.
    pub fn check(&self) -> Result<RateLimitState, Denied> {
        self.check_n(1)
    }

    /// Counts `n` requests if the estimate allows them.
    pub fn check_n(&self, n: u32) -> Result<RateLimitState, Denied> {
        let now = self.clock.now_nanos();
        let w = self.window;
        let idx = now / w;
        let mut c = self.counts.lock();
        if idx != c.window {
            c.previous = if idx == c.window + 1 { c.current } else { 0 };
            c.current = 0;
            c.window = idx;
        }
        let state = decide(self.limit, w, c.previous, c.current, now % w, u64::from(n))?;
        c.current += u64::from(n);
        Ok(state)
    }
}

/// The longest window a sliding window may have.
const MAX_WINDOW: Duration = Duration::from_secs(366 * 24 * 3600);

/// Refuses a limit of zero or above `max`.
pub(crate) fn check_limit(
    component: &'static str,
    limit: u32,
    max: u32,
) -> Result<(), ConfigError> {
    if limit == 0 || limit > max {
        return Err(ConfigError::new(
            component,
            "limit",
            limit,
            if max == u32::MAX {
                "at least 1 request per window"
            } else {
                "1 to 65534 requests per window (a key's counts are packed into one word)"
            },
        ));
    }
    Ok(())
}

/// Refuses a window shorter than a millisecond or longer than a year.
pub(crate) fn check_window(component: &'static str, window: Duration) -> Result<(), ConfigError> {
    if window < Duration::from_millis(1) || window > MAX_WINDOW {
        return Err(ConfigError::new(
            component,
            "window",
            format!("{window:?}"),
            "1 ms to a year",
        ));
    }
    Ok(())
}

/// One sliding-window decision, pure: `n` more requests at `elapsed`
/// nanoseconds into a window of `w`, with `previous` counted in the window
/// before and `current` in this one. Admitted iff the estimate
/// `ceil(previous * (w - elapsed) / w) + current + n` is at most `limit`; then
/// the state after counting them, else the denial with the exact wait.
#[inline]
pub(crate) fn decide(
    limit: u64,
    w: u64,
    previous: u64,
    current: u64,
    elapsed: u64,
    n: u64,
) -> Result<RateLimitState, Denied> {
    // previous * (w - elapsed) / w + current, in integers (rounded up).
    let weighted = (u128::from(previous) * u128::from(w - elapsed)).div_ceil(u128::from(w)) as u64;
    let used = weighted + current;
    let reset_after = Duration::from_nanos(if current > 0 {
        2 * w - elapsed
    } else {
        w - elapsed
    });
    let state = |used: u64| RateLimitState::new_window(limit, used, reset_after);
    if n > limit {
        return Err(Denied::new(DenyKind::ExceedsBurst, None, state(used)));
    }
    if used + n > limit {
        let retry = retry_after(limit, w, previous, current, elapsed, n);
        return Err(Denied::new(DenyKind::RateLimited, Some(retry), state(used)));
    }
    Ok(state(used + n))
}

/// The earliest wait after which `n` more fit (the estimate only falls as time
/// passes without admissions).
fn retry_after(limit: u64, w: u64, previous: u64, current: u64, elapsed: u64, n: u64) -> Duration {
    let (w, limit) = (u128::from(w), u128::from(limit));
    let (p, c, n, e) = (
        u128::from(previous),
        u128::from(current),
        u128::from(n),
        u128::from(elapsed),
    );
    // Later in this window: p * (w - e') / w + c + n <= limit.
    if c + n <= limit && p > 0 {
        let room = limit - c - n;
        // e' >= w - room * w / p
        let e_needed = w - (room * w / p);
        if e_needed < w {
            return Duration::from_nanos((e_needed.saturating_sub(e)).max(1) as u64);
        }
    }
    // In the next window: c * (w - e'') / w + n <= limit.
    let to_next = w - e;
    let room = limit - n;
    let e2 = (room * w).checked_div(c).map_or(0, |x| w.saturating_sub(x));
    Duration::from_nanos((to_next + e2) as u64)
}

impl<C: Clock> Admission for SlidingWindow<C> {
    type Permit = ();

    fn try_acquire(&self) -> Result<(), Rejected> {
        self.check().map(|_| ()).map_err(Rejected::from)
    }

    fn record(&self, _permit: (), _outcome: Outcome, _latency: Duration) {}
}
