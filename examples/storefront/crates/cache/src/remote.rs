//! The Redis tier behind a circuit breaker, and what the shop says about it.
//!
//! Both caches' Redis tiers sit behind one [`CircuitBreaker`] (one Redis server, one
//! breaker), through scalekit-cache's [`GuardedTier`]. While Redis answers, every
//! call goes through; once half of the last 20 calls (at least 10) failed or passed
//! the command's time limit ([`TierOptions::timeout`]), the breaker opens and the
//! caches stop asking Redis: an L1 miss goes straight to the database, without
//! waiting on a dead server. Every [`TierOptions::open_for`] three probe calls go
//! through; when they succeed the breaker closes and Redis is used again.
//!
//! What is reported:
//! - [`CachedStore::degraded`](super::CachedStore::degraded): the cause, for `/readyz` (which answers 200 with
//!   `degraded: <cause>`: the shop still serves);
//! - [`RemoteStats`]: hits and misses Redis answered, calls that failed (errors and
//!   timeouts) and calls the open breaker skipped, apart from each other, for the ops
//!   page and `/metrics`;
//! - a log line when the tier goes down (the breaker opens) and when it comes back
//!   (it closes): state changes only, through the breaker's transition hook.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use scalekit_breaker::{CircuitBreaker, State, Transition, Window};
use scalekit_cache::{GuardedTier, Tier, TierError};
use scalekit_core::{Clock, MonotonicClock};

/// How the caches treat a slow or dead Redis. [`Default`] is what `storefront
/// serve` uses; tests pass a [`ManualClock`](scalekit_core::ManualClock).
#[derive(Clone, Debug)]
pub struct TierOptions {
    /// The time limit of each Redis command, connecting included (default 100 ms:
    /// Redis answers in well under a millisecond on a LAN). A call past it counts
    /// as a failure.
    pub timeout: Duration,
    /// How long the breaker stays open before it lets probe calls through
    /// (default 5 s).
    pub open_for: Duration,
    /// The breaker's clock (default the monotonic clock).
    pub clock: Arc<dyn Clock>,
    /// How long [`CachedStore::connect`](super::CachedStore::connect) waits for the
    /// invalidation subscription before it serves anyway (default 5 s).
    pub subscribe_wait: Duration,
}

impl Default for TierOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(100),
            open_for: Duration::from_secs(5),
            clock: Arc::new(MonotonicClock),
            subscribe_wait: Duration::from_secs(5),
        }
    }
}

/// The breaker in front of Redis.
pub(crate) type Breaker = CircuitBreaker<Arc<dyn Clock>>;

/// The Redis tier's counters since start, both caches together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoteStats {
    /// Reads Redis answered with a value (per key).
    pub hits: u64,
    /// Reads Redis answered without a value (per key): true misses, not failures.
    pub misses: u64,
    /// Calls (reads and writes) that failed: refused, dropped, timed out, or an
    /// error from Redis.
    pub errors: u64,
    /// Calls the open breaker skipped: Redis was not asked.
    pub skipped: u64,
    /// Whether the breaker lets calls through (closed).
    pub up: bool,
}

/// Why calls to Redis fail, and how many did: shared by both caches' tiers and the
/// breaker's hook.
#[derive(Debug, Default)]
struct Faults {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    /// The last failure, for `/readyz` and the log.
    last: Mutex<Option<String>>,
}

impl Faults {
    fn failed(&self, e: &TierError) {
        self.errors.fetch_add(1, Relaxed);
        *self.last.lock() = Some(e.to_string());
    }

    fn last(&self) -> String {
        self.last
            .lock()
            .clone()
            .unwrap_or_else(|| "no answer".to_owned())
    }
}

/// The Redis server the caches use, its breaker and its figures.
#[derive(Debug)]
pub(crate) struct Remote {
    /// The URL without credentials, for messages.
    address: String,
    breaker: Arc<Breaker>,
    faults: Arc<Faults>,
}

/// A Redis URL without its user and password: `redis://:secret@host:6379/0` is
/// shown as `redis://host:6379/0`.
pub(crate) fn redacted(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..scheme_end + 3], &rest[at + 1..]),
        None => url.to_owned(),
    }
}

impl Remote {
    /// The breaker and counters for Redis at `url`.
    pub(crate) fn new(url: &str, options: &TierOptions) -> Result<Self, TierError> {
        let address = redacted(url);
        let faults = Arc::new(Faults::default());
        let hook = {
            let address = address.clone();
            let faults = Arc::clone(&faults);
            move |t: &Transition| log_transition(&address, &faults, t)
        };
        let breaker = CircuitBreaker::builder()
            .window(Window::Count(20))
            .failure_rate_threshold(50.0)
            .minimum_calls(10)
            .wait_in_open(options.open_for)
            .half_open_probes(3)
            .on_transition(hook)
            .clock(Arc::clone(&options.clock))
            .build()
            .map_err(|e| TierError::Backend(format!("the Redis tier's breaker: {e}").into()))?;
        Ok(Self {
            address,
            breaker: Arc::new(breaker),
            faults,
        })
    }

    /// `tier` behind the breaker, its outcomes counted.
    pub(crate) fn guard<T>(&self, tier: T) -> GuardedTier<Watched<T>, Arc<Breaker>> {
        GuardedTier::new(
            Watched {
                tier,
                faults: Arc::clone(&self.faults),
            },
            Arc::clone(&self.breaker),
        )
    }

    /// The counters.
    pub(crate) fn stats(&self) -> RemoteStats {
        let breaker = self.breaker.stats();
        RemoteStats {
            hits: self.faults.hits.load(Relaxed),
            misses: self.faults.misses.load(Relaxed),
            errors: self.faults.errors.load(Relaxed),
            skipped: breaker.rejected,
            up: matches!(breaker.state, State::Closed | State::Disabled),
        }
    }

    /// Why the tier is not in use, if it is not: `cache tier redis://… unreachable
    /// (circuit open): <the last error>`.
    pub(crate) fn degraded(&self) -> Option<String> {
        match self.breaker.state() {
            State::Closed | State::Disabled => None,
            state => Some(format!(
                "cache tier {} unreachable (circuit {state}): {}",
                self.address,
                self.faults.last()
            )),
        }
    }

    /// The URL without credentials.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }
}

/// One line when the tier goes down and one when it is back; probes that fail
/// again (half-open to open) only at debug level.
fn log_transition(address: &str, faults: &Faults, t: &Transition) {
    match (t.from, t.to) {
        (State::Closed, State::Open) => tracing::warn!(
            "cache tier {address} unreachable (circuit open): {}; cache misses go to the database until it answers again",
            faults.last()
        ),
        (_, State::Closed) => {
            tracing::info!("cache tier {address} answers again (circuit closed): caching in Redis resumes")
        }
        (from, to) => tracing::debug!("cache tier {address}: circuit {from} -> {to}"),
    }
}

/// A tier whose answers are counted: hits, misses and failures apart. It sits
/// inside the [`GuardedTier`], so it records a failure before the breaker hears of
/// it (and the hook can name it), and never sees the calls the breaker skips.
#[derive(Debug)]
pub(crate) struct Watched<T> {
    tier: T,
    faults: Arc<Faults>,
}

impl<T> Watched<T> {
    fn seen<R>(&self, result: Result<R, TierError>) -> Result<R, TierError> {
        if let Err(e) = &result {
            self.faults.failed(e);
        }
        result
    }

    fn found(&self, value: bool) {
        let counter = if value {
            &self.faults.hits
        } else {
            &self.faults.misses
        };
        counter.fetch_add(1, Relaxed);
    }
}

#[async_trait]
impl<K, V, T> Tier<K, V> for Watched<T>
where
    K: Send + Sync,
    V: Send + Sync,
    T: Tier<K, V>,
{
    async fn get(&self, key: &K) -> Result<Option<V>, TierError> {
        let result = self.seen(self.tier.get(key).await);
        if let Ok(value) = &result {
            self.found(value.is_some());
        }
        result
    }

    async fn set(&self, key: &K, value: &V, ttl: Duration) -> Result<(), TierError> {
        self.seen(self.tier.set(key, value, ttl).await)
    }

    async fn delete(&self, key: &K) -> Result<(), TierError> {
        self.seen(self.tier.delete(key).await)
    }

    async fn get_many(&self, keys: &[K]) -> Result<Vec<Option<V>>, TierError> {
        let result = self.seen(self.tier.get_many(keys).await);
        if let Ok(values) = &result {
            for value in values {
                self.found(value.is_some());
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scalekit_core::ManualClock;

    /// A tier that is down, or answers "absent".
    struct Switch(std::sync::atomic::AtomicBool);

    #[async_trait]
    impl Tier<u64, u64> for Switch {
        async fn get(&self, _: &u64) -> Result<Option<u64>, TierError> {
            if self.0.load(Relaxed) {
                Ok(None)
            } else {
                Err(TierError::Unavailable("connection refused".into()))
            }
        }
        async fn set(&self, _: &u64, _: &u64, _: Duration) -> Result<(), TierError> {
            Ok(())
        }
        async fn delete(&self, _: &u64) -> Result<(), TierError> {
            Ok(())
        }
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redacted("redis://:s3cret@cache:6379/0"),
            "redis://cache:6379/0"
        );
        assert_eq!(redacted("redis://u:p@h:1"), "redis://h:1");
        assert_eq!(redacted("redis://h:1/0?x=a@b"), "redis://h:1/0?x=a@b");
        assert_eq!(redacted("no scheme"), "no scheme");
    }

    /// Log output, kept for the test to read.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Log {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Log {
        fn lines(&self) -> Vec<String> {
            String::from_utf8_lossy(&self.0.lock())
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    #[tokio::test]
    async fn the_breaker_opens_on_failures_and_closes_on_answers() {
        let log = Log::default();
        let writer = log.clone();
        let _logging = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .finish(),
        );
        let clock = ManualClock::new();
        let options = TierOptions {
            clock: Arc::new(clock.clone()),
            ..TierOptions::default()
        };
        let remote = Remote::new("redis://:pw@127.0.0.1:1", &options).unwrap();
        let tier = remote.guard(Switch(false.into()));
        assert_eq!(remote.degraded(), None);
        for _ in 0..10 {
            assert!(matches!(tier.get(&1).await, Err(TierError::Unavailable(_))));
        }
        let cause = remote.degraded().unwrap_or_default();
        assert_eq!(
            cause,
            "cache tier redis://127.0.0.1:1 unreachable (circuit open): cache tier unavailable: connection refused"
        );
        assert!(matches!(tier.get(&1).await, Err(TierError::Rejected(_))));
        let s = remote.stats();
        assert_eq!((s.errors, s.skipped, s.misses, s.up), (10, 1, 0, false));
        // One line when it goes down, naming the cause; none per rejected call.
        let lines = log.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("WARN")
                && lines[0].contains("cache tier redis://127.0.0.1:1 unreachable (circuit open): cache tier unavailable: connection refused"),
            "{lines:?}"
        );

        tier.tier().tier.0.store(true, Relaxed);
        clock.advance(options.open_for);
        for _ in 0..3 {
            assert!(matches!(tier.get(&1).await, Ok(None)));
        }
        assert_eq!(remote.degraded(), None);
        let s = remote.stats();
        assert_eq!((s.errors, s.skipped, s.misses, s.up), (10, 1, 3, true));
        let lines = log.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[1].contains("INFO") && lines[1].contains("answers again (circuit closed)"),
            "{lines:?}"
        );
    }
}
