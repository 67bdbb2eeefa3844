//! What both Redis limits share: what to do when Redis fails, the error, whose
//! clock counts, the builders' common settings, and [`Remote`]: the connection,
//! the script and the call with its timeout.

use std::error::Error;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use scalekit_core::redis::{RedisConnection, RedisOptions, RedisTarget};
use scalekit_core::{Clock, ConfigError, MonotonicClock};

use crate::gcra::{Denied, DenyKind, RateLimitState};

/// What to do when Redis does not answer in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Admit the request (availability over strictness): the state returned is a
    /// guess (a full bucket).
    FailOpen,
    /// Deny the request with [`DenyKind::Unavailable`](crate::DenyKind::Unavailable).
    FailClosed,
}

/// Why a Redis check did not get an answer.
#[derive(Debug)]
#[non_exhaustive]
pub enum RedisLimitError {
    /// No answer within the limiter's timeout.
    Timeout(Duration),
    /// Redis or the connection failed.
    Redis(redis::RedisError),
    /// Redis answered something the script never returns.
    BadReply,
    /// A setting of the limiter cannot work (from `connect`).
    Config(ConfigError),
}

impl fmt::Display for RedisLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisLimitError::Timeout(d) => write!(f, "redis rate limit: no answer within {d:?}"),
            RedisLimitError::Redis(_) => f.write_str("redis rate limit: redis call failed"),
            RedisLimitError::Config(e) => fmt::Display::fmt(e, f),
            RedisLimitError::BadReply => {
                f.write_str("redis rate limit: unexpected reply from the limit's script")
            }
        }
    }
}

impl Error for RedisLimitError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            RedisLimitError::Redis(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigError> for RedisLimitError {
    fn from(e: ConfigError) -> Self {
        RedisLimitError::Config(e)
    }
}

impl From<redis::RedisError> for RedisLimitError {
    fn from(e: redis::RedisError) -> Self {
        RedisLimitError::Redis(e)
    }
}

/// Whose clock the limit runs on.
#[derive(Clone, Debug)]
pub(crate) enum TimeSource<C> {
    /// Redis's `TIME`: one clock for every process (the default).
    Server,
    /// The caller's clock (tests drive it by hand; every process must agree).
    Client(C),
}

/// Microseconds in a nanosecond count.
pub(crate) const US: u64 = 1_000;

/// Refuses a timeout of zero (every check would fail) or over a minute.
pub(crate) fn check_timeout(component: &'static str, timeout: Duration) -> Result<(), ConfigError> {
    if timeout.is_zero() || timeout > Duration::from_secs(60) {
        return Err(ConfigError::new(
            component,
            "timeout",
            format!("{timeout:?}"),
            "more than zero and at most a minute (50 ms by default)",
        ));
    }
    Ok(())
}

/// Opens a connection to `target` (one server's URL, or a cluster's nodes,
/// comma-separated: see [`RedisTarget`]'s `FromStr`), waiting at most
/// `timeout` (at least a second).
pub(crate) async fn open_connection(
    target: &str,
    timeout: Duration,
) -> Result<RedisConnection, RedisLimitError> {
    let target: RedisTarget = target.parse()?;
    let limit = timeout.max(Duration::from_secs(1));
    tokio::time::timeout(limit * 2, target.connect(&RedisOptions::new(limit)))
        .await
        .map_err(|_| RedisLimitError::Timeout(timeout))?
        .map_err(RedisLimitError::from)
}

/// Runs `invocation` (loading the script again on `NOSCRIPT`), waiting at most
/// `timeout`, and reads the reply as integers.
async fn run(
    conn: &RedisConnection,
    invocation: &redis::ScriptInvocation<'_>,
    timeout: Duration,
) -> Result<Vec<i64>, RedisLimitError> {
    let mut conn = conn.clone();
    tokio::time::timeout(timeout, invocation.invoke_async(&mut conn))
        .await
        .map_err(|_| RedisLimitError::Timeout(timeout))?
        .map_err(RedisLimitError::from)
}

/// Checks that Redis answers and that `script` is loaded.
async fn ping(
    conn: &RedisConnection,
    script: &redis::Script,
    timeout: Duration,
) -> Result<(), RedisLimitError> {
    let mut conn = conn.clone();
    tokio::time::timeout(timeout, script.load_async(&mut conn))
        .await
        .map_err(|_| RedisLimitError::Timeout(timeout))??;
    Ok(())
}

/// The settings both builders share: the key prefix, the timeout, what to do
/// when Redis fails, and whose clock counts.
#[derive(Debug)]
pub(crate) struct Settings<C> {
    pub(crate) prefix: String,
    pub(crate) timeout: Duration,
    pub(crate) on_error: OnError,
    pub(crate) time: TimeSource<C>,
}

impl Settings<MonotonicClock> {
    /// The defaults: `prefix`, 50 ms, fail open, Redis's time.
    pub(crate) fn new(prefix: &str) -> Self {
        Settings {
            prefix: prefix.to_owned(),
            timeout: Duration::from_millis(50),
            on_error: OnError::FailOpen,
            time: TimeSource::Server,
        }
    }
}

impl<C> Settings<C> {
    /// The same settings on the caller's `clock`.
    pub(crate) fn with_clock<C2>(self, clock: C2) -> Settings<C2> {
        Settings {
            prefix: self.prefix,
            timeout: self.timeout,
            on_error: self.on_error,
            time: TimeSource::Client(clock),
        }
    }

    /// The limit's link to Redis: `conn` and the script `lua`.
    pub(crate) fn into_remote(self, conn: RedisConnection, lua: &str) -> Remote<C> {
        Remote {
            conn,
            script: redis::Script::new(lua),
            prefix: self.prefix,
            timeout: self.timeout,
            on_error: self.on_error,
            time: self.time,
            errors: AtomicU64::new(0),
        }
    }
}

/// A Redis limit's link to Redis: the connection, its script, and how a call
/// goes (the prefix, the timeout, whose clock, what a failure means).
pub(crate) struct Remote<C> {
    conn: RedisConnection,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
    on_error: OnError,
    time: TimeSource<C>,
    errors: AtomicU64,
}

impl<C: fmt::Debug> fmt::Debug for Remote<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("on_error", &self.on_error)
            .field("time", &self.time)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> Remote<C> {
    /// The Redis key for `key`, `{prefix}key` when `hash_tag` (so that keys
    /// derived from it share one Redis Cluster slot), else `prefixkey`.
    pub(crate) fn key(&self, key: &str, hash_tag: bool) -> String {
        if hash_tag {
            format!("{{{}{}}}", self.prefix, key)
        } else {
            format!("{}{}", self.prefix, key)
        }
    }

    /// Runs the script on `redis_key` with `args`, then the time (in units of
    /// `unit` nanoseconds; empty for Redis's `TIME`) and the keys' extra life in
    /// ms: with a client clock, which need not follow Redis's, keys live an hour
    /// longer, so that Redis never forgets what the client still counts.
    pub(crate) async fn call(
        &self,
        redis_key: String,
        args: [u64; 3],
        unit: u64,
    ) -> Result<Vec<i64>, RedisLimitError> {
        let (now_arg, slack_ms) = match &self.time {
            TimeSource::Server => (String::new(), 0u64),
            TimeSource::Client(c) => ((c.now_nanos() / unit).to_string(), 3_600_000),
        };
        let mut invocation = self.script.key(redis_key);
        for arg in args {
            invocation.arg(arg);
        }
        invocation.arg(now_arg).arg(slack_ms);
        run(&self.conn, &invocation, self.timeout).await
    }

    /// The answer when Redis failed: counts the failure, then `open` (a guess)
    /// when failing open, else a denial of kind `Unavailable` with `closed`.
    pub(crate) fn failed(
        &self,
        open: RateLimitState,
        closed: RateLimitState,
    ) -> Result<RateLimitState, Denied> {
        self.errors.fetch_add(1, Ordering::Relaxed);
        match self.on_error {
            OnError::FailOpen => Ok(open),
            OnError::FailClosed => Err(Denied::new(DenyKind::Unavailable, None, closed)),
        }
    }

    /// Checks that Redis answers and that the script is loaded.
    pub(crate) async fn ping(&self) -> Result<(), RedisLimitError> {
        ping(&self.conn, &self.script, self.timeout).await
    }

    /// Calls that failed to reach Redis.
    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}
