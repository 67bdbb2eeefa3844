//! A tower [`Service`](tower_service::Service) that balances over a replica set
//! of services (feature `tower`).
//!
//! Put one service per backend in a [`ReplicaSet`](crate::ReplicaSet) (gRPC
//! channels, HTTP clients bound to one instance) and wrap the set in a
//! [`ReplicaService`]: each call goes where `select` says (peak-EWMA over two
//! choices, zones, ejection, per-endpoint admission), and its outcome and
//! latency come back to the set. As the core admission layer does, the
//! decision is made in `call` on state shared behind an `Arc`, so clones of
//! the service (axum and tower clone freely) balance as one; `poll_ready` is
//! always ready and the chosen endpoint's own readiness is awaited in the
//! response future. Compared with tower's `balance::p2c`, which decides in
//! `poll_ready` on a per-instance copy and takes a lock per load read, every
//! clone here sees the same estimates and selection takes no lock.

mod error;
mod future;
mod service;

pub use error::ReplicaServiceError;
pub use future::ResponseFuture;
pub use service::ReplicaService;
