//! Expiry on the manual clock: time-to-live, time-to-idle, per-entry
//! deadlines, negative caching, stale-while-revalidate, and the timer wheel
//! removing what is due (and telling the listener).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use scalekit_cache::{Cache, Expiry, RemovalCause};
use scalekit_core::ManualClock;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn time_to_live_counts_from_the_last_write() {
    let clock = ManualClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(10)
        .time_to_live(secs(10))
        .clock(Arc::new(clock.clone()))
        .build();
    cache.insert(1, 1);
    clock.advance(secs(6));
    assert_eq!(cache.get(&1), Some(1), "reads do not extend a time-to-live");
    cache.insert(1, 2);
    clock.advance(secs(6));
    assert_eq!(cache.get(&1), Some(2), "a write restarts it");
    clock.advance(secs(4));
    assert_eq!(cache.get(&1), None);
}

#[test]
fn time_to_idle_counts_from_the_last_access_within_the_time_to_live() {
    let clock = ManualClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(10)
        .time_to_idle(secs(5))
        .time_to_live(secs(12))
        .clock(Arc::new(clock.clone()))
        .build();
    cache.insert(1, 1);
    for _ in 0..2 {
        clock.advance(secs(4));
        assert_eq!(cache.get(&1), Some(1));
    }
    clock.advance(secs(4));
    assert_eq!(cache.get(&1), None, "the time-to-live still caps it at 12s");
    cache.insert(2, 2);
    clock.advance(secs(5));
    assert_eq!(cache.get(&2), None, "idle for 5s");
}

#[test]
fn per_entry_expiry_and_the_earliest_deadline_wins() {
    struct ByValue;
    impl Expiry<u32, u64> for ByValue {
        fn expire_after_create(&self, _: &u32, value: &u64) -> Option<Duration> {
            (*value > 0).then(|| secs(*value))
        }
    }
    let clock = ManualClock::new();
    let cache: Cache<u32, u64> = Cache::builder()
        .max_capacity(10)
        .time_to_live(secs(100))
        .expire_after(ByValue)
        .clock(Arc::new(clock.clone()))
        .build();
    cache.insert(1, 3);
    cache.insert(2, 0); // no deadline from the policy: the TTL applies
    cache.insert(3, 500); // capped by the TTL
    clock.advance(secs(3));
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.get(&2), Some(0));
    clock.advance(secs(97));
    assert_eq!(cache.get(&2), None);
    assert_eq!(cache.get(&3), None);
}

#[test]
fn the_wheel_removes_what_is_due_and_tells_the_listener() {
    let clock = ManualClock::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(1_000)
        .clock(Arc::new(clock.clone()))
        .eviction_listener(move |k, _, cause| sink.lock().unwrap().push((k, cause)))
        .build();
    // Deadlines spread over every level of the wheel: seconds to weeks.
    let ttls = [1, 30, 90, 3_600, 7_200, 86_400, 200_000, 1_000_000];
    for (k, ttl) in ttls.iter().enumerate() {
        cache.insert_with_ttl(k as u32, 0, secs(*ttl));
    }
    let mut elapsed = 0;
    for (k, ttl) in ttls.iter().enumerate() {
        clock.advance(secs(ttl - elapsed - 1));
        elapsed = ttl - 1;
        cache.run_pending_tasks();
        assert!(
            cache.contains_key(&(k as u32)),
            "key {k} gone before {ttl}s"
        );
        clock.advance(secs(1));
        elapsed += 1;
        cache.run_pending_tasks();
        assert_eq!(
            cache.entry_count(),
            (ttls.len() - k - 1) as u64,
            "at {ttl}s"
        );
        assert_eq!(
            log.lock().unwrap().pop(),
            Some((k as u32, RemovalCause::Expired))
        );
    }
    assert_eq!(cache.stats().evicted_expired, ttls.len() as u64);
}

#[test]
fn many_deadlines_expire_in_order_without_a_scan() {
    let clock = ManualClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(100_000)
        .clock(Arc::new(clock.clone()))
        .build();
    for k in 0..10_000u32 {
        cache.insert_with_ttl(k, k, Duration::from_millis(u64::from(k) * 100 + 50));
    }
    for step in 1..=1_000u64 {
        clock.advance(Duration::from_millis(1_000));
        cache.run_pending_tasks();
        let expected = 10_000u64.saturating_sub(step * 10);
        assert_eq!(cache.entry_count(), expected, "after {step}s");
    }
}

#[test]
fn negative_results_are_kept_for_a_shorter_time() {
    let clock = ManualClock::new();
    let cache: Cache<u32, Option<String>> = Cache::builder()
        .max_capacity(10)
        .time_to_live(secs(60))
        .negative_ttl(secs(2))
        .clock(Arc::new(clock.clone()))
        .build();
    assert_eq!(cache.get_with(1, || None), None);
    assert_eq!(cache.get_with(2, || Some("x".into())), Some("x".into()));
    clock.advance(secs(1));
    assert_eq!(
        cache.get_with(1, || Some("late".into())),
        None,
        "still cached"
    );
    clock.advance(secs(1));
    assert_eq!(cache.get_with(1, || Some("now".into())), Some("now".into()));
    assert_eq!(cache.get(&2), Some(Some("x".into())));
}

#[test]
fn stale_values_are_served_while_one_caller_refreshes() {
    let clock = ManualClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(10)
        .time_to_live(secs(10))
        .stale_while_revalidate(secs(5))
        .clock(Arc::new(clock.clone()))
        .build();
    cache.insert(1, 1);
    clock.advance(secs(12));
    assert_eq!(cache.get(&1), None, "plain reads never see stale values");
    assert_eq!(
        cache.try_get_with(1, || Err::<u32, ()>(())),
        Ok(1),
        "failed refresh: stale"
    );
    assert_eq!(cache.get_with(1, || 2), 2, "refreshed");
    clock.advance(secs(16));
    assert_eq!(
        cache.get_with(1, || 3),
        3,
        "past the stale period: a plain miss"
    );
}

#[test]
fn refresh_ahead_reloads_before_the_deadline() {
    let clock = ManualClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(10)
        .time_to_live(secs(10))
        .refresh_ahead(1.0)
        .clock(Arc::new(clock.clone()))
        .build();
    // A load that takes no measurable time is never refreshed early; one that
    // takes long is, near its deadline (the loader's time is real time here).
    cache.get_with(1, || {
        std::thread::sleep(Duration::from_millis(20));
        1
    });
    clock.advance(Duration::from_millis(9_999));
    let mut refreshed = 0;
    for _ in 0..200 {
        if cache.get_with(1, || 2) == 2 {
            refreshed += 1;
            break;
        }
    }
    assert_eq!(
        refreshed, 1,
        "within 1ms of a 20ms load's deadline, XFetch refreshes"
    );
    let fresh: Cache<u32, u32> = Cache::builder()
        .max_capacity(10)
        .time_to_live(secs(10))
        .refresh_ahead(1.0)
        .clock(Arc::new(clock.clone()))
        .build();
    fresh.insert(1, 1);
    for _ in 0..100 {
        assert_eq!(
            fresh.get_with(1, || 2),
            1,
            "inserted values have no load time"
        );
    }
}
