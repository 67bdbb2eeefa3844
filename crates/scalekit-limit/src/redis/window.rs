//! The sliding window over Redis: one window per key shared by many processes.

use std::fmt;
use std::time::Duration;

use scalekit_core::redis::RedisConnection;
use scalekit_core::{Clock, ConfigError, MonotonicClock};

use super::common::{check_timeout, open_connection, OnError, RedisLimitError, Remote, Settings};
use crate::gcra::{Denied, RateLimitState};
use crate::window::{check_limit, check_window, decide};

const COMPONENT: &str = "redis sliding window";

/// Milliseconds in a nanosecond count.
const MS: u64 = 1_000_000;

/// The script: Cloudflare's estimate over two counters, one Redis key per fixed
/// window (`KEYS[1]` + `:` + the window's number), each expiring once it can no
/// longer count (two windows after it starts), run atomically. Times are whole
/// milliseconds; the comparison is made in exact integers (the builder keeps
/// `limit * window` under 2^53, where Lua's doubles are exact):
/// `ceil(previous * (w - elapsed) / w) + current + n <= limit` iff
/// `previous * (w - elapsed) <= (limit - current - n) * w`.
/// ARGV: limit, window (ms), n, now ('' = the server's TIME), extra TTL (ms).
/// Returns {admitted, previous, current (before this request), now}.
const WINDOW_LUA: &str = r"
local limit = tonumber(ARGV[1])
local w = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local now
if ARGV[4] == '' then
  local tm = redis.call('TIME')
  now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
else
  now = tonumber(ARGV[4])
end
local idx = math.floor(now / w)
local elapsed = now - idx * w
local ck = KEYS[1] .. ':' .. string.format('%.0f', idx)
local pk = KEYS[1] .. ':' .. string.format('%.0f', idx - 1)
local cur = tonumber(redis.call('GET', ck)) or 0
local prev = tonumber(redis.call('GET', pk)) or 0
local room = limit - cur - n
if n <= limit and room >= 0 and prev * (w - elapsed) <= room * w then
  redis.call('INCRBY', ck, n)
  redis.call('PEXPIRE', ck, 2 * w + tonumber(ARGV[5]))
  return {1, prev, cur, now}
end
return {0, prev, cur, now}
";

/// Builds a [`RedisSlidingWindow`].
#[derive(Debug)]
pub struct RedisSlidingWindowBuilder<C = MonotonicClock> {
    limit: u32,
    window: Duration,
    settings: Settings<C>,
}

impl<C: Clock> RedisSlidingWindowBuilder<C> {
    /// Key prefix (default `scalekit:window:`): the counters of key `k` are
    /// `{<prefix>k}:<window number>`; the braces make every window of a key hash
    /// to one Redis Cluster slot.
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

    /// Runs the windows on `clock` instead of Redis's `TIME` (tests with a
    /// [`ManualClock`](scalekit_core::ManualClock); or a fleet with
    /// well-synchronised clocks). Times are sent in whole milliseconds.
    pub fn clock<C2: Clock>(self, clock: C2) -> RedisSlidingWindowBuilder<C2> {
        RedisSlidingWindowBuilder {
            limit: self.limit,
            window: self.window,
            settings: self.settings.with_clock(clock),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_limit(COMPONENT, self.limit, u32::MAX)?;
        check_window(COMPONENT, self.window)?;
        check_timeout(COMPONENT, self.settings.timeout)?;
        let ms = self.window.as_millis();
        if self.window.as_nanos() % u128::from(MS) != 0 {
            return Err(ConfigError::new(
                COMPONENT,
                "window",
                format!("{:?}", self.window),
                "whole milliseconds (Redis counts in milliseconds)",
            ));
        }
        if u128::from(self.limit) * ms > 1 << 53 {
            return Err(ConfigError::new(
                COMPONENT,
                "limit",
                self.limit,
                format!(
                    "at most {} for a {:?} window (limit times window in ms must stay under 2^53 for Lua's exact arithmetic)",
                    (1u128 << 53) / ms.max(1),
                    self.window
                ),
            ));
        }
        Ok(())
    }

    /// Builds the limiter on an open connection: a redis-rs
    /// `MultiplexedConnection` or `ConnectionManager` to one server, a cluster
    /// connection, or a [`RedisConnection`] from a
    /// [`RedisTarget`](scalekit_core::redis::RedisTarget).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `limit`, `window` (whole milliseconds, 1 ms to
    /// a year) or `timeout` when it cannot work.
    pub fn build(
        self,
        conn: impl Into<RedisConnection>,
    ) -> Result<RedisSlidingWindow<C>, ConfigError> {
        self.validate()?;
        Ok(RedisSlidingWindow {
            limit: u64::from(self.limit),
            window_ms: self.window.as_millis() as u64,
            remote: self.settings.into_remote(conn.into(), WINDOW_LUA),
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
    pub async fn connect(self, url: &str) -> Result<RedisSlidingWindow<C>, RedisLimitError> {
        self.validate()?;
        let conn = open_connection(url, self.settings.timeout).await?;
        Ok(self.build(conn)?)
    }
}

/// Cloudflare's sliding window shared through Redis: every process that checks
/// the same key counts against one pair of window counters. One Lua script per
/// check, run atomically with `EVALSHA` (loaded again by itself after a Redis
/// restart), deciding exactly as the local
/// [`KeyedSlidingWindow`](crate::KeyedSlidingWindow) does. Each fixed window
/// is its own Redis key, expiring two windows after it starts, so idle keys
/// cost nothing.
///
/// ```no_run
/// use scalekit_limit::{OnError, RedisSlidingWindow};
/// use std::time::Duration;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RedisSlidingWindow::builder(100, Duration::from_secs(60))
///     .prefix("shop:search:")
///     .on_error(OnError::FailOpen)
///     .connect("redis://127.0.0.1:6379")
///     .await?;
/// match limiter.check_key("user:42").await {
///     Ok(state) => println!("{} left this minute", state.remaining()),
///     Err(denied) => println!("429, retry after {:?}", denied.retry_after()),
/// }
/// # Ok(()) }
/// ```
pub struct RedisSlidingWindow<C = MonotonicClock> {
    remote: Remote<C>,
    limit: u64,
    window_ms: u64,
}

impl<C: fmt::Debug> fmt::Debug for RedisSlidingWindow<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSlidingWindow")
            .field("limit", &self.limit)
            .field("window", &Duration::from_millis(self.window_ms))
            .field("remote", &self.remote)
            .finish()
    }
}

impl RedisSlidingWindow {
    /// A builder: `limit` requests per `window` for every key; prefix
    /// `scalekit:window:`, 50 ms timeout, fail open, Redis time.
    pub fn builder(limit: u32, window: Duration) -> RedisSlidingWindowBuilder {
        RedisSlidingWindowBuilder {
            limit,
            window,
            settings: Settings::new("scalekit:window:"),
        }
    }
}

impl<C: Clock> RedisSlidingWindow<C> {
    /// Counts one request for `key` if its shared estimate allows it; on a
    /// Redis failure, fails open or closed as configured.
    pub async fn check_key(&self, key: &str) -> Result<RateLimitState, Denied> {
        self.check_key_n(key, 1).await
    }

    /// Counts `n` requests; on a Redis failure, fails open or closed as
    /// configured.
    pub async fn check_key_n(&self, key: &str, n: u32) -> Result<RateLimitState, Denied> {
        match self.try_check_key_n(key, n).await {
            Ok(decision) => decision,
            Err(_) => {
                let w = Duration::from_millis(self.window_ms);
                self.remote.failed(
                    RateLimitState::new_window(self.limit, 0, w),
                    RateLimitState::new_window(self.limit, self.limit, w),
                )
            }
        }
    }

    /// Counts `n` requests, reporting a Redis failure as an error instead of
    /// applying the fail-open/closed choice.
    pub async fn try_check_key_n(
        &self,
        key: &str,
        n: u32,
    ) -> Result<Result<RateLimitState, Denied>, RedisLimitError> {
        // Braces: every window of a key hashes to one Redis Cluster slot.
        let base = self.remote.key(key, true);
        let reply = self
            .remote
            .call(base, [self.limit, self.window_ms, u64::from(n)], MS)
            .await?;
        let [admitted, previous, current, now] = reply[..] else {
            return Err(RedisLimitError::BadReply);
        };
        let (previous, current, now) = (
            previous.max(0) as u64,
            current.max(0) as u64,
            now.max(0) as u64,
        );
        // Rebuild the decision locally from Redis's numbers, in nanoseconds of
        // whole milliseconds: the same sums as the script's.
        let w = self.window_ms * MS;
        let elapsed = (now % self.window_ms) * MS;
        let decision = decide(self.limit, w, previous, current, elapsed, u64::from(n));
        Ok(match (admitted, decision) {
            (1, Err(d)) => Ok(d.state()),
            (1, ok) => ok,
            (_, Err(d)) => Err(d),
            // The script refused what the sums admit: only a reply from another
            // script could do that.
            (_, Ok(_)) => return Err(RedisLimitError::BadReply),
        })
    }

    /// Checks that Redis answers and that the script is loaded.
    pub async fn ping(&self) -> Result<(), RedisLimitError> {
        self.remote.ping().await
    }

    /// Checks that failed to reach Redis since the limiter was built.
    pub fn errors(&self) -> u64 {
        self.remote.errors()
    }
}
