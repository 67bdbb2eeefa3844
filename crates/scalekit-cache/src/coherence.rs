//! Coherence across processes over Redis pub/sub (feature `redis`): plain
//! pub/sub on one server, sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`) on a Redis
//! Cluster, so that the messages travel only within the channel's shard.
//!
//! Each [`TieredCache`](crate::TieredCache) with coherence is an *instance*
//! with a random 64-bit id. A write or invalidation in one instance publishes
//! `(instance id, sequence number, key)` on the namespace's channel; every
//! other instance removes the key from its L1. Messages are sent by one task
//! per instance, in sequence order, so a receiver sees each sender's numbers
//! go up by one. Pub/sub is at-most-once, so three things repair lost
//! messages by clearing L1 (everything in it may be stale):
//! - the subscription connection dropped: on re-subscribing, L1 is cleared
//!   (messages sent meanwhile were not delivered). On a cluster the channel's
//!   node may die (its replica takes over) or the channel's slot may move: a
//!   disconnection from any node, the server's unsubscription of the channel,
//!   or a failed probe of the channel's slot ends the subscription, and the
//!   next one, on a fresh view of the cluster, reaches the slot's new owner and
//!   clears L1 the same way;
//! - a gap in a sender's numbers (its publish failed, or its queue was full):
//!   the receiver clears L1 (Hazelcast's near cache does the same);
//! - a sender that lost a message and then goes quiet: each instance also
//!   publishes a heartbeat carrying its last number, so the gap shows within
//!   one heartbeat interval.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use redis::PushKind;
use scalekit_core::redis::{RedisConnection, RedisOptions, RedisTarget};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use scalekit_core::Clock;

use crate::redis::RedisTier;
use crate::tiered::{Broadcast, Local, TieredCacheBuilder};

/// Format version of a message (first byte).
const FORMAT: u8 = 1;
const KIND_KEY: u8 = 1;
const KIND_HEARTBEAT: u8 = 2;
const HEADER: usize = 18;

/// One message on the invalidation channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) origin: u64,
    pub(crate) seq: u64,
    /// The postcard-encoded key, or `None` for a heartbeat.
    pub(crate) key: Option<Vec<u8>>,
}

impl Message {
    /// `[format, kind, origin (8 bytes LE), seq (8 bytes LE), key...]`.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let key = self.key.as_deref().unwrap_or_default();
        let mut out = Vec::with_capacity(HEADER + key.len());
        out.push(FORMAT);
        out.push(if self.key.is_some() {
            KIND_KEY
        } else {
            KIND_HEARTBEAT
        });
        out.extend_from_slice(&self.origin.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(key);
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let (&format, rest) = bytes.split_first()?;
        let (&kind, rest) = rest.split_first()?;
        if format != FORMAT || rest.len() < 16 {
            return None;
        }
        let (origin, rest) = rest.split_at(8);
        let (seq, key) = rest.split_at(8);
        let origin = u64::from_le_bytes(origin.try_into().ok()?);
        let seq = u64::from_le_bytes(seq.try_into().ok()?);
        let key = match kind {
            KIND_KEY => Some(key.to_vec()),
            KIND_HEARTBEAT if key.is_empty() => None,
            _ => return None,
        };
        Some(Self { origin, seq, key })
    }
}

/// A random id for this instance (from the OS-seeded `RandomState`).
fn instance_id() -> u64 {
    use std::hash::BuildHasher;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::collections::hash_map::RandomState::new().hash_one((
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Relaxed),
    ))
}

/// Applies received messages to one L1: the receiving half of coherence,
/// free of I/O so it can be tested without Redis.
pub(crate) struct Receiver<K, V, S, C> {
    origin: u64,
    local: Local<K, V, S, C>,
    /// The last sequence number seen from each other instance, and when.
    seen: Mutex<HashMap<u64, (u64, Instant)>>,
    forget_after: Duration,
}

impl<K, V, S, C> Receiver<K, V, S, C>
where
    K: Hash + Eq + Clone + DeserializeOwned,
    V: Clone,
    S: BuildHasher,
    C: Clock,
{
    pub(crate) fn new(origin: u64, local: Local<K, V, S, C>, forget_after: Duration) -> Self {
        Self {
            origin,
            local,
            seen: Mutex::new(HashMap::new()),
            forget_after,
        }
    }

    /// The subscription is (re)established: messages may have been missed
    /// while it was down, so clear L1 and start every sender afresh.
    pub(crate) fn on_subscribed(&self) {
        self.seen.lock().clear();
        self.local.counters.reconnects.fetch_add(1, Relaxed);
        self.local.clear();
        self.local.counters.set_subscribed(true);
    }

    /// The subscription is lost: invalidations are not heard until it is back.
    pub(crate) fn on_unsubscribed(&self) {
        self.local.counters.set_subscribed(false);
    }

    /// Applies one message's bytes.
    pub(crate) fn on_payload(&self, bytes: &[u8]) {
        match Message::decode(bytes) {
            Some(message) => self.on_message(&message),
            // Not ours to read (another format): what it invalidates is
            // unknown, so assume the worst.
            None => self.local.clear(),
        }
    }

    pub(crate) fn on_message(&self, message: &Message) {
        if message.origin == self.origin {
            return; // our own: L1 was updated when it was sent
        }
        let now = Instant::now();
        let gap = {
            let mut seen = self.seen.lock();
            if seen.len() > 64 {
                let forget_after = self.forget_after;
                seen.retain(|_, (_, at)| now.duration_since(*at) < forget_after);
            }
            match seen.get_mut(&message.origin) {
                // First word from this sender since we subscribed: what it
                // sent before cannot concern entries we loaded since.
                None => {
                    seen.insert(message.origin, (message.seq, now));
                    false
                }
                Some((last, at)) => {
                    // A key message takes the next number; a heartbeat
                    // repeats the last one.
                    let expected = if message.key.is_some() {
                        last.saturating_add(1)
                    } else {
                        *last
                    };
                    let gap = message.seq > expected;
                    *last = (*last).max(message.seq);
                    *at = now;
                    gap
                }
            }
        };
        if gap {
            self.local.counters.sequence_gaps.fetch_add(1, Relaxed);
            self.local.clear();
        }
        if let Some(key) = &message.key {
            match postcard::from_bytes::<K>(key) {
                Ok(key) => {
                    self.local.invalidate(&key);
                    self.local
                        .counters
                        .invalidations_received
                        .fetch_add(1, Relaxed);
                }
                // A key this program cannot read (another key type, in a
                // rolling upgrade): clear rather than keep a stale entry.
                Err(_) => self.local.clear(),
            }
        }
    }
}

/// Cross-process coherence of L1 caches through Redis pub/sub.
///
/// Given to [`TieredCacheBuilder::coherence`]. All tiered caches whose tiers
/// share a namespace (on one Redis, or one Redis Cluster) share one channel,
/// `{namespace}:invalidations`, and drop from their L1 whatever another one
/// writes or invalidates. On a cluster the channel is a sharded one: it lives
/// on the shard of its slot, and survives that shard's failover. See the [crate docs](crate#coherence-across-processes)
/// for how lost messages are detected and repaired, and what that costs.
///
/// Two background tasks run per tiered cache: a publisher (sends this
/// instance's invalidations in order, and a heartbeat) and a subscriber
/// (applies the others', reconnecting with backoff). Both stop when the
/// last clone of the tiered cache is dropped. The subscriber's connection is
/// named `scalekit-inv:{namespace}:{instance id}` in `CLIENT LIST`. The
/// tasks run on the Tokio runtime the tier was built on.
///
/// ```no_run
/// # async fn run() -> Result<(), scalekit_cache::TierError> {
/// use std::time::Duration;
/// use scalekit_cache::{Cache, RedisCoherence, RedisTier, TieredCache, WritePolicy};
///
/// let target = "redis://127.0.0.1:6379".parse().expect("a valid URL");
/// let tier: RedisTier<u64, String> = RedisTier::builder(target, "users").build().await?;
/// let l1 = Cache::builder()
///     .max_capacity(10_000)
///     .time_to_live(Duration::from_secs(60)) // bounds staleness if all else fails
///     .build()?;
/// let cache = TieredCache::builder(l1, tier.clone())
///     .write_policy(WritePolicy::WriteThrough)
///     .coherence(RedisCoherence::new(&tier))
///     .build()?;
/// // ... after updating user 42 in the database:
/// cache.insert(42, "ada".to_string()).await?;
/// // every other process's L1 drops key 42 within a round trip.
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisCoherence {
    target: RedisTarget,
    publisher: RedisConnection,
    runtime: tokio::runtime::Handle,
    channel: String,
    /// `scalekit-inv:{namespace}:` (CLIENT SETNAME takes no spaces).
    name_prefix: String,
    timeout: Duration,
    heartbeat: Duration,
    backoff: (Duration, Duration),
    queue: usize,
    forget_after: Duration,
}

impl std::fmt::Debug for RedisCoherence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCoherence")
            .field("channel", &self.channel)
            .field("timeout", &self.timeout)
            .field("heartbeat", &self.heartbeat)
            .field("backoff", &self.backoff)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl RedisCoherence {
    /// Coherence on `tier`'s Redis and namespace, with its time limit.
    pub fn new<K, V>(tier: &RedisTier<K, V>) -> Self {
        Self {
            target: tier.target.clone(),
            publisher: tier.conn.clone(),
            runtime: tier.runtime.clone(),
            channel: format!("{}:invalidations", tier.namespace),
            name_prefix: format!(
                "scalekit-inv:{}:",
                tier.namespace
                    .chars()
                    .map(|c| if c.is_ascii_graphic() { c } else { '_' })
                    .collect::<String>()
            ),
            timeout: tier.timeout,
            heartbeat: Duration::from_secs(1),
            backoff: (Duration::from_millis(50), Duration::from_secs(5)),
            queue: 4096,
            forget_after: Duration::from_secs(3600),
        }
    }

    /// The channel the invalidations travel on.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// How often the instance publishes its heartbeat and pings its
    /// subscription (default 1 s): the longest a lost message from a quiet
    /// sender, or a dead subscription, goes unnoticed.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every.max(Duration::from_millis(1));
        self
    }

    /// The subscriber's reconnection backoff: it starts at `min` and doubles
    /// up to `max` (defaults 50 ms and 5 s).
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = (min.max(Duration::from_millis(1)), max.max(min));
        self
    }

    /// How many invalidations may wait to be sent (default 4096). Past it,
    /// new ones are dropped, and the others see a gap and clear their L1.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue = capacity.max(1);
        self
    }

    fn start<K, V, S, C>(self, local: Local<K, V, S, C>) -> Box<dyn Broadcast<K>>
    where
        K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        S: BuildHasher + Send + Sync + 'static,
        C: Clock + 'static,
    {
        let origin = instance_id();
        let (tx, rx) = mpsc::channel(self.queue);
        let dropped = Arc::new(AtomicU64::new(0));
        let counters = Arc::clone(&local.counters);
        let receiver = Receiver::new(origin, local, self.forget_after);
        let publisher = self.runtime.spawn(publish_loop(
            self.publisher.clone(),
            self.channel.clone(),
            origin,
            rx,
            Arc::clone(&dropped),
            Arc::clone(&counters),
            self.timeout,
            self.heartbeat,
        ));
        let subscriber = self
            .runtime
            .spawn(subscribe_loop(self.clone(), origin, receiver));
        Box::new(RedisBus {
            tx,
            dropped,
            counters,
            tasks: [publisher.abort_handle(), subscriber.abort_handle()],
        })
    }
}

impl<K, V, S, C> TieredCacheBuilder<K, V, S, C>
where
    K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
    C: Clock + 'static,
{
    /// Keeps this cache's L1 coherent with the other processes' through Redis
    /// pub/sub (feature `redis`). The key travels postcard-encoded, so the key
    /// type must be serde-serializable.
    pub fn coherence(self, coherence: RedisCoherence) -> Self {
        self.bus(Box::new(move |local| coherence.start(local)))
    }
}

/// The sending half, owned by the tiered cache; dropping it stops both tasks.
struct RedisBus {
    tx: mpsc::Sender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
    counters: Arc<crate::tiered::TierCounters>,
    tasks: [AbortHandle; 2],
}

impl<K: Serialize> Broadcast<K> for RedisBus {
    fn publish(&self, key: &K) {
        let sent = postcard::to_allocvec(key)
            .ok()
            .is_some_and(|bytes| self.tx.try_send(bytes).is_ok());
        if !sent {
            // The number this message would have had is skipped: the
            // others see the gap.
            self.dropped.fetch_add(1, Relaxed);
            self.counters.publish_errors.fetch_add(1, Relaxed);
        }
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn publish_loop(
    mut conn: RedisConnection,
    channel: String,
    origin: u64,
    mut rx: mpsc::Receiver<Vec<u8>>,
    dropped: Arc<AtomicU64>,
    counters: Arc<crate::tiered::TierCounters>,
    timeout: Duration,
    heartbeat: Duration,
) {
    let mut seq = 0u64;
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(128);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, 128) => {
                if n == 0 {
                    return; // the tiered cache is gone
                }
                let mut pipe = redis::pipe();
                for key in batch.drain(..) {
                    seq = seq.saturating_add(1 + dropped.swap(0, Relaxed));
                    let message = Message { origin, seq, key: Some(key) };
                    pipe.add_command(conn.publish_cmd(&channel, message.encode())).ignore();
                }
                match tokio::time::timeout(timeout, pipe.query_async::<()>(&mut conn)).await {
                    Ok(Ok(())) => counters.invalidations_sent.fetch_add(n as u64, Relaxed),
                    // Their numbers are spent: receivers see the gap.
                    _ => counters.publish_errors.fetch_add(n as u64, Relaxed),
                };
            }
            _ = ticker.tick() => {
                seq = seq.saturating_add(dropped.swap(0, Relaxed));
                let message = Message { origin, seq, key: None };
                let cmd = conn.publish_cmd(&channel, message.encode());
                // A lost heartbeat costs nothing: the next one says the same.
                let _ = tokio::time::timeout(timeout, cmd.query_async::<()>(&mut conn)).await;
            }
        }
    }
}

async fn subscribe_loop<K, V, S, C>(
    config: RedisCoherence,
    origin: u64,
    receiver: Receiver<K, V, S, C>,
) where
    K: Hash + Eq + Clone + DeserializeOwned,
    V: Clone,
    S: BuildHasher,
    C: Clock,
{
    let (min, max) = config.backoff;
    let mut backoff = min;
    let options = RedisOptions::new(config.timeout).retries(2);
    let cluster = config.target.is_cluster();
    loop {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let connected =
            tokio::time::timeout(config.timeout.max(Duration::from_millis(100)) * 2, async {
                let mut conn = config
                    .target
                    .subscribe(&config.channel, &options, tx)
                    .await?;
                if !cluster {
                    // On a cluster the name would land on one node of many.
                    redis::cmd("CLIENT")
                        .arg("SETNAME")
                        .arg(format!("{}{origin:016x}", config.name_prefix))
                        .query_async::<()>(&mut conn)
                        .await?;
                }
                // The channel's node answers: on a cluster whose master just
                // died the subscription can land on a replica while commands
                // to the slot still fail; that is no subscription to count on
                // (nor to clear L1 for), so wait and try again.
                conn.probe_cmd(&config.channel)
                    .query_async::<redis::Value>(&mut conn)
                    .await?;
                Ok::<_, redis::RedisError>(conn)
            })
            .await;
        if let Ok(Ok(mut conn)) = connected {
            backoff = min;
            receiver.on_subscribed();
            // Any sign that the subscription may be gone ends this one: the
            // connection dropped (on a cluster, any node's), the channel was
            // unsubscribed (its slot moved away), or the channel's node did not
            // answer a probe. The next subscription starts from a fresh view of
            // the cluster and clears L1 (messages in between were not heard).
            let probe = conn.probe_cmd(&config.channel);
            let mut ping = tokio::time::interval(config.heartbeat);
            ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    push = rx.recv() => match push {
                        None => break,
                        Some(push) => match push.kind {
                            PushKind::Message | PushKind::SMessage => {
                                if let Some(msg) = redis::Msg::from_push_info(push) {
                                    receiver.on_payload(msg.get_payload_bytes());
                                }
                            }
                            PushKind::Disconnection
                            | PushKind::Unsubscribe
                            | PushKind::SUnsubscribe => break,
                            _ => {}
                        },
                    },
                    _ = ping.tick() => {
                        let pong = probe.query_async::<redis::Value>(&mut conn);
                        if !matches!(tokio::time::timeout(config.timeout, pong).await, Ok(Ok(_))) {
                            break;
                        }
                    }
                }
            }
            receiver.on_unsubscribed();
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use scalekit_core::MonotonicClock;

    type L1 = Local<u64, u64, ahash::RandomState, MonotonicClock>;

    fn receiver() -> (Receiver<u64, u64, ahash::RandomState, MonotonicClock>, L1) {
        let local = Local {
            l1: Cache::new(1_000),
            epochs: Arc::new(crate::tiered::Epochs::new()),
            counters: Arc::default(),
        };
        (
            Receiver::new(1, local.clone(), Duration::from_secs(60)),
            local,
        )
    }

    fn key(origin: u64, seq: u64, key: u64) -> Message {
        let key = postcard::to_allocvec(&key).ok();
        Message { origin, seq, key }
    }

    fn fill(local: &L1) {
        for k in 0..10 {
            local.l1.insert(k, k);
        }
    }

    #[test]
    fn messages_round_trip_and_garbage_is_rejected() {
        for m in [
            key(7, 3, 99),
            Message {
                origin: u64::MAX,
                seq: 0,
                key: None,
            },
        ] {
            assert_eq!(Message::decode(&m.encode()), Some(m));
        }
        assert_eq!(Message::decode(b""), None);
        assert_eq!(Message::decode(&[FORMAT, KIND_KEY, 1, 2]), None);
        let mut heartbeat_with_key = key(7, 3, 99).encode();
        heartbeat_with_key[1] = KIND_HEARTBEAT;
        assert_eq!(Message::decode(&heartbeat_with_key), None);
        let mut other_format = key(7, 3, 99).encode();
        other_format[0] = FORMAT + 1;
        assert_eq!(Message::decode(&other_format), None);
    }

    #[test]
    fn in_order_messages_remove_only_their_key() {
        let (rx, local) = receiver();
        fill(&local);
        for (seq, k) in [(5, 1), (6, 2), (7, 3)] {
            rx.on_message(&key(2, seq, k));
        }
        assert_eq!(local.l1.entry_count(), 7);
        assert!(!local.l1.contains_key(&1) && !local.l1.contains_key(&3));
        assert_eq!(local.counters.sequence_gaps.load(Relaxed), 0);
        assert_eq!(local.counters.invalidations_received.load(Relaxed), 3);
    }

    #[test]
    fn a_gap_in_a_senders_sequence_clears_l1() {
        let (rx, local) = receiver();
        fill(&local);
        rx.on_message(&key(2, 1, 1));
        rx.on_message(&key(3, 1, 2)); // another sender, its own numbers
        rx.on_message(&key(2, 2, 3));
        assert_eq!(local.l1.entry_count(), 7);
        rx.on_message(&key(2, 4, 4)); // 3 was lost
        assert_eq!(local.l1.entry_count(), 0);
        assert_eq!(local.counters.sequence_gaps.load(Relaxed), 1);
        assert_eq!(local.counters.l1_clears.load(Relaxed), 1);
        // Back in step: no further clears.
        fill(&local);
        rx.on_message(&key(2, 5, 5));
        rx.on_message(&key(3, 2, 6));
        assert_eq!(local.l1.entry_count(), 8);
    }

    #[test]
    fn a_heartbeat_reveals_a_loss_from_a_quiet_sender() {
        let (rx, local) = receiver();
        fill(&local);
        rx.on_message(&key(2, 1, 1));
        rx.on_message(&Message {
            origin: 2,
            seq: 1,
            key: None,
        }); // in step
        assert_eq!(local.l1.entry_count(), 9);
        rx.on_message(&Message {
            origin: 2,
            seq: 2,
            key: None,
        }); // 2 was lost
        assert_eq!(local.l1.entry_count(), 0);
        assert_eq!(local.counters.sequence_gaps.load(Relaxed), 1);
    }

    #[test]
    fn own_messages_duplicates_and_resubscription() {
        let (rx, local) = receiver();
        fill(&local);
        rx.on_message(&key(1, 9, 1)); // our own origin: ignored
        assert_eq!(local.l1.entry_count(), 10);
        rx.on_message(&key(2, 3, 2));
        rx.on_message(&key(2, 3, 3)); // a repeat: applied, not a gap
        assert_eq!(local.l1.entry_count(), 8);
        assert_eq!(local.counters.sequence_gaps.load(Relaxed), 0);
        // Re-subscribing clears L1 and forgets the senders' numbers.
        rx.on_subscribed();
        assert_eq!(local.l1.entry_count(), 0);
        fill(&local);
        rx.on_message(&key(2, 40, 4));
        assert_eq!(local.l1.entry_count(), 9);
        assert_eq!(local.counters.sequence_gaps.load(Relaxed), 0);
    }

    #[test]
    fn unreadable_payloads_and_keys_clear_l1() {
        let (rx, local) = receiver();
        fill(&local);
        rx.on_payload(b"not ours");
        assert_eq!(local.l1.entry_count(), 0);
        fill(&local);
        // A key of another type (a string where a u64 varint is expected
        // is fine; an overlong varint is not).
        rx.on_message(&Message {
            origin: 2,
            seq: 1,
            key: Some(vec![0xff; 11]),
        });
        assert_eq!(local.l1.entry_count(), 0);
    }
}
