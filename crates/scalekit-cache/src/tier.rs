//! The remote tier: what a [`TieredCache`](crate::TieredCache) asks of its L2.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use scalekit_core::ConfigError;

/// A remote cache tier (an L2) behind a [`TieredCache`](crate::TieredCache).
///
/// A tier stores encoded values under keys, each with a time-to-live. It is a
/// cache, not a store of record: a tier may lose an entry at any time, and a
/// `TieredCache` treats every error from it as a miss. The crate ships
/// `RedisTier` (feature `redis`); tests and other backends implement the
/// trait themselves.
///
/// The trait is object safe (through `async-trait`) so a `TieredCache` can hold
/// any tier as `Arc<dyn Tier<K, V>>`.
///
/// ```
/// use std::collections::HashMap;
/// use std::time::Duration;
/// use parking_lot::Mutex;
/// use scalekit_cache::{Tier, TierError};
///
/// /// A tier in memory, without expiry: enough for a test.
/// #[derive(Default)]
/// struct MemoryTier(Mutex<HashMap<u64, String>>);
///
/// #[async_trait::async_trait]
/// impl Tier<u64, String> for MemoryTier {
///     async fn get(&self, key: &u64) -> Result<Option<String>, TierError> {
///         Ok(self.0.lock().get(key).cloned())
///     }
///     async fn set(&self, key: &u64, value: &String, _ttl: Duration) -> Result<(), TierError> {
///         self.0.lock().insert(*key, value.clone());
///         Ok(())
///     }
///     async fn delete(&self, key: &u64) -> Result<(), TierError> {
///         self.0.lock().remove(key);
///         Ok(())
///     }
/// }
///
/// # tokio_test::block_on(async {
/// let tier = MemoryTier::default();
/// tier.set(&1, &"one".to_string(), Duration::from_secs(60)).await?;
/// assert_eq!(tier.get_many(&[1, 2]).await?, vec![Some("one".to_string()), None]);
/// # Ok::<(), TierError>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait Tier<K, V>: Send + Sync
where
    K: Send + Sync,
    V: Send + Sync,
{
    /// The value stored for `key`, or `None` if the tier has none.
    async fn get(&self, key: &K) -> Result<Option<V>, TierError>;

    /// Stores `value` for `key`, to expire after `ttl`.
    async fn set(&self, key: &K, value: &V, ttl: Duration) -> Result<(), TierError>;

    /// Removes `key`; removing an absent key is not an error.
    async fn delete(&self, key: &K) -> Result<(), TierError>;

    /// The values for `keys`, in the same order (`None` where absent).
    ///
    /// The default asks for each key in turn; a remote tier should override it
    /// with one round trip (Redis: `MGET`).
    async fn get_many(&self, keys: &[K]) -> Result<Vec<Option<V>>, TierError> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            values.push(self.get(key).await?);
        }
        Ok(values)
    }
}

type BoxError = Box<dyn StdError + Send + Sync>;

/// Why a call to a [`Tier`] failed.
///
/// A [`TieredCache`](crate::TieredCache) never fails a read for one of these:
/// it counts the error in its [stats](crate::TieredStats) and falls back to the
/// loader. Writes report them, since the remote copy was not updated.
#[derive(Debug)]
#[non_exhaustive]
pub enum TierError {
    /// The call did not finish within its time limit.
    Timeout {
        /// The operation, for the log (`"get"`, `"set"`, ...).
        operation: &'static str,
        /// The limit that passed.
        after: Duration,
    },
    /// The tier could not be reached (connection refused, dropped, reset).
    Unavailable(BoxError),
    /// A value could not be encoded, or a stored value could not be decoded
    /// (for example, written by another version of the program).
    Codec(BoxError),
    /// The tier answered with an error.
    Backend(BoxError),
    /// An admission policy (a circuit breaker, see
    /// [`GuardedTier`](crate::GuardedTier)) refused the call; the tier was not
    /// asked.
    Rejected(scalekit_core::Rejected),
    /// A setting of the tier, or of a cache built on it, cannot work (from a
    /// builder's `build`; never from a call).
    Config(ConfigError),
}

impl From<ConfigError> for TierError {
    fn from(error: ConfigError) -> Self {
        Self::Config(error)
    }
}

impl TierError {
    /// Whether the error says the tier is slow or unreachable (rather than a
    /// bad value or a refused command).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. } | Self::Unavailable(_) | Self::Rejected(_)
        )
    }
}

impl fmt::Display for TierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout { operation, after } => {
                write!(f, "cache tier: {operation} timed out after {after:?}")
            }
            Self::Unavailable(e) => write!(f, "cache tier unavailable: {e}"),
            Self::Codec(e) => write!(f, "cache tier: value encoding failed: {e}"),
            Self::Backend(e) => write!(f, "cache tier: the backend refused the call: {e}"),
            Self::Rejected(r) => write!(f, "cache tier not asked: {r}"),
            Self::Config(e) => write!(f, "cache tier: {e}"),
        }
    }
}

impl StdError for TierError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Timeout { .. } => None,
            Self::Unavailable(e) | Self::Codec(e) | Self::Backend(e) => Some(&**e),
            Self::Rejected(r) => Some(r),
            Self::Config(e) => Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_source() {
        let e = TierError::Timeout {
            operation: "get",
            after: Duration::from_millis(50),
        };
        assert_eq!(e.to_string(), "cache tier: get timed out after 50ms");
        assert!(e.source().is_none());
        assert!(e.is_unavailable());
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = TierError::Unavailable(Box::new(io));
        assert_eq!(e.to_string(), "cache tier unavailable: refused");
        assert_eq!(
            e.source().map(|s| s.to_string()).as_deref(),
            Some("refused")
        );
        let r = scalekit_core::Rejected::new(scalekit_core::RejectReason::CircuitOpen);
        let e = TierError::Rejected(r);
        assert_eq!(
            e.to_string(),
            "cache tier not asked: call rejected: circuit breaker is open"
        );
        assert!(e.is_unavailable() && e.source().is_some());
        let e = TierError::Codec("bad byte".into());
        assert!(!e.is_unavailable());
        assert!(e.source().is_some());
        let e = TierError::from(ConfigError::new(
            "redis tier",
            "timeout",
            "0ns",
            "a time limit above zero",
        ));
        assert_eq!(
            e.to_string(),
            "cache tier: invalid redis tier setting `timeout` = 0ns: expected a time limit above zero"
        );
        assert!(!e.is_unavailable() && e.source().is_some());
    }
}
