//! The circuit breaker, by concern:
//!
//! * `state`: the states and the atomic words that hold them;
//! * `config`: the settings and their rules;
//! * `events`: transitions and the per-call event stream;
//! * `permit`: the permit, which reports itself cancelled when dropped;
//! * `machine`: the breaker's fields and the machinery that moves its state;
//! * `api`: admission, recording, `call`, the switches and the snapshot;
//! * `stats`: the snapshot type;
//! * `builder`: the builder.
//!
//! Imports point one way: `builder` and `api` use `machine`, which uses `config`,
//! `events`, `permit` and `state`; nothing below imports anything above it.

mod api;
mod builder;
mod config;
mod events;
mod machine;
mod permit;
mod state;
mod stats;

pub use self::builder::CircuitBreakerBuilder;
pub use self::config::Window;
pub use self::events::{BreakerEvent, Transition};
pub use self::machine::CircuitBreaker;
pub use self::permit::BreakerPermit;
pub use self::state::{State, MAX_HALF_OPEN_PROBES};
pub use self::stats::BreakerStats;
