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
//! replica selector) takes them. See `docs/breaker.md` in the repository for how
//! to pick thresholds.

mod breaker;
mod error;
mod throttle;
mod window;

pub use breaker::{
    BreakerBuilder, BreakerPermit, BreakerStats, CircuitBreaker, State, Transition, Window,
    MAX_HALF_OPEN_PROBES,
};
pub use error::{BreakerError, ConfigError};
pub use throttle::{AdaptiveThrottle, ThrottleBuilder};

pub use scalekit_core::{Admission, Outcome, Rejected};
