//! A [`Tier`] over Redis (feature `redis`).

use std::fmt::{self, Display};
use std::marker::PhantomData;
use std::time::Duration;

use async_trait::async_trait;
use scalekit_core::redis::{RedisConnection, RedisOptions, RedisTarget};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::tier::{Tier, TierError};

/// Keys per `MGET` in [`RedisTier::get_many`]'s pipeline: long enough to save
/// round trips, short enough not to hold the server on one command.
const MGET_CHUNK: usize = 128;

/// A [`Tier`] stored in Redis.
///
/// - **One server or a Redis Cluster**, by its [`RedisTarget`]
///   (`"redis://host:6379"`, or a comma-separated list of a cluster's nodes):
///   the code using the tier is the same. On a server, one multiplexed
///   connection ([`redis::aio::ConnectionManager`]) that every call from every
///   task shares, pipelined on the wire, reconnecting by itself (with backoff)
///   after the connection drops or Redis restarts. On a cluster, redis-rs's
///   cluster client: one multiplexed connection per node, each command sent to
///   its key's slot's master, `MOVED`/`ASK` followed and the slot map refreshed
///   after a failover or a migration. Either connects lazily: a tier built while
///   Redis is down works once Redis is up.
/// - **A time limit on every call** ([`timeout`](RedisTierBuilder::timeout),
///   default 100 ms): a slow or unreachable Redis gives
///   [`TierError::Timeout`], never a hung read.
/// - **Multi-get** is `MGET`s of up to 128 keys. On a server they go as one
///   pipeline: one round trip. On a cluster the client splits each `MGET` by
///   slot (a cluster refuses a command whose keys span slots) and sends the
///   parts to their nodes at once, pipelined on each node's connection: one
///   round trip per node, in parallel. Keys are not hash-tagged, so a batch
///   spreads over the cluster like the rest of the data; a namespace that
///   wants its keys on one shard can be given in braces (`{users}` makes every
///   key `{users}:v1:...`, one slot), at the price of that shard holding them
///   all.
/// - **Keys** are `{namespace}:v{version}:{key}`, the key written with its
///   [`Display`]: readable in `redis-cli`, and the same in every process and
///   program version as long as `Display` is. `Display` must tell keys apart
///   (two keys that print the same share an entry). Bump the
///   [`version`](RedisTierBuilder::version) when the value type or the key's
///   `Display` changes: old entries are then simply not found, and expire.
/// - **Values** are encoded with [postcard](https://docs.rs/postcard): a
///   compact, serde-native binary format (varints, no field names) with a
///   documented wire format that is stable since 1.0, and maintained. JSON
///   would be several times larger and slower; bincode's development has
///   stopped. A value that fails to decode (written by another version
///   without a version bump) is a [`TierError::Codec`], so a tiered cache
///   reloads it.
///
/// ```no_run
/// # async fn run() -> Result<(), scalekit_cache::TierError> {
/// use std::time::Duration;
/// use scalekit_cache::{RedisTier, Tier};
///
/// // Or "redis://127.0.0.1:7000,redis://127.0.0.1:7001" for a Redis Cluster.
/// let target = "redis://127.0.0.1:6379".parse().expect("a valid URL");
/// let tier: RedisTier<u64, String> = RedisTier::builder(target, "users")
///     .version(3)
///     .timeout(Duration::from_millis(50))
///     .build()
///     .await?;
/// // Stored under "users:v3:42", expiring after ten minutes.
/// tier.set(&42, &"ada".to_string(), Duration::from_secs(600)).await?;
/// assert_eq!(tier.get(&42).await?, Some("ada".to_string()));
/// # Ok(()) }
/// ```
pub struct RedisTier<K, V> {
    pub(crate) conn: RedisConnection,
    pub(crate) target: RedisTarget,
    pub(crate) namespace: String,
    prefix: String,
    pub(crate) timeout: Duration,
    pub(crate) runtime: tokio::runtime::Handle,
    _types: PhantomData<fn(K) -> V>,
}

impl<K, V> Clone for RedisTier<K, V> {
    fn clone(&self) -> Self {
        Self {
            conn: self.conn.clone(),
            target: self.target.clone(),
            namespace: self.namespace.clone(),
            prefix: self.prefix.clone(),
            timeout: self.timeout,
            runtime: self.runtime.clone(),
            _types: PhantomData,
        }
    }
}

impl<K, V> fmt::Debug for RedisTier<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTier")
            .field("target", &self.target)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Options of a [`RedisTier`]; from [`RedisTier::builder`].
#[derive(Debug)]
pub struct RedisTierBuilder<K, V> {
    target: RedisTarget,
    namespace: String,
    version: u32,
    timeout: Duration,
    _types: PhantomData<fn(K) -> V>,
}

impl<K, V> RedisTier<K, V> {
    /// A builder for a tier on `target` (one server or a cluster), with its
    /// keys under `namespace`.
    pub fn builder(target: RedisTarget, namespace: impl Into<String>) -> RedisTierBuilder<K, V> {
        RedisTierBuilder {
            target,
            namespace: namespace.into(),
            version: 1,
            timeout: Duration::from_millis(100),
            _types: PhantomData,
        }
    }

    /// The prefix of every key of this tier: `{namespace}:v{version}:`.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// Where the tier's data lives.
    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// The server's id of the tier's current connection (`CLIENT ID`): to find
    /// it in `CLIENT LIST`, or to close it with `CLIENT KILL ID` in a drill (on
    /// a cluster, the id on whichever node answers).
    pub async fn connection_id(&self) -> Result<i64, TierError> {
        let cmd = redis::cmd("CLIENT").arg("ID").clone();
        self.bounded("client id", |mut conn| {
            let cmd = cmd.clone();
            async move { cmd.query_async(&mut conn).await }
        })
        .await
    }

    /// The Redis key for `key`.
    pub fn redis_key(&self, key: &K) -> String
    where
        K: Display,
    {
        format!("{}{key}", self.prefix)
    }

    /// Runs `call` within the time limit. A call that finds the connection
    /// dropped (the first one after Redis restarted, or after `CLIENT KILL`)
    /// is tried once more on the new connection, within the same limit: every
    /// command the tier sends is idempotent.
    async fn bounded<T, F, Fut>(&self, operation: &'static str, mut call: F) -> Result<T, TierError>
    where
        F: FnMut(RedisConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let attempts = async {
            match call(self.conn.clone()).await {
                Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                    call(self.conn.clone()).await
                }
                result => result,
            }
        };
        match tokio::time::timeout(self.timeout, attempts).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(redis_error(operation, self.timeout, e)),
            Err(_) => Err(TierError::Timeout {
                operation,
                after: self.timeout,
            }),
        }
    }
}

/// Sorts a Redis error into a [`TierError`].
pub(crate) fn redis_error(
    operation: &'static str,
    after: Duration,
    e: redis::RedisError,
) -> TierError {
    if e.is_timeout() {
        TierError::Timeout { operation, after }
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        TierError::Unavailable(Box::new(e))
    } else {
        TierError::Backend(Box::new(e))
    }
}

impl<K, V> RedisTierBuilder<K, V> {
    /// The version in every key (default 1). Bump it when the value type or
    /// the key format changes.
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// The time limit on each call (default 100 ms), including the wait for a
    /// connection while reconnecting.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Builds the tier. It connects lazily, so this succeeds while Redis is
    /// down; it fails only outside a Tokio runtime, or for a bad
    /// configuration: a [`timeout`](Self::timeout) of zero is refused with
    /// [`TierError::Config`].
    pub async fn build(self) -> Result<RedisTier<K, V>, TierError> {
        if self.timeout.is_zero() {
            return Err(TierError::Config(scalekit_core::ConfigError::new(
                "redis tier",
                "timeout",
                format_args!("{:?}", self.timeout),
                "a time limit above zero (the default is 100 ms)",
            )));
        }
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|e| TierError::Backend(Box::new(e)))?;
        let conn = self
            .target
            .connect_lazy(&RedisOptions::new(self.timeout).retries(2))
            .map_err(|e| TierError::Backend(Box::new(e)))?;
        Ok(RedisTier {
            conn,
            target: self.target,
            prefix: format!("{}:v{}:", self.namespace, self.version),
            namespace: self.namespace,
            timeout: self.timeout,
            runtime,
            _types: PhantomData,
        })
    }
}

async fn query<T: redis::FromRedisValue>(
    cmd: &redis::Cmd,
    mut conn: RedisConnection,
) -> redis::RedisResult<T> {
    cmd.query_async(&mut conn).await
}

fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Result<V, TierError> {
    postcard::from_bytes(bytes).map_err(|e| TierError::Codec(Box::new(e)))
}

#[async_trait]
impl<K, V> Tier<K, V> for RedisTier<K, V>
where
    K: Display + Send + Sync,
    V: Serialize + DeserializeOwned + Send + Sync,
{
    async fn get(&self, key: &K) -> Result<Option<V>, TierError> {
        let cmd = redis::cmd("GET").arg(self.redis_key(key)).clone();
        let bytes: Option<Vec<u8>> = self.bounded("get", |c| query(&cmd, c)).await?;
        bytes.map(|b| decode(&b)).transpose()
    }

    async fn set(&self, key: &K, value: &V, ttl: Duration) -> Result<(), TierError> {
        let bytes = postcard::to_allocvec(value).map_err(|e| TierError::Codec(Box::new(e)))?;
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let cmd = redis::cmd("SET")
            .arg(self.redis_key(key))
            .arg(bytes)
            .arg("PX")
            .arg(millis)
            .clone();
        self.bounded("set", |c| query::<()>(&cmd, c)).await
    }

    async fn delete(&self, key: &K) -> Result<(), TierError> {
        let cmd = redis::cmd("DEL").arg(self.redis_key(key)).clone();
        self.bounded("delete", |c| query::<()>(&cmd, c)).await
    }

    async fn get_many(&self, keys: &[K]) -> Result<Vec<Option<V>>, TierError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mgets: Vec<redis::Cmd> = keys
            .chunks(MGET_CHUNK)
            .map(|chunk| {
                let names: Vec<String> = chunk.iter().map(|k| self.redis_key(k)).collect();
                redis::cmd("MGET").arg(names).clone()
            })
            .collect();
        let chunks: Vec<Vec<Option<Vec<u8>>>> = if self.conn.is_cluster() {
            // A pipeline must keep to one slot on a cluster: send the MGETs
            // side by side instead; the client splits each by slot.
            self.bounded("get_many", |conn| {
                let mgets = mgets.clone();
                async move {
                    futures_util::future::try_join_all(mgets.iter().map(|cmd| {
                        let mut conn = conn.clone();
                        async move { cmd.query_async(&mut conn).await }
                    }))
                    .await
                }
            })
            .await?
        } else {
            let mut pipe = redis::pipe();
            for cmd in &mgets {
                pipe.add_command(cmd.clone());
            }
            self.bounded("get_many", |mut conn| {
                let pipe = pipe.clone();
                async move { pipe.query_async(&mut conn).await }
            })
            .await?
        };
        // A value that does not decode reads as absent here (rather than
        // failing the whole batch); the next load overwrites it.
        let values: Vec<Option<V>> = chunks
            .into_iter()
            .flatten()
            .map(|bytes| bytes.and_then(|b| decode(&b).ok()))
            .collect();
        if values.len() != keys.len() {
            return Err(TierError::Backend(
                format!(
                    "MGET answered {} values for {} keys",
                    values.len(),
                    keys.len()
                )
                .into(),
            ));
        }
        Ok(values)
    }
}
