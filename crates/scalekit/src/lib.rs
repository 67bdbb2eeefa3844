#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

/// The shared traits: clocks, stable hashing, placement, admission.
pub use scalekit_core as core;

/// Consistent hashing engines (feature `ring`).
#[cfg(feature = "ring")]
pub use scalekit_ring as ring;

/// The in-process cache and its policy (feature `cache`).
#[cfg(feature = "cache")]
pub use scalekit_cache as cache;

/// Circuit breakers and adaptive throttling (feature `breaker`).
#[cfg(feature = "breaker")]
pub use scalekit_breaker as breaker;

/// Rate limits, concurrency limits and load shedding (feature `limit`).
#[cfg(feature = "limit")]
pub use scalekit_limit as limit;

/// Feature toggles with Unleash-compatible evaluation (feature `flags`).
#[cfg(feature = "flags")]
pub use scalekit_flags as flags;

/// Replica sets: choosing replicas, read/write splitting, read-your-writes
/// (feature `replica`).
#[cfg(feature = "replica")]
pub use scalekit_replica as replica;
/// Logical tables to physical shards, scatter-gather, resharding (feature `shard`).
#[cfg(feature = "shard")]
pub use scalekit_shard as shard;

/// The repository README's examples, doc-tested with the workspace.
#[cfg(all(doctest, feature = "ring"))]
#[doc = include_str!("../../../README.md")]
struct RepositoryReadme;
