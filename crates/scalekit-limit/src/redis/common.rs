//! What both Redis limits share: what to do when Redis fails, the error, whose
//! clock counts, and the call with its timeout.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use scalekit_core::ConfigError;

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

/// Opens a multiplexed connection to `url`, waiting at most `timeout` (at
/// least a second).
pub(crate) async fn open_connection(
    url: &str,
    timeout: Duration,
) -> Result<MultiplexedConnection, RedisLimitError> {
    let client = redis::Client::open(url)?;
    tokio::time::timeout(
        timeout.max(Duration::from_secs(1)),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| RedisLimitError::Timeout(timeout))?
    .map_err(RedisLimitError::from)
}

/// Runs `invocation` (loading the script again on `NOSCRIPT`), waiting at most
/// `timeout`, and reads the reply as integers.
pub(crate) async fn run(
    conn: &MultiplexedConnection,
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
pub(crate) async fn ping(
    conn: &MultiplexedConnection,
    script: &redis::Script,
    timeout: Duration,
) -> Result<(), RedisLimitError> {
    let mut conn = conn.clone();
    tokio::time::timeout(timeout, script.load_async(&mut conn))
        .await
        .map_err(|_| RedisLimitError::Timeout(timeout))??;
    Ok(())
}
