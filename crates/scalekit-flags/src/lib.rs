#![doc = include_str!("../README.md")]
//!
//! # How it works
//!
//! A state (Unleash's client API JSON, a delta, or our TOML form) is parsed into
//! [`model`] types, validated, and compiled once into an evaluation form: context
//! field names become an enum, lists become sets, numbers, dates, versions, networks
//! and regexes are parsed, segments are inlined, parents resolved to indices. The
//! compiled state is swapped in atomically (`arc-swap`); evaluations allocate
//! nothing. Each thread caches the snapshot it last used and checks the store's
//! stamp (one plain atomic load; every swap in any store takes a new one) before
//! reusing it, so the common path takes no read-modify-write at all; the price is that a thread keeps its last snapshot
//! alive until it next evaluates (or exits). A bad update never reaches the serving state:
//! it is refused with an [`Event::Rejected`] naming what is wrong, and the last good
//! state keeps serving. Earlier versions are kept for [`Flags::rollback`].
//!
//! Bucketing is Unleash's: [`hash::normalized_hash`] (MurmurHash3 x86 32-bit of
//! `"{groupId}:{stickiness value}"`, seed 0 for rollouts and 86028157 for variants), so
//! a user gets the same answer from this crate as from every Unleash SDK.
//!
//! # Semantics notes
//!
//! * Missing context values make an operator false; `inverted` then negates it
//!   (so an inverted `IN` on a missing field is true), as in Unleash's SDKs.
//! * Values that cannot be compiled (an unknown operator, a number, date, semantic
//!   version or regex that does not parse, a strategy that is not registered, a
//!   segment or parent that does not exist) compile to a condition that never holds,
//!   whatever `inverted` says, and are reported as [`Warning`]s.
//! * `SEMVER_*` follow SemVer 2.0.0 precedence, pre-releases included
//!   (`1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-beta < 1.0.0`); a leading `v` is not a version.
//! * `IN_CIDR` takes addresses and networks, IPv4 and IPv6; an IPv4-mapped IPv6 address
//!   matches its IPv4 network.
//! * Dependent toggles: every parent must exist and have no parents itself; with
//!   `enabled: true` (the default) the parent must be on and, if variants are listed,
//!   resolve to one of them; with `enabled: false` it must be off. Parent evaluations
//!   are not counted in metrics.
//! * Toggles with `impressionData` emit an [`ImpressionEvent`] to the listeners
//!   registered with [`FlagsBuilder::on_impression`], as Unleash's SDKs do.
//!
//! # Conventions
//!
//! Time comes from a `Clock` type parameter (the real `MonotonicClock` by default;
//! tests use `ManualClock`). Builders are `<Type>Builder`; `build()` refuses a setting
//! that cannot work with a `ConfigError` naming the setting, the value and what it
//! accepts.
//!
//! Here the clock times metrics buckets ([`Flags::take_metrics`]); evaluation never
//! reads it, and the sources' loops run on tokio's time (paused in tests).
//! [`FlagsBuilder`] has no setting that can be wrong, so its `build()` returns the
//! store; [`sources::HttpPollerBuilder`] and [`sources::RedisSourceBuilder`] return
//! [`ConfigError`]. Date constraints compare with the wall clock (or the context's
//! `currentTime`), as Unleash's SDKs do.
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `toml` | our concise TOML form ([`toml_form`]) |
//! | `watch` | [`sources::watch_file`]: a task that reloads a file when it changes |
//! | `http` | [`sources::HttpPoller`]: a client of an Unleash-compatible client API (delta or full state, ETag, backoff, bootstrap file, registration, metrics) |
//! | `redis` | [`sources::RedisSource`]: a Redis key plus pub/sub notification |
//! | `openfeature` | [`openfeature::UnleashProvider`], a provider for the `open-feature` crate |
//!
//! # Guide
//!
//! [`_guide`]: the model, the TOML form, sources, metrics and impressions,
//! conformance (with a real Unleash server), speed, and the alternatives.

pub mod _guide;
mod cidr;
mod compile;
pub mod conformance;
mod context;
mod custom;
mod error;
mod event;
mod flags;
pub mod hash;
mod impression;
pub mod metrics;
pub mod model;
#[cfg(feature = "openfeature")]
pub mod openfeature;
mod outcome;
mod semver;
pub mod sources;
#[cfg(feature = "toml")]
pub mod toml_form;

pub use context::Context;
pub use custom::CustomStrategy;
pub use error::{FlagsError, Warning};
pub use event::{Event, LoadReport};
pub use flags::{Flags, FlagsBuilder, FlagsSnapshot};
pub use impression::{ImpressionEvent, ImpressionKind};
pub use metrics::{MetricsBucket, ToggleMetrics};
pub use outcome::{Evaluation, Reason, Variant};
pub use scalekit_core::ConfigError;

/// Parses Unleash JSON (a state or a delta body) without loading it: what the
/// sources do before they swap anything in. Exposed for fuzzing and tooling.
pub fn validate_json(text: &str) -> Result<(), FlagsError> {
    flags::parse::parse_json(text, None).map(|_| ())
}
