//! GCRA over Redis: one rate limit shared by many processes.

use std::fmt;
use std::time::Duration;

use scalekit_core::redis::RedisConnection;
use scalekit_core::{Clock, ConfigError, MonotonicClock};

use super::common::{
    check_timeout, open_connection, OnError, RedisLimitError, Remote, Settings, US,
};
use crate::gcra::{decide, state_at, AtomicQuota, Denied, RateLimitState};
use crate::quota::Quota;

const COMPONENT: &str = "redis rate limiter";

/// The script: the same sums as the local limiter, in microseconds (Lua numbers
/// are doubles: exact integers up to 2^53 us, 285 years), run atomically.
/// ARGV: interval, tau, n, now ('' = the server's TIME), extra TTL in ms.
/// Returns {admitted, tat, now}: the new TAT when admitted, the base otherwise.
const GCRA_LUA: &str = r"
local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local now
if ARGV[4] == '' then
  local tm = redis.call('TIME')
  now = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
else
  now = tonumber(ARGV[4])
end
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new = tat + n * t
if new - now > tau then
  return {0, tat, now}
end
local ttl = math.ceil((new - now) / 1000) + tonumber(ARGV[5])
if ttl < 1 then ttl = 1 end
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', string.format('%.0f', ttl))
return {1, new, now}
";

/// Builds a [`RedisRateLimiter`].
#[derive(Debug)]
pub struct RedisRateLimiterBuilder<C = MonotonicClock> {
    quota: Quota,
    settings: Settings<C>,
}

impl<C: Clock> RedisRateLimiterBuilder<C> {
    /// Key prefix (default `scalekit:limit:`): the Redis key is prefix + key.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.prefix = prefix.into();
        self
    }

    /// How long a check may wait for Redis (default 50 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// What to do when Redis fails or times out (default [`OnError::FailOpen`]).
    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.settings.on_error = on_error;
        self
    }

    /// Runs the limit on `clock` instead of Redis's `TIME` (tests with a
    /// [`ManualClock`](scalekit_core::ManualClock); or a fleet with
    /// well-synchronised clocks). Times are sent in whole microseconds.
    pub fn clock<C2: Clock>(self, clock: C2) -> RedisRateLimiterBuilder<C2> {
        RedisRateLimiterBuilder {
            quota: self.quota,
            settings: self.settings.with_clock(clock),
        }
    }

    /// Builds the limiter on an open connection: a redis-rs
    /// `MultiplexedConnection` or `ConnectionManager` to one server, a cluster
    /// connection, or a [`RedisConnection`] from a
    /// [`RedisTarget`](scalekit_core::redis::RedisTarget).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the timeout is zero or over a minute.
    pub fn build(
        self,
        conn: impl Into<RedisConnection>,
    ) -> Result<RedisRateLimiter<C>, ConfigError> {
        check_timeout(COMPONENT, self.settings.timeout)?;
        Ok(RedisRateLimiter {
            remote: self.settings.into_remote(conn.into(), GCRA_LUA),
            quota: AtomicQuota::new(self.quota),
        })
    }

    /// Connects to `url` and builds the limiter: one server's URL
    /// (`redis://127.0.0.1:6379`: a multiplexed connection shared by all
    /// checks), or a Redis Cluster's nodes, comma-separated
    /// (`redis://127.0.0.1:7000,redis://127.0.0.1:7001`: the cluster client,
    /// each check sent to its key's slot's master).
    ///
    /// # Errors
    ///
    /// [`RedisLimitError::Config`] for a setting that cannot work, else the
    /// connection's failure.
    pub async fn connect(self, url: &str) -> Result<RedisRateLimiter<C>, RedisLimitError> {
        check_timeout(COMPONENT, self.settings.timeout)?;
        let conn = open_connection(url, self.settings.timeout).await?;
        Ok(self.build(conn)?)
    }
}

/// GCRA shared through Redis: every process that checks the same key draws from
/// one bucket. One Lua script per check, run atomically with `EVALSHA` (loaded
/// again by itself after a Redis restart), with the same arithmetic as the
/// local [`RateLimiter`](crate::RateLimiter). Each key expires in Redis when its
/// bucket is full again, so idle keys cost nothing.
///
/// ```no_run
/// use scalekit_limit::{OnError, Quota, RedisRateLimiter};
/// use std::num::NonZeroU32;
/// use std::time::Duration;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RedisRateLimiter::builder(Quota::per_second(NonZeroU32::new(100).unwrap()))
///     .prefix("shop:login:")
///     .timeout(Duration::from_millis(20))
///     .on_error(OnError::FailClosed)
///     .connect("redis://127.0.0.1:6379")
///     .await?;
/// match limiter.check_key("user:42").await {
///     Ok(state) => println!("{} left", state.remaining()),
///     Err(denied) => println!("429, retry after {:?}", denied.retry_after()),
/// }
/// # Ok(()) }
/// ```
pub struct RedisRateLimiter<C = MonotonicClock> {
    remote: Remote<C>,
    quota: AtomicQuota,
}

impl<C: fmt::Debug> fmt::Debug for RedisRateLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("quota", &self.quota.load())
            .field("remote", &self.remote)
            .finish()
    }
}

impl RedisRateLimiter {
    /// A builder: prefix `scalekit:limit:`, 50 ms timeout, fail open, Redis time.
    pub fn builder(quota: Quota) -> RedisRateLimiterBuilder {
        RedisRateLimiterBuilder {
            quota,
            settings: Settings::new("scalekit:limit:"),
        }
    }
}

impl<C: Clock> RedisRateLimiter<C> {
    /// Takes one unit from `key`'s shared bucket; on a Redis failure, fails open
    /// or closed as configured.
    pub async fn check_key(&self, key: &str) -> Result<RateLimitState, Denied> {
        self.check_key_n(key, 1).await
    }

    /// Takes `n` units; on a Redis failure, fails open or closed as configured.
    pub async fn check_key_n(&self, key: &str, n: u32) -> Result<RateLimitState, Denied> {
        match self.try_check_key_n(key, n).await {
            Ok(decision) => decision,
            Err(_) => {
                let q = self.quota.load();
                self.remote.failed(
                    RateLimitState::from_parts(q.burst(), q.burst(), Duration::ZERO),
                    RateLimitState::from_parts(q.burst(), 0, Duration::ZERO),
                )
            }
        }
    }

    /// Takes `n` units, reporting a Redis failure as an error instead of applying
    /// the fail-open/closed choice.
    pub async fn try_check_key_n(
        &self,
        key: &str,
        n: u32,
    ) -> Result<Result<RateLimitState, Denied>, RedisLimitError> {
        let q = self.quota.load();
        let t_us = (q.interval_nanos() / US).max(1);
        let tau_us = t_us.saturating_mul(u64::from(q.burst()));
        let redis_key = self.remote.key(key, false);
        let reply = self
            .remote
            .call(redis_key, [t_us, tau_us, u64::from(n)], US)
            .await?;
        let [admitted, tat, now] = reply[..] else {
            return Err(RedisLimitError::BadReply);
        };
        let (tat, now) = (tat.max(0) as u64 * US, now.max(0) as u64 * US);
        // Rebuild the decision locally from Redis's numbers, with the quota in
        // microseconds exactly as the script saw it.
        let q_us = Quota::from_parts(t_us * US, q.burst());
        if admitted == 1 {
            Ok(Ok(state_at(&q_us, now, tat)))
        } else {
            Ok(decide(&q_us, tat, now, n).map(|(_, s)| s))
        }
    }

    /// Checks that Redis answers and that the script is loaded.
    pub async fn ping(&self) -> Result<(), RedisLimitError> {
        self.remote.ping().await
    }

    /// Changes the quota for this process's checks from the next one on (every
    /// process sharing the keys should use the same quota).
    pub fn set_quota(&self, quota: Quota) {
        self.quota.store(quota);
    }

    /// Checks that failed to reach Redis since the limiter was built.
    pub fn errors(&self) -> u64 {
        self.remote.errors()
    }
}
