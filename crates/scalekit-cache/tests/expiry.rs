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
    let cache: Cache<u32, u32, _, ManualClock> = Cache::builder()
        .max_capacity(10)
        .time_to_live(secs(10))
        .clock(clock.clone())
        .build()
        .unwrap();
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
    let cache: Cache<u32, u32, _, ManualClock> = Cache::builder()
        .max_capacity(10)
        .time_to_idle(secs(5))
        .time_to_live(secs(12))
        .clock(clock.clone())
        .build()
        .unwrap();
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
    let cache: Cache<u32, u64, _, ManualClock> = Cache::builder()
        .max_capacity(10)
        .time_to_live(secs(100))
        .expire_after(ByValue)
        .clock(clock.clone())
        .build()
        .unwrap();
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
    let cache: Cache<u32, u32, _, ManualClock> = Cache::builder()
        .max_capacity(1_000)
        .clock(clock.clone())
        .eviction_listener(move |k, _, cause| sink.lock().unwrap().push((k, cause)))
        .build()
        .unwrap();
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
    let cache: Cache<u32, u32, _, ManualClock> = Cache::builder()
        .max_capacity(100_000)
        .clock(clock.clone())
        .build()
        .unwrap();
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
    let cache: Cache<u32, Option<String>, _, ManualClock> = Cache::builder()
        .max_capacity(10)
        .time_to_live(secs(60))
        .negative_ttl(secs(2))
        .clock(clock.clone())
        .build()
        .unwrap();
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
    let cache: Cache<u32, u32, _, ManualClock> = Cache::builder()
        .max_capacity(10)
        .time_to_live(secs(10))
        .stale_while_revalidate(secs(5))
        .clock(clock.clone())
        .build()
        .unwrap();
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
    let cache: Cache<u32, u32, _, ManualClock> = Cache::builder()
        .max_capacity(10)
        .time_to_live(secs(10))
        .refresh_ahead(1.0)
        .clock(clock.clone())
        .build()
        .unwrap();
    // The load's time is read on the cache's clock: this loader "takes" 20 ms.
    cache.get_with(1, || {
        clock.advance(Duration::from_millis(20));
        1
    });
    assert_eq!(
        cache.stats().load_nanos,
        20_000_000,
        "load time on the cache's clock"
    );
    // Fresh for 10 s after the write: at 1 ms before the deadline, XFetch
    // refreshes a 20 ms load with probability 1 - e^(-20) per call.
    clock.advance(Duration::from_millis(9_999));
    assert_eq!(
        cache.get_with(1, || 2),
        2,
        "within 1 ms of a 20 ms load's deadline, XFetch refreshes"
    );
    // Right after a load, the deadline is far: no refresh, ever (the chance
    // per call is below e^(-499)).
    for _ in 0..1_000 {
        assert_eq!(cache.get_with(1, || 3), 2);
    }
    let fresh: Cache<u32, u32, _, ManualClock> = Cache::builder()
        .max_capacity(10)
        .time_to_live(secs(10))
        .refresh_ahead(1.0)
        .clock(clock.clone())
        .build()
        .unwrap();
    fresh.insert(1, 1);
    clock.advance(Duration::from_millis(9_999));
    for _ in 0..100 {
        assert_eq!(
            fresh.get_with(1, || 2),
            1,
            "inserted values have no load time"
        );
    }
}

/// Session-like expiry: each read gives the entry `extend` more, a write
/// `create`.
struct OnRead {
    create: Option<Duration>,
    extend: Option<Duration>,
}

impl Expiry<u32, u32> for OnRead {
    fn expire_after_create(&self, _: &u32, _: &u32) -> Option<Duration> {
        self.create
    }
    fn expire_after_read(&self, _: &u32, _: &u32, _: Option<Duration>) -> Option<Duration> {
        self.extend
    }
}

type Log = Arc<Mutex<Vec<(u32, RemovalCause)>>>;

fn on_read(
    clock: &ManualClock,
    create: Option<Duration>,
    extend: Option<Duration>,
) -> (
    Cache<u32, u32, impl std::hash::BuildHasher, ManualClock>,
    Log,
) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    let cache = Cache::builder()
        .max_capacity(100)
        .time_to_live(secs(3_600))
        .expire_after(OnRead { create, extend })
        .eviction_listener(move |k, _, cause| sink.lock().unwrap().push((k, cause)))
        .clock(clock.clone())
        .build()
        .unwrap();
    (cache, log)
}

#[test]
fn a_read_can_push_a_deadline_later() {
    let clock = ManualClock::new();
    let (cache, _) = on_read(&clock, Some(secs(10)), Some(secs(30)));
    cache.insert(1, 1);
    clock.advance(secs(9));
    assert_eq!(cache.get(&1), Some(1), "the read gives it 30 s more");
    clock.advance(secs(29));
    cache.run_pending_tasks();
    assert_eq!(cache.get(&1), Some(1), "alive at 38 s, past its first 10 s");
    clock.advance(secs(30));
    assert_eq!(cache.get(&1), None);
    // The time-to-live still caps it: reading every 20 s keeps it an hour.
    cache.insert(2, 2);
    assert_eq!(cache.get(&2), Some(2));
    for _ in 0..179 {
        clock.advance(secs(20));
        assert_eq!(cache.get(&2), Some(2));
    }
    clock.advance(secs(20));
    assert_eq!(cache.get(&2), None, "an hour after its write");
}

#[test]
fn a_read_can_bring_a_deadline_forward_and_the_wheel_expires_it_then() {
    let clock = ManualClock::new();
    let (cache, log) = on_read(&clock, None, Some(secs(5)));
    cache.insert(1, 1);
    clock.advance(secs(100));
    assert_eq!(
        cache.get(&1),
        Some(1),
        "no deadline but the hour's TTL before the read"
    );
    clock.advance(secs(5));
    assert_eq!(cache.get(&1), None, "5 s after the read");
    // The wheel was told: the entry leaves at the next maintenance, not an
    // hour later.
    cache.run_pending_tasks();
    assert_eq!(cache.entry_count(), 0);
    assert_eq!(
        log.lock().unwrap().as_slice(),
        &[(1, RemovalCause::Expired)]
    );
}

#[test]
fn a_read_can_take_a_deadline_away_within_the_time_to_live() {
    let clock = ManualClock::new();
    let (cache, _) = on_read(&clock, Some(secs(10)), None);
    cache.insert(1, 1);
    assert_eq!(cache.get(&1), Some(1));
    clock.advance(secs(3_599));
    cache.run_pending_tasks();
    assert_eq!(
        cache.get(&1),
        Some(1),
        "its 10 s were taken away by the read"
    );
    clock.advance(secs(1));
    assert_eq!(cache.get(&1), None, "the time-to-live still applies");
}

#[test]
fn the_default_read_hook_leaves_deadlines_and_time_to_idle_alone() {
    struct CreateOnly;
    impl Expiry<u32, u32> for CreateOnly {
        fn expire_after_create(&self, _: &u32, _: &u32) -> Option<Duration> {
            Some(secs(100))
        }
    }
    let clock = ManualClock::new();
    let cache: Cache<u32, u32, _, ManualClock> = Cache::builder()
        .max_capacity(10)
        .time_to_idle(secs(10))
        .expire_after(CreateOnly)
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.insert(1, 1);
    for _ in 0..11 {
        clock.advance(secs(9));
        assert_eq!(cache.get(&1), Some(1), "reads keep it idle-fresh");
    }
    clock.advance(secs(2));
    assert_eq!(cache.get(&1), None, "the Expiry's 100 s still cap it");
}

#[test]
fn insert_with_ttl_overrides_the_read_hook() {
    let clock = ManualClock::new();
    let (cache, _) = on_read(&clock, None, Some(secs(1)));
    cache.insert_with_ttl(1, 1, secs(60));
    assert_eq!(cache.get(&1), Some(1));
    clock.advance(secs(59));
    assert_eq!(cache.get(&1), Some(1), "the hook does not apply to it");
    clock.advance(secs(1));
    assert_eq!(cache.get(&1), None);
}
