//! Both limits over a real Redis: GCRA and the sliding window make the same
//! decisions as the local limiters on the same sequences and keep their bounds;
//! server time, EVALSHA after a script flush, the window keys' TTLs, and fail
//! open / fail closed.
//!
//! Each runs on one server (`SCALEKIT_REDIS_URL`, for example
//! `redis://127.0.0.1:6379`) and on a Redis Cluster
//! (`SCALEKIT_REDIS_CLUSTER_URLS`); without them the tests say they were
//! skipped. Under `CI` an unreachable server fails them.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::num::NonZeroU32;
use std::time::Duration;

use proptest::prelude::*;
use scalekit_core::redis::{RedisConnection, RedisOptions, RedisTarget};
use scalekit_core::{mix64, ManualClock};
use scalekit_limit::{
    DenyKind, KeyedSlidingWindow, OnError, Quota, RateLimiter, RedisRateLimiter, RedisSlidingWindow,
};
use scalekit_test_support::services::{redis_cluster_urls, redis_url};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A prefix no earlier run used, so leftovers never matter.
fn prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!(
        "scalekit-test:{test}:{:016x}:",
        mix64(nanos ^ u64::from(std::process::id()))
    )
}

/// The test's targets: the single server and the cluster, those that are set.
fn targets(test: &str) -> Vec<String> {
    [redis_url(test), redis_cluster_urls(test)]
        .into_iter()
        .flatten()
        .collect()
}

async fn connect(url: &str, test: &str) -> Option<RedisConnection> {
    let target: RedisTarget = url.parse().unwrap();
    match tokio::time::timeout(
        Duration::from_secs(5),
        target.connect(&RedisOptions::new(Duration::from_secs(2))),
    )
    .await
    {
        Ok(Ok(conn)) => Some(conn),
        other => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: Redis at {url} is unreachable under CI: {other:?}"
            );
            eprintln!("{test}: skipped: Redis at {url} is unreachable: {other:?}");
            None
        }
    }
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn redis_and_local_gcra_decide_alike_and_keep_the_bound(
        rate in 1u32..40,
        burst in 1u32..10,
        reqs in prop::collection::vec((prop_oneof![Just(0u64), 0u64..50_000, 0u64..2_000_000], prop_oneof![3 => Just(1u32), 1 => 1u32..4]), 1..80),
    ) {
        // Intervals in whole microseconds: the script counts in microseconds.
        let quota = Quota::with_interval(Duration::from_micros(1_000_000 / u64::from(rate))).unwrap().allow_burst(nz(burst));
        for url in targets("redis_and_local_gcra_decide_alike") {
        let reqs = reqs.clone();
        runtime().block_on(async {
            let Some(conn) = connect(&url, "redis_and_local_gcra_decide_alike").await else { return Ok(()) };
            let clock = ManualClock::starting_at(Duration::from_secs(1));
            let local = RateLimiter::with_clock(quota, clock.clone());
            let remote = RedisRateLimiter::builder(quota)
                .prefix(prefix("same"))
                .timeout(Duration::from_secs(2))
                .clock(clock.clone())
                .build(conn)
                .unwrap();
            let mut admitted = vec![];
            for (gap_us, n) in reqs {
                clock.advance(Duration::from_micros(gap_us));
                let l = local.check_n(n);
                let r = remote.try_check_key_n("k", n).await.unwrap();
                prop_assert_eq!(l, r, "at {:?}", clock.now());
                if l.is_ok() { admitted.push((clock.now_nanos_u64(), n)); }
            }
            // The bound, on what Redis admitted: at most T / interval + burst in any T.
            let t = quota.interval().as_nanos() as u64;
            for (i, &(start, _)) in admitted.iter().enumerate() {
                for span in [0, t, 10 * t] {
                    let units: u64 = admitted[i..].iter().take_while(|(at, _)| *at <= start + span).map(|(_, n)| u64::from(*n)).sum();
                    prop_assert!(units <= span / t + u64::from(burst));
                }
            }
            Ok(())
        })?;
        }
    }
}

trait NowNanos {
    fn now_nanos_u64(&self) -> u64;
}
impl NowNanos for ManualClock {
    fn now_nanos_u64(&self) -> u64 {
        self.now().as_nanos() as u64
    }
}

#[test]
fn server_time_burst_then_denial_and_noscript_recovery() {
    for url in targets("server_time_burst") {
        runtime().block_on(async {
            let Some(mut conn) = connect(&url, "server_time_burst").await else {
                return;
            };
            let limiter = RedisRateLimiter::builder(Quota::per_minute(nz(5)))
                .prefix(prefix("server"))
                .timeout(Duration::from_secs(2))
                .build(conn.clone())
                .unwrap();
            limiter.ping().await.unwrap();
            for left in (0..5).rev() {
                assert_eq!(limiter.check_key("a").await.unwrap().remaining(), left);
            }
            let d = limiter.check_key("a").await.unwrap_err();
            assert_eq!(d.kind(), DenyKind::RateLimited);
            let wait = d.retry_after().unwrap();
            assert!(
                wait > Duration::from_secs(11) && wait <= Duration::from_secs(12),
                "{wait:?}"
            );
            // Another key has its own bucket.
            assert!(limiter.check_key("b").await.is_ok());
            // After SCRIPT FLUSH the script is loaded again on NOSCRIPT.
            let _: () = redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(limiter.check_key("c").await.is_ok());
            assert_eq!(
                limiter.check_key_n("c", 6).await.unwrap_err().kind(),
                DenyKind::ExceedsBurst
            );
            assert_eq!(limiter.errors(), 0);
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn redis_and_local_sliding_windows_decide_alike_and_keep_the_bound(
        limit in 1u32..20,
        window_ms in prop_oneof![Just(1_000u64), 10u64..3_000],
        reqs in prop::collection::vec((prop_oneof![Just(0u64), 0u64..400, 0u64..4_000], 0u8..3, prop_oneof![4 => Just(1u32), 1 => 1u32..25]), 1..80),
    ) {
        for url in targets("redis_and_local_sliding_windows_decide_alike") {
        let reqs = reqs.clone();
        runtime().block_on(async {
            let Some(conn) = connect(&url, "redis_and_local_sliding_windows_decide_alike").await else { return Ok(()) };
            // Whole milliseconds: Redis counts in milliseconds.
            let clock = ManualClock::starting_at(Duration::from_secs(1));
            let window = Duration::from_millis(window_ms);
            let local = KeyedSlidingWindow::<str, _>::builder(limit, window).clock(clock.clone()).build().unwrap();
            let remote = RedisSlidingWindow::builder(limit, window)
                .prefix(prefix("window"))
                .timeout(Duration::from_secs(2))
                .clock(clock.clone())
                .build(conn)
                .unwrap();
            let w = window_ms * 1_000_000;
            let mut admitted: Vec<Vec<(u64, u64)>> = vec![vec![]; 3];
            for (gap_ms, key, n) in reqs {
                clock.advance(Duration::from_millis(gap_ms));
                let key_name = ["a", "b", "c"][key as usize];
                let l = local.check_key_n(key_name, n);
                let r = remote.try_check_key_n(key_name, n).await.unwrap();
                prop_assert_eq!(l, r, "at {:?} key {}", clock.now(), key_name);
                if l.is_ok() {
                    let now = clock.now().as_nanos() as u64;
                    let log = &mut admitted[key as usize];
                    log.push((now, u64::from(n)));
                    // The bound on what Redis admitted: a fixed window at most
                    // `limit`, any window-long span under twice that.
                    let idx = now / w;
                    let fixed: u64 = log.iter().filter(|(t, _)| t / w == idx).map(|(_, n)| n).sum();
                    prop_assert!(fixed <= u64::from(limit));
                    let span: u64 = log.iter().filter(|(t, _)| t + w > now).map(|(_, n)| n).sum();
                    prop_assert!(span < 2 * u64::from(limit));
                }
            }
            Ok(())
        })?;
        }
    }
}

#[test]
fn sliding_window_on_server_time_with_one_key_per_window_and_ttls() {
    for url in targets("sliding_window_on_server_time") {
        runtime().block_on(async {
            let Some(mut conn) = connect(&url, "sliding_window_on_server_time").await else {
                return;
            };
            let prefix = prefix("window-server");
            let limiter = RedisSlidingWindow::builder(5, Duration::from_secs(3600))
                .prefix(prefix.clone())
                .timeout(Duration::from_secs(2))
                .build(conn.clone())
                .unwrap();
            limiter.ping().await.unwrap();
            for left in (0..5).rev() {
                assert_eq!(limiter.check_key("a").await.unwrap().remaining(), left);
            }
            let d = limiter.check_key("a").await.unwrap_err();
            assert_eq!(d.kind(), DenyKind::RateLimited);
            assert!(d.retry_after().unwrap() <= Duration::from_secs(2 * 3600));
            assert!(
                limiter.check_key("b").await.is_ok(),
                "another key, its own windows"
            );
            assert_eq!(
                limiter.check_key_n("b", 6).await.unwrap_err().kind(),
                DenyKind::ExceedsBurst
            );
            // One Redis key per fixed window of each client key, expiring two
            // windows after it starts at the latest.
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{{{prefix}*"))
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(keys.len(), 2, "{keys:?}");
            for key in &keys {
                assert!(
                    key.starts_with(&format!("{{{prefix}a}}:"))
                        || key.starts_with(&format!("{{{prefix}b}}:")),
                    "{key}"
                );
                let ttl: i64 = redis::cmd("PTTL")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                assert!(ttl > 3_600_000 && ttl <= 7_200_000, "{key}: {ttl} ms");
            }
            // After SCRIPT FLUSH the script is loaded again on NOSCRIPT.
            let _: () = redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(limiter.check_key("c").await.is_ok());
            assert_eq!(limiter.errors(), 0);
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        });
    }
}

#[test]
fn sliding_window_settings_are_checked() {
    runtime().block_on(async {
        // Refused before any connection is made.
        let e = RedisSlidingWindow::builder(10, Duration::from_micros(1500))
            .connect("redis://127.0.0.1:1")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("whole milliseconds"), "{e}");
        let e = RedisSlidingWindow::builder(u32::MAX, Duration::from_secs(366 * 24 * 3600))
            .connect("redis://127.0.0.1:1")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("`limit`"), "{e}");
    });
}

/// A server that answers connection set-up with `+OK` but never answers a
/// script: Redis as seen from a client when it hangs.
async fn hanging_redis() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]);
                    if text.contains("EVAL") {
                        continue; // hang
                    }
                    let commands =
                        text.matches("\r\n*").count() + usize::from(text.starts_with('*'));
                    for _ in 0..commands.max(1) {
                        let _ = sock.write_all(b"+OK\r\n").await;
                    }
                }
            });
        }
    });
    format!("redis://{addr}")
}

#[test]
fn fail_open_and_fail_closed_when_redis_does_not_answer_in_time() {
    runtime().block_on(async {
        let url = hanging_redis().await;
        for (on_error, admitted) in [(OnError::FailOpen, true), (OnError::FailClosed, false)] {
            let limiter = RedisRateLimiter::builder(Quota::per_second(nz(1)))
                .prefix(prefix("down"))
                .timeout(Duration::from_millis(50))
                .on_error(on_error)
                .connect(&url)
                .await
                .unwrap();
            let r = limiter.check_key("x").await;
            assert_eq!(r.is_ok(), admitted);
            if let Err(d) = r {
                assert_eq!(d.kind(), DenyKind::Unavailable);
            }
            assert_eq!(limiter.errors(), 1);
            let e = limiter.try_check_key_n("x", 1).await.unwrap_err();
            assert_eq!(e.to_string(), "redis rate limit: no answer within 50ms");
        }
        let window = RedisSlidingWindow::builder(1, Duration::from_secs(1))
            .prefix(prefix("down"))
            .timeout(Duration::from_millis(50))
            .on_error(OnError::FailClosed)
            .connect(&url)
            .await
            .unwrap();
        assert_eq!(
            window.check_key("x").await.unwrap_err().kind(),
            DenyKind::Unavailable
        );
        assert_eq!(window.errors(), 1);
        // A server that is not there at all.
        let r = RedisRateLimiter::builder(Quota::per_second(nz(1)))
            .timeout(Duration::from_millis(200))
            .connect("redis://127.0.0.1:1")
            .await;
        assert!(r.is_err());
    });
}
