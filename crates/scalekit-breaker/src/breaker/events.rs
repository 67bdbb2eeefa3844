//! What the breaker tells its listeners: every transition, and (with
//! [`on_event`](crate::CircuitBreakerBuilder::on_event)) every call.

use std::sync::Arc;
use std::time::Duration;

use super::state::State;

/// A change of state, as told to the listeners set with
/// [`CircuitBreakerBuilder::on_transition`](crate::CircuitBreakerBuilder::on_transition)
/// and [`on_event`](crate::CircuitBreakerBuilder::on_event).
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

/// One event of the breaker's stream, for metrics: each call's result (as
/// resilience4j publishes them), each rejection and each transition.
///
/// Told to the listener set with
/// [`on_event`](crate::CircuitBreakerBuilder::on_event), on the thread that
/// reported the call (or asked for the permit), outside the breaker's lock.
///
/// ```
/// use scalekit_breaker::{BreakerEvent, CircuitBreaker, Window};
/// use scalekit_core::{Admission, Outcome};
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let slow = Arc::new(AtomicU64::new(0));
/// let seen = Arc::clone(&slow);
/// let breaker = CircuitBreaker::builder()
///     .window(Window::ConsecutiveFailures(5))
///     .slow_call_duration(Duration::from_millis(100))
///     .on_event(move |e| {
///         if e.is_slow() {
///             seen.fetch_add(1, Ordering::Relaxed);
///         }
///     })
///     .build()?;
/// let p = breaker.try_acquire().unwrap();
/// breaker.record(p, Outcome::Success, Duration::from_millis(250));
/// assert_eq!(slow.load(Ordering::Relaxed), 1);
/// # Ok::<(), scalekit_breaker::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerEvent {
    /// A call succeeded. `slow`: it took at least the slow-call duration (always
    /// false while slow-call detection is off).
    Success {
        /// How long the call took, as reported.
        latency: Duration,
        /// Whether it counts as slow.
        slow: bool,
    },
    /// A call failed (resilience4j's "error").
    Failure {
        /// How long the call took, as reported.
        latency: Duration,
        /// Whether it counts as slow.
        slow: bool,
    },
    /// A call ended with an outcome that counts neither way (a 404, a
    /// validation error).
    Ignored {
        /// How long the call took, as reported.
        latency: Duration,
    },
    /// A call was abandoned: reported as `Cancelled`, or its permit was dropped
    /// without being reported.
    Cancelled,
    /// A call was refused.
    Rejected {
        /// The state that refused it: open, half-open with every probe taken, or
        /// forced-open.
        state: State,
        /// The retry hint given with the rejection.
        retry_after: Option<Duration>,
    },
    /// The breaker changed state.
    Transition(Transition),
}

impl BreakerEvent {
    /// Whether this is a call that took at least the slow-call duration.
    pub fn is_slow(&self) -> bool {
        matches!(
            self,
            BreakerEvent::Success { slow: true, .. } | BreakerEvent::Failure { slow: true, .. }
        )
    }
}

pub(crate) type TransitionListener = Arc<dyn Fn(&Transition) + Send + Sync>;
pub(crate) type EventListener = Arc<dyn Fn(&BreakerEvent) + Send + Sync>;
