//! What callers use: admission and recording, `call`, the operator's switches
//! and the snapshot.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use scalekit_core::{Admission, Clock, Outcome, Rejected};

use super::events::BreakerEvent;
use super::machine::{CircuitBreaker, Outcomes};
use super::permit::BreakerPermit;
use super::state::{gen_of, probes_of, state_of, State, PROBE_SHIFT};
use super::stats::BreakerStats;
use crate::error::BreakerError;
use crate::window::Tally;

impl<C: Clock> CircuitBreaker<C> {
    /// The current state.
    pub fn state(&self) -> State {
        state_of(self.word())
    }

    /// The current generation (the number of transitions so far).
    pub fn generation(&self) -> u64 {
        gen_of(self.word())
    }

    /// A snapshot for dashboards.
    pub fn stats(&self) -> BreakerStats {
        let word = self.word();
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
        // Finished without panicking: take the permit back and report the outcome.
        self.record(guard.disarm(), outcome, latency);
        result.map_err(BreakerError::Inner)
    }
}

/// Reports a failure if the call or the classifier panics; disarmed when they
/// return.
struct CallGuard<'a, C: Clock> {
    breaker: &'a CircuitBreaker<C>,
    permit: BreakerPermit,
    started: u64,
    timed: bool,
}

impl<C: Clock> CallGuard<'_, C> {
    #[inline]
    fn latency(&self) -> Duration {
        if self.timed {
            self.breaker.clock.elapsed_since(self.started)
        } else {
            Duration::ZERO
        }
    }

    /// The permit, for the caller to report; the guard is forgotten (it then
    /// holds a blank permit that reports nothing, so nothing leaks).
    #[inline]
    fn disarm(mut self) -> BreakerPermit {
        let permit = std::mem::replace(&mut self.permit, BreakerPermit::new(0, None));
        std::mem::forget(self);
        permit
    }
}

impl<C: Clock> Drop for CallGuard<'_, C> {
    fn drop(&mut self) {
        // Only reached when the call or the classifier panicked.
        let latency = self.latency();
        let permit = std::mem::replace(&mut self.permit, BreakerPermit::new(0, None));
        self.breaker.record(permit, Outcome::Failure, latency);
    }
}

impl<C: Clock> Admission for CircuitBreaker<C> {
    type Permit = BreakerPermit;

    // Always inlined, and small: closed admits with one load; every other
    // state (an open breaker's rejection included) is one call away.
    #[inline(always)]
    fn try_acquire(&self) -> Result<BreakerPermit, Rejected> {
        let word = self.word();
        match state_of(word) {
            State::Closed | State::Disabled => {
                // With an event listener, every permit reports its own drop.
                let owner = match self.shared.events {
                    None => None,
                    Some(_) => Some(Arc::clone(&self.shared)),
                };
                return Ok(BreakerPermit::new(gen_of(word), owner));
            }
            State::Open => {
                let until = self.open_until.load(Ordering::Acquire);
                let now = self.clock.now_nanos();
                if now < until {
                    return Err(self.reject(State::Open, Some(until - now)));
                }
            }
            _ => {}
        }
        self.try_acquire_slow(word)
    }

    // Always inlined: the hot path of every call (the tower layer's too); its
    // rare branches are out of line.
    #[inline(always)]
    fn record(&self, mut permit: BreakerPermit, outcome: Outcome, latency: Duration) {
        permit.disarm();
        let generation = permit.generation();
        if self.shared.events.is_some() {
            self.emit_call(outcome, latency);
        }
        let word = self.word();
        if gen_of(word) != generation {
            return; // admitted before the last transition: stale
        }
        let failed = match outcome {
            Outcome::Success => false,
            Outcome::Failure => true,
            _ => return self.record_no_verdict(word, generation),
        };
        match state_of(word) {
            State::Closed => self.record_closed(generation, failed, latency),
            State::HalfOpen => self.record_probe(generation, failed, latency),
            _ => {}
        }
    }
}

impl<C: Clock> CircuitBreaker<C> {
    /// Admission outside closed: open (a rejection, or the move to
    /// half-open), half-open (a probe, if one is left), forced-open. Out of line
    /// but not cold: during an outage every call comes here.
    #[inline(never)]
    fn try_acquire_slow(&self, mut word: u64) -> Result<BreakerPermit, Rejected> {
        loop {
            let generation = gen_of(word);
            match state_of(word) {
                State::Closed | State::Disabled => {
                    let owner = self
                        .shared
                        .events
                        .as_ref()
                        .map(|_| Arc::clone(&self.shared));
                    return Ok(BreakerPermit::new(generation, owner));
                }
                State::HalfOpen => {
                    if probes_of(word) == 0 {
                        match self.half_open_full(generation) {
                            Some(rejected) => return Err(rejected),
                            None => {
                                word = self.word();
                                continue;
                            }
                        }
                    }
                    match self.shared.word.compare_exchange_weak(
                        word,
                        word - (1 << PROBE_SHIFT),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        // A probe always carries the way back to its slot.
                        Ok(_) => {
                            return Ok(BreakerPermit::new(
                                generation,
                                Some(Arc::clone(&self.shared)),
                            ))
                        }
                        Err(now) => word = now,
                    }
                }
                State::Open => {
                    let until = self.open_until.load(Ordering::Acquire);
                    let now = self.clock.now_nanos();
                    if now < until {
                        return Err(self.reject(State::Open, Some(until - now)));
                    }
                    self.transition(Some((State::Open, generation)), State::HalfOpen);
                    word = self.word();
                }
                State::ForcedOpen => return Err(self.reject(State::ForcedOpen, None)),
            }
        }
    }

    /// An ignored or cancelled call: a half-open probe gives its slot back.
    #[cold]
    fn record_no_verdict(&self, word: u64, generation: u64) {
        if state_of(word) == State::HalfOpen {
            self.shared.give_back_probe(generation);
        }
    }
}

impl<C: Clock> CircuitBreaker<C> {
    #[cold]
    fn emit_call(&self, outcome: Outcome, latency: Duration) {
        let slow = self.is_slow(latency);
        self.shared.emit(|| match outcome {
            Outcome::Success => BreakerEvent::Success { latency, slow },
            Outcome::Failure => BreakerEvent::Failure { latency, slow },
            Outcome::Ignored => BreakerEvent::Ignored { latency },
            _ => BreakerEvent::Cancelled,
        });
    }
}
