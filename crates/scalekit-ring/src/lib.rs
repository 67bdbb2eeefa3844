#![doc = include_str!("../README.md")]
//!
//! # Choosing an engine
//!
//! * Shards that only grow: [`Jump`] (fastest, no memory).
//! * Cache or database nodes that come and go: [`Memento`] for speed and perfect
//!   balance, [`Ring`] when you also need weights, labels and replicas.
//! * A handful of heterogeneous nodes, exact weights, replicas ranked per key:
//!   [`Rendezvous`].
//! * Packet or connection balancing (the L4 balancer): [`Maglev`].
//! * Long-lived connections or sessions that must not pile up on one node: wrap
//!   any of them in [`BoundedLoad`].
//!
//! Every engine implements [`Placement`](scalekit_core::Placement) (and
//! [`BoundedLoad`] wraps any of them): lookups take `&self`, never allocate, and
//! the engines are `Send + Sync` when the node type is. `BoundedLoad::assign`
//! takes `&mut self` and clones the chosen node to count its load.
//! [`analysis`] measures balance and movement on your own keys; [`_guide`] is
//! the guide, with the measured lookup times, memory, balance and movement.
//!
//! # Conventions
//!
//! Time comes from a `Clock` type parameter (the real `MonotonicClock` by
//! default; tests use `ManualClock`). Builders are `<Type>Builder`; `build()`
//! refuses a setting that cannot work with a `ConfigError` naming the setting,
//! the value and what it accepts.
//!
//! The engines read no clock and are built by constructors
//! (`Ring::with_virtual_nodes`, `Maglev::with_table_size`,
//! `BoundedLoad::new`); a setting they refuse comes back as
//! [`RingError::Config`] holding that [`ConfigError`].
//!
//! ```
//! use scalekit_ring::{Maglev, RingError};
//!
//! match Maglev::<u32>::with_table_size(100) {
//!     Err(RingError::Config(e)) => {
//!         assert_eq!((e.field(), e.value()), ("table_size", "100"));
//!         assert!(e.expected().starts_with("a prime"));
//!     }
//!     other => panic!("expected a refused setting, got {other:?}"),
//! }
//! ```

pub mod _guide;
mod bounded;
mod error;
mod jump;
mod maglev;
mod memento;
mod rendezvous;
mod ring;

pub mod analysis;

pub use bounded::BoundedLoad;
pub use error::{ConfigError, RingError};
pub use jump::{jump_back_hash, jump_hash, Jump};
pub use maglev::{Maglev, MAGLEV_DEFAULT_TABLE_SIZE, MAGLEV_TABLE_SIZES};
pub use memento::Memento;
pub use rendezvous::Rendezvous;
pub use ring::{Ring, Spread, DEFAULT_VIRTUAL_NODES};

pub use scalekit_core::Placement;
