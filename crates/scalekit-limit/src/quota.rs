use std::num::NonZeroU32;
use std::time::Duration;

use scalekit_core::ConfigError;

/// How much a rate limit admits: a sustained rate and a burst.
///
/// The rate is one unit every [`interval`](Self::interval); the burst is how many
/// units may be taken at once from a full bucket. `Quota::per_second(10)` admits
/// 10 a second with a burst of 10; `.allow_burst(50)` keeps the rate and lets 50
/// through at once after a quiet spell.
///
/// ```
/// use scalekit_limit::Quota;
/// use std::num::NonZeroU32;
/// use std::time::Duration;
///
/// let q = Quota::per_second(NonZeroU32::new(10).unwrap())
///     .allow_burst(NonZeroU32::new(50).unwrap());
/// assert_eq!(q.interval(), Duration::from_millis(100));
/// assert_eq!(q.burst(), 50);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    interval_nanos: u64,
    burst: u32,
}

/// The longest interval a quota may have (one unit a day).
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// The largest `burst * interval` a quota may have (2^62 ns, about 146 years), so
/// that GCRA's sums never overflow.
pub const MAX_TOLERANCE: Duration = Duration::from_nanos(1 << 62);

impl Quota {
    /// `rate` units a second, burst `rate`.
    pub fn per_second(rate: NonZeroU32) -> Self {
        Self::per(Duration::from_secs(1), rate)
    }

    /// `rate` units a minute, burst `rate`.
    pub fn per_minute(rate: NonZeroU32) -> Self {
        Self::per(Duration::from_secs(60), rate)
    }

    /// `rate` units an hour, burst `rate`.
    pub fn per_hour(rate: NonZeroU32) -> Self {
        Self::per(Duration::from_secs(3600), rate)
    }

    fn per(period: Duration, rate: NonZeroU32) -> Self {
        Self {
            interval_nanos: (period.as_nanos() as u64 / u64::from(rate.get())).max(1),
            burst: rate.get(),
        }
    }

    /// One unit every `interval`, burst 1.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if `interval` is zero or longer than [`MAX_INTERVAL`].
    pub fn with_interval(interval: Duration) -> Result<Self, ConfigError> {
        if interval.is_zero() || interval > MAX_INTERVAL {
            return Err(ConfigError::new(
                "rate limit quota",
                "interval",
                format!("{interval:?}"),
                "more than zero and at most a day (one unit a day)",
            ));
        }
        Ok(Self {
            interval_nanos: interval.as_nanos() as u64,
            burst: 1,
        })
    }

    /// The same rate with a burst of `burst` units (capped so that a full bucket,
    /// `burst * interval`, stays under [`MAX_TOLERANCE`]: 146 years).
    pub fn allow_burst(mut self, burst: NonZeroU32) -> Self {
        let most =
            (MAX_TOLERANCE.as_nanos() as u64 / self.interval_nanos).clamp(1, u64::from(u32::MAX));
        self.burst = burst.get().min(most as u32);
        self
    }

    /// Time between two units at the sustained rate.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_nanos)
    }

    /// Units that may be taken at once from a full bucket.
    #[inline]
    pub fn burst(&self) -> u32 {
        self.burst
    }

    #[inline]
    pub(crate) fn interval_nanos(&self) -> u64 {
        self.interval_nanos
    }

    /// The GCRA tolerance: how far ahead of now the theoretical arrival time may run.
    #[inline]
    pub(crate) fn tau_nanos(&self) -> u64 {
        self.interval_nanos.saturating_mul(u64::from(self.burst))
    }

    /// Rebuilds a quota from its parts, as stored in atomics.
    #[inline]
    pub(crate) fn from_parts(interval_nanos: u64, burst: u32) -> Self {
        Self {
            interval_nanos: interval_nanos.max(1),
            burst: burst.max(1),
        }
    }
}
