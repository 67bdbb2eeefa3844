//! What scalekit's own tests share, written once (`publish = false`).
//!
//! * [`alloc`]: a counting global allocator, to assert that a hot path allocates
//!   nothing.
//! * [`services`]: the addresses of the real servers some tests need (Redis,
//!   PostgreSQL), with the kit's rule: skipped with a message on a laptop without
//!   them, a failure under `CI`.
//! * [`redis_cluster`]: drills on the test Redis Cluster (kill a master, fail
//!   over, move slots), one at a time, leaving the cluster whole.
//!
//! ```
//! // In a test binary (tests/alloc_free.rs):
//! // #[global_allocator]
//! // static GLOBAL: scalekit_test_support::alloc::Counting = scalekit_test_support::alloc::Counting;
//! use scalekit_test_support::alloc::allocations_during;
//! let n = allocations_during(|| { let _ = 1 + 1; });
//! assert_eq!(n, 0);
//! ```
// The counting allocator is the one way to observe allocations; it forwards every
// call to the system allocator (see `alloc`).
#![allow(unsafe_code)]

pub mod alloc;
pub mod redis_cluster;
pub mod services;
