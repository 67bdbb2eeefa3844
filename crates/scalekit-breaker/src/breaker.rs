//! The circuit breaker: a state machine over one atomic word.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use scalekit_core::{mix64, Admission, Clock, MonotonicClock, Outcome, RejectReason, Rejected};

use crate::window::{CountWindow, Tally, TimeWindow, MAX_COUNT_WINDOW};
use crate::{BreakerError, ConfigError};

/// The state of a [`CircuitBreaker`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Calls go through; outcomes are counted.
    Closed,
    /// Calls are rejected until the wait in open is over.
    Open,
    /// A fixed number of probe calls go through; their outcomes decide between
    /// closed and open.
    HalfOpen,
    /// Every call goes through and nothing is counted (an operator's switch).
    Disabled,
    /// Every call is rejected until [`CircuitBreaker::reset`] (an operator's switch).
    ForcedOpen,
}

impl State {
    fn code(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::Disabled => 3,
            State::ForcedOpen => 4,
        }
    }

    fn from_code(code: u64) -> State {
        match code {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::Disabled,
            _ => State::ForcedOpen,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
            State::Disabled => "disabled",
            State::ForcedOpen => "forced-open",
        })
    }
}

// The state word: state (3 bits) | probes left in half-open (16 bits) | generation.
const STATE_BITS: u32 = 3;
const PROBE_SHIFT: u32 = STATE_BITS;
const PROBE_MASK: u64 = 0xFFFF;
const GEN_SHIFT: u32 = PROBE_SHIFT + 16;

fn encode(state: State, probes: u64, generation: u64) -> u64 {
    state.code() | (probes & PROBE_MASK) << PROBE_SHIFT | generation << GEN_SHIFT
}
fn state_of(word: u64) -> State {
    State::from_code(word & ((1 << STATE_BITS) - 1))
}
fn probes_of(word: u64) -> u64 {
    (word >> PROBE_SHIFT) & PROBE_MASK
}
fn gen_of(word: u64) -> u64 {
    word >> GEN_SHIFT
}

// Probe results of one half-open generation: tag (25 bits) | done | failed | slow (13 bits each).
const FIELD: u32 = 13;
const FIELD_MASK: u64 = (1 << FIELD) - 1;
const TAG_SHIFT: u32 = 3 * FIELD;
const DONE_ONE: u64 = 1;
const FAILED_ONE: u64 = 1 << FIELD;
const SLOW_ONE: u64 = 1 << (2 * FIELD);

/// The most probe calls half-open can admit.
pub const MAX_HALF_OPEN_PROBES: u32 = 4095;

/// A change of state, as told to the listener set with
/// [`BreakerBuilder::on_transition`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transition {
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// The generation the new state starts (one more than the one before).
    pub generation: u64,
    /// When, on the breaker's clock (nanoseconds).
    pub at_nanos: u64,
}

/// What an admitted call holds until it reports back: the generation it was
/// admitted in. A result that comes back after the breaker changed state is
/// ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerPermit {
    generation: u64,
}

impl BreakerPermit {
    /// The generation (state period) the call was admitted in.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// How the breaker decides to open.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Window {
    /// The failure and slow-call rates of the last `n` calls.
    Count(u32),
    /// The failure and slow-call rates of the calls of the last so many seconds
    /// (whole seconds, one bucket a second).
    Time(Duration),
    /// Open after `n` failures in a row (rates and minimum calls do not apply).
    ConsecutiveFailures(u32),
}

/// A cheap snapshot for dashboards: a few atomic loads.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct BreakerStats {
    /// The current state.
    pub state: State,
    /// The current generation: how many transitions the breaker went through.
    pub generation: u64,
    /// Calls in the window (count or time mode).
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window.
    pub slow_calls: u64,
    /// Failures in a row (consecutive-failures mode).
    pub consecutive_failures: u32,
    /// Calls rejected since the breaker was built.
    pub rejected: u64,
}

impl BreakerStats {
    /// Failed calls as a percentage of the calls in the window (0 when empty).
    pub fn failure_rate(&self) -> f64 {
        percent(self.failures, self.calls)
    }

    /// Slow calls as a percentage of the calls in the window (0 when empty).
    pub fn slow_call_rate(&self) -> f64 {
        percent(self.slow_calls, self.calls)
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

type Listener = Arc<dyn Fn(&Transition) + Send + Sync>;

#[derive(Clone, Debug)]
struct Config {
    window: Window,
    failure_rate: f64,
    slow_rate: f64,
    slow_duration: Option<Duration>,
    minimum_calls: u64,
    wait: Duration,
    multiplier: f64,
    max_wait: Duration,
    jitter: f64,
    probes: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            window: Window::Count(100),
            failure_rate: 50.0,
            slow_rate: 100.0,
            slow_duration: None,
            minimum_calls: 100,
            wait: Duration::from_secs(60),
            multiplier: 1.0,
            max_wait: Duration::from_secs(60),
            jitter: 0.0,
            probes: 10,
        }
    }
}

/// Builds a [`CircuitBreaker`]. Defaults follow resilience4j: a count window of
/// 100 calls, open at 50% failures once 100 calls were seen, 60 s in open, 10
/// probes in half-open, no backoff, no jitter. Unlike resilience4j, slow-call
/// detection is off until [`slow_call_duration`](Self::slow_call_duration) is set
/// (its rate threshold then defaults to 100%).
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
///     .on_transition(|t| println!("breaker {} -> {}", t.from, t.to))
///     .build()?;
/// # let _ = breaker;
/// # Ok::<(), scalekit_breaker::ConfigError>(())
/// ```
pub struct BreakerBuilder<C = MonotonicClock> {
    config: Config,
    clock: C,
    listener: Option<Listener>,
    seed: u64,
}

impl<C: fmt::Debug> fmt::Debug for BreakerBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerBuilder")
            .field("config", &self.config)
            .field("clock", &self.clock)
            .field("listener", &self.listener.is_some())
            .finish()
    }
}

impl Default for BreakerBuilder {
    fn default() -> Self {
        Self {
            config: Config::default(),
            clock: MonotonicClock,
            listener: None,
            seed: 0x5ca1_ab1e,
        }
    }
}

impl<C> BreakerBuilder<C> {
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
    /// [`MAX_HALF_OPEN_PROBES`]).
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.config.probes = probes;
        self
    }

    /// Calls `listener` after every transition (outside the breaker's lock; it may
    /// call the breaker).
    pub fn on_transition(mut self, listener: impl Fn(&Transition) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Seeds the jitter's random numbers (for reproducible tests).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Reads time from `clock` instead (a [`ManualClock`](scalekit_core::ManualClock) in tests).
    pub fn clock<C2>(self, clock: C2) -> BreakerBuilder<C2> {
        BreakerBuilder {
            config: self.config,
            clock,
            listener: self.listener,
            seed: self.seed,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.config;
        for (field, value) in [
            ("failure_rate_threshold", c.failure_rate),
            ("slow_call_rate_threshold", c.slow_rate),
        ] {
            if !(value > 0.0 && value <= 100.0) {
                return Err(ConfigError::Percentage { field, value });
            }
        }
        match c.window {
            Window::Count(n) if n == 0 || n > MAX_COUNT_WINDOW => {
                return Err(ConfigError::Count {
                    field: "window (count)",
                    value: u64::from(n),
                    min: 1,
                    max: u64::from(MAX_COUNT_WINDOW),
                })
            }
            Window::Time(d) if d.as_secs() == 0 || d.as_secs() > 3600 || d.subsec_nanos() != 0 => {
                return Err(ConfigError::Duration {
                    field: "window (time)",
                    value: d,
                    expected: "give 1 s to 1 h (whole seconds)",
                })
            }
            Window::ConsecutiveFailures(0) => {
                return Err(ConfigError::Count {
                    field: "window (consecutive failures)",
                    value: 0,
                    min: 1,
                    max: u64::from(u32::MAX),
                })
            }
            _ => {}
        }
        if c.minimum_calls == 0 {
            return Err(ConfigError::Count {
                field: "minimum_calls",
                value: 0,
                min: 1,
                max: u64::MAX,
            });
        }
        if c.probes == 0 || c.probes > MAX_HALF_OPEN_PROBES {
            return Err(ConfigError::Count {
                field: "half_open_probes",
                value: u64::from(c.probes),
                min: 1,
                max: u64::from(MAX_HALF_OPEN_PROBES),
            });
        }
        if !(c.multiplier >= 1.0 && c.multiplier.is_finite()) {
            return Err(ConfigError::Factor {
                field: "backoff multiplier",
                value: c.multiplier,
                expected: "give a finite number of at least 1",
            });
        }
        if c.max_wait < c.wait {
            return Err(ConfigError::Duration {
                field: "backoff max_wait",
                value: c.max_wait,
                expected: "give at least wait_in_open",
            });
        }
        if c.max_wait > Duration::from_secs(365 * 24 * 3600) {
            return Err(ConfigError::Duration {
                field: "wait_in_open / backoff max_wait",
                value: c.max_wait,
                expected: "give at most a year",
            });
        }
        if !(0.0..1.0).contains(&c.jitter) {
            return Err(ConfigError::Factor {
                field: "jitter",
                value: c.jitter,
                expected: "give a fraction in [0, 1)",
            });
        }
        Ok(())
    }

    /// Checks the settings and builds the breaker, closed, in generation 0.
    pub fn build(self) -> Result<CircuitBreaker<C>, ConfigError> {
        self.validate()?;
        let outcomes = match self.config.window {
            Window::Count(n) => Outcomes::Count(CountWindow::new(n)),
            Window::Time(d) => Outcomes::Time(TimeWindow::new(d.as_secs() as u32)),
            Window::ConsecutiveFailures(n) => Outcomes::Consecutive(n),
        };
        Ok(CircuitBreaker {
            word: AtomicU64::new(encode(State::Closed, 0, 0)),
            outcomes,
            consecutive: AtomicU32::new(0),
            probe_results: AtomicU64::new(0),
            open_until: AtomicU64::new(0),
            opens_in_row: AtomicU32::new(0),
            rejected: AtomicU64::new(0),
            rng: AtomicU64::new(self.seed),
            lock: Mutex::new(()),
            config: self.config,
            clock: self.clock,
            listener: self.listener,
        })
    }
}

#[derive(Debug)]
enum Outcomes {
    Count(CountWindow),
    Time(TimeWindow),
    Consecutive(u32),
}

/// A circuit breaker: closed, open, half-open, plus disabled and forced-open.
///
/// * **Closed**: calls go through; outcomes go into a sliding window (count or
///   time) or a consecutive-failures counter. When the failure rate or the slow-call
///   rate reaches its threshold (once the window holds the minimum number of
///   calls), or the failures in a row reach their limit, the breaker opens.
/// * **Open**: calls are rejected with a `retry_after` hint until the wait is
///   over (exponential backoff with jitter across reopenings); then the next call
///   moves it to half-open.
/// * **Half-open**: exactly the configured number of probes are admitted, however
///   many callers race for them; when all have reported, the breaker closes or
///   reopens (any failure reopens in consecutive-failures mode; otherwise the
///   failure and slow-call thresholds apply to the probes). A probe that ends
///   `Ignored` or `Cancelled` gives its slot back.
/// * Every transition starts a new generation; a result from an older generation
///   (a call admitted before the last transition) is ignored.
///
/// Hot path: with a count window or consecutive failures, admission in closed is
/// one atomic load, and recording a success while the window holds only
/// successes is three atomic loads and no write (shared cache lines stay shared
/// across cores). With failures in the window a record is one `fetch_add` and two
/// slot loads, plus a store and a second `fetch_add` when the outcome entering
/// the window differs from the one leaving it. No lock, no clock read. A
/// rejection allocates nothing.
///
/// ```
/// use scalekit_breaker::{CircuitBreaker, State, Window};
/// use scalekit_core::{Admission, ManualClock, Outcome};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let breaker = CircuitBreaker::builder()
///     .window(Window::ConsecutiveFailures(3))
///     .wait_in_open(Duration::from_secs(10))
///     .half_open_probes(1)
///     .clock(clock.clone())
///     .build()?;
///
/// for _ in 0..3 {
///     let permit = breaker.try_acquire().unwrap();
///     breaker.record(permit, Outcome::Failure, Duration::from_millis(5));
/// }
/// assert_eq!(breaker.state(), State::Open);
/// let rejected = breaker.try_acquire().unwrap_err();
/// assert_eq!(rejected.retry_after_hint(), Some(Duration::from_secs(10)));
///
/// clock.advance(Duration::from_secs(10));
/// let probe = breaker.try_acquire().unwrap(); // half-open: the one probe
/// assert!(breaker.try_acquire().is_err());
/// breaker.record(probe, Outcome::Success, Duration::from_millis(5));
/// assert_eq!(breaker.state(), State::Closed);
/// # Ok::<(), scalekit_breaker::ConfigError>(())
/// ```
pub struct CircuitBreaker<C = MonotonicClock> {
    word: AtomicU64,
    outcomes: Outcomes,
    consecutive: AtomicU32,
    probe_results: AtomicU64,
    open_until: AtomicU64,
    opens_in_row: AtomicU32,
    rejected: AtomicU64,
    rng: AtomicU64,
    lock: Mutex<()>,
    config: Config,
    clock: C,
    listener: Option<Listener>,
}

impl<C: fmt::Debug> fmt::Debug for CircuitBreaker<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.word.load(Ordering::Acquire);
        f.debug_struct("CircuitBreaker")
            .field("state", &state_of(word))
            .field("generation", &gen_of(word))
            .field("config", &self.config)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// A builder with resilience4j's defaults (see [`BreakerBuilder`]).
    pub fn builder() -> BreakerBuilder {
        BreakerBuilder::default()
    }
}

impl<C: Clock> CircuitBreaker<C> {
    /// The current state.
    pub fn state(&self) -> State {
        state_of(self.word.load(Ordering::Acquire))
    }

    /// The current generation (the number of transitions so far).
    pub fn generation(&self) -> u64 {
        gen_of(self.word.load(Ordering::Acquire))
    }

    /// A snapshot for dashboards.
    pub fn stats(&self) -> BreakerStats {
        let word = self.word.load(Ordering::Acquire);
        let tally = match &self.outcomes {
            Outcomes::Count(w) => w.tally(),
            Outcomes::Time(w) => w.tally(self.clock.now_nanos()),
            Outcomes::Consecutive(_) => Tally::default(),
        };
        BreakerStats {
            state: state_of(word),
            generation: gen_of(word),
            calls: tally.calls,
            failures: tally.failures,
            slow_calls: tally.slow,
            consecutive_failures: self.consecutive.load(Ordering::Acquire),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }

    /// Rejects every call until [`reset`](Self::reset).
    pub fn force_open(&self) {
        self.transition(None, State::ForcedOpen);
    }

    /// Admits every call and counts nothing until [`reset`](Self::reset).
    pub fn disable(&self) {
        self.transition(None, State::Disabled);
    }

    /// Back to closed with an empty window, from any state.
    pub fn reset(&self) {
        self.transition(None, State::Closed);
    }

    /// Runs `f` if the breaker admits it; `Err` counts as a failure.
    ///
    /// ```
    /// use scalekit_breaker::{BreakerError, CircuitBreaker, Window};
    ///
    /// let breaker = CircuitBreaker::builder().window(Window::ConsecutiveFailures(1)).build()?;
    /// assert_eq!(breaker.call(|| Ok::<_, &str>(1)), Ok(1));
    /// assert_eq!(breaker.call(|| Err::<u8, _>("down")), Err(BreakerError::Inner("down")));
    /// assert!(matches!(breaker.call(|| Ok::<_, &str>(1)), Err(BreakerError::Rejected(_))));
    /// # Ok::<(), scalekit_breaker::ConfigError>(())
    /// ```
    #[inline]
    pub fn call<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, BreakerError<E>> {
        self.call_classified(f, |r| match r {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        })
    }

    /// Runs `f` if the breaker admits it; `classify` decides how the result
    /// counts: which errors are failures, which are ignored (a 404, a validation
    /// error), and even which `Ok` values are failures.
    ///
    /// ```
    /// use scalekit_breaker::{CircuitBreaker, State, Window};
    /// use scalekit_core::Outcome;
    ///
    /// let breaker = CircuitBreaker::builder().window(Window::ConsecutiveFailures(1)).build()?;
    /// let not_found_is_fine = |r: &Result<u16, u16>| match r {
    ///     Err(404) => Outcome::Ignored,
    ///     Err(_) => Outcome::Failure,
    ///     Ok(_) => Outcome::Success,
    /// };
    /// let _ = breaker.call_classified(|| Err::<u16, u16>(404), not_found_is_fine);
    /// assert_eq!(breaker.state(), State::Closed);
    /// let _ = breaker.call_classified(|| Err::<u16, u16>(503), not_found_is_fine);
    /// assert_eq!(breaker.state(), State::Open);
    /// # Ok::<(), scalekit_breaker::ConfigError>(())
    /// ```
    #[inline]
    pub fn call_classified<T, E>(
        &self,
        f: impl FnOnce() -> Result<T, E>,
        classify: impl FnOnce(&Result<T, E>) -> Outcome,
    ) -> Result<T, BreakerError<E>> {
        let permit = self.try_acquire().map_err(BreakerError::Rejected)?;
        // Time the call only when latency matters (slow-call detection is on).
        let timed = self.config.slow_duration.is_some();
        let guard = CallGuard {
            breaker: self,
            permit,
            started: if timed { self.clock.now_nanos() } else { 0 },
            timed,
        };
        let result = f();
        let outcome = classify(&result);
        let latency = guard.latency();
        // Finished without panicking: disarm the guard and report the outcome.
        std::mem::forget(guard);
        self.record(permit, outcome, latency);
        result.map_err(BreakerError::Inner)
    }

    #[cold]
    fn reject(&self, retry_after: Option<u64>) -> Rejected {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        let r = Rejected::new(RejectReason::CircuitOpen);
        match retry_after {
            Some(nanos) => r.retry_after(Duration::from_nanos(nanos)),
            None => r,
        }
    }

    fn next_random(&self) -> u64 {
        mix64(self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed))
    }

    /// The wait for this opening: backoff over reopenings in a row, then jitter.
    fn next_wait(&self, opens_in_row: u32) -> u64 {
        let c = &self.config;
        let base = c.wait.as_nanos() as f64;
        let max = c.max_wait.as_nanos() as f64;
        let mut wait = base * c.multiplier.powi(opens_in_row.min(1000) as i32);
        if !wait.is_finite() || wait > max {
            wait = max;
        }
        if c.jitter > 0.0 {
            // Uniform in [-1, 1).
            let u = (self.next_random() >> 11) as f64 / (1u64 << 52) as f64 - 1.0;
            wait *= 1.0 + c.jitter * u;
        }
        wait.max(0.0) as u64
    }

    /// Moves to `to` if the breaker is still in `from` (state and generation), or
    /// unconditionally when `from` is `None`. Returns whether it moved.
    fn transition(&self, from: Option<(State, u64)>, to: State) -> bool {
        let event = {
            let _guard = self.lock.lock();
            let cur = self.word.load(Ordering::Acquire);
            if let Some((state, generation)) = from {
                if state_of(cur) != state || gen_of(cur) != generation {
                    return false;
                }
            }
            let generation = gen_of(cur) + 1;
            let now = self.clock.now_nanos();
            let mut probes = 0;
            match to {
                State::Closed => {
                    match &self.outcomes {
                        Outcomes::Count(w) => w.reset(),
                        Outcomes::Time(w) => w.reset(),
                        Outcomes::Consecutive(_) => {}
                    }
                    self.consecutive.store(0, Ordering::Release);
                    self.opens_in_row.store(0, Ordering::Relaxed);
                }
                State::Open => {
                    let k = self.opens_in_row.load(Ordering::Relaxed);
                    let wait = self.next_wait(k);
                    self.opens_in_row
                        .store(k.saturating_add(1), Ordering::Relaxed);
                    self.open_until
                        .store(now.saturating_add(wait), Ordering::Release);
                }
                State::HalfOpen => {
                    probes = u64::from(self.config.probes);
                    self.probe_results
                        .store(tag(generation) << TAG_SHIFT, Ordering::Release);
                }
                State::Disabled | State::ForcedOpen => {}
            }
            self.word
                .store(encode(to, probes, generation), Ordering::Release);
            Transition {
                from: state_of(cur),
                to,
                generation,
                at_nanos: now,
            }
        };
        if let Some(listener) = &self.listener {
            listener(&event);
        }
        true
    }

    #[inline]
    fn is_slow(&self, latency: Duration) -> bool {
        self.config.slow_duration.is_some_and(|d| latency >= d)
    }

    #[inline]
    fn trips(&self, t: Tally) -> bool {
        let c = &self.config;
        t.calls >= c.minimum_calls
            && (t.failures as f64 * 100.0 >= c.failure_rate * t.calls as f64
                || t.slow as f64 * 100.0 >= c.slow_rate * t.calls as f64)
    }

    #[inline]
    fn record_closed(&self, generation: u64, failed: bool, latency: Duration) {
        let trip = match &self.outcomes {
            Outcomes::Consecutive(limit) => {
                if failed {
                    self.consecutive.fetch_add(1, Ordering::AcqRel) + 1 >= *limit
                } else {
                    if self.consecutive.load(Ordering::Relaxed) != 0 {
                        self.consecutive.store(0, Ordering::Release);
                    }
                    false
                }
            }
            Outcomes::Count(w) => {
                let slow = self.is_slow(latency);
                w.record(failed, slow, self.config.minimum_calls)
                    .is_some_and(|t| self.trips(t))
            }
            Outcomes::Time(w) => {
                let slow = self.is_slow(latency);
                self.trips(w.record(self.clock.now_nanos(), failed, slow))
            }
        };
        if trip {
            self.transition(Some((State::Closed, generation)), State::Open);
        }
    }

    fn give_back_probe(&self, generation: u64) {
        let mut cur = self.word.load(Ordering::Acquire);
        while state_of(cur) == State::HalfOpen
            && gen_of(cur) == generation
            && probes_of(cur) < PROBE_MASK
        {
            match self.word.compare_exchange_weak(
                cur,
                cur + (1 << PROBE_SHIFT),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }

    fn record_probe(&self, generation: u64, failed: bool, latency: Duration) {
        let consecutive_mode = matches!(self.outcomes, Outcomes::Consecutive(_));
        let slow = !consecutive_mode && self.is_slow(latency);
        let t = tag(generation);
        let add = DONE_ONE + if failed { FAILED_ONE } else { 0 } + if slow { SLOW_ONE } else { 0 };
        let update = |v: u64| {
            let base = if v >> TAG_SHIFT == t {
                v
            } else {
                t << TAG_SHIFT
            };
            Some(base + add)
        };
        let Ok(prev) = self
            .probe_results
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, update)
        else {
            return;
        };
        let Some(now) = update(prev) else { return };
        let done = now & FIELD_MASK;
        let failures = (now >> FIELD) & FIELD_MASK;
        let slow_calls = (now >> (2 * FIELD)) & FIELD_MASK;
        if done < u64::from(self.config.probes) {
            return;
        }
        let reopen = if consecutive_mode {
            failures > 0
        } else {
            failures as f64 * 100.0 >= self.config.failure_rate * done as f64
                || slow_calls as f64 * 100.0 >= self.config.slow_rate * done as f64
        };
        let to = if reopen { State::Open } else { State::Closed };
        self.transition(Some((State::HalfOpen, generation)), to);
    }
}

fn tag(generation: u64) -> u64 {
    generation & ((1 << (64 - TAG_SHIFT)) - 1)
}

/// Reports a failure if the call or the classifier panics; disarmed with
/// `mem::forget` when they return.
struct CallGuard<'a, C: Clock> {
    breaker: &'a CircuitBreaker<C>,
    permit: BreakerPermit,
    started: u64,
    timed: bool,
}

impl<C: Clock> CallGuard<'_, C> {
    fn latency(&self) -> Duration {
        if self.timed {
            self.breaker.clock.elapsed_since(self.started)
        } else {
            Duration::ZERO
        }
    }
}

impl<C: Clock> Drop for CallGuard<'_, C> {
    fn drop(&mut self) {
        // Only reached when the call or the classifier panicked.
        let latency = self.latency();
        self.breaker.record(self.permit, Outcome::Failure, latency);
    }
}

impl<C: Clock> Admission for CircuitBreaker<C> {
    type Permit = BreakerPermit;

    #[inline]
    fn try_acquire(&self) -> Result<BreakerPermit, Rejected> {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let generation = gen_of(word);
            match state_of(word) {
                State::Closed | State::Disabled => return Ok(BreakerPermit { generation }),
                State::HalfOpen => {
                    if probes_of(word) == 0 {
                        return Err(self.reject(None));
                    }
                    match self.word.compare_exchange_weak(
                        word,
                        word - (1 << PROBE_SHIFT),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return Ok(BreakerPermit { generation }),
                        Err(now) => word = now,
                    }
                }
                State::Open => {
                    let until = self.open_until.load(Ordering::Acquire);
                    let now = self.clock.now_nanos();
                    if now < until {
                        return Err(self.reject(Some(until - now)));
                    }
                    self.transition(Some((State::Open, generation)), State::HalfOpen);
                    word = self.word.load(Ordering::Acquire);
                }
                State::ForcedOpen => return Err(self.reject(None)),
            }
        }
    }

    #[inline]
    fn record(&self, permit: BreakerPermit, outcome: Outcome, latency: Duration) {
        let word = self.word.load(Ordering::Acquire);
        if gen_of(word) != permit.generation {
            return; // admitted before the last transition: stale
        }
        let failed = match outcome {
            Outcome::Success => false,
            Outcome::Failure => true,
            _ => {
                if state_of(word) == State::HalfOpen {
                    self.give_back_probe(permit.generation);
                }
                return;
            }
        };
        match state_of(word) {
            State::Closed => self.record_closed(permit.generation, failed, latency),
            State::HalfOpen => self.record_probe(permit.generation, failed, latency),
            _ => {}
        }
    }
}
