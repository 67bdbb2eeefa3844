//! Hedged requests and their budget, in tokio's paused time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use scalekit_core::ManualClock;
use scalekit_replica::{Budget, Hedge, HedgeError, Member, ReplicaSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn two(slow_ms: u64, fast_ms: u64) -> ReplicaSet<u64> {
    ReplicaSet::builder()
        .member(Member::replica("slow", slow_ms))
        .member(Member::replica("fast", fast_ms))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_slow_call_is_hedged_and_the_slower_one_cancelled() {
    let set = two(2_000, 5);
    let budget = Arc::new(Budget::builder().build().unwrap());
    let hedge = Hedge::new(Duration::from_millis(50), Arc::clone(&budget));
    let started = Arc::new(AtomicU32::new(0));
    let finished = Arc::new(AtomicU32::new(0));
    for _ in 0..20 {
        let start = tokio::time::Instant::now();
        let (s, f) = (Arc::clone(&started), Arc::clone(&finished));
        let v = set
            .hedged(&hedge, move |ms| {
                let (s, f) = (Arc::clone(&s), Arc::clone(&f));
                async move {
                    s.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    f.fetch_add(1, Ordering::Relaxed);
                    Ok::<u64, ()>(ms)
                }
            })
            .await
            .unwrap();
        assert_eq!(v, 5);
        assert!(start.elapsed() <= Duration::from_millis(55));
    }
    // Every call finished by the fast endpoint; the slow ones were dropped unfinished.
    assert_eq!(finished.load(Ordering::Relaxed), 20);
    let (_calls, extra) = budget.usage();
    assert_eq!(u64::from(started.load(Ordering::Relaxed)) - 20, extra);
    assert_eq!(
        set.stats()
            .endpoints
            .iter()
            .map(|e| e.outstanding)
            .sum::<u32>(),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn the_budget_caps_hedges_in_an_outage() {
    // Everything is slow: without a budget every call would be sent twice.
    let set = two(1_000, 1_000);
    let budget = Arc::new(
        Budget::builder()
            .ratio(0.1)
            .min_per_second(1)
            .window(Duration::from_secs(10))
            .build()
            .unwrap(),
    );
    let hedge = Hedge::new(Duration::from_millis(10), Arc::clone(&budget));
    let sent = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..500 {
        let (set, hedge, sent) = (set.clone(), hedge.clone(), Arc::clone(&sent));
        tasks.push(tokio::spawn(async move {
            set.hedged(&hedge, move |ms| {
                sent.fetch_add(1, Ordering::Relaxed);
                async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok::<_, ()>(())
                }
            })
            .await
        }));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let extra = sent.load(Ordering::Relaxed) - 500;
    // 10% of 500 plus 1/s over a 10 s window.
    assert!(extra <= 60, "{extra} hedges for 500 calls");
    assert!(extra >= 40, "the budget is used: {extra}");
}

#[tokio::test(start_paused = true)]
async fn an_early_failure_is_retried_elsewhere_from_the_same_budget() {
    let set: ReplicaSet<&'static str> = ReplicaSet::builder()
        .member(Member::replica("broken", "broken"))
        .member(Member::replica("ok", "ok"))
        .build()
        .unwrap();
    let budget = Arc::new(
        Budget::builder()
            .min_per_second(0)
            .ratio(1.0)
            .build()
            .unwrap(),
    );
    let hedge = Hedge::new(Duration::from_millis(100), Arc::clone(&budget));
    for _ in 0..20 {
        let r = set
            .hedged(&hedge, |name| async move {
                if name == "broken" {
                    Err("refused")
                } else {
                    Ok(name)
                }
            })
            .await;
        assert_eq!(r.unwrap(), "ok");
    }
    // With an empty budget the failure comes back.
    let empty = Hedge::new(
        Duration::from_millis(100),
        Arc::new(
            Budget::builder()
                .min_per_second(0)
                .ratio(0.0)
                .build()
                .unwrap(),
        ),
    );
    let set1: ReplicaSet<&'static str> = ReplicaSet::builder()
        .member(Member::replica("broken", "broken"))
        .build()
        .unwrap();
    let r = set1
        .hedged(&empty, |_| async { Err::<(), _>("refused") })
        .await;
    assert!(matches!(r, Err(HedgeError::Call("refused"))));
}

#[test]
fn the_budget_counts_over_a_sliding_window() {
    let clock = ManualClock::new();
    let budget = Budget::builder()
        .ratio(0.5)
        .min_per_second(0)
        .window(Duration::from_secs(10))
        .clock(clock.clone())
        .build()
        .unwrap();
    for _ in 0..10 {
        budget.deposit();
    }
    assert_eq!((0..10).filter(|_| budget.try_withdraw()).count(), 5);
    clock.advance(Duration::from_secs(11));
    assert!(!budget.try_withdraw(), "old calls leave the window");
    assert_eq!(budget.usage(), (0, 0));
    let floor = Budget::builder()
        .ratio(0.0)
        .min_per_second(2)
        .window(Duration::from_secs(10))
        .clock(clock)
        .build()
        .unwrap();
    assert_eq!((0..50).filter(|_| floor.try_withdraw()).count(), 20);
    assert!(Budget::builder().ratio(-1.0).build().is_err());
    assert!(Budget::builder().window(Duration::ZERO).build().is_err());
}

#[tokio::test(start_paused = true)]
async fn when_both_copies_fail_the_later_error_comes_back() {
    let set: ReplicaSet<u64> = ReplicaSet::builder()
        .member(Member::replica("a", 200))
        .member(Member::replica("b", 300))
        .build()
        .unwrap();
    let hedge = Hedge::new(
        Duration::from_millis(50),
        Arc::new(Budget::builder().build().unwrap()),
    );
    let r = set
        .hedged(&hedge, |ms| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Err::<(), u64>(ms)
        })
        .await;
    // Whichever went first, b's failure ends last (at 300 ms or 350 ms).
    match r {
        Err(HedgeError::Call(ms)) => assert_eq!(ms, 300),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        set.stats()
            .endpoints
            .iter()
            .map(|e| e.outstanding)
            .sum::<u32>(),
        0
    );
}

/// A clock that follows tokio's (paused) time, so that latencies measured
/// by the hedge are the sleeps of the calls.
#[derive(Debug, Clone, Copy)]
struct TokioClock(tokio::time::Instant);

impl scalekit_core::Clock for TokioClock {
    fn now_nanos(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

#[tokio::test(start_paused = true)]
async fn a_percentile_delay_follows_the_latencies_of_first_attempts() {
    let clock = TokioClock(tokio::time::Instant::now());
    // One endpoint: no hedge can be sent, so every first attempt runs to its end.
    let set = ReplicaSet::builder()
        .clock(clock)
        .member(Member::replica("only", ()))
        .build()
        .unwrap();
    let budget = Arc::new(Budget::builder().clock(clock).build().unwrap());
    let hedge = Hedge::builder(budget)
        .percentile(0.9)
        .min_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(400))
        .window(Duration::from_secs(10))
        .min_samples(50)
        .build()
        .unwrap();
    // Until a window has enough samples: the maximum.
    assert_eq!(hedge.delay(), Duration::from_millis(400));
    // 100 calls taking 1..=100 ms, one after the other (5.05 s).
    let call = |ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<(), ()>(())
    };
    for i in 1..=100u64 {
        set.hedged(&hedge, |()| call(i)).await.unwrap();
    }
    assert_eq!(
        hedge.delay(),
        Duration::from_millis(400),
        "the window is not over"
    );
    // Once the window is over, the delay is the 90th percentile of the
    // latencies seen, at 12.5% resolution.
    tokio::time::advance(Duration::from_secs(5)).await;
    let d = hedge.delay();
    assert!(
        d >= Duration::from_millis(80) && d <= Duration::from_millis(102),
        "{d:?}"
    );
    // Bounds: a fast service still waits the minimum.
    for _ in 0..100 {
        set.hedged(&hedge, |()| call(0)).await.unwrap();
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(hedge.delay(), Duration::from_millis(1));
}

#[tokio::test(start_paused = true)]
async fn a_hedge_sent_at_the_percentile_delay_answers_the_slow_calls() {
    let clock = TokioClock(tokio::time::Instant::now());
    let set = ReplicaSet::builder()
        .clock(clock)
        .member(Member::replica("slow", 2_000u64))
        .member(Member::replica("fast", 5u64))
        .build()
        .unwrap();
    let budget = Arc::new(Budget::builder().ratio(1.0).clock(clock).build().unwrap());
    let hedge = Hedge::builder(budget)
        .max_delay(Duration::from_millis(100))
        .window(Duration::from_millis(500))
        .min_samples(5)
        .build()
        .unwrap();
    for _ in 0..50 {
        let start = tokio::time::Instant::now();
        let v = set
            .hedged(&hedge, |ms: u64| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<u64, ()>(ms)
            })
            .await
            .unwrap();
        assert_eq!(v, 5);
        // Never more than the current delay plus the fast answer.
        assert!(
            start.elapsed() <= Duration::from_millis(106),
            "{:?}",
            start.elapsed()
        );
    }
    // First attempts on "slow" were cancelled at the delay (counted as at
    // least that long), the ones on "fast" answered in 5 ms: the delay stays
    // within its bounds.
    let d = hedge.delay();
    assert!(
        d >= Duration::from_millis(1) && d <= Duration::from_millis(100),
        "{d:?}"
    );
}

#[test]
fn a_hedge_builder_refuses_what_cannot_work() {
    let budget = || Arc::new(Budget::builder().build().unwrap());
    let err = Hedge::builder(budget())
        .percentile(1.5)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid hedge setting `percentile` = 1.5: expected a quantile in (0, 1], such as 0.95"
    );
    let err = Hedge::builder(budget())
        .min_delay(Duration::from_secs(2))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "min_delay");
    let err = Hedge::builder(budget())
        .window(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "window");
    // A fixed delay through the builder.
    let fixed = Hedge::builder(budget())
        .delay(Duration::from_millis(7))
        .build()
        .unwrap();
    assert_eq!(fixed.delay(), Duration::from_millis(7));
}
