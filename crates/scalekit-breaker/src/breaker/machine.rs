//! The breaker's state and the machinery that moves it: transitions, the wait
//! in open, recording in closed and half-open.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use scalekit_core::{mix64, Clock, MonotonicClock, RejectReason, Rejected};

use super::config::Config;
use super::events::{BreakerEvent, Transition, TransitionListener};
use super::permit::Shared;
use super::state::{
    encode, gen_of, state_of, tag, State, DONE_ONE, FAILED_ONE, FIELD, FIELD_MASK, SLOW_ONE,
    TAG_SHIFT,
};
use crate::window::{CountWindow, Tally, TimeWindow};

#[derive(Debug)]
pub(crate) enum Outcomes {
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
///   `Ignored` or `Cancelled`, or whose permit is dropped unreported, gives its
///   slot back. If the probes have not all reported within
///   [`max_wait_in_half_open`](crate::CircuitBreakerBuilder::max_wait_in_half_open)
///   (a probe that hangs, a permit leaked with `mem::forget`), the next call that
///   finds no probe left reopens the breaker, and a fresh half-open with all its
///   probes follows the wait in open.
/// * Every transition starts a new generation; a result from an older generation
///   (a call admitted before the last transition) is ignored.
///
/// Hot path: with a count window or consecutive failures, admission in closed is
/// one atomic load, and recording a success while the window holds only
/// successes is three atomic loads and no write (shared cache lines stay shared
/// across cores). With failures in the window a record is one `fetch_add` and two
/// slot loads, plus a store and a second `fetch_add` when the outcome entering
/// the window differs from the one leaving it. No lock, no clock read. A
/// rejection allocates nothing. An event listener
/// ([`on_event`](crate::CircuitBreakerBuilder::on_event)) costs one branch when
/// none is set.
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
    pub(crate) shared: Arc<Shared>,
    pub(crate) outcomes: Outcomes,
    pub(crate) consecutive: AtomicU32,
    pub(crate) probe_results: AtomicU64,
    pub(crate) open_until: AtomicU64,
    pub(crate) half_open_until: AtomicU64,
    pub(crate) opens_in_row: AtomicU32,
    pub(crate) rejected: AtomicU64,
    pub(crate) rng: AtomicU64,
    pub(crate) lock: Mutex<()>,
    pub(crate) config: Config,
    pub(crate) clock: C,
    pub(crate) on_transition: Option<TransitionListener>,
}

impl<C: fmt::Debug> fmt::Debug for CircuitBreaker<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.shared.word.load(Ordering::Acquire);
        f.debug_struct("CircuitBreaker")
            .field("state", &state_of(word))
            .field("generation", &gen_of(word))
            .field("config", &self.config)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> CircuitBreaker<C> {
    #[inline]
    pub(crate) fn word(&self) -> u64 {
        self.shared.word.load(Ordering::Acquire)
    }

    /// Counts and builds a rejection. Inline: during an outage every call
    /// takes this path.
    #[inline]
    pub(crate) fn reject(&self, state: State, retry_after: Option<u64>) -> Rejected {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        let retry_after = retry_after.map(Duration::from_nanos);
        if self.shared.events.is_some() {
            self.emit_rejected(state, retry_after);
        }
        let r = Rejected::new(RejectReason::CircuitOpen);
        match retry_after {
            Some(wait) => r.retry_after(wait),
            None => r,
        }
    }

    #[cold]
    fn emit_rejected(&self, state: State, retry_after: Option<Duration>) {
        self.shared
            .emit(|| BreakerEvent::Rejected { state, retry_after });
    }

    /// Half-open with every probe out: rejected, unless the probes have had
    /// longer than `max_wait_in_half_open`; then the breaker reopens (a fresh
    /// half-open follows the wait) and the call is rejected with that wait.
    /// `None`: the state moved under us, look again.
    #[cold]
    pub(crate) fn half_open_full(&self, generation: u64) -> Option<Rejected> {
        let now = self.clock.now_nanos();
        if now < self.half_open_until.load(Ordering::Acquire) {
            return Some(self.reject(State::HalfOpen, None));
        }
        if self.transition(Some((State::HalfOpen, generation)), State::Open) {
            let until = self.open_until.load(Ordering::Acquire);
            return Some(self.reject(State::Open, Some(until.saturating_sub(now))));
        }
        None
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
    pub(crate) fn transition(&self, from: Option<(State, u64)>, to: State) -> bool {
        let event = {
            let _guard = self.lock.lock();
            let cur = self.word();
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
                    let max = self.config.max_half_open.as_nanos() as u64;
                    self.half_open_until
                        .store(now.saturating_add(max), Ordering::Release);
                }
                State::Disabled | State::ForcedOpen => {}
            }
            self.shared
                .word
                .store(encode(to, probes, generation), Ordering::Release);
            Transition {
                from: state_of(cur),
                to,
                generation,
                at_nanos: now,
            }
        };
        if let Some(listener) = &self.on_transition {
            listener(&event);
        }
        self.shared.emit(|| BreakerEvent::Transition(event));
        true
    }

    #[inline]
    pub(crate) fn is_slow(&self, latency: Duration) -> bool {
        self.config.slow_duration.is_some_and(|d| latency >= d)
    }

    #[inline]
    fn trips(&self, t: Tally) -> bool {
        let c = &self.config;
        t.calls >= c.minimum_calls
            && (t.failures as f64 * 100.0 >= c.failure_rate * t.calls as f64
                || t.slow as f64 * 100.0 >= c.slow_rate * t.calls as f64)
    }

    #[inline(always)]
    pub(crate) fn record_closed(&self, generation: u64, failed: bool, latency: Duration) {
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
            Outcomes::Time(w) => self.record_time(w, failed, latency),
        };
        if trip {
            self.transition(Some((State::Closed, generation)), State::Open);
        }
    }

    /// The time window's record: a clock read and a short lock, out of line so
    /// that the count window's path stays small enough to inline.
    #[inline(never)]
    fn record_time(&self, w: &TimeWindow, failed: bool, latency: Duration) -> bool {
        let slow = self.is_slow(latency);
        self.trips(w.record(self.clock.now_nanos(), failed, slow))
    }

    #[cold]
    pub(crate) fn record_probe(&self, generation: u64, failed: bool, latency: Duration) {
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
