//! [`CircuitBreakerBuilder`]: the settings, checked at `build()`.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use scalekit_core::{Clock, ConfigError, MonotonicClock};

use super::config::{Config, Window};
use super::events::{BreakerEvent, EventListener, Transition, TransitionListener};
use super::machine::{CircuitBreaker, Outcomes};
use super::permit::Shared;
use super::state::{encode, State};
use crate::window::{CountWindow, TimeWindow};

/// Builds a [`CircuitBreaker`]. Defaults follow resilience4j: a count window of
/// 100 calls, open at 50% failures once 100 calls were seen, 60 s in open, 10
/// probes in half-open, no backoff, no jitter. Unlike resilience4j, slow-call
/// detection is off until [`slow_call_duration`](Self::slow_call_duration) is set
/// (its rate threshold then defaults to 100%), and half-open gives up after 60 s
/// ([`max_wait_in_half_open`](Self::max_wait_in_half_open); resilience4j waits
/// for ever by default, which lets a hung probe hold the breaker half-open).
///
/// ```
/// use scalekit_breaker::{CircuitBreaker, Window};
/// use std::time::Duration;
///
/// let breaker = CircuitBreaker::builder()
///     .window(Window::Count(50))
///     .failure_rate_threshold(25.0)
///     .slow_call_rate_threshold(80.0)
///     .slow_call_duration(Duration::from_millis(500))
///     .minimum_calls(20)
///     .wait_in_open(Duration::from_secs(5))
///     .backoff(2.0, Duration::from_secs(120))
///     .jitter(0.2)
///     .half_open_probes(3)
///     .max_wait_in_half_open(Duration::from_secs(10))
///     .on_transition(|t| println!("breaker {} -> {}", t.from, t.to))
///     .build()?;
/// # let _ = breaker;
/// # Ok::<(), scalekit_breaker::ConfigError>(())
/// ```
pub struct CircuitBreakerBuilder<C = MonotonicClock> {
    config: Config,
    clock: C,
    on_transition: Option<TransitionListener>,
    on_event: Option<EventListener>,
    seed: u64,
}

impl<C: fmt::Debug> fmt::Debug for CircuitBreakerBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("config", &self.config)
            .field("clock", &self.clock)
            .field("on_transition", &self.on_transition.is_some())
            .field("on_event", &self.on_event.is_some())
            .finish()
    }
}

impl Default for CircuitBreakerBuilder {
    fn default() -> Self {
        Self {
            config: Config::default(),
            clock: MonotonicClock,
            on_transition: None,
            on_event: None,
            seed: 0x5ca1_ab1e,
        }
    }
}

impl CircuitBreaker {
    /// A builder with resilience4j's defaults (see [`CircuitBreakerBuilder`]).
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::default()
    }
}

impl<C> CircuitBreakerBuilder<C> {
    /// How outcomes are counted: [`Window::Count`] (default, 100),
    /// [`Window::Time`] or [`Window::ConsecutiveFailures`].
    pub fn window(mut self, window: Window) -> Self {
        self.config.window = window;
        self
    }

    /// Open when at least this percentage of the calls in the window failed
    /// (default 50). Also the share of failed probes that reopens from half-open.
    pub fn failure_rate_threshold(mut self, percent: f64) -> Self {
        self.config.failure_rate = percent;
        self
    }

    /// Open when at least this percentage of the calls in the window were slow
    /// (default 100).
    pub fn slow_call_rate_threshold(mut self, percent: f64) -> Self {
        self.config.slow_rate = percent;
        self
    }

    /// A call that takes at least this long is slow. Slow-call detection is off
    /// until this is set (then [`CircuitBreaker::call`] times each call: two
    /// clock reads).
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.config.slow_duration = Some(duration);
        self
    }

    /// Rates are not judged before the window holds this many calls (default 100).
    pub fn minimum_calls(mut self, calls: u64) -> Self {
        self.config.minimum_calls = calls;
        self
    }

    /// How long to stay open before half-open (default 60 s).
    pub fn wait_in_open(mut self, wait: Duration) -> Self {
        self.config.wait = wait;
        if self.config.max_wait < wait {
            self.config.max_wait = wait;
        }
        self
    }

    /// Exponential backoff: each reopening from half-open multiplies the wait by
    /// `multiplier` (at least 1), up to `max_wait`. Closing resets it.
    pub fn backoff(mut self, multiplier: f64, max_wait: Duration) -> Self {
        self.config.multiplier = multiplier;
        self.config.max_wait = max_wait;
        self
    }

    /// Spreads each wait uniformly over `wait * (1 ± fraction)`, `fraction` in
    /// `[0, 1)`, so breakers that opened together do not probe together.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.config.jitter = fraction;
        self
    }

    /// How many probe calls half-open admits (default 10, at most
    /// [`MAX_HALF_OPEN_PROBES`](crate::MAX_HALF_OPEN_PROBES)).
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.config.probes = probes;
        self
    }

    /// The longest the breaker waits in half-open for its probes to report
    /// (resilience4j's `maxWaitDurationInHalfOpenState`; default 60 s, more than
    /// zero, at most a year). Once it is over, the next call that finds every
    /// probe taken reopens the breaker (counted as a reopening for the backoff);
    /// after the wait in open a fresh half-open admits all its probes again. This
    /// is what frees a breaker whose probe hangs or whose permit was leaked.
    pub fn max_wait_in_half_open(mut self, wait: Duration) -> Self {
        self.config.max_half_open = wait;
        self
    }

    /// Calls `listener` after every transition (outside the breaker's lock; it may
    /// call the breaker).
    pub fn on_transition(mut self, listener: impl Fn(&Transition) + Send + Sync + 'static) -> Self {
        self.on_transition = Some(Arc::new(listener));
        self
    }

    /// Calls `listener` with every [`BreakerEvent`]: each call's success, failure
    /// (with its latency and whether it was slow), ignored or cancelled outcome,
    /// each rejection and each transition, for metrics (resilience4j's event
    /// publisher). Without a listener the stream costs one branch per call; with
    /// one, each permit also carries a reference to report its own drop.
    pub fn on_event(mut self, listener: impl Fn(&BreakerEvent) + Send + Sync + 'static) -> Self {
        self.on_event = Some(Arc::new(listener));
        self
    }

    /// Seeds the jitter's random numbers (for reproducible tests).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Reads time from `clock` instead (a [`ManualClock`](scalekit_core::ManualClock) in tests).
    pub fn clock<C2: Clock>(self, clock: C2) -> CircuitBreakerBuilder<C2> {
        CircuitBreakerBuilder {
            config: self.config,
            clock,
            on_transition: self.on_transition,
            on_event: self.on_event,
            seed: self.seed,
        }
    }

    /// Checks the settings and builds the breaker, closed, in generation 0.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first setting that cannot work.
    pub fn build(self) -> Result<CircuitBreaker<C>, ConfigError> {
        self.config.validate()?;
        let outcomes = match self.config.window {
            Window::Count(n) => Outcomes::Count(CountWindow::new(n)),
            Window::Time(d) => Outcomes::Time(TimeWindow::new(d.as_secs() as u32)),
            Window::ConsecutiveFailures(n) => Outcomes::Consecutive(n),
        };
        Ok(CircuitBreaker {
            shared: Arc::new(Shared::new(encode(State::Closed, 0, 0), self.on_event)),
            outcomes,
            consecutive: AtomicU32::new(0),
            probe_results: AtomicU64::new(0),
            open_until: AtomicU64::new(0),
            half_open_until: AtomicU64::new(0),
            opens_in_row: AtomicU32::new(0),
            rejected: AtomicU64::new(0),
            rng: AtomicU64::new(self.seed),
            lock: Mutex::new(()),
            config: self.config,
            clock: self.clock,
            on_transition: self.on_transition,
        })
    }
}
