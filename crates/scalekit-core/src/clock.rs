//! Monotonic time, real or driven by hand.
//!
//! Every time-dependent primitive in scalekit (rate limiters, breakers, cache
//! expiry) reads time through [`Clock`], so that tests replace the real clock with
//! a [`ManualClock`] and advance it by hand instead of sleeping.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A source of monotonic time in nanoseconds since an arbitrary origin.
///
/// Readings never go backwards. The origin is fixed for the life of the clock, so
/// only differences between readings mean anything.
///
/// ```
/// use scalekit_core::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let start = clock.now_nanos();
/// clock.advance(Duration::from_millis(250));
/// assert_eq!(clock.elapsed_since(start), Duration::from_millis(250));
/// ```
pub trait Clock: Send + Sync + fmt::Debug {
    /// Nanoseconds since this clock's origin.
    fn now_nanos(&self) -> u64;

    /// Time elapsed since an earlier reading of the same clock (zero if `earlier`
    /// is in the future).
    fn elapsed_since(&self, earlier: u64) -> Duration {
        Duration::from_nanos(self.now_nanos().saturating_sub(earlier))
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now_nanos(&self) -> u64 {
        (**self).now_nanos()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_nanos(&self) -> u64 {
        (**self).now_nanos()
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    fn now_nanos(&self) -> u64 {
        (**self).now_nanos()
    }
}

/// The real monotonic clock, measured from the first time any `MonotonicClock`
/// in the process is read.
///
/// It is a zero-sized value: copies are free and all of them agree. A reading is
/// the CPU's invariant time-stamp counter scaled to nanoseconds (the `quanta`
/// crate: about 10 ns), where `Instant::now` costs a `clock_gettime` (20 ns on
/// bare metal, 45 ns on some virtual machines). Where the TSC is missing or not
/// invariant, `quanta` falls back to the operating system's monotonic clock.
/// Readings never go backwards.
///
/// ```
/// use scalekit_core::{Clock, MonotonicClock};
///
/// let clock = MonotonicClock;
/// let a = clock.now_nanos();
/// let b = clock.now_nanos();
/// assert!(b >= a);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MonotonicClock;

#[inline]
fn source() -> &'static (quanta::Clock, u64) {
    static SOURCE: OnceLock<(quanta::Clock, u64)> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let clock = quanta::Clock::new();
        let origin = clock.raw();
        (clock, origin)
    })
}

impl Clock for MonotonicClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        let (clock, origin) = source();
        // A raw counter reading scaled by one multiply and shift; u64 nanoseconds
        // last 584 years from the origin.
        clock.delta_as_nanos(*origin, clock.raw())
    }
}

/// A clock that moves only when told to: the clock of every test in scalekit.
///
/// Clones share the same time, so a test keeps one handle and gives a clone to the
/// structure under test.
///
/// ```
/// use scalekit_core::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(shared.now_nanos(), 2_000_000_000);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock reading zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// A clock reading `start` after the origin.
    pub fn starting_at(start: Duration) -> Self {
        let clock = Self::new();
        clock.advance(start);
        clock
    }

    /// Moves time forward by `by` (saturating at `u64::MAX` nanoseconds).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                Some(now.saturating_add(by))
            });
    }

    /// The current reading as a [`Duration`] since the origin.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now_nanos())
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        self.now.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_clock_does_not_go_backwards() {
        let clock = MonotonicClock;
        let mut last = clock.now_nanos();
        for _ in 0..10_000 {
            let now = clock.now_nanos();
            assert!(now >= last);
            last = now;
        }
    }

    #[test]
    fn manual_clock_moves_only_when_advanced_and_clones_share_time() {
        let clock = ManualClock::starting_at(Duration::from_secs(1));
        let other = clock.clone();
        assert_eq!(other.now_nanos(), 1_000_000_000);
        clock.advance(Duration::from_nanos(5));
        assert_eq!(other.now_nanos(), 1_000_000_005);
        assert_eq!(other.elapsed_since(1_000_000_000), Duration::from_nanos(5));
        // A reading from the future gives zero, not a panic.
        assert_eq!(other.elapsed_since(u64::MAX), Duration::ZERO);
    }

    #[test]
    fn manual_clock_saturates() {
        let clock = ManualClock::new();
        clock.advance(Duration::MAX);
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now_nanos(), u64::MAX);
    }

    #[test]
    fn clock_is_usable_through_pointers() {
        fn read(c: &dyn Clock) -> u64 {
            c.now_nanos()
        }
        let clock = Arc::new(ManualClock::starting_at(Duration::from_nanos(7)));
        assert_eq!(read(&clock), 7);
        let boxed: Box<dyn Clock> = Box::new(ManualClock::new());
        assert_eq!(read(&boxed), 0);
    }
}
