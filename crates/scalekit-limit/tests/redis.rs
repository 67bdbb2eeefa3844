//! GCRA over a real Redis: the same decisions as the local limiter on the same
//! sequence, the admission bound, server time, EVALSHA after a script flush, and
//! fail open / fail closed.
//!
//! Needs `SCALEKIT_REDIS_URL` (for example `redis://127.0.0.1:6379`); without it
//! the tests say they were skipped. Under `CI` an unreachable server fails them.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::num::NonZeroU32;
use std::time::Duration;

use proptest::prelude::*;
use scalekit_core::{mix64, ManualClock};
use scalekit_limit::{DenyKind, OnError, Quota, RateLimiter, RedisRateLimiter};

fn redis_url(test: &str) -> Option<String> {
    match std::env::var("SCALEKIT_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: SCALEKIT_REDIS_URL is not set under CI"
            );
            eprintln!(
                "{test}: skipped: SCALEKIT_REDIS_URL is not set (start Redis and export it to run)"
            );
            None
        }
    }
}

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

async fn connect(url: &str, test: &str) -> Option<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url).unwrap();
    match tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
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
        let Some(url) = redis_url("redis_and_local_gcra_decide_alike") else { return Ok(()) };
        // Intervals in whole microseconds: the script counts in microseconds.
        let quota = Quota::with_interval(Duration::from_micros(1_000_000 / u64::from(rate))).unwrap().allow_burst(nz(burst));
        runtime().block_on(async {
            let Some(conn) = connect(&url, "redis_and_local_gcra_decide_alike").await else { return Ok(()) };
            let clock = ManualClock::starting_at(Duration::from_secs(1));
            let local = RateLimiter::with_clock(quota, clock.clone());
            let remote = RedisRateLimiter::builder(quota)
                .prefix(prefix("same"))
                .timeout(Duration::from_secs(2))
                .client_clock(clock.clone())
                .build(conn);
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
    let Some(url) = redis_url("server_time_burst") else {
        return;
    };
    runtime().block_on(async {
        let Some(mut conn) = connect(&url, "server_time_burst").await else {
            return;
        };
        let limiter = RedisRateLimiter::builder(Quota::per_minute(nz(5)))
            .prefix(prefix("server"))
            .timeout(Duration::from_secs(2))
            .build(conn.clone());
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
        // A server that is not there at all.
        let r = RedisRateLimiter::builder(Quota::per_second(nz(1)))
            .timeout(Duration::from_millis(200))
            .connect("redis://127.0.0.1:1")
            .await;
        assert!(r.is_err());
    });
}
