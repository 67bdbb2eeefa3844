//! Live sources: a watched file, an HTTP client of Unleash's client API (features,
//! registration and metrics), and Redis.
//!
//! Every source hands the text it fetched to the store, which parses, validates and
//! compiles it completely before swapping it in; a bad update is refused with an
//! [`Event::Rejected`](crate::Event::Rejected) and the last good state keeps serving.
//! A fetch that fails (file unreadable, server unreachable, HTTP error) emits
//! [`Event::SourceFailed`](crate::Event::SourceFailed) and changes nothing.
//!
//! The sources are tokio tasks: aborting the returned handle stops them (dropping
//! it does not: a dropped tokio `JoinHandle` detaches its task).

mod backoff;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "redis")]
mod redis_source;
#[cfg(feature = "watch")]
mod watch;

pub use backoff::backoff;
#[cfg(feature = "http")]
pub use http::{FeaturesApi, FetchOutcome, HttpPoller, HttpPollerBuilder, MetricsOutcome};
#[cfg(feature = "redis")]
pub use redis_source::{RedisSource, RedisSourceBuilder};
#[cfg(feature = "watch")]
pub use watch::watch_file;
