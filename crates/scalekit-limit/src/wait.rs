//! Waiting until a rate limit admits (feature `tokio`).

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use scalekit_core::{mix64, Clock};

use crate::gcra::{Denied, DenyKind, RateLimitState, RateLimiter};
use crate::keyed::KeyedRateLimiter;

/// Random extra wait added to each sleep, so that callers denied together do not
/// all come back at the same instant (a thundering herd).
///
/// ```
/// use scalekit_limit::Jitter;
/// use std::time::Duration;
///
/// let j = Jitter::up_to(Duration::from_millis(20));
/// assert!(j.sample() < Duration::from_millis(20));
/// assert_eq!(Jitter::none().sample(), Duration::ZERO);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Jitter {
    max: Duration,
}

static SEED: AtomicU64 = AtomicU64::new(0x6a09_e667_f3bc_c908);

impl Jitter {
    /// No jitter.
    pub const fn none() -> Self {
        Self {
            max: Duration::ZERO,
        }
    }

    /// A uniform extra wait in `[0, max)`.
    pub const fn up_to(max: Duration) -> Self {
        Self { max }
    }

    /// One draw.
    pub fn sample(&self) -> Duration {
        let max = self.max.as_nanos() as u64;
        if max == 0 {
            return Duration::ZERO;
        }
        let r = mix64(SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed));
        Duration::from_nanos(r % max)
    }
}

async fn wait_loop(
    mut check: impl FnMut() -> Result<RateLimitState, Denied>,
    jitter: Jitter,
) -> Result<RateLimitState, Denied> {
    loop {
        match check() {
            Ok(state) => return Ok(state),
            Err(d) => match (d.kind(), d.retry_after()) {
                (DenyKind::RateLimited, Some(wait)) => {
                    tokio::time::sleep(wait + jitter.sample()).await;
                }
                // Waiting cannot help (larger than the burst), or the wait is
                // unknown (keys full): give the denial back.
                _ => return Err(d),
            },
        }
    }
}

impl<C: Clock> RateLimiter<C> {
    /// Waits until one unit is available and takes it.
    ///
    /// ```
    /// use scalekit_limit::{Jitter, Quota, RateLimiter};
    /// use std::num::NonZeroU32;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let limiter = RateLimiter::new(Quota::per_second(NonZeroU32::new(1000).unwrap()));
    /// for _ in 0..3 {
    ///     limiter.until_ready(Jitter::up_to(std::time::Duration::from_millis(1))).await;
    /// }
    /// # });
    /// ```
    pub async fn until_ready(&self, jitter: Jitter) -> RateLimitState {
        loop {
            if let Ok(state) = self.until_n_ready(1, jitter).await {
                return state;
            }
        }
    }

    /// Waits until `n` units are available and takes them; fails at once if `n`
    /// is larger than the burst.
    pub async fn until_n_ready(&self, n: u32, jitter: Jitter) -> Result<RateLimitState, Denied> {
        wait_loop(|| self.check_n(n), jitter).await
    }
}

impl<K: Hash + ?Sized, C: Clock> KeyedRateLimiter<K, C> {
    /// Waits until `key` has `n` units and takes them; fails at once if `n` is
    /// larger than the burst or the limiter cannot track a new key.
    pub async fn until_key_n_ready(
        &self,
        key: &K,
        n: u32,
        jitter: Jitter,
    ) -> Result<RateLimitState, Denied> {
        wait_loop(|| self.check_key_n(key, n), jitter).await
    }
}
