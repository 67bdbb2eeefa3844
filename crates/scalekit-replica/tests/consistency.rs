//! Read-your-writes, failover and membership changes under traffic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use scalekit_replica::{Member, Position, ReplicaSet, Role};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn set() -> ReplicaSet<&'static str> {
    ReplicaSet::builder()
        .member(Member::primary("p", "p"))
        .member(Member::replica("r1", "r1"))
        .member(Member::replica("r2", "r2"))
        .build()
        .unwrap()
}

#[test]
fn a_read_with_a_token_goes_only_where_the_write_is_applied() {
    let set = set();
    set.report_applied("r1", Position::new(100)).unwrap();
    set.report_applied("r2", Position::new(50)).unwrap();
    for _ in 0..100 {
        assert_eq!(set.select_at(Position::new(80)).unwrap().name(), "r1");
    }
    // Positions only move forward.
    set.report_applied("r1", Position::new(10)).unwrap();
    assert_eq!(set.select_at(Position::new(80)).unwrap().name(), "r1");
    // Nobody has 200 yet: the primary.
    let s = set.select_at(Position::new(200)).unwrap();
    assert_eq!(s.role(), Role::Primary);
    drop(s);
    assert_eq!(set.stats().primary_fallbacks, 1);
    // Position zero is applied everywhere, even where nothing was reported.
    assert_eq!(
        crate::set().select_at(Position::new(0)).unwrap().role(),
        Role::Replica
    );
}

#[tokio::test(start_paused = true)]
async fn a_read_waits_a_bounded_time_for_a_replica_then_takes_the_primary() {
    let set = set();
    let token = Position::new(500);
    // A replica catches up within the wait: the read goes there, as soon as it does.
    let s2 = set.clone();
    let waiter = tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let s = s2
            .select_at_within(token, Duration::from_millis(200))
            .await
            .unwrap();
        (s.name().to_owned(), start.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    set.report_applied("r2", Position::new(501)).unwrap();
    let (name, waited) = waiter.await.unwrap();
    assert_eq!(name, "r2");
    assert_eq!(waited, Duration::from_millis(30));

    // Nobody catches up: after the bound, the primary.
    let start = tokio::time::Instant::now();
    let s = set
        .select_at_within(Position::new(9_999), Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(s.role(), Role::Primary);
    assert_eq!(start.elapsed(), Duration::from_millis(200));
}

#[test]
fn failover_promotes_a_replica_and_writes_follow() {
    let set = set();
    assert_eq!(set.select_primary().unwrap().name(), "p");
    set.promote("r1").unwrap();
    assert_eq!(set.select_primary().unwrap().name(), "r1");
    let reads: Vec<String> = (0..100)
        .map(|_| set.select().unwrap().name().to_owned())
        .collect();
    assert!(
        reads.iter().all(|n| n == "p" || n == "r2"),
        "the new primary takes no reads"
    );
    assert_eq!(
        set.endpoints()
            .iter()
            .filter(|(_, r)| *r == Role::Primary)
            .count(),
        1,
        "exactly one primary"
    );
    set.remove("p").unwrap();
    assert!((0..50).all(|_| set.select().unwrap().name() == "r2"));
    assert!(set.promote("nobody").is_err());
    // Adding a primary replaces the current one.
    set.add(Member::primary("p2", "p2")).unwrap();
    assert_eq!(set.select_primary().unwrap().name(), "p2");
}

#[test]
fn membership_changes_do_not_stop_traffic() {
    let set: ReplicaSet<u32> = ReplicaSet::builder()
        .member(Member::primary("p", 0))
        .member(Member::replica("base", 1))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let set = set.clone();
            let stop = Arc::clone(&stop);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let s = set.select().expect("a read endpoint is always there");
                    s.success();
                    let w = set.select_primary().expect("a primary is always there");
                    w.success();
                    n += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                n
            })
        })
        .collect();
    // Bounded: a reader that panics stops counting, and the test must then
    // fail rather than wait forever.
    let wait_for_calls = |n: u64| {
        let target = done.load(Ordering::Relaxed) + n;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while done.load(Ordering::Relaxed) < target {
            assert!(
                std::time::Instant::now() < deadline,
                "the readers stopped selecting"
            );
            std::thread::yield_now();
        }
    };
    for round in 0..200u32 {
        wait_for_calls(20);
        let name = format!("r{round}");
        set.add(Member::replica(name.as_str(), round + 10)).unwrap();
        set.set_weight(&name, 1 + round % 4).unwrap();
        if round % 10 == 0 {
            set.promote(&name).unwrap();
            set.promote("p").unwrap();
        }
        if round >= 3 {
            set.remove(&format!("r{}", round - 3)).unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let calls: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(calls > 0);
    let stats = set.stats();
    assert_eq!(stats.endpoints.len(), 5);
    assert_eq!(
        stats.endpoints.iter().map(|e| e.outstanding).sum::<u32>(),
        0
    );
}

#[test]
fn a_primary_in_the_read_rotation_has_applied_every_token() {
    let set: ReplicaSet<&'static str> = ReplicaSet::builder()
        .primary_reads(scalekit_replica::PrimaryReads::Always)
        .member(Member::primary("p", "p"))
        .member(Member::replica("r", "r"))
        .build()
        .unwrap();
    for _ in 0..50 {
        let s = set.select_at(Position::new(7)).unwrap();
        assert_eq!(s.name(), "p");
    }
    assert_eq!(
        set.stats().primary_fallbacks,
        0,
        "chosen as a read candidate, not as a fallback"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unrepresentable_wait_has_no_deadline_instead_of_panicking() {
    let set = set();
    let token = Position::new(700);
    // `Instant::now() + Duration::MAX` overflows: the wait must not panic, and
    // waits (unbounded) until a replica applies the token.
    let s2 = set.clone();
    let waiter = tokio::spawn(async move {
        let s = s2.select_at_within(token, Duration::MAX).await.unwrap();
        s.name().to_owned()
    });
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!waiter.is_finished());
    set.report_applied("r1", Position::new(700)).unwrap();
    let name = tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .expect("woken by report_applied")
        .expect("no panic");
    assert_eq!(name, "r1");
    // A selection meets huge durations elsewhere too without overflow.
    set.report_lag("r2", Duration::MAX).unwrap();
    let s = set.select().unwrap();
    s.finish_with_latency(scalekit_core::Outcome::Success, Duration::MAX);
}
