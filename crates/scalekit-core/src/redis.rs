//! One Redis connection for the kit's crates: a single server or a Redis Cluster,
//! chosen by configuration (feature `redis`).
//!
//! The cache's remote tier and its coherence, the distributed rate limiter and the
//! flags' Redis source all take a [`RedisTarget`]. User code does not change when a
//! service moves from one Redis to a cluster: only the target does, from
//! `redis://host:6379` to a list of seed nodes.
//!
//! - [`RedisTarget::Server`]: one server, through redis-rs's
//!   [`ConnectionManager`] (one multiplexed connection that reconnects by itself).
//! - [`RedisTarget::Cluster`]: a Redis Cluster, through redis-rs's cluster client
//!   (`cluster-async`): a multiplexed connection per node, commands routed by their
//!   keys' slots, `MOVED` and `ASK` followed, the slot map refreshed after a
//!   failover or a migration, multi-key commands such as `MGET` split by slot and
//!   sent to each slot's node concurrently (pipelined on that node's connection).
//!
//! What a cluster changes for a caller is what Redis Cluster itself changes: a
//! command's keys must share a slot (the kit's crates each keep to that: one key
//! per command, or commands the client splits), and pub/sub is sharded
//! ([`RedisConnection::publish_cmd`] sends `SPUBLISH` on a cluster).
//!
//! ```
//! use scalekit_core::redis::RedisTarget;
//!
//! let one: RedisTarget = "redis://127.0.0.1:6379".parse().unwrap();
//! assert!(!one.is_cluster());
//! // A comma-separated list names a cluster's seed nodes; `cluster:` marks a
//! // cluster given by one seed.
//! let cluster: RedisTarget = "redis://127.0.0.1:7000,redis://127.0.0.1:7001".parse().unwrap();
//! assert!(cluster.is_cluster());
//! assert_eq!(cluster.to_string(), "redis://127.0.0.1:7000,redis://127.0.0.1:7001");
//! assert!("cluster:redis://127.0.0.1:7000".parse::<RedisTarget>().unwrap().is_cluster());
//! // Anything else is refused with the field and what was expected.
//! let err = "http://127.0.0.1:6379".parse::<RedisTarget>().unwrap_err();
//! assert_eq!(err.field(), "url");
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, ProtocolVersion, RedisError, RedisFuture, Value};
use tokio::sync::mpsc::UnboundedSender;

use crate::ConfigError;

const COMPONENT: &str = "redis target";

/// Where a crate's Redis state lives: one server, or a Redis Cluster given by
/// some of its nodes (any reachable one is enough to learn the rest).
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis server, by URL (`redis://host:port[/db]`, `rediss://` for TLS
    /// when redis-rs is built with it, `redis+unix://` for a socket).
    Server(String),
    /// A Redis Cluster, by the URLs of some of its nodes (its seeds).
    Cluster(Vec<String>),
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Display drops passwords.
        write!(f, "RedisTarget({self})")
    }
}

fn check_url(url: &str) -> Result<(), ConfigError> {
    redis::Client::open(url).map(drop).map_err(|e| {
        ConfigError::new(
            COMPONENT,
            "url",
            format_args!("{url:?} ({e})"),
            "a Redis URL such as redis://127.0.0.1:6379, or a comma-separated list of a cluster's nodes",
        )
    })
}

/// `url` with any password replaced by `***`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl RedisTarget {
    /// One server at `url`, or a [`ConfigError`] naming the URL.
    pub fn server(url: impl Into<String>) -> Result<Self, ConfigError> {
        let url = url.into();
        check_url(&url)?;
        Ok(Self::Server(url))
    }

    /// A cluster reached through `seeds` (at least one), or a [`ConfigError`]
    /// naming the first bad URL.
    ///
    /// ```
    /// use scalekit_core::redis::RedisTarget;
    /// let t = RedisTarget::cluster(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]).unwrap();
    /// assert!(t.is_cluster());
    /// assert_eq!(RedisTarget::cluster(Vec::<String>::new()).unwrap_err().field(), "seeds");
    /// ```
    pub fn cluster<S: Into<String>>(
        seeds: impl IntoIterator<Item = S>,
    ) -> Result<Self, ConfigError> {
        let seeds: Vec<String> = seeds.into_iter().map(Into::into).collect();
        if seeds.is_empty() {
            return Err(ConfigError::new(
                COMPONENT,
                "seeds",
                "[]",
                "the URL of at least one of the cluster's nodes",
            ));
        }
        for seed in &seeds {
            check_url(seed)?;
        }
        Ok(Self::Cluster(seeds))
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// The URLs: the server's, or the cluster's seeds.
    pub fn urls(&self) -> &[String] {
        match self {
            Self::Server(url) => std::slice::from_ref(url),
            Self::Cluster(seeds) => seeds,
        }
    }

    fn cluster_client(
        seeds: &[String],
        options: &RedisOptions,
        push: Option<UnboundedSender<redis::PushInfo>>,
    ) -> Result<ClusterClient, RedisError> {
        let mut builder = ClusterClient::builder(seeds.iter().map(String::as_str))
            .connection_timeout(options.timeout)
            .response_timeout(options.timeout)
            .retries(options.retries)
            .min_retry_wait(10)
            .max_retry_wait(1000);
        if let Some(push) = push {
            builder = builder
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(push);
        }
        builder.build()
    }

    /// A connection that connects on first use, so that building it succeeds
    /// while Redis is down. On a server it is a [`ConnectionManager`]; on a
    /// cluster the cluster client's connection, opened by the first command
    /// (and tried again by the next one if that failed). Must be called within
    /// a Tokio runtime.
    pub fn connect_lazy(&self, options: &RedisOptions) -> Result<RedisConnection, RedisError> {
        match self {
            Self::Server(url) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(options.timeout))
                    .set_response_timeout(Some(options.timeout))
                    .set_number_of_retries(options.retries as usize)
                    .set_min_delay(Duration::from_millis(10))
                    .set_max_delay(Duration::from_secs(1));
                let client = redis::Client::open(url.as_str())?;
                let conn = ConnectionManager::new_lazy_with_config(client, config)?;
                Ok(RedisConnection(Inner::Manager(conn)))
            }
            Self::Cluster(seeds) => {
                let client = Self::cluster_client(seeds, options, None)?;
                Ok(RedisConnection(Inner::Cluster(Arc::new(LazyCluster {
                    client: Some(client),
                    conn: tokio::sync::OnceCell::new(),
                }))))
            }
        }
    }

    /// A connection, opened now: an error if no server (or no seed) answers
    /// within the options' time limit.
    pub async fn connect(&self, options: &RedisOptions) -> Result<RedisConnection, RedisError> {
        let conn = self.connect_lazy(options)?;
        let mut probe = conn.clone();
        match tokio::time::timeout(
            options.timeout * 2,
            redis::cmd("PING").query_async::<()>(&mut probe),
        )
        .await
        {
            Ok(result) => result.map(|()| conn),
            Err(_) => Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from {self} within {:?}", options.timeout * 2),
            ))),
        }
    }

    /// A connection subscribed to `channel`, whose messages (and the library's
    /// `Disconnection` notices) arrive on `push`: `SUBSCRIBE` on a server,
    /// `SSUBSCRIBE` (sharded pub/sub, the channel's slot's shard) on a cluster.
    ///
    /// The subscription may end without a word from the server: when the
    /// connection drops (a `Disconnection` push; on a cluster, from any of its
    /// nodes), when a cluster moves the channel's slot away (an `SUnsubscribe`
    /// push), or when the channel's node dies (then
    /// [`RedisConnection::probe_cmd`] fails). The kit's subscribers take each
    /// of those as the end and subscribe again with a new call, which on a
    /// cluster starts from a fresh slot map; they do not rely on the cluster
    /// client's own re-subscription, which waits for a slot map refresh that
    /// nothing may trigger.
    pub async fn subscribe(
        &self,
        channel: &str,
        options: &RedisOptions,
        push: UnboundedSender<redis::PushInfo>,
    ) -> Result<RedisConnection, RedisError> {
        match self {
            Self::Server(url) => {
                let info = redis::Client::open(url.as_str())?
                    .get_connection_info()
                    .clone();
                let settings = info
                    .redis_settings()
                    .clone()
                    .set_protocol(ProtocolVersion::RESP3);
                let client = redis::Client::open(info.set_redis_settings(settings))?;
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(options.timeout))
                    .set_response_timeout(Some(options.timeout))
                    .set_push_sender(push);
                let mut conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                conn.subscribe(channel).await?;
                Ok(RedisConnection(Inner::Plain(conn)))
            }
            Self::Cluster(seeds) => {
                let client = Self::cluster_client(seeds, options, Some(push))?;
                let mut conn = client.get_async_connection().await?;
                conn.ssubscribe(channel).await?;
                Ok(RedisConnection(Inner::Cluster(Arc::new(LazyCluster {
                    client: Some(client),
                    conn: tokio::sync::OnceCell::new_with(Some(conn)),
                }))))
            }
        }
    }
}

impl fmt::Display for RedisTarget {
    /// The URLs, comma-separated, passwords replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls().iter().map(|u| redact(u)).collect();
        match self {
            Self::Cluster(seeds) if seeds.len() == 1 => write!(f, "cluster:{}", urls[0]),
            _ => f.write_str(&urls.join(",")),
        }
    }
}

impl FromStr for RedisTarget {
    type Err = ConfigError;

    /// A URL is one server; a comma-separated list of URLs, or one URL after
    /// `cluster:`, is a cluster's seeds. Spaces around the commas are allowed.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let s = s.trim();
        let (forced, list) = match s.strip_prefix("cluster:") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let urls: Vec<&str> = list.split(',').map(str::trim).collect();
        if urls.iter().any(|u| u.is_empty()) {
            return Err(ConfigError::new(
                COMPONENT,
                "url",
                format_args!("{s:?}"),
                "a Redis URL, or a comma-separated list of a cluster's nodes without empty entries",
            ));
        }
        if forced || urls.len() > 1 {
            Self::cluster(urls)
        } else {
            Self::server(urls[0])
        }
    }
}

/// How a [`RedisConnection`] waits and retries.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    timeout: Duration,
    retries: u32,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(500),
            retries: 2,
        }
    }
}

impl RedisOptions {
    /// Options with `timeout` on connecting and on each answer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use scalekit_core::redis::RedisOptions;
    /// let o = RedisOptions::new(Duration::from_millis(100)).retries(3);
    /// assert_eq!(o.timeout(), Duration::from_millis(100));
    /// ```
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            ..Self::default()
        }
    }

    /// How many times the client itself retries a failed command (default 2;
    /// on a cluster, redirections and slot refreshes count).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The time limit on connecting and on each answer (default 500 ms).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// A connection to a [`RedisTarget`], cheap to clone (clones share it), used
/// like any redis-rs async connection (it implements [`ConnectionLike`]).
#[derive(Clone)]
pub struct RedisConnection(Inner);

#[derive(Clone)]
enum Inner {
    Manager(ConnectionManager),
    Plain(MultiplexedConnection),
    Cluster(Arc<LazyCluster>),
}

struct LazyCluster {
    /// `None` when the connection came opened.
    client: Option<ClusterClient>,
    conn: tokio::sync::OnceCell<ClusterConnection>,
}

impl LazyCluster {
    async fn get(&self) -> Result<ClusterConnection, RedisError> {
        self.conn
            .get_or_try_init(|| async {
                match &self.client {
                    Some(client) => client.get_async_connection().await,
                    None => Err(RedisError::from(std::io::Error::other("no cluster client"))),
                }
            })
            .await
            .cloned()
    }
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.0 {
            Inner::Manager(_) | Inner::Plain(_) => "server",
            Inner::Cluster(_) => "cluster",
        };
        f.debug_tuple("RedisConnection").field(&kind).finish()
    }
}

impl RedisConnection {
    /// Whether this connection is to a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.0, Inner::Cluster(_))
    }

    /// The command that publishes `payload` on `channel`: `PUBLISH` on a
    /// server, `SPUBLISH` (sharded, to the channel's shard only) on a cluster.
    pub fn publish_cmd(&self, channel: &str, payload: impl redis::ToRedisArgs) -> Cmd {
        let name = if self.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        redis::cmd(name).arg(channel).arg(payload).clone()
    }

    /// A harmless command that checks the path to `channel`'s node: `PING` on a
    /// server, `EXISTS <channel>` on a cluster (routed by the channel's slot, so
    /// a dead or moved owner shows, and the client refreshes its slot map).
    pub fn probe_cmd(&self, channel: &str) -> Cmd {
        if self.is_cluster() {
            redis::cmd("EXISTS").arg(channel).clone()
        } else {
            redis::cmd("PING")
        }
    }
}

impl From<MultiplexedConnection> for RedisConnection {
    /// A connection to one server, opened by the caller.
    fn from(conn: MultiplexedConnection) -> Self {
        Self(Inner::Plain(conn))
    }
}

impl From<ConnectionManager> for RedisConnection {
    /// A reconnecting connection to one server, opened by the caller.
    fn from(conn: ConnectionManager) -> Self {
        Self(Inner::Manager(conn))
    }
}

impl From<ClusterConnection> for RedisConnection {
    /// A connection to a cluster, opened by the caller.
    fn from(conn: ClusterConnection) -> Self {
        Self(Inner::Cluster(Arc::new(LazyCluster {
            client: None,
            conn: tokio::sync::OnceCell::new_with(Some(conn)),
        })))
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Inner::Manager(c) => c.req_packed_command(cmd),
            Inner::Plain(c) => c.req_packed_command(cmd),
            Inner::Cluster(lazy) => {
                let lazy = Arc::clone(lazy);
                Box::pin(async move { lazy.get().await?.req_packed_command(cmd).await })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Inner::Manager(c) => c.req_packed_commands(cmd, offset, count),
            Inner::Plain(c) => c.req_packed_commands(cmd, offset, count),
            Inner::Cluster(lazy) => {
                let lazy = Arc::clone(lazy);
                Box::pin(async move {
                    lazy.get()
                        .await?
                        .req_packed_commands(cmd, offset, count)
                        .await
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Inner::Manager(c) => c.get_db(),
            Inner::Plain(c) => c.get_db(),
            Inner::Cluster(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_print_and_refuse() {
        let t: RedisTarget = " redis://a:1 , redis://b:2 ".parse().unwrap();
        assert_eq!(
            t,
            RedisTarget::Cluster(vec!["redis://a:1".into(), "redis://b:2".into()])
        );
        let t: RedisTarget = "redis://:secret@a:1".parse().unwrap();
        assert_eq!(t.urls(), ["redis://:secret@a:1"]);
        assert_eq!(t.to_string(), "redis://:***@a:1");
        assert!(!format!("{t:?}").contains("secret"));
        assert_eq!(
            "cluster:redis://user:pw@a:1"
                .parse::<RedisTarget>()
                .unwrap()
                .to_string(),
            "cluster:redis://user:***@a:1"
        );
        for bad in [
            "",
            "redis://a:1,",
            ",redis://a:1",
            "cluster:",
            "nonsense",
            "redis://a:1,http://b",
        ] {
            assert!(bad.parse::<RedisTarget>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn publish_and_probe_commands_follow_the_target() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let opts = RedisOptions::default();
            let one = RedisTarget::server("redis://127.0.0.1:1")
                .unwrap()
                .connect_lazy(&opts)
                .unwrap();
            let many = RedisTarget::cluster(["redis://127.0.0.1:1"])
                .unwrap()
                .connect_lazy(&opts)
                .unwrap();
            assert!(!one.is_cluster() && many.is_cluster());
            assert_eq!(
                one.publish_cmd("c", "x").get_packed_command(),
                redis::cmd("PUBLISH").arg("c").arg("x").get_packed_command()
            );
            assert_eq!(
                many.publish_cmd("c", "x").get_packed_command(),
                redis::cmd("SPUBLISH")
                    .arg("c")
                    .arg("x")
                    .get_packed_command()
            );
            assert_eq!(
                many.probe_cmd("c").get_packed_command(),
                redis::cmd("EXISTS").arg("c").get_packed_command()
            );
        });
    }
}
