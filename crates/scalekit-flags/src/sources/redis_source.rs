//! [`RedisSource`]: a Redis key plus a pub/sub notification.

use crate::error::FlagsError;
use crate::flags::Flags;
use crate::sources::backoff::{backoff, fingerprint, looks_like_toml};
use redis::PushKind;
use scalekit_core::redis::{RedisConnection, RedisOptions, RedisTarget};
use scalekit_core::{Clock, ConfigError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, OnceCell};

/// Shared configuration in Redis: a key holds the state (Unleash JSON, or our TOML
/// form), and a message on a pub/sub channel says it changed. Every process that
/// runs a `RedisSource` on the same key serves the same flags (stage 11 of the
/// storefront: split applications sharing live configuration).
///
/// The URL names one server (`redis://127.0.0.1:6379`) or a Redis Cluster's
/// nodes, comma-separated (`redis://127.0.0.1:7000,redis://127.0.0.1:7001`): on
/// a cluster the key lives on its slot's master and the notification is a
/// sharded message (`SPUBLISH`/`SSUBSCRIBE`) on the channel's shard, followed
/// there after a failover or a slot migration.
///
/// On start, and after every reconnection or re-subscription, the key is read;
/// each message on the channel reads it again. Content identical to what is serving is not re-applied.
/// [`publish`](Self::publish) writes a new state and notifies everyone, after
/// checking that it parses and compiles, so a bad state never reaches Redis
/// through it.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use scalekit_flags::{sources::RedisSource, Flags};
/// let flags = Flags::new();
/// let source = RedisSource::builder("redis://127.0.0.1:6379", "storefront:flags").build()?;
/// let task = source.clone().spawn(flags.clone());
/// source.publish(r#"{"features":[{"name":"new-checkout","enabled":true}]}"#).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct RedisSource {
    target: RedisTarget,
    /// One connection for reads and writes, opened on first use.
    conn: Arc<OnceCell<RedisConnection>>,
    key: String,
    channel: String,
    max_backoff: Duration,
}

fn redis_err(what: String, e: redis::RedisError) -> FlagsError {
    FlagsError::Source {
        what,
        source: Some(Box::new(e)),
    }
}

/// Builds a [`RedisSource`]; [`build`](Self::build) refuses a URL that is not a
/// Redis URL, an empty key or a zero backoff with a [`ConfigError`].
///
/// ```
/// use scalekit_flags::sources::RedisSource;
/// let err = RedisSource::builder("http://127.0.0.1:6379", "flags").build().unwrap_err();
/// assert_eq!(err.field(), "url");
/// let source = RedisSource::builder("redis://127.0.0.1:6379", "shop:flags").build().unwrap();
/// assert_eq!(source.channel(), "shop:flags:changed");
/// ```
#[derive(Clone, Debug)]
pub struct RedisSourceBuilder {
    url: String,
    key: String,
    channel: Option<String>,
    max_backoff: Duration,
}

const COMPONENT: &str = "Redis flag source";

impl RedisSourceBuilder {
    /// Uses another notification channel (default `<key>:changed`).
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// Longest wait between reconnection attempts (default 30 s).
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// The source, or the first setting that cannot work.
    pub fn build(self) -> Result<RedisSource, ConfigError> {
        let target: RedisTarget = self.url.parse().map_err(|e: ConfigError| {
            ConfigError::new(
                COMPONENT,
                "url",
                format!("{:?} ({e})", self.url),
                "a Redis URL such as redis://127.0.0.1:6379, or a cluster's nodes, comma-separated",
            )
        })?;
        if self.key.is_empty() {
            return Err(ConfigError::new(
                COMPONENT,
                "key",
                "\"\"",
                "a non-empty key name",
            ));
        }
        if self.max_backoff.is_zero() {
            return Err(ConfigError::new(
                COMPONENT,
                "max_backoff",
                format!("{:?}", self.max_backoff),
                "a duration above zero (default 30 s)",
            ));
        }
        Ok(RedisSource {
            target,
            conn: Arc::new(OnceCell::new()),
            channel: self
                .channel
                .unwrap_or_else(|| format!("{}:changed", self.key)),
            key: self.key,
            max_backoff: self.max_backoff,
        })
    }
}

impl RedisSource {
    /// A builder for a source reading `key` at `url` (one server, or a cluster's
    /// nodes, comma-separated), notified on the channel `<key>:changed`.
    pub fn builder(url: impl Into<String>, key: impl Into<String>) -> RedisSourceBuilder {
        RedisSourceBuilder {
            url: url.into(),
            key: key.into(),
            channel: None,
            max_backoff: Duration::from_secs(30),
        }
    }

    /// The key holding the state.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The notification channel.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Where the state lives.
    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    fn options() -> RedisOptions {
        RedisOptions::new(Duration::from_secs(2))
    }

    async fn connection(&self) -> Result<RedisConnection, FlagsError> {
        self.conn
            .get_or_try_init(|| async { self.target.connect_lazy(&Self::options()) })
            .await
            .cloned()
            .map_err(|e| redis_err(format!("connecting to {} for {}", self.target, self.key), e))
    }

    /// Validates `state` (parse and compile, without loading it anywhere), writes it
    /// to the key and publishes a notification.
    pub async fn publish(&self, state: &str) -> Result<(), FlagsError> {
        let probe = Flags::builder().metrics(false).history(0).build();
        probe.load_text(state, &self.key, looks_like_toml(state))?;
        let mut con = self.connection().await?;
        // SET, then the notification: on a cluster the key and the channel may
        // live on different shards, so they cannot share a pipeline.
        redis::cmd("SET")
            .arg(&self.key)
            .arg(state)
            .query_async::<()>(&mut con)
            .await
            .map_err(|e| redis_err(format!("SET {}", self.key), e))?;
        con.publish_cmd(&self.channel, "changed")
            .query_async::<()>(&mut con)
            .await
            .map_err(|e| redis_err(format!("PUBLISH {}", self.channel), e))
    }

    /// Reads the key once and applies it if it changed. `Ok(false)` when the key is
    /// absent or unchanged.
    pub async fn fetch_once<C: Clock>(
        &self,
        flags: &Flags<C>,
        last: &mut Option<u64>,
    ) -> Result<bool, FlagsError> {
        let mut con = self.connection().await?;
        let text: Option<String> = redis::cmd("GET")
            .arg(&self.key)
            .query_async(&mut con)
            .await
            .map_err(|e| redis_err(format!("GET {}", self.key), e))?;
        let Some(text) = text else { return Ok(false) };
        let fp = fingerprint(&text);
        if *last == Some(fp) {
            return Ok(false);
        }
        let origin = format!("redis key {}", self.key);
        flags.load_text(&text, &origin, looks_like_toml(&text))?;
        *last = Some(fp);
        Ok(true)
    }

    /// One subscription, until it fails. `subscribed` is set once it is established.
    async fn session<C: Clock>(
        &self,
        flags: &Flags<C>,
        last: &mut Option<u64>,
        subscribed: &mut bool,
    ) -> Result<(), FlagsError> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut sub = self
            .target
            .subscribe(&self.channel, &Self::options(), tx)
            .await
            .map_err(|e| redis_err(format!("subscribing to {}", self.channel), e))?;
        *subscribed = true;
        // Read after subscribing, so that no change between the two is missed.
        let _ = self.fetch_once(flags, last).await;
        // Any sign that the subscription may be gone ends it (a disconnection,
        // on a cluster from any node; the channel unsubscribed by the server as
        // its slot moved; a failed probe of the channel's node): the next one
        // starts from a fresh view of the cluster and reads the key again.
        let probe = sub.probe_cmd(&self.channel);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let reread = tokio::select! {
                push = rx.recv() => match push.map(|p| p.kind) {
                    None
                    | Some(PushKind::Disconnection | PushKind::Unsubscribe | PushKind::SUnsubscribe) => break,
                    Some(PushKind::Message | PushKind::SMessage) => true,
                    Some(_) => false,
                },
                _ = tick.tick() => {
                    let answered = tokio::time::timeout(
                        Duration::from_secs(2),
                        probe.query_async::<redis::Value>(&mut sub),
                    )
                    .await;
                    if !matches!(answered, Ok(Ok(_))) {
                        break;
                    }
                    false
                }
            };
            if reread {
                if let Err(e) = self.fetch_once(flags, last).await {
                    if matches!(e, FlagsError::Source { .. }) {
                        return Err(e);
                    }
                }
            }
        }
        Err(FlagsError::Source {
            what: format!("subscription to {} ended", self.channel),
            source: None,
        })
    }

    /// Runs the source as a task, reconnecting with backoff.
    pub fn spawn<C: Clock + 'static>(self, flags: Flags<C>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut last = None;
            let mut failures = 0u32;
            loop {
                let mut subscribed = false;
                if let Err(e) = self.session(&flags, &mut last, &mut subscribed).await {
                    flags.source_failed(&self.key, e);
                }
                // A connection that worked starts the backoff over.
                failures = if subscribed {
                    1
                } else {
                    failures.saturating_add(1)
                };
                tokio::time::sleep(backoff(
                    Duration::from_millis(100),
                    self.max_backoff,
                    failures,
                ))
                .await;
            }
        })
    }
}
