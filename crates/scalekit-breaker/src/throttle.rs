//! Adaptive client-side throttling (Google SRE book, "Handling Overload").

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use scalekit_core::{
    mix64, Admission, Clock, ConfigError, MonotonicClock, Outcome, RejectReason, Rejected,
};

const COMPONENT: &str = "adaptive throttle";

/// Builds an [`AdaptiveThrottle`]: K = 2 over the last 2 minutes by default.
///
/// ```
/// use scalekit_breaker::AdaptiveThrottle;
/// use std::time::Duration;
///
/// let throttle = AdaptiveThrottle::builder()
///     .k(1.5)                           // throttle sooner
///     .window(Duration::from_secs(60))
///     .build()?;
/// # let _ = throttle;
/// # Ok::<(), scalekit_breaker::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct AdaptiveThrottleBuilder<C = MonotonicClock> {
    k: f64,
    window: Duration,
    seed: u64,
    clock: C,
}

impl<C> AdaptiveThrottleBuilder<C> {
    /// The multiplier K: the throttle lets requests reach K times the accepted
    /// ones before it rejects (default 2; at least 1).
    pub fn k(mut self, k: f64) -> Self {
        self.k = k;
        self
    }

    /// How much history counts (default 2 minutes; whole seconds, 1 s to 1 h).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Seeds the random draws (for reproducible tests).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Reads time from `clock` instead (a [`ManualClock`](scalekit_core::ManualClock) in tests).
    pub fn clock<C2: Clock>(self, clock: C2) -> AdaptiveThrottleBuilder<C2> {
        AdaptiveThrottleBuilder {
            k: self.k,
            window: self.window,
            seed: self.seed,
            clock,
        }
    }

    /// Checks the settings and builds the throttle.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `k` or `window` when it cannot work.
    pub fn build(self) -> Result<AdaptiveThrottle<C>, ConfigError> {
        if !(self.k >= 1.0 && self.k.is_finite()) {
            return Err(ConfigError::new(
                COMPONENT,
                "k",
                self.k,
                "a finite number of at least 1 (2 is the usual choice)",
            ));
        }
        let secs = self.window.as_secs();
        if secs == 0 || secs > 3600 || self.window.subsec_nanos() != 0 {
            return Err(ConfigError::new(
                COMPONENT,
                "window",
                format!("{:?}", self.window),
                "whole seconds from 1 s to 1 h (2 minutes by default)",
            ));
        }
        Ok(AdaptiveThrottle {
            k: self.k,
            inner: Mutex::new(Counts {
                buckets: vec![(0, 0); secs as usize],
                last_sec: 0,
                requests: 0,
                accepts: 0,
            }),
            rng: AtomicU64::new(self.seed),
            clock: self.clock,
        })
    }
}

#[derive(Debug)]
struct Counts {
    /// (requests, accepts) per second.
    buckets: Vec<(u64, u64)>,
    last_sec: u64,
    requests: u64,
    accepts: u64,
}

impl Counts {
    fn advance(&mut self, now_sec: u64) -> usize {
        let n = self.buckets.len() as u64;
        if now_sec > self.last_sec {
            let steps = (now_sec - self.last_sec).min(n);
            for k in 1..=steps {
                if let Some(b) = self.buckets.get_mut(((self.last_sec + k) % n) as usize) {
                    self.requests -= b.0;
                    self.accepts -= b.1;
                    *b = (0, 0);
                }
            }
            self.last_sec = now_sec;
        }
        (self.last_sec % n) as usize
    }
}

/// Client-side adaptive throttling from the Google SRE book: each client tracks
/// its requests and the requests the backend accepted over a window, and rejects
/// locally with probability `max(0, (requests - K * accepts) / (requests + 1))`.
///
/// Unlike a breaker it never fully closes the door: as the backend recovers, the
/// accepted share grows and the rejection probability falls smoothly.
/// [`Outcome::Success`] and [`Outcome::Ignored`] (the backend answered, even if
/// with a client error) count as accepted. [`Outcome::Failure`] is a request the
/// backend refused (overloaded, unavailable) and [`Outcome::Cancelled`] one the
/// client gave up on (a timeout): neither is an accept, so client timeouts under
/// overload raise the rejection rate instead of lowering it.
///
/// ```
/// use scalekit_breaker::AdaptiveThrottle;
/// use scalekit_core::{Admission, ManualClock, Outcome};
/// use std::time::Duration;
///
/// let throttle = AdaptiveThrottle::builder().clock(ManualClock::new()).build()?;
/// // A healthy backend: nothing is rejected.
/// for _ in 0..100 {
///     let p = throttle.try_acquire().unwrap();
///     throttle.record(p, Outcome::Success, Duration::ZERO);
/// }
/// assert_eq!(throttle.rejection_probability(), 0.0);
/// // The backend refuses everything: requests pile up against accepts.
/// for _ in 0..1000 {
///     if let Ok(p) = throttle.try_acquire() {
///         throttle.record(p, Outcome::Failure, Duration::ZERO);
///     }
/// }
/// assert!(throttle.rejection_probability() > 0.8);
/// # Ok::<(), scalekit_breaker::ConfigError>(())
/// ```
pub struct AdaptiveThrottle<C = MonotonicClock> {
    k: f64,
    inner: Mutex<Counts>,
    rng: AtomicU64,
    clock: C,
}

impl<C: fmt::Debug> fmt::Debug for AdaptiveThrottle<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveThrottle")
            .field("k", &self.k)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl AdaptiveThrottle {
    /// A builder: K = 2, a 2-minute window.
    pub fn builder() -> AdaptiveThrottleBuilder {
        AdaptiveThrottleBuilder {
            k: 2.0,
            window: Duration::from_secs(120),
            seed: 0x7407_7e1e,
            clock: MonotonicClock,
        }
    }
}

impl<C: Clock> AdaptiveThrottle<C> {
    fn probability(&self, requests: u64, accepts: u64) -> f64 {
        let p = (requests as f64 - self.k * accepts as f64) / (requests as f64 + 1.0);
        p.max(0.0)
    }

    /// The probability that the next request is rejected, from the counts now.
    pub fn rejection_probability(&self) -> f64 {
        let mut c = self.inner.lock();
        c.advance(self.clock.now_nanos() / 1_000_000_000);
        self.probability(c.requests, c.accepts)
    }

    /// Requests and accepts in the window now.
    pub fn counts(&self) -> (u64, u64) {
        let mut c = self.inner.lock();
        c.advance(self.clock.now_nanos() / 1_000_000_000);
        (c.requests, c.accepts)
    }
}

impl<C: Clock> Admission for AdaptiveThrottle<C> {
    type Permit = ();

    fn try_acquire(&self) -> Result<(), Rejected> {
        let now_sec = self.clock.now_nanos() / 1_000_000_000;
        let p = {
            let mut c = self.inner.lock();
            let idx = c.advance(now_sec);
            // The book counts every request the application makes, including the
            // ones the throttle rejects, and decides on the counts before it.
            let p = self.probability(c.requests, c.accepts);
            c.requests += 1;
            if let Some(b) = c.buckets.get_mut(idx) {
                b.0 += 1;
            }
            p
        };
        if p > 0.0 {
            let u = (mix64(self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)) >> 11)
                as f64
                / (1u64 << 53) as f64;
            if u < p {
                return Err(Rejected::new(RejectReason::Overloaded));
            }
        }
        Ok(())
    }

    fn record(&self, _permit: (), outcome: Outcome, _latency: Duration) {
        match outcome {
            Outcome::Success | Outcome::Ignored => {}
            // Refused by the backend, or abandoned by the client (a timeout
            // under overload is no evidence that the backend accepts).
            _ => return,
        }
        let mut c = self.inner.lock();
        let idx = c.advance(self.clock.now_nanos() / 1_000_000_000);
        c.accepts += 1;
        if let Some(b) = c.buckets.get_mut(idx) {
            b.1 += 1;
        }
    }
}
