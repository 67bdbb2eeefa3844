//! The distributed GCRA while the test Redis Cluster (`SCALEKIT_REDIS_CLUSTER_URLS`)
//! loses the master holding its keys to `kill -9`: a fail-open and a fail-closed
//! limiter under load, what each answers while no master serves the keys, how
//! long until Redis decides again, and how many admissions went over the bound
//! afterwards (replication to the replica is asynchronous: the promoted replica
//! may miss the last writes). The drill holds the cluster alone and leaves it
//! whole. Run with `--nocapture` to see the figures.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use scalekit_limit::{DenyKind, OnError, Quota, RedisRateLimiter};
use scalekit_shard::redis_cluster_slot;
use scalekit_test_support::redis_cluster::{begin_drill, master_of};
use tokio::time::Instant;

/// What one limiter saw.
#[derive(Debug, Default)]
struct Tally {
    /// Admitted by Redis: (time since the start, units).
    admitted: Vec<Duration>,
    /// Admitted without an answer (fail open).
    admitted_blind: u64,
    /// Denied without an answer (fail closed).
    denied_blind: u64,
    /// Denied by Redis.
    denied: u64,
    /// The first answer from Redis after the first failure, since the start.
    back_at: Option<Duration>,
    first_failure: Option<Duration>,
}

/// The most GCRA may admit in `span`: the burst plus one per interval.
fn bound(quota: Quota, span: Duration) -> u64 {
    let interval = quota.interval().as_nanos();
    u64::from(quota.burst()) + u64::try_from(span.as_nanos() / interval).unwrap_or(u64::MAX)
}

/// The largest excess of admissions over the bound, over every span between
/// two admissions.
fn worst_excess(quota: Quota, admitted: &[Duration]) -> i64 {
    let mut worst = i64::MIN;
    for (i, &start) in admitted.iter().enumerate() {
        for (j, &end) in admitted.iter().enumerate().skip(i) {
            let count = i64::try_from(j - i + 1).unwrap();
            let allowed = i64::try_from(bound(quota, end - start)).unwrap();
            worst = worst.max(count - allowed);
        }
    }
    worst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_failed_open_or_closed_as_configured() {
    let Some((urls, drill)) = begin_drill("limiter kill drill").await else {
        return;
    };
    // 20 per second, bursts of 10: the load asks far more often, so Redis
    // denies most, and every admission counts against the bound.
    let quota = Quota::with_interval(Duration::from_millis(50))
        .unwrap()
        .allow_burst(NonZeroU32::new(10).unwrap());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("scalekit-drill:limit:{nanos:x}:");
    // Two keys on the same master: one per limiter.
    let master = |key: &str| {
        let slot = redis_cluster_slot(format!("{prefix}{key}").as_bytes());
        (
            slot,
            master_of(&drill.ports, slot).unwrap().expect("served").port,
        )
    };
    let (slot, port) = master("open");
    let closed_key = (0..10_000)
        .map(|i| format!("closed{i}"))
        .find(|k| master(k).1 == port)
        .expect("a key on the same master");

    let build = |on_error| {
        RedisRateLimiter::builder(quota)
            .prefix(prefix.clone())
            .timeout(Duration::from_millis(100))
            .on_error(on_error)
            .connect(&urls)
    };
    let open = Arc::new(build(OnError::FailOpen).await.unwrap());
    let closed = Arc::new(build(OnError::FailClosed).await.unwrap());

    let start = Instant::now();
    let run = |limiter: Arc<RedisRateLimiter>, key: String| {
        tokio::spawn(async move {
            let mut tally = Tally::default();
            // Bounded in count and in time.
            for _ in 0..100_000 {
                if start.elapsed() > Duration::from_secs(14) {
                    break;
                }
                let errors = limiter.errors();
                let answer = limiter.check_key(&key).await;
                let blind = limiter.errors() > errors;
                let at = start.elapsed();
                if blind {
                    tally.first_failure.get_or_insert(at);
                } else if tally.first_failure.is_some() && tally.back_at.is_none() {
                    tally.back_at = Some(at);
                }
                match (answer, blind) {
                    (Ok(_), false) => tally.admitted.push(at),
                    (Ok(_), true) => tally.admitted_blind += 1,
                    (Err(d), true) => {
                        assert_eq!(d.kind(), DenyKind::Unavailable);
                        tally.denied_blind += 1;
                    }
                    (Err(d), false) => {
                        assert_ne!(d.kind(), DenyKind::Unavailable);
                        tally.denied += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            tally
        })
    };
    let open_task = run(Arc::clone(&open), "open".to_string());
    let closed_task = run(Arc::clone(&closed), closed_key);

    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = start.elapsed();
    let old = drill
        .run(move |d| d.kill_master_of(slot))
        .await
        .expect("killed");
    let promoted = drill
        .run(move |d| d.wait_promoted(slot, old, Duration::from_secs(30)))
        .await;
    let open_tally = open_task.await.unwrap();
    let closed_tally = closed_task.await.unwrap();

    for (name, tally, blind) in [
        ("fail-open", &open_tally, open_tally.admitted_blind),
        ("fail-closed", &closed_tally, closed_tally.denied_blind),
    ] {
        let outage = tally
            .back_at
            .zip(tally.first_failure)
            .map(|(back, first)| back.saturating_sub(first));
        eprintln!(
            "{name}: master {old} killed at {killed_at:?}, promoted after {promoted:?}; \
             {} admitted by Redis, {} denied, {blind} answered blind; Redis answered \
             again {:?} after the kill (blind for {outage:?}); worst excess over the \
             bound: {}",
            tally.admitted.len(),
            tally.denied,
            tally.back_at.map(|b| b.saturating_sub(killed_at)),
            worst_excess(quota, &tally.admitted),
        );
        assert!(
            tally.first_failure.is_some(),
            "{name}: the kill went unnoticed"
        );
        assert!(
            tally.back_at.is_some(),
            "{name}: Redis never answered again"
        );
        assert!(blind > 0, "{name}: no blind answer");
        // Redis decides again within the promotion and a slot refresh.
        assert!(tally.back_at.unwrap() < killed_at + Duration::from_secs(12));
    }
    assert_eq!(open_tally.denied_blind, 0);
    assert_eq!(closed_tally.admitted_blind, 0);
    // Asynchronous replication can lose the last writes of the dead master, so
    // the new one may admit a few more than the bound: a handful, not a burst.
    for tally in [&open_tally, &closed_tally] {
        let excess = worst_excess(quota, &tally.admitted);
        assert!(excess <= i64::from(quota.burst()), "excess {excess}");
    }
    assert!(promoted.is_some());
    drop(drill);
}
