//! The Redis flag source while the test Redis Cluster (`SCALEKIT_REDIS_CLUSTER_URLS`)
//! loses the master holding the notification channel to `kill -9`: two readers
//! keep serving the last state, and a state published once a replica has taken
//! over reaches both. The drill holds the cluster alone and leaves it whole. Run
//! with `--nocapture` to see the figures.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use scalekit_flags::sources::RedisSource;
use scalekit_flags::{Context, Flags};
use scalekit_shard::redis_cluster_slot;
use scalekit_test_support::redis_cluster::begin_drill;
use tokio::time::Instant;

fn state(name: &str) -> String {
    format!(r#"{{"version":2,"features":[{{"name":"{name}","enabled":true,"strategies":[]}}]}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_survive_a_killed_master_and_hear_the_next_state() {
    let Some((urls, drill)) = begin_drill("flags kill drill").await else {
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let key = format!("scalekit-drill:flags:{nanos:x}");
    let source = RedisSource::builder(&urls, &key).build().unwrap();
    let (a, b) = (Flags::new(), Flags::new());
    let tasks = [
        source.clone().spawn(a.clone()),
        source.clone().spawn(b.clone()),
    ];
    let ctx = Context::new();
    let both = |name: &'static str| {
        let (a, b, ctx) = (a.clone(), b.clone(), ctx.clone());
        move || a.is_enabled(name, &ctx) && b.is_enabled(name, &ctx)
    };
    async fn until(limit: Duration, f: impl Fn() -> bool) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if f() {
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
    // Published until both readers have it (the first publish may precede
    // their subscriptions; they also read the key on subscribing).
    source.publish(&state("before")).await.unwrap();
    assert!(until(Duration::from_secs(10), both("before"))
        .await
        .is_some());

    let slot = redis_cluster_slot(source.channel().as_bytes());
    let killed_at = Instant::now();
    let old = drill
        .run(move |d| d.kill_master_of(slot))
        .await
        .expect("killed");
    // The readers keep what they serve while the shard has no master.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(both("before")());
    // Publish as soon as the cluster takes it, then wait for both readers.
    let mut published = None;
    for _ in 0..300 {
        if source.publish(&state("after")).await.is_ok() {
            published = Some(killed_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let heard = until(Duration::from_secs(30), both("after"))
        .await
        .map(|_| killed_at.elapsed());
    eprintln!(
        "kill -9 of master {old} (the channel's shard): publish accepted again after \
         {published:?}, both readers on the new state after {heard:?}"
    );
    assert!(
        published.is_some(),
        "no publish succeeded after the failover"
    );
    assert!(
        heard.is_some(),
        "the readers did not hear the state published after the failover"
    );
    for task in tasks {
        task.abort();
    }
    drop(drill);
}
