//! The scatter-gather executor: concurrency limit, timeout per shard, and the
//! two failure policies. Time is tokio's paused clock: nothing sleeps for real.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use scalekit_shard::{OnShardFailure, ScatterGather, ShardExecutor, ShardFailure, Target};

#[derive(Debug)]
struct Boom;

impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}
impl std::error::Error for Boom {}

/// Each shard answers its table name after `delay`; "bad" fails, "slow" takes a minute.
struct Fake {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Fake {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl ShardExecutor for Fake {
    type Request = Duration;
    type Response = String;
    type Error = Boom;

    async fn execute(&self, target: &Target, delay: &Duration) -> Result<String, Boom> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let d = if &*target.database == "slow" {
            Duration::from_secs(60)
        } else {
            *delay
        };
        tokio::time::sleep(d).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if &*target.database == "bad" {
            return Err(Boom);
        }
        Ok(target.table.to_string())
    }
}

fn targets(dbs: &[&str]) -> Vec<Target> {
    dbs.iter()
        .enumerate()
        .map(|(i, d)| Target::new(*d, format!("t{i}")))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_limited_and_answers_keep_target_order() {
    let fake = Fake::new();
    let ts = targets(&["a", "b", "c", "d", "e", "f", "g"]);
    let sg = ScatterGather::new().concurrency(3);
    let started = tokio::time::Instant::now();
    let got = sg
        .run(&fake, &ts, &Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(fake.max_in_flight.load(Ordering::SeqCst), 3);
    // 7 shards, 3 at a time, 100 ms each: three rounds.
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    let names: Vec<&str> = got.responses.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(names, ["t0", "t1", "t2", "t3", "t4", "t5", "t6"]);
    assert!(got.is_complete());
    assert_eq!(sg.stats().calls, 7);
}

#[tokio::test(start_paused = true)]
async fn a_slow_shard_times_out() {
    let fake = Fake::new();
    let ts = targets(&["a", "slow", "c"]);
    let sg = ScatterGather::new().timeout(Duration::from_secs(2));
    let err = sg
        .run(&fake, &ts, &Duration::from_millis(5))
        .await
        .unwrap_err();
    assert_eq!(&*err.target.database, "slow");
    assert!(matches!(err.failure, ShardFailure::Timeout(d) if d == Duration::from_secs(2)));
    assert_eq!(err.to_string(), "shard slow.t1 failed: no answer within 2s");
    assert_eq!(sg.stats().timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn fail_policy_returns_the_first_failure() {
    let fake = Fake::new();
    let ts = targets(&["a", "bad", "c"]);
    let sg = ScatterGather::new();
    let err = sg
        .run(&fake, &ts, &Duration::from_millis(5))
        .await
        .unwrap_err();
    assert_eq!(&*err.target.database, "bad");
    assert!(matches!(err.failure, ShardFailure::Error(Boom)));
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test(start_paused = true)]
async fn partial_policy_names_the_missing_shards() {
    let fake = Fake::new();
    let ts = targets(&["a", "bad", "slow", "d"]);
    let sg = ScatterGather::new()
        .timeout(Duration::from_secs(1))
        .on_failure(OnShardFailure::Partial);
    let got = sg.run(&fake, &ts, &Duration::from_millis(5)).await.unwrap();
    let names: Vec<&str> = got.responses.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(names, ["t0", "t3"]);
    let missing: Vec<String> = got.missing.iter().map(|m| m.target.to_string()).collect();
    assert_eq!(missing, ["bad.t1", "slow.t2"]);
    assert!(matches!(got.missing[0].failure, ShardFailure::Error(_)));
    assert!(matches!(got.missing[1].failure, ShardFailure::Timeout(_)));
    assert!(!got.is_complete());
    let s = sg.stats();
    assert_eq!((s.runs, s.failures, s.timeouts, s.partial), (1, 1, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn no_targets_no_calls() {
    let fake = Fake::new();
    let got = ScatterGather::new()
        .run(&fake, &[], &Duration::ZERO)
        .await
        .unwrap();
    assert!(got.responses.is_empty() && got.is_complete());
}

/// A run can be awaited where the future must be `Send` (an `async_trait` method,
/// `tokio::spawn`) with targets borrowed from the caller.
#[tokio::test]
async fn a_run_is_send_inside_async_trait_methods() {
    #[async_trait]
    trait Query {
        async fn ask(&self, sg: &ScatterGather) -> usize;
    }
    struct Q;
    #[async_trait]
    impl Query for Q {
        async fn ask(&self, sg: &ScatterGather) -> usize {
            let targets = vec![Target::new("a", "t"), Target::new("b", "t")];
            let fake = Fake::new();
            sg.run(&fake, &targets, &Duration::ZERO)
                .await
                .map(|g| g.responses.len())
                .unwrap_or(0)
        }
    }
    let sg = std::sync::Arc::new(ScatterGather::new());
    let n = tokio::spawn(async move { Q.ask(&sg).await }).await.unwrap();
    assert_eq!(n, 2);
}
