//! A tower [`Layer`](tower_layer::Layer) that applies any [`Admission`](crate::Admission) policy to
//! any [`Service`](tower_service::Service) (feature `tower`).
//!
//! * The policy lives behind an `Arc` in the layer: every service the layer makes,
//!   and every clone of those services, share one policy. A limit of 5 calls per
//!   second is 5 per second for the whole router, however many times axum or tower
//!   clones the service. (tower's own `RateLimit` keeps its state per clone, so
//!   under axum it does not limit: axum issue 2634.)
//! * The decision is made in `call`, not in `poll_ready`: readiness says whether
//!   the inner service can take a call, admission says whether this call may go.
//!   A rejected call resolves at once to [`AdmissionError::Rejected`] without
//!   reaching the inner service.
//! * When the call ends, its result is classified ([`Classify`]; by default `Ok`
//!   is a success and `Err` a failure) and reported with its latency, measured on
//!   the layer's [`Clock`](crate::Clock). A response future dropped before it
//!   finished reports [`Outcome::Cancelled`](crate::Outcome::Cancelled), one that
//!   panicked [`Outcome::Failure`](crate::Outcome::Failure): every permit comes
//!   back exactly once.
//! * Deliberate choices: a rejected call fails at once and never waits for
//!   capacity (queueing belongs to a buffer in front, where it is visible), and
//!   `poll_ready` reflects only the inner service, so readiness-driven balancers
//!   see an open breaker as a fast failure, not as back-pressure.
//! * Keys: [`AdmissionLayer::key_by`] extracts a key from each request (a client
//!   IP, a user id) and asks a [`KeyedAdmission`](crate::KeyedAdmission) policy
//!   about that key; everything above holds for keyed layers too.
//! * Errors: [`AdmissionError`] is typed, so a rejection costs no allocation; for
//!   stacks built on `BoxError`, [`AdmissionError::into_box_error`] converts.
//!
//! ```
//! use scalekit_core::tower::{AdmissionError, AdmissionLayer};
//! use scalekit_core::{Admission, Outcome, RejectReason, Rejected};
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! /// Admits the first `n` calls, then rejects.
//! struct Budget(AtomicU32);
//! impl Admission for Budget {
//!     type Permit = ();
//!     fn try_acquire(&self) -> Result<(), Rejected> {
//!         self.0
//!             .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
//!             .map(|_| ())
//!             .map_err(|_| Rejected::new(RejectReason::RateLimited))
//!     }
//!     fn record(&self, _: (), _: Outcome, _: Duration) {}
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let layer = AdmissionLayer::new(Budget(AtomicU32::new(1)));
//! let svc = layer.layer(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x * 2) }));
//!
//! assert_eq!(svc.clone().oneshot(21).await.unwrap(), 42);
//! // The clone shares the budget: the second call is rejected.
//! match svc.clone().oneshot(21).await {
//!     Err(AdmissionError::Rejected(r)) => assert_eq!(r.reason(), RejectReason::RateLimited),
//!     other => panic!("expected a rejection, got {other:?}"),
//! }
//! # });
//! ```

mod classify;
mod error;
mod future;
mod key;
mod layer;
mod service;

pub use classify::{Classify, DefaultClassifier};
pub use error::{AdmissionError, BoxError};
pub use future::ResponseFuture;
pub use key::{Admit, KeyBy, Unkeyed};
pub use layer::AdmissionLayer;
pub use service::AdmissionService;
