//! The tiered cache against a real Redis (`SCALEKIT_REDIS_URL`) and a real
//! Redis Cluster (`SCALEKIT_REDIS_CLUSTER_URLS`): coherence between two caches,
//! connections killed mid-test, lost invalidations, TTLs in Redis, multi-gets
//! across slots, and the background tasks stopping on drop.
//!
//! Without the variables these tests say they were skipped; under `CI`
//! an unreachable server fails them. Every test uses its own random namespace,
//! and kills only its own connections (never the shared server).
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::hash::BuildHasher;
use std::time::Duration;

use scalekit_cache::{Cache, RedisCoherence, RedisTier, Tier, TieredCache, WritePolicy};
use scalekit_core::redis::{RedisConnection, RedisOptions, RedisTarget};
use scalekit_test_support::services::{redis_cluster_urls, redis_url};
use tokio::time::Instant;

/// The longest any test waits for something to happen.
const WAIT: Duration = Duration::from_secs(5);

struct Redis {
    target: RedisTarget,
    admin: RedisConnection,
    namespace: String,
}

/// Connects to the test Redis, or says why the test is skipped (and fails
/// under `CI`, as `scalekit_test_support::services` does).
async fn redis(test: &str) -> Option<Redis> {
    connect(test, redis_url(test)?).await
}

/// The same on the test Redis Cluster.
async fn cluster(test: &str) -> Option<Redis> {
    connect(test, redis_cluster_urls(test)?).await
}

async fn connect(test: &str, url: String) -> Option<Redis> {
    let ci = std::env::var_os("CI").is_some();
    let target: RedisTarget = url.parse().expect("a valid target");
    let options = RedisOptions::new(Duration::from_secs(1));
    let connected = target.connect(&options);
    let failure = match tokio::time::timeout(Duration::from_secs(5), connected).await {
        Ok(Ok(admin)) => {
            let salt = std::collections::hash_map::RandomState::new().hash_one(test);
            return Some(Redis {
                target,
                admin,
                namespace: format!("scalekit-test:{test}:{salt:016x}"),
            });
        }
        Ok(Err(e)) => format!("Redis at {url} is unreachable: {e}"),
        Err(_) => format!("Redis at {url} did not answer within 5 s"),
    };
    assert!(!ci, "CI: {failure}");
    eprintln!("skipped {test}: {failure}");
    None
}

/// Polls `condition` every 10 ms until it holds or `WAIT` passes.
async fn eventually<F: Future<Output = bool>>(mut condition: impl FnMut() -> F) -> bool {
    let deadline = Instant::now() + WAIT;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn tier(redis: &Redis) -> RedisTier<u64, String> {
    RedisTier::builder(redis.target.clone(), redis.namespace.as_str())
        .timeout(Duration::from_millis(500))
        .build()
        .await
        .expect("a tier")
}

/// A coherent tiered cache on the test's namespace, once subscribed.
async fn coherent(
    redis: &Redis,
    policy: WritePolicy,
    queue: usize,
) -> (TieredCache<u64, String>, RedisTier<u64, String>) {
    let tier = tier(redis).await;
    let coherence = RedisCoherence::new(&tier)
        .heartbeat(Duration::from_millis(50))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(100))
        .queue_capacity(queue);
    let cache = TieredCache::builder(Cache::new(10_000), tier.clone())
        .write_policy(policy)
        .l2_ttl(Duration::from_secs(120))
        .l2_timeout(Duration::from_millis(600))
        .coherence(coherence)
        .build()
        .unwrap();
    assert!(
        cache.wait_coherent(Duration::from_secs(10)).await,
        "the subscription was not established"
    );
    assert!(cache.is_coherent() && cache.stats().reconnects >= 1);
    (cache, tier)
}

/// `CLIENT LIST` ids of this namespace's invalidation subscribers.
async fn subscriber_ids(redis: &Redis) -> Vec<String> {
    let mut admin = redis.admin.clone();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut admin)
        .await
        .expect("CLIENT LIST");
    let name = format!("name=scalekit-inv:{}:", redis.namespace);
    list.lines()
        .filter(|line| line.contains(&name))
        .filter_map(|line| {
            line.split(' ')
                .find_map(|f| f.strip_prefix("id="))
                .map(str::to_string)
        })
        .collect()
}

async fn kill(redis: &Redis, id: &str) {
    let mut admin = redis.admin.clone();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(&mut admin)
        .await
        .expect("CLIENT KILL");
    assert_eq!(killed, 1, "connection {id} was not there to kill");
}

async fn value(s: &str) -> String {
    s.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_one_cache_leaves_the_others_l1() {
    if let Some(redis) = redis("coherence").await {
        writes_leave_the_others_l1(&redis).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_write_in_one_cache_leaves_the_others_l1() {
    if let Some(redis) = cluster("cluster-coherence").await {
        writes_leave_the_others_l1(&redis).await;
    }
}

async fn writes_leave_the_others_l1(redis: &Redis) {
    for policy in [WritePolicy::InvalidateOnWrite, WritePolicy::WriteThrough] {
        let (a, _) = coherent(redis, policy, 64).await;
        let (b, _) = coherent(redis, policy, 64).await;
        let key = if policy == WritePolicy::WriteThrough {
            2
        } else {
            1
        };

        assert_eq!(b.get_with(key, value("v1")).await, "v1");
        // A finds B's load in Redis, without running its loader.
        assert_eq!(a.get_with(key, value("not loaded")).await, "v1");
        assert_eq!(a.stats().l2_hits, 1);

        a.insert(key, "v2".to_string()).await.expect("Redis is up");
        assert!(
            eventually(|| async { !b.l1().contains_key(&key) }).await,
            "{policy:?}: B still holds the old value in L1"
        );
        let expected_from_l2 = (policy == WritePolicy::WriteThrough).then(|| "v2".to_string());
        assert_eq!(b.get(&key).await, expected_from_l2);
        assert_eq!(b.get_with(key, value("v2")).await, "v2");
        assert!(b.stats().invalidations_received >= 1);
        assert_eq!(b.stats().sequence_gaps, 0);
        assert!(a.stats().invalidations_sent >= 1);

        // And the other way round, with `invalidate`.
        assert_eq!(a.get_with(key, value("v2")).await, "v2");
        b.invalidate(&key).await.expect("Redis is up");
        assert!(eventually(|| async { !a.l1().contains_key(&key) }).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_carry_a_ttl_in_redis_and_multi_get_is_one_pipeline() {
    if let Some(redis) = redis("ttl").await {
        ttls_and_multi_gets(&redis).await;
    }
}

/// On a cluster the 300 keys of the multi-get spread over all three masters'
/// slots: the client splits the MGETs by slot and the answer keeps the order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_entries_carry_a_ttl_and_multi_get_spans_slots() {
    if let Some(redis) = cluster("cluster-ttl").await {
        ttls_and_multi_gets(&redis).await;
    }
}

async fn ttls_and_multi_gets(redis: &Redis) {
    let tier = tier(redis).await;
    let cache = TieredCache::builder(Cache::new(100), tier.clone())
        .l2_ttl(Duration::from_secs(120))
        .build()
        .unwrap();
    assert_eq!(cache.get_with(7, value("seven")).await, "seven");
    let key = format!("{}:v1:7", redis.namespace);
    assert_eq!(tier.redis_key(&7), key);
    let mut admin = redis.admin.clone();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut admin)
        .await
        .expect("PTTL");
    assert!((110_000..=120_000).contains(&ttl), "PTTL {ttl}");

    tier.set(&8, &"eight".to_string(), Duration::from_secs(5))
        .await
        .expect("set");
    let ttl: i64 = redis::cmd("TTL")
        .arg(tier.redis_key(&8))
        .query_async(&mut admin)
        .await
        .expect("TTL");
    assert!((4..=5).contains(&ttl), "TTL {ttl}");

    // 300 keys: three MGETs in one pipeline, in order.
    for k in (0..300u64).filter(|k| k % 3 == 0) {
        tier.set(&(1000 + k), &k.to_string(), Duration::from_secs(60))
            .await
            .expect("set");
    }
    let keys: Vec<u64> = (1000..1300).collect();
    let got = tier.get_many(&keys).await.expect("get_many");
    let want: Vec<Option<String>> = (0..300u64)
        .map(|k| (k % 3 == 0).then(|| k.to_string()))
        .collect();
    assert_eq!(got, want);

    // A value this program cannot decode is a codec error, and the tiered
    // cache reloads (and rewrites) it.
    let _: () = redis::cmd("SET")
        .arg(tier.redis_key(&9))
        .arg(&[0xffu8, 0xff, 0xff][..])
        .query_async(&mut admin)
        .await
        .expect("SET");
    assert!(matches!(
        tier.get(&9).await,
        Err(scalekit_cache::TierError::Codec(_))
    ));
    assert_eq!(cache.get_with(9, value("nine")).await, "nine");
    assert_eq!(tier.get(&9).await.expect("get"), Some("nine".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_fail_no_read_and_coherence_recovers() {
    let Some(redis) = redis("kill").await else {
        return;
    };
    let (a, tier_a) = coherent(&redis, WritePolicy::InvalidateOnWrite, 64).await;
    let (b, tier_b) = coherent(&redis, WritePolicy::InvalidateOnWrite, 64).await;
    for k in 0..5 {
        assert_eq!(b.get_with(k, value("old")).await, "old");
    }
    let subscribers = subscriber_ids(&redis).await;
    assert_eq!(subscribers.len(), 2, "{subscribers:?}");
    let clears_before = b.stats().l1_clears;

    // Kill every connection of both caches: the two subscriptions and the
    // two data connections.
    for id in &subscribers {
        kill(&redis, id).await;
    }
    for tier in [&tier_a, &tier_b] {
        let id = tier.connection_id().await.expect("CLIENT ID");
        kill(&redis, &id.to_string()).await;
    }

    // Reads go on: from L1 (until the resubscription clears it), else from
    // Redis once reconnected, else from the loader.
    for k in 0..10 {
        assert_eq!(b.get_with(k, value("old")).await, "old");
    }

    // Both subscriptions come back by themselves, and clear L1 on the way
    // (messages may have been missed while they were down).
    assert!(eventually(|| async { b.stats().reconnects >= 2 && a.stats().reconnects >= 2 }).await);
    assert!(b.stats().l1_clears > clears_before);
    assert!(eventually(|| async { subscriber_ids(&redis).await.len() == 2 }).await);

    // Coherence works again.
    assert_eq!(b.get_with(3, value("old")).await, "old");
    a.insert(3, "new".to_string()).await.expect("Redis is back");
    assert!(eventually(|| async { !b.l1().contains_key(&3) }).await);
    assert_eq!(b.get_with(3, value("new")).await, "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_invalidations_show_as_a_sequence_gap_and_clear_l1() {
    if let Some(redis) = redis("gap").await {
        lost_invalidations_clear_l1(&redis).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_lost_invalidations_show_as_a_gap_and_clear_l1() {
    if let Some(redis) = cluster("cluster-gap").await {
        lost_invalidations_clear_l1(&redis).await;
    }
}

async fn lost_invalidations_clear_l1(redis: &Redis) {
    // A's queue holds one message: a burst of writes overflows it, and the
    // overflow is lost (as it would be if Redis refused the PUBLISH).
    let (a, _) = coherent(redis, WritePolicy::InvalidateOnWrite, 1).await;
    let (b, _) = coherent(redis, WritePolicy::InvalidateOnWrite, 64).await;
    // Keys A never writes: only a clear removes them from B.
    for k in 1000..1010 {
        assert_eq!(b.get_with(k, value("kept")).await, "kept");
    }
    let writes: Vec<_> = (0..200u64)
        .map(|k| {
            let a = a.clone();
            tokio::spawn(async move { a.invalidate(&k).await })
        })
        .collect();
    for write in writes {
        write.await.expect("no panic").expect("Redis is up");
    }
    assert!(
        a.stats().publish_errors > 0,
        "the burst did not overflow the queue: {:?}",
        a.stats()
    );
    assert!(
        eventually(|| async { b.stats().sequence_gaps >= 1 }).await,
        "B did not notice the lost messages: {:?}",
        b.stats()
    );
    assert!(b.l1().get(&1000).is_none(), "B's L1 was not cleared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_cache_stops_its_subscriber() {
    let Some(redis) = redis("drop").await else {
        return;
    };
    let (a, tier) = coherent(&redis, WritePolicy::default(), 64).await;
    let copy = a.clone();
    assert_eq!(subscriber_ids(&redis).await.len(), 1);
    drop(a);
    // A clone keeps it alive.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(subscriber_ids(&redis).await.len(), 1);
    drop(copy);
    assert!(
        eventually(|| async { subscriber_ids(&redis).await.is_empty() }).await,
        "the subscriber connection outlived the cache"
    );
    drop(tier);
}

/// No server at all (a closed loopback port): reads are answered by the
/// loader and L1, writes report the error, and dropping the cache stops the
/// reconnecting subscriber. Needs no Redis, so it always runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_fails_no_read() {
    let target = "redis://127.0.0.1:1".parse().expect("a valid URL");
    let tier: RedisTier<u64, String> = RedisTier::builder(target, "scalekit-test:down")
        .timeout(Duration::from_millis(100))
        .build()
        .await
        .expect("built lazily");
    let cache = TieredCache::builder(Cache::new(100), tier.clone())
        .l2_timeout(Duration::from_millis(200))
        .coherence(
            RedisCoherence::new(&tier)
                .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50)),
        )
        .build()
        .unwrap();
    let started = Instant::now();
    for round in 0..2 {
        for k in 0..5 {
            assert_eq!(
                cache.get_with(k, value("from the database")).await,
                "from the database"
            );
        }
        if round == 0 {
            assert!(cache.stats().l2_errors + cache.stats().l2_timeouts >= 5);
        }
    }
    assert_eq!(
        cache.stats().l1.load_successes,
        5,
        "the second round was served by L1"
    );
    assert!(cache.insert(1, "x".into()).await.is_err());
    assert!(started.elapsed() < WAIT);
    assert_eq!(cache.stats().reconnects, 0);
    // No subscription: the cache says it hears no invalidations.
    assert!(!cache.is_coherent());
    assert!(!cache.wait_coherent(Duration::from_millis(50)).await);
    drop(cache);
}
