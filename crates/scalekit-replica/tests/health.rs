//! Health: outlier ejection, active checks, per-endpoint admission, replication lag.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use scalekit_breaker::{CircuitBreaker, Window};
use scalekit_core::{Admission, Clock, ManualClock, Outcome, RejectReason, Rejected};
use scalekit_replica::{
    AlwaysAdmit, Balance, EjectReason, Event, Health, HealthCheck, Member, OutlierDetection,
    Position, PrimaryReads, ReplicaSet, SelectError, SuccessRate,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn names<C: Clock>(set: &ReplicaSet<&'static str, AlwaysAdmit, C>, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| set.select().unwrap().name().to_owned())
        .collect()
}

/// Whether "bad" (the first member) is in rotation again: a selection meets
/// it and returns it from ejection when its time is up.
fn is_back<C: Clock>(set: &ReplicaSet<&'static str, AlwaysAdmit, C>) -> bool {
    drop(names(set, 20));
    !set.stats().endpoints[0].ejected
}

/// Two replicas in round robin, so each is met every other call. (Under
/// peak-EWMA the manual clock never lets a failed estimate decay, and the picks
/// could avoid an endpoint for good.)
fn round_robin_pair(
    clock: &ManualClock,
    a: &'static str,
    b: &'static str,
) -> ReplicaSet<&'static str, AlwaysAdmit, ManualClock> {
    ReplicaSet::builder()
        .clock(clock.clone())
        .balance(Balance::RoundRobin)
        .outlier_detection(outliers(50))
        .member(Member::replica(a, a))
        .member(Member::replica(b, b))
        .build()
        .unwrap()
}

/// Picks until `name` has failed `failures` times or is ejected, at most 100
/// picks; the others succeed. Returns how many times it failed.
fn fail<C: Clock>(
    set: &ReplicaSet<&'static str, AlwaysAdmit, C>,
    name: &str,
    failures: usize,
) -> usize {
    let mut failed = 0;
    for _ in 0..100 {
        let ejected = set
            .stats()
            .endpoints
            .iter()
            .any(|e| &*e.name == name && e.ejected);
        if failed == failures || ejected {
            break;
        }
        let s = set.select().unwrap();
        if s.name() == name {
            failed += 1;
            s.failure();
        } else {
            s.success();
        }
    }
    failed
}

fn outliers(percent: u32) -> OutlierDetection {
    let mut o = OutlierDetection::default();
    o.consecutive_failures = Some(3);
    o.base_ejection_time = Duration::from_secs(10);
    o.max_ejection_time = Duration::from_secs(25);
    o.max_ejection_percent = percent;
    o
}

#[test]
fn consecutive_failures_eject_for_a_growing_time() {
    let clock = ManualClock::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&events);
    // Round robin: the picks alternate (see `round_robin_pair`).
    let set = ReplicaSet::builder()
        .clock(clock.clone())
        .balance(Balance::RoundRobin)
        .outlier_detection(outliers(50))
        .on_event(move |e| log.lock().unwrap().push(e.clone()))
        .member(Member::replica("bad", "bad"))
        .member(Member::replica("good", "good"))
        .build()
        .unwrap();
    // Ejected by its third failure, not before and not after.
    let fail_bad_until_ejected = || assert_eq!(fail(&set, "bad", 4), 3);
    fail_bad_until_ejected();
    assert!(names(&set, 50).iter().all(|n| n == "good"));
    clock.advance(Duration::from_secs(10));
    // Back after the base time. (Whether a pick then lands on it depends on its
    // latency estimate, which does not decay while the manual clock stands.)
    assert!(is_back(&set), "back after the base time");

    // Second ejection: twice as long.
    fail_bad_until_ejected();
    clock.advance(Duration::from_secs(19));
    assert!(names(&set, 50).iter().all(|n| n == "good"));
    clock.advance(Duration::from_secs(1));
    assert!(is_back(&set));

    // Third: capped at the maximum (25 s, not 30 s).
    fail_bad_until_ejected();
    clock.advance(Duration::from_secs(24));
    assert!(!is_back(&set));
    clock.advance(Duration::from_secs(1));
    assert!(is_back(&set));

    let ejections: Vec<Duration> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Ejected {
                duration, reason, ..
            } => {
                assert_eq!(*reason, EjectReason::ConsecutiveFailures);
                Some(*duration)
            }
            _ => None,
        })
        .collect();
    assert_eq!(ejections, [10, 20, 25].map(Duration::from_secs));
    assert_eq!(set.stats().ejections_total, 3);
}

#[test]
fn maintain_forgives_ejections_over_time() {
    let clock = ManualClock::new();
    let set = round_robin_pair(&clock, "a", "b");
    fail(&set, "a", 3);
    assert_eq!(set.stats().ejected_now, 1);
    assert_eq!(set.stats().endpoints[0].ejections, 1);
    // Still ejected: maintain changes nothing.
    set.maintain();
    assert_eq!(set.stats().endpoints[0].ejections, 1);
    // Time is up: maintain returns it (without a selection meeting it), but
    // does not forgive it yet: it has not been in rotation for an interval.
    clock.advance(Duration::from_secs(10));
    set.maintain();
    assert_eq!(set.stats().ejected_now, 0);
    assert_eq!(set.stats().endpoints[0].ejections, 1);
    // A full interval in rotation forgives one ejection (as Envoy does).
    clock.advance(Duration::from_secs(10));
    set.maintain();
    assert_eq!(set.stats().endpoints[0].ejections, 0);
    set.maintain();
    assert_eq!(set.stats().endpoints[0].ejections, 0);
}

#[test]
fn an_ejection_and_return_between_two_maintains_is_not_forgiven() {
    let clock = ManualClock::new();
    let set = round_robin_pair(&clock, "a", "b");
    set.maintain();
    fail(&set, "a", 3);
    assert_eq!(set.stats().endpoints[0].ejections, 1);
    clock.advance(Duration::from_secs(10));
    assert!(is_back(&set));
    // In rotation now, but it was ejected within this interval.
    set.maintain();
    assert_eq!(set.stats().endpoints[0].ejections, 1);
}

#[test]
fn calls_in_flight_at_an_ejection_do_not_eject_the_endpoint_again_on_return() {
    let clock = ManualClock::new();
    let set = round_robin_pair(&clock, "bad", "good");
    // Six calls on "bad" in flight at once.
    let mut held = Vec::new();
    for _ in 0..40 {
        if held.len() == 6 {
            break;
        }
        let s = set.select().unwrap();
        if s.name() == "bad" {
            held.push(s);
        } else {
            s.success();
        }
    }
    assert_eq!(held.len(), 6);
    // Three of them fail: ejected.
    for s in held.drain(..3) {
        s.failure();
    }
    assert!(set.stats().endpoints[0].ejected);
    clock.advance(Duration::from_secs(10));
    assert!(is_back(&set));
    // The stragglers fail after the return: they started before the ejection
    // and do not count toward the next one.
    for s in held.drain(..) {
        s.failure();
    }
    assert!(
        !set.stats().endpoints[0].ejected,
        "stragglers re-ejected it"
    );
    // Its count starts from zero: one new failure does not eject it either.
    let mut fresh = 0;
    for _ in 0..10 {
        let s = set.select().unwrap();
        if s.name() == "bad" {
            fresh += 1;
            s.failure();
            break;
        }
        s.success();
    }
    assert_eq!(fresh, 1);
    assert!(!set.stats().endpoints[0].ejected);
    assert_eq!(set.stats().ejections_total, 1);
}

#[test]
fn failed_writes_neither_eject_the_primary_nor_use_up_the_cap() {
    let clock = ManualClock::new();
    let set = ReplicaSet::builder()
        .clock(clock.clone())
        .balance(Balance::RoundRobin)
        // Three members, 50%: one may be ejected.
        .outlier_detection(outliers(50))
        .member(Member::primary("p", "p"))
        .member(Member::replica("r1", "r1"))
        .member(Member::replica("r2", "r2"))
        .build()
        .unwrap();
    for _ in 0..10 {
        set.select_primary().unwrap().failure();
    }
    assert_eq!(set.stats().ejected_now, 0);
    assert!(!set.stats().endpoints[0].ejected);
    // A failing replica is still ejected, by its third failure.
    assert_eq!(fail(&set, "r1", 4), 3);
    assert!(set.stats().endpoints[1].ejected);
    assert_eq!(set.stats().ejected_now, 1);
}

#[test]
fn at_most_the_configured_share_is_ejected() {
    let clock = ManualClock::new();
    let mut set = ReplicaSet::builder()
        .clock(clock.clone())
        .outlier_detection(outliers(20));
    for i in 0..10 {
        set = set.member(Member::replica(format!("r{i}"), "x"));
    }
    let set = set.build().unwrap();
    // Everything fails: only 2 of 10 (20%) may be ejected.
    for _ in 0..500 {
        set.select().unwrap().failure();
    }
    assert_eq!(set.stats().ejected_now, 2);
    assert_eq!(
        set.stats().endpoints.iter().filter(|e| e.ejected).count(),
        2
    );

    // At least one may be ejected however small the share.
    let set = ReplicaSet::builder()
        .clock(clock.clone())
        .outlier_detection(outliers(1))
        .member(Member::replica("a", "a"))
        .member(Member::replica("b", "b"))
        .build()
        .unwrap();
    for _ in 0..100 {
        set.select().unwrap().failure();
    }
    assert_eq!(set.stats().ejected_now, 1);
}

#[test]
fn success_rate_outliers_are_ejected_by_maintain() {
    let clock = ManualClock::new();
    let mut o = outliers(50);
    o.consecutive_failures = None;
    let mut sr = SuccessRate::default();
    sr.minimum_hosts = 5;
    sr.request_volume = 50;
    o.success_rate = Some(sr);
    // Failures counted at their latency: the failure penalty would steer the
    // calls away from r5 before it had the volume the test needs.
    let mut b = ReplicaSet::builder()
        .clock(clock.clone())
        .failure_penalty_factor(1.0)
        .outlier_detection(o);
    for i in 0..6 {
        b = b.member(Member::replica(format!("r{i}"), "x"));
    }
    let set = b.build().unwrap();
    // r5 fails half its calls; the others almost never.
    for i in 0..3_000u32 {
        let s = set.select().unwrap();
        let fail = if s.name() == "r5" {
            i % 2 == 0
        } else {
            i % 97 == 0
        };
        clock.advance(Duration::from_millis(1));
        if fail {
            s.failure();
        } else {
            s.success();
        }
    }
    set.maintain();
    let stats = set.stats();
    let ejected: Vec<&str> = stats
        .endpoints
        .iter()
        .filter(|e| e.ejected)
        .map(|e| &*e.name)
        .collect();
    assert_eq!(ejected, ["r5"]);
    // A fresh interval with too few calls runs no test.
    set.maintain();
    assert_eq!(set.stats().ejected_now, 1);
}

#[test]
fn a_circuit_breaker_per_endpoint_plugs_in_through_admission() {
    let clock = ManualClock::new();
    let breaker = |c: &ManualClock| {
        CircuitBreaker::builder()
            .window(Window::Count(4))
            .minimum_calls(4)
            .failure_rate_threshold(50.0)
            .wait_in_open(Duration::from_secs(30))
            .clock(c.clone())
            .build()
            .unwrap()
    };
    let mut o = OutlierDetection::default();
    o.consecutive_failures = None;
    let set = ReplicaSet::builder_with_admission()
        .clock(clock.clone())
        .outlier_detection(o)
        .member(Member::replica("a", "a").admission(breaker(&clock)))
        .member(Member::replica("b", "b").admission(breaker(&clock)))
        .build()
        .unwrap();
    // a fails every call until its breaker opens.
    for _ in 0..200 {
        let s = set.select().unwrap();
        if s.name() == "a" {
            s.failure();
        } else {
            s.success();
        }
    }
    let after: Vec<String> = (0..100)
        .map(|_| {
            let s = set.select().unwrap();
            let n = s.name().to_owned();
            s.success();
            n
        })
        .collect();
    assert!(
        after.iter().all(|n| n == "b"),
        "a's open breaker keeps it out"
    );
    // Both open: selection reports the refusal.
    for _ in 0..50 {
        if let Ok(s) = set.select() {
            s.failure();
        }
    }
    // Refused endpoints are skipped for the breaker's retry time, so no call
    // reaches them.
    clock.advance(Duration::from_secs(1));
    // Every endpoint is skipped after a refusal: the error carries the
    // refusal, with the time left before one may be tried again.
    match set.select() {
        Err(SelectError::Unavailable(Some(r))) => {
            assert_eq!(r.reason(), RejectReason::CircuitOpen);
            let wait = r.retry_after_hint().unwrap();
            assert!(
                wait > Duration::ZERO && wait <= Duration::from_secs(29),
                "{wait:?}"
            );
        }
        other => panic!("expected the refusal, got {other:?}"),
    }
    // After the wait, the breakers let probes through again.
    clock.advance(Duration::from_secs(30));
    set.select().unwrap().success();
}

struct Scripted(Mutex<Vec<(&'static str, Health)>>);

#[async_trait]
impl HealthCheck<&'static str> for Scripted {
    async fn check(&self, endpoint: &&'static str) -> Health {
        if *endpoint == "hangs" {
            std::future::pending::<()>().await;
        }
        let script = self.0.lock().unwrap();
        script
            .iter()
            .find(|(n, _)| n == endpoint)
            .map(|(_, h)| *h)
            .unwrap_or_else(Health::up)
    }
}

#[tokio::test(start_paused = true)]
async fn active_health_checks_apply_health_lag_and_positions() {
    let set = ReplicaSet::builder()
        .max_lag(Duration::from_secs(1))
        .member(Member::primary("p", "p"))
        .member(Member::replica("a", "a"))
        .member(Member::replica("b", "b"))
        .member(Member::replica("hangs", "hangs"))
        .build()
        .unwrap();
    let check = Scripted(Mutex::new(vec![
        ("a", Health::down()),
        (
            "b",
            Health::up()
                .lag(Duration::from_millis(10))
                .applied(Position::new(42)),
        ),
    ]));
    set.check_health(&check, Duration::from_secs(2)).await;
    let stats = set.stats();
    let by = |n: &str| {
        stats
            .endpoints
            .iter()
            .find(|e| &*e.name == n)
            .unwrap()
            .clone()
    };
    assert!(!by("a").healthy);
    assert!(
        !by("hangs").healthy,
        "a check past its timeout counts as down"
    );
    assert!(by("b").healthy);
    assert_eq!(by("b").applied, Position::new(42));
    assert_eq!(by("b").lag, Duration::from_millis(10));
    for _ in 0..20 {
        assert_eq!(set.select().unwrap().name(), "b");
    }
}

#[test]
fn lagging_replicas_take_no_reads_but_a_serving_set_is_kept() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&events);
    let set = ReplicaSet::builder()
        .max_lag(Duration::from_millis(500))
        .min_serving_replicas(2)
        .on_event(move |e| log.lock().unwrap().push(e.clone()))
        .member(Member::primary("p", "p"))
        .member(Member::replica("a", "a"))
        .member(Member::replica("b", "b"))
        .member(Member::replica("c", "c"))
        .build()
        .unwrap();
    set.report_lag("a", Duration::from_secs(3)).unwrap();
    let seen = names(&set, 300);
    assert!(!seen.contains(&"a".to_owned()) && !seen.contains(&"p".to_owned()));
    // b and c lag too: the two least-lagged keep serving, the worst does not,
    // and nothing goes to the primary.
    set.report_lag("b", Duration::from_secs(2)).unwrap();
    set.report_lag("c", Duration::from_secs(9)).unwrap();
    let seen = names(&set, 300);
    assert!(
        seen.contains(&"a".to_owned()) && seen.contains(&"b".to_owned()),
        "{seen:?}"
    );
    assert!(!seen.contains(&"c".to_owned()) && !seen.contains(&"p".to_owned()));
    // All catch up: all serve.
    for n in ["a", "b", "c"] {
        set.report_lag(n, Duration::ZERO).unwrap();
    }
    let seen = names(&set, 300);
    assert!(["a", "b", "c"]
        .iter()
        .all(|n| seen.contains(&(*n).to_owned())));
    let lag_events = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::Lag { .. }))
        .count();
    assert!(lag_events >= 4, "lag transitions are reported");
    assert!(set.report_lag("nobody", Duration::ZERO).is_err());
}

#[test]
fn the_minimum_serving_set_is_taken_among_available_replicas() {
    let clock = ManualClock::new();
    let set = ReplicaSet::builder()
        .clock(clock.clone())
        .balance(Balance::RoundRobin)
        .outlier_detection(outliers(50))
        .max_lag(Duration::from_secs(1))
        .min_serving_replicas(1)
        .member(Member::primary("p", "p"))
        .member(Member::replica("near", "near"))
        .member(Member::replica("far", "far"))
        .build()
        .unwrap();
    set.report_lag("near", Duration::from_secs(5)).unwrap();
    set.report_lag("far", Duration::from_secs(9)).unwrap();
    // Both lag: the least-lagged one serves.
    assert!(names(&set, 20).iter().all(|n| n == "near"));
    // It goes down: the next least-lagged available replica serves, not the primary.
    set.set_healthy("near", false).unwrap();
    assert!(names(&set, 20).iter().all(|n| n == "far"));
    assert_eq!(set.stats().primary_fallbacks, 0);
    set.set_healthy("near", true).unwrap();
    assert!(names(&set, 20).iter().all(|n| n == "near"));

    // It is ejected: likewise.
    for _ in 0..3 {
        let s = set.select().unwrap();
        assert_eq!(s.name(), "near");
        s.failure();
    }
    assert!(set.stats().endpoints[1].ejected);
    assert!(names(&set, 20).iter().all(|n| n == "far"));
    assert_eq!(set.stats().primary_fallbacks, 0);
    // Back after its ejection time: it serves again.
    clock.advance(Duration::from_secs(10));
    set.maintain();
    assert!(names(&set, 20).iter().all(|n| n == "near"));
}

/// Refuses with `reason` while closed.
struct Gate {
    open: Arc<std::sync::atomic::AtomicBool>,
    reason: RejectReason,
}

impl Admission for Gate {
    type Permit = ();
    fn try_acquire(&self) -> Result<(), Rejected> {
        if self.open.load(std::sync::atomic::Ordering::Relaxed) {
            Ok(())
        } else {
            Err(Rejected::new(self.reason))
        }
    }
    fn record(&self, _: (), _: Outcome, _: Duration) {}
}

#[test]
fn the_refusal_backoff_depends_on_the_reason() {
    for reason in [RejectReason::ConcurrencyLimited, RejectReason::RateLimited] {
        let clock = ManualClock::new();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let set = ReplicaSet::builder_with_admission()
            .clock(clock.clone())
            .primary_reads(PrimaryReads::Never)
            .refusal_backoff(Duration::from_secs(1))
            .member(Member::replica("a", "a").admission(Gate {
                open: Arc::clone(&open),
                reason,
            }))
            .build()
            .unwrap();
        match set.select() {
            Err(SelectError::Unavailable(Some(r))) => assert_eq!(r.reason(), reason),
            other => panic!("{reason:?}: expected the refusal, got {other:?}"),
        }
        // The endpoint admits again at once (a call in flight finished).
        open.store(true, std::sync::atomic::Ordering::Relaxed);
        if reason == RejectReason::ConcurrencyLimited {
            // No backoff: the next selection may use it.
            set.select().unwrap().success();
        } else {
            // Skipped for the backoff; the error says for how long.
            match set.select() {
                Err(SelectError::Unavailable(Some(r))) => {
                    assert_eq!(r.reason(), RejectReason::RateLimited);
                    assert_eq!(r.retry_after_hint(), Some(Duration::from_secs(1)));
                }
                other => panic!("expected the earlier refusal, got {other:?}"),
            }
            clock.advance(Duration::from_secs(1));
            set.select().unwrap().success();
        }
    }
}

/// Hangs on the endpoints whose value is odd.
struct HangIfOdd;

#[async_trait]
impl HealthCheck<u32> for HangIfOdd {
    async fn check(&self, n: &u32) -> Health {
        if n % 2 == 1 {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        Health::up()
    }
}

#[tokio::test(start_paused = true)]
async fn hanging_health_checks_cost_one_timeout_not_one_each() {
    let mut b = ReplicaSet::builder();
    for i in 0..10u32 {
        b = b.member(Member::replica(format!("r{i}"), i));
    }
    let set = b.build().unwrap();
    let timeout = Duration::from_secs(2);
    let start = tokio::time::Instant::now();
    let round = set.check_health(&HangIfOdd, timeout);
    fn is_send<F: Send>(f: F) -> F {
        f
    }
    // Five checks hang: sequential, the round would take five timeouts.
    tokio::time::timeout(Duration::from_secs(60), is_send(round))
        .await
        .expect("the health round finished");
    assert_eq!(start.elapsed(), timeout);
    for e in set.stats().endpoints {
        let n: u32 = e.name[1..].parse().unwrap();
        assert_eq!(e.healthy, n % 2 == 0, "{}", e.name);
    }
}
