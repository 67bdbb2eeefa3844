//! A concurrent, bounded, in-process cache with an adaptive eviction policy.
//!
//! [`Cache`] keeps the entries most likely to be asked for again, using the
//! W-TinyLFU family of policies with a window that adapts to the workload as
//! it runs, and gives a service the rest of what it needs from a cache:
//!
//! | need | how |
//! |---|---|
//! | bound memory | [`max_capacity`](CacheBuilder::max_capacity) in entries, or in any unit with a [`weigher`](CacheBuilder::weigher); the whole cache's, not a shard's: only an entry heavier than all of it is refused |
//! | freshness | [`time_to_live`](CacheBuilder::time_to_live), [`time_to_idle`](CacheBuilder::time_to_idle), a deadline per entry ([`Expiry`], [`Cache::insert_with_ttl`]); expiry work is O(1) on a timer wheel |
//! | no stampedes | [`get_with`](Cache::get_with), [`try_get_with`](Cache::try_get_with) and their `_async` forms run one load per key for all concurrent callers, and survive a loader that fails, panics or is cancelled |
//! | get or insert, compute | [`entry`](Cache::entry): `or_insert_with` and friends (one initialiser per missing key), `and_compute_with` (read-modify-write no other write of the key interleaves), with an [`Entry`] that says whether this call put the value |
//! | read-based expiry | [`Expiry::expire_after_read`] moves an entry's deadline when it is read, on the timer wheel |
//! | iteration | [`iter`](Cache::iter): the live entries, shard by shard (weakly consistent) |
//! | hide latency | [`stale_while_revalidate`](CacheBuilder::stale_while_revalidate), probabilistic early refresh ([`refresh_ahead`](CacheBuilder::refresh_ahead)) |
//! | "not found" | [`negative_ttl`](CacheBuilder::negative_ttl) for `Cache<K, Option<V>>` |
//! | invalidation | [`remove`](Cache::remove), [`invalidate_all`](Cache::invalidate_all), [`invalidate_if`](Cache::invalidate_if) |
//! | observability | [`stats`](Cache::stats) (plain atomics), an [eviction listener](CacheBuilder::eviction_listener) told the [`RemovalCause`] |
//! | tests | a [`ManualClock`](scalekit_core::ManualClock) drives expiry and times loads; a fixed [`hasher`](CacheBuilder::hasher) makes eviction reproducible |
//!
//! ```
//! use std::time::Duration;
//! use scalekit_cache::{Cache, RemovalCause};
//!
//! let sessions: Cache<String, u64> = Cache::builder()
//!     .max_capacity(10_000)
//!     .time_to_idle(Duration::from_secs(1_800))
//!     .eviction_listener(|_token, _user, cause| {
//!         if cause == RemovalCause::Expired { /* log the logout */ }
//!     })
//!     .build()?;
//! sessions.insert("token-1".into(), 7);
//! assert_eq!(sessions.get("token-1"), Some(7));
//! # Ok::<(), scalekit_cache::ConfigError>(())
//! ```
//!
//! The [guide](_guide) tells the design at length, with the measured hit
//! ratios and throughput and how to choose sizes and times.
//!
//! # Conventions
//!
//! Time comes from a `Clock` type parameter (the real `MonotonicClock` by
//! default; tests use `ManualClock`). Builders are `<Type>Builder`; `build()`
//! refuses a setting that cannot work with a `ConfigError` naming the setting,
//! the value and what it accepts.
//!
//! Here: [`Cache<K, V, S, C>`](Cache) and [`TieredCache`] take the clock as
//! `C` ([`CacheBuilder::clock`] swaps it); [`CacheBuilder::build`],
//! [`TieredCacheBuilder::build`] and `RedisTierBuilder::build` return
//! [`ConfigError`] (the last inside [`TierError::Config`]). The tiered cache's
//! own time limits run on tokio's clock, which tests pause.
//!
//! # The policy
//!
//! New entries enter a small *window*; when it is full, its oldest entry
//! becomes a candidate for the *main* space (a segmented LRU of probation and
//! protected queues). If main is full, the candidate must be more popular than
//! main's victim to get in, as estimated by a TinyLFU sketch (4-bit counters,
//! halved every ten times the capacity in accesses, so popularity fades). This
//! keeps one-hit wonders and scans out of main; the window lets bursts of
//! recent keys in.
//!
//! How big the window should be depends on the workload: near zero for loops
//! and frequency-skewed traffic, most of the cache for recency-driven traffic.
//! Caffeine's hill climber finds it by trying a size and watching the hit ratio
//! move, which mistakes workload drift for the effect of its step. This cache
//! measures the marginal value of each space directly instead: hits landing on
//! the last 5% of each space before its eviction point, and misses on keys
//! that space dropped within its last 5% of departures (ghosts). The boundary
//! moves towards the space whose margin earns more, when the difference is
//! beyond counting noise. On the forty reference rows ([guide](_guide#hit-ratios))
//! it averages 0.34 points below the best of nine policies per row, worst 3.51.
//!
//! # Concurrency
//!
//! Keys are spread over shards (sixteen per core, each at least 1,024 entries),
//! each with its own lock, table, queues, sketch and timer wheel. A read takes
//! only its shard's *shared* lock: the queues are CLOCK approximations of LRU,
//! so recording an access sets a bit and bumps a small counter in the entry
//! itself (its popularity is the sketch's history plus that counter), and the
//! queues are reordered lazily when eviction walks them under the exclusive
//! lock. Hit and miss counters are striped per thread. Writes take
//! the shard's exclusive lock and do the policy's work there.
//!
//! A shard's share of the capacity sizes its policy, but the limit is the
//! whole cache's: the shards keep one count of their total weight, and a
//! write that puts the cache over its capacity sheds from its own shard,
//! then from the others, one lock at a time. So nothing is evicted while
//! the cache has room, and an entry heavier than a shard's share is kept
//! (its weight is borrowed from the other shards); only one heavier than the
//! whole capacity is refused.
//!
//! User code that runs under a shard's lock: the [`Expiry`]'s methods, and
//! a compute's closure ([`EntrySelector::and_compute_with`]) with the
//! weigher of the value it puts. The listener runs after the lock is
//! released, so it may use the cache.
//!
//! # Why hand-written
//!
//! The eviction policy, its adaptation and the timer wheel are the point of
//! this crate, so they are ours; the table is hashbrown's `HashTable`, locks
//! are parking_lot's, and async waiting uses tokio's `Notify`.
//!
//! # The tiered cache
//!
//! [`TieredCache`] puts a [`Cache`] (L1, in process) in front of a remote
//! [`Tier`] (L2, shared by every process: [`RedisTier`] with the `redis`
//! feature) in front of a loader (the database). Reads go L1 -> L2 -> loader;
//! an L2 hit is promoted into L1, a load fills both. Writes follow a
//! [`WritePolicy`] (invalidate-on-write by default, or write-through). An L2
//! that errs or passes its time limit never fails a read: the loader answers,
//! L1 keeps serving, and L2 is used again as soon as it answers
//! (see [`TieredStats`] for the counters). While L2 is down, each L1 miss
//! waits for the time limit; wrap the tier in a [`GuardedTier`] with a
//! circuit breaker to skip L2 at once until it is back.
//!
//! ## Coherence across processes
//!
//! With [`RedisCoherence`] (feature `redis`), a write or invalidation in one
//! process removes the key from every other process's L1, through Redis
//! pub/sub on one channel per namespace. Each message carries its sender's
//! instance id, a per-sender sequence number, and the key. Pub/sub may lose
//! messages, so losses are detected and repaired by clearing L1
//! ([`Cache::invalidate_all`]):
//! - a subscription that dropped is re-established with backoff, and L1 is
//!   cleared once it is back (messages sent meanwhile were lost);
//! - a gap in a sender's sequence numbers (a failed or dropped publish) clears
//!   L1, as Hazelcast's near cache does; senders also publish a heartbeat
//!   with their last number, so a gap shows within one heartbeat (1 s) even
//!   when the sender goes quiet.
//!
//! The trade-off: a repair throws away the whole L1, not just the keys that
//! may be stale, so after a Redis hiccup every process reloads its hot set
//! from L2 (which keeps its entries). Repairs are rare (connection drops,
//! overflowing queues), and correctness does not depend on guessing which
//! keys a lost message named. What remains unguarded: while the subscription
//! is down, L1 serves what it holds, possibly stale, until the subscription
//! is back or the entry's L1 time-to-live passes. Give L1 a time-to-live.
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `redis` | [`RedisTier`] and [`RedisCoherence`] (the `redis`, `serde` and `postcard` crates) |

// Items the crate docs link to exist only with their feature.
#![cfg_attr(not(feature = "redis"), allow(rustdoc::broken_intra_doc_links))]

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub mod _guide;

mod builder;
mod cache;
#[cfg(feature = "redis")]
mod coherence;
mod config;
mod expiry;
mod flight;
mod guarded;
mod list;
mod rand;
#[cfg(feature = "redis")]
mod redis;
mod removal;
mod sketch;
mod stats;
mod store;
mod tier;
mod tiered;
mod wheel;

pub use builder::CacheBuilder;
pub use cache::entry::{CompResult, Entry, EntrySelector, Op};
pub use cache::iter::Iter;
pub use cache::Cache;
#[cfg(feature = "redis")]
pub use coherence::RedisCoherence;
pub use expiry::Expiry;
pub use guarded::GuardedTier;
#[cfg(feature = "redis")]
pub use redis::{RedisTier, RedisTierBuilder};
pub use removal::RemovalCause;
pub use stats::CacheStats;
pub use tier::{Tier, TierError};
pub use tiered::{TieredCache, TieredCacheBuilder, TieredStats, WritePolicy};

/// The attribute to implement [`Tier`] with (re-exported from `async-trait`).
pub use async_trait::async_trait;
/// The error of a builder's `build` (re-exported from `scalekit-core`).
pub use scalekit_core::ConfigError;
