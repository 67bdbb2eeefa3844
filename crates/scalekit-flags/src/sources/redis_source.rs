use crate::sources::{backoff, fingerprint, looks_like_toml};
use crate::{Flags, FlagsError};
use futures_util::StreamExt;
use std::time::Duration;

/// Shared configuration in Redis: a key holds the state (Unleash JSON, or our TOML
/// form), and a message on a pub/sub channel says it changed. Every process that
/// runs a `RedisSource` on the same key serves the same flags (stage 11 of the
/// storefront: split applications sharing live configuration).
///
/// On start, and after every reconnection, the key is read; each message on the
/// channel reads it again. Content identical to what is serving is not re-applied.
/// [`publish`](Self::publish) writes a new state and notifies everyone, after
/// checking that it parses and compiles, so a bad state never reaches Redis
/// through it.
///
/// ```no_run
/// # async fn run() -> Result<(), scalekit_flags::FlagsError> {
/// use scalekit_flags::{sources::RedisSource, Flags};
/// let flags = Flags::new();
/// let source = RedisSource::new("redis://127.0.0.1:6379", "storefront:flags")?;
/// let task = source.clone().spawn(flags.clone());
/// source.publish(r#"{"features":[{"name":"new-checkout","enabled":true}]}"#).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct RedisSource {
    client: redis::Client,
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

impl RedisSource {
    /// A source reading `key`, notified on the channel `<key>:changed`.
    pub fn new(url: &str, key: impl Into<String>) -> Result<Self, FlagsError> {
        let key = key.into();
        let client =
            redis::Client::open(url).map_err(|e| redis_err(format!("redis URL {url}"), e))?;
        Ok(RedisSource {
            client,
            channel: format!("{key}:changed"),
            key,
            max_backoff: Duration::from_secs(30),
        })
    }

    /// Uses another notification channel.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }

    /// Longest wait between reconnection attempts (default 30 s).
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// Validates `state` (parse and compile, without loading it anywhere), writes it
    /// to the key and publishes a notification.
    pub async fn publish(&self, state: &str) -> Result<(), FlagsError> {
        let probe = Flags::builder().metrics(false).history(0).build();
        probe.load_text(state, &self.key, looks_like_toml(state))?;
        let mut con = self
            .client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| redis_err(format!("connecting to redis for {}", self.key), e))?;
        redis::pipe()
            .set(&self.key, state)
            .ignore()
            .publish(&self.channel, "changed")
            .ignore()
            .query_async::<()>(&mut con)
            .await
            .map_err(|e| redis_err(format!("SET {} + PUBLISH {}", self.key, self.channel), e))
    }

    /// Reads the key once and applies it if it changed. `Ok(false)` when the key is
    /// absent or unchanged.
    pub async fn fetch_once(
        &self,
        flags: &Flags,
        last: &mut Option<u64>,
    ) -> Result<bool, FlagsError> {
        let mut con = self
            .client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| redis_err(format!("connecting to redis for {}", self.key), e))?;
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
    async fn session(
        &self,
        flags: &Flags,
        last: &mut Option<u64>,
        subscribed: &mut bool,
    ) -> Result<(), FlagsError> {
        let mut pubsub = self
            .client
            .get_async_pubsub()
            .await
            .map_err(|e| redis_err(format!("subscribing to {}", self.channel), e))?;
        pubsub
            .subscribe(&self.channel)
            .await
            .map_err(|e| redis_err(format!("SUBSCRIBE {}", self.channel), e))?;
        *subscribed = true;
        // Read after subscribing, so that no change between the two is missed.
        let _ = self.fetch_once(flags, last).await;
        let mut messages = pubsub.on_message();
        while messages.next().await.is_some() {
            if let Err(e) = self.fetch_once(flags, last).await {
                if matches!(e, FlagsError::Source { .. }) {
                    return Err(e);
                }
            }
        }
        Err(FlagsError::Source {
            what: format!("subscription to {} ended", self.channel),
            source: None,
        })
    }

    /// Runs the source as a task, reconnecting with backoff.
    pub fn spawn(self, flags: Flags) -> tokio::task::JoinHandle<()> {
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
