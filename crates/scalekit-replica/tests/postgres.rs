//! Read-your-writes against a real PostgreSQL primary and streaming replica
//! (`.ci/pg-replica.sh` makes them; `.ci/run` exports the URLs), including WAL
//! replay paused with `pg_wal_replay_pause()` to create lag.
//!
//! Reads `SCALEKIT_PG_PRIMARY_URL` and `SCALEKIT_PG_REPLICA_URL`; skipped when
//! they are unset, a failure when `CI` is set.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scalekit_replica::{pg, Member, Position, ReplicaSet, Role};
use scalekit_test_support::services::required;
use sqlx::PgPool;
use std::time::Duration;
use tokio::time::Instant;

/// The primary's and the replica's URLs, or `None` after saying why the test
/// is skipped (a failure under `CI`).
fn urls(test: &str) -> Option<(String, String)> {
    let what = "a PostgreSQL primary with a streaming replica (.ci/pg-replica.sh)";
    let primary = required("SCALEKIT_PG_PRIMARY_URL", test, what)?;
    let replica = required("SCALEKIT_PG_REPLICA_URL", test, what)?;
    Some((primary, replica))
}

type Set = ReplicaSet<PgPool>;

/// Polls `cond` until it holds, for at most 20 s of real time (the server's
/// pace, not a sleep standing in for a clock).
async fn until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn refresh(set: &Set) {
    set.check_health(&pg::PgCheck, Duration::from_secs(5)).await;
}

fn replica_stats(set: &Set) -> scalekit_replica::EndpointStats {
    set.stats()
        .endpoints
        .into_iter()
        .find(|e| &*e.name == "replica")
        .unwrap()
}

async fn write(set: &Set, tag: &str) -> Position {
    let w = set.select_primary().unwrap();
    assert_eq!(w.role(), Role::Primary);
    sqlx::query("INSERT INTO scalekit_ryw (tag) VALUES ($1)")
        .bind(tag)
        .execute(&*w)
        .await
        .unwrap();
    let token = pg::current_wal_lsn(&*w).await.unwrap();
    w.success();
    token
}

async fn count(pool: &PgPool, tag: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM scalekit_ryw WHERE tag = $1")
        .bind(tag)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_with_a_streaming_replica_and_paused_replay() {
    let Some((primary_url, replica_url)) =
        urls("read_your_writes_with_a_streaming_replica_and_paused_replay")
    else {
        return;
    };
    let primary = PgPool::connect(&primary_url)
        .await
        .expect("primary reachable");
    let replica = PgPool::connect(&replica_url)
        .await
        .expect("replica reachable");
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS scalekit_ryw (id bigserial PRIMARY KEY, tag text NOT NULL)",
    )
    .execute(&primary)
    .await
    .unwrap();

    // Roles as the helpers see them.
    let ps = pg::server_state(&primary).await.unwrap();
    let rs = pg::server_state(&replica).await.unwrap();
    assert!(!ps.in_recovery && rs.in_recovery);
    assert_eq!(pg::last_replay_lsn(&primary).await.unwrap(), None);
    assert!(matches!(
        pg::current_wal_lsn(&replica).await,
        Err(pg::PgError::WrongRole(_))
    ));
    assert!(pg::last_replay_lsn(&replica).await.unwrap().is_some());

    let set: Set = ReplicaSet::builder()
        .max_lag(Duration::ZERO)
        .min_serving_replicas(0)
        .member(Member::primary("primary", primary.clone()))
        .member(Member::replica("replica", replica.clone()))
        .build()
        .unwrap();

    // Streaming: a write reaches the replica, and a read with its token goes there.
    let tag = format!("streamed-{}", std::process::id());
    let token = write(&set, &tag).await;
    until("the replica to replay the write", || async {
        refresh(&set).await;
        replica_stats(&set).applied >= token
    })
    .await;
    let r = set.select_at(token).unwrap();
    assert_eq!(r.role(), Role::Replica);
    assert_eq!(count(&r, &tag).await, 1);
    r.success();

    // Replay paused: the test body runs in its own task so that replay is
    // resumed below whatever happens in it.
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&replica)
        .await
        .unwrap();
    let body = tokio::spawn(paused(set.clone(), primary.clone(), replica.clone()));
    let outcome = body.await;
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&replica)
        .await
        .expect("replay resumed");
    let token = match outcome {
        Ok(token) => token,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };

    // Resumed: a read that waits for a replica gets one as soon as the next
    // health check sees the replay catch up.
    let refresher = {
        let set = set.clone();
        tokio::spawn(async move {
            loop {
                refresh(&set).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let r = set
        .select_at_within(token, Duration::from_secs(20))
        .await
        .unwrap();
    refresher.abort();
    assert_eq!(r.role(), Role::Replica, "the replica caught up");
    assert!(count(&r, &format!("paused-{}", std::process::id())).await >= 1);
    r.success();
    assert!(replica_stats(&set).serving_reads);
}

/// With replay paused: returns the token of a write the replica has received
/// but not applied.
async fn paused(set: Set, primary: PgPool, replica: PgPool) -> Position {
    until("replay to pause", || async {
        let state: String = sqlx::query_scalar("SELECT pg_get_wal_replay_pause_state()")
            .fetch_one(&replica)
            .await
            .unwrap();
        state == "paused"
    })
    .await;
    let tag = format!("paused-{}", std::process::id());
    let token = write(&set, &tag).await;
    until("the replica to receive the write", || async {
        let received: Option<String> = sqlx::query_scalar("SELECT pg_last_wal_receive_lsn()::text")
            .fetch_one(&replica)
            .await
            .unwrap();
        received
            .and_then(|t| pg::parse_lsn(&t).ok())
            .is_some_and(|p| p >= token)
    })
    .await;
    refresh(&set).await;
    let stats = replica_stats(&set);
    assert!(
        stats.applied < token,
        "replay is paused: {:?} < {:?}",
        stats.applied,
        token
    );
    assert!(
        stats.lag > Duration::ZERO,
        "received but not replayed is lag"
    );
    assert!(
        !stats.serving_reads,
        "a replica over max_lag takes no reads"
    );
    assert_eq!(
        count(&replica, &tag).await,
        0,
        "the write is not visible on the replica"
    );

    // A read with the token: the primary at once, or after a bounded wait.
    let r = set.select_at(token).unwrap();
    assert_eq!(r.role(), Role::Primary);
    assert_eq!(count(&r, &tag).await, 1, "read-your-writes holds");
    r.success();
    let started = Instant::now();
    let r = set
        .select_at_within(token, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(r.role(), Role::Primary);
    assert!(started.elapsed() >= Duration::from_millis(100));
    r.success();
    // Plain reads: the only replica lags, so they fall back to the primary.
    assert_eq!(set.select().unwrap().role(), Role::Primary);
    let _ = primary;
    token
}
