//! The tiered cache while the test Redis Cluster (`SCALEKIT_REDIS_CLUSTER_URLS`)
//! loses a master to `kill -9`, fails over by hand (`CLUSTER FAILOVER`) and moves
//! slots (`redis-cli --cluster reshard`). Each drill holds the cluster alone and
//! leaves it whole (`scalekit_test_support::redis_cluster::Drill`).
//!
//! Run with `--nocapture` to see the measured recovery times.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use scalekit_cache::{Cache, RedisCoherence, RedisTier, Tier, TieredCache, WritePolicy};
use scalekit_core::redis::RedisTarget;
use scalekit_shard::redis_cluster_slot;
use scalekit_test_support::redis_cluster::{begin_drill, master_of};
use tokio::time::Instant;

/// The tier's time limit on each Redis call.
const LIMIT: Duration = Duration::from_millis(200);

fn namespace(test: &str) -> String {
    let salt = std::collections::hash_map::RandomState::new().hash_one(test);
    format!("scalekit-drill:{test}:{salt:016x}")
}

async fn coherent(
    target: &RedisTarget,
    namespace: &str,
) -> (TieredCache<u64, String>, RedisTier<u64, String>) {
    let tier = RedisTier::builder(target.clone(), namespace)
        .timeout(LIMIT)
        .build()
        .await
        .expect("a tier");
    let cache = TieredCache::builder(Cache::new(100_000), tier.clone())
        .write_policy(WritePolicy::InvalidateOnWrite)
        .l2_timeout(LIMIT)
        .coherence(
            RedisCoherence::new(&tier)
                .heartbeat(Duration::from_millis(100))
                .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(500)),
        )
        .build()
        .unwrap();
    assert!(
        cache.wait_coherent(Duration::from_secs(10)).await,
        "no subscription"
    );
    (cache, tier)
}

/// What the load saw: calls, the slowest call, and loader runs (the database).
#[derive(Default)]
struct Load {
    calls: AtomicU64,
    slowest_us: AtomicU64,
    loads: AtomicU64,
}

/// Reads keys `0..keys` through `cache` from two tasks until `stop`, at most
/// `max_calls` calls: every answer must be the loader's value for its key.
fn run_load(
    cache: &TieredCache<u64, String>,
    keys: u64,
    max_calls: u64,
    stop: Arc<tokio::sync::Notify>,
) -> (Arc<Load>, Vec<tokio::task::JoinHandle<()>>) {
    let load = Arc::new(Load::default());
    let tasks = (0..2)
        .map(|worker| {
            let (cache, load, stop) = (cache.clone(), Arc::clone(&load), Arc::clone(&stop));
            tokio::spawn(async move {
                let stopped = stop.notified();
                tokio::pin!(stopped);
                let mut k = worker * 7919;
                for _ in 0..max_calls / 2 {
                    k = (k + 7919) % keys;
                    let started = Instant::now();
                    let loads = &load.loads;
                    let read = cache.get_with(k, async {
                        loads.fetch_add(1, Relaxed);
                        format!("v{k}")
                    });
                    tokio::select! {
                        v = read => assert_eq!(v, format!("v{k}")),
                        _ = &mut stopped => return,
                    }
                    let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    load.slowest_us.fetch_max(took, Relaxed);
                    load.calls.fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
            })
        })
        .collect();
    (load, tasks)
}

/// Polls `f` every 20 ms for up to `limit`; how long until it held.
async fn until<F: std::future::Future<Output = bool>>(
    limit: Duration,
    mut f: impl FnMut() -> F,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// A master killed under load: every read is answered (L1, else the loader),
/// none waits past two time limits (the tier read and the fill after a load),
/// and the remote tier and coherence come back by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_fails_no_read_and_the_cache_recovers() {
    let Some((urls, drill)) = begin_drill("cluster kill drill").await else {
        return;
    };
    let target: RedisTarget = urls.parse().unwrap();
    let ns = namespace("kill");
    let (a, tier_a) = coherent(&target, &ns).await;
    let (b, _) = coherent(&target, &ns).await;
    // The master holding the invalidation channel dies: data and coherence
    // both lose a node.
    let channel_slot = redis_cluster_slot(format!("{ns}:invalidations").as_bytes());
    let channel_master = master_of(&drill.ports, channel_slot)
        .unwrap()
        .expect("served")
        .port;
    // A key on the same master, outside the load's keys (0..500), to measure
    // the tier's recovery.
    let probe_key = (1_000_000..1_010_000u64)
        .find(|k| {
            let slot = redis_cluster_slot(tier_a.redis_key(k).as_bytes());
            matches!(master_of(&drill.ports, slot), Ok(Some(n)) if n.port == channel_master)
        })
        .expect("a key on the channel's master");

    let stop = Arc::new(tokio::sync::Notify::new());
    let (load, tasks) = run_load(&b, 500, 200_000, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let killed_at = Instant::now();
    let old = drill
        .run(move |d| d.kill_master_of(channel_slot))
        .await
        .expect("a master killed");
    // Measured side by side: the promotion, and the cache's recovery.
    let promotion = drill.run(move |d| d.wait_promoted(channel_slot, old, Duration::from_secs(30)));
    let recovery = async {
        // The tier answers again on the killed master's slots.
        let tier_back = until(Duration::from_secs(30), || async {
            tier_a
                .set(&probe_key, &"p".to_string(), Duration::from_secs(60))
                .await
                .is_ok()
                && tier_a.get(&probe_key).await.ok().flatten().as_deref() == Some("p")
        })
        .await
        .map(|_| killed_at.elapsed());
        // Coherence works again: A's write leaves B's L1.
        let coherence_back = until(Duration::from_secs(30), || async {
            let _ = b.get_with(probe_key, async { "old".to_string() }).await;
            if a.insert(probe_key, "new".to_string()).await.is_err() {
                return false;
            }
            until(Duration::from_millis(500), || async {
                !b.l1().contains_key(&probe_key)
            })
            .await
            .is_some()
        })
        .await
        .map(|_| killed_at.elapsed());
        (tier_back, coherence_back)
    };
    let (promoted, (tier_back, coherence_back)) = tokio::join!(promotion, recovery);
    stop.notify_waiters();
    for task in tasks {
        task.await.expect("no read failed or panicked");
    }
    let slowest = Duration::from_micros(load.slowest_us.load(Relaxed));
    eprintln!(
        "kill -9 of master {old}: promoted after {promoted:?}, tier back after {tier_back:?}, \
         coherence back after {coherence_back:?}; {} reads, {} loads, slowest read {slowest:?}; \
         B: {:?}",
        load.calls.load(Relaxed),
        load.loads.load(Relaxed),
        b.stats()
    );
    assert!(promoted.is_some(), "no replica took over");
    assert!(tier_back.is_some(), "the remote tier did not recover");
    assert!(coherence_back.is_some(), "coherence did not recover");
    assert!(load.calls.load(Relaxed) > 100);
    // A miss costs a tier read, the loader and a fill, each read bounded by
    // LIMIT; allow the scheduler 300 ms on this two-core machine.
    assert!(
        slowest <= LIMIT * 2 + Duration::from_millis(300),
        "slowest read {slowest:?}"
    );
    drop(drill);
}

/// A manual failover and a slot migration under writes and reads: the client
/// follows MOVED and ASK, and no call of the tier fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_and_resharding_fail_no_call() {
    let Some((urls, drill)) = begin_drill("cluster failover drill").await else {
        return;
    };
    let target: RedisTarget = urls.parse().unwrap();
    let ns = namespace("failover");
    let tier: RedisTier<u64, String> = RedisTier::builder(target, ns.as_str())
        .timeout(Duration::from_millis(1000))
        .build()
        .await
        .unwrap();
    for k in 0..500u64 {
        tier.set(&k, &format!("v{k}"), Duration::from_secs(300))
            .await
            .unwrap();
    }
    let slot = redis_cluster_slot(tier.redis_key(&0).as_bytes());

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let worker = {
        let (tier, stop, errors, calls) = (
            tier.clone(),
            Arc::clone(&stop),
            Arc::clone(&errors),
            Arc::clone(&calls),
        );
        tokio::spawn(async move {
            let keys: Vec<u64> = (0..500).collect();
            for round in 0..200_000u64 {
                if stop.load(Relaxed) {
                    break;
                }
                let k = round % 500;
                let ok = match round % 3 {
                    0 => tier.get(&k).await.map(|v| v == Some(format!("v{k}"))),
                    1 => tier
                        .set(&k, &format!("v{k}"), Duration::from_secs(300))
                        .await
                        .map(|()| true),
                    _ => tier
                        .get_many(&keys[..50])
                        .await
                        .map(|vs| vs.iter().all(Option::is_some)),
                };
                if !matches!(ok, Ok(true)) {
                    errors.fetch_add(1, Relaxed);
                    eprintln!("call {round} failed: {ok:?}");
                }
                calls.fetch_add(1, Relaxed);
            }
        })
    };

    let (failed_over, resharded) = drill
        .run(move |d| {
            std::thread::sleep(Duration::from_millis(300));
            let started = std::time::Instant::now();
            let failover = d
                .manual_failover(slot)
                .map(|port| (port, started.elapsed()));
            std::thread::sleep(Duration::from_millis(500));
            let started = std::time::Instant::now();
            let reshard = d
                .reshard_from(slot, 200)
                .map(|ports| (ports, started.elapsed()));
            std::thread::sleep(Duration::from_millis(500));
            // And back, under the same load, so that the cluster's layout does
            // not drift from one run to the next.
            let back = match &reshard {
                Ok(((from, to), _)) => d.reshard(*to, *from, 200),
                Err(e) => Err(e.clone()),
            };
            std::thread::sleep(Duration::from_millis(300));
            (failover, reshard.and_then(|r| back.map(|()| r)))
        })
        .await;
    stop.store(true, Relaxed);
    worker.await.unwrap();
    eprintln!(
        "manual failover {failed_over:?}, reshard of 200 slots (then back) {resharded:?}: {} calls, {} failed",
        calls.load(Relaxed),
        errors.load(Relaxed)
    );
    failed_over.expect("CLUSTER FAILOVER");
    resharded.expect("reshard");
    assert!(calls.load(Relaxed) > 100);
    assert_eq!(
        errors.load(Relaxed),
        0,
        "calls failed during failover or resharding"
    );
    drop(drill);
}
