#![doc = include_str!("../README.md")]
//!
//! # Choosing a policy
//!
//! * A dependency that fails hard (down, timing out): [`CircuitBreaker`]. Pick a
//!   count window for steady traffic, a time window for bursty traffic, and
//!   consecutive failures for low-traffic calls where rates mean little.
//! * A dependency that is overloaded rather than down: [`AdaptiveThrottle`]; it
//!   sheds a share of the calls that tracks how many the backend refuses.
//!
//! Both implement [`Admission`](scalekit_core::Admission), so the core tower layer
//! (`scalekit_core::tower::AdmissionLayer`, feature `tower` of `scalekit-core`)
//! applies them to any service, and anything that takes an admission policy (the
//! replica selector) takes them. The [guide](crate::_guide) explains the state
//! machine, how to pick thresholds, the measured speed and how the crate compares
//! with resilience4j, failsafe and recloser.
//!
//! # Conventions
//!
//! Time comes from a `Clock` type parameter (the real `MonotonicClock` by
//! default; tests use `ManualClock`). Builders are `<Type>Builder`; `build()`
//! refuses a setting that cannot work with a `ConfigError` naming the setting,
//! the value and what it accepts.

pub mod _guide;
mod breaker;
mod error;
mod throttle;
mod window;

pub use breaker::{
    BreakerEvent, BreakerPermit, BreakerStats, CircuitBreaker, CircuitBreakerBuilder, State,
    Transition, Window, MAX_HALF_OPEN_PROBES,
};
pub use error::BreakerError;
pub use scalekit_core::ConfigError;
pub use throttle::{AdaptiveThrottle, AdaptiveThrottleBuilder};

pub use scalekit_core::{Admission, Outcome, Rejected};
