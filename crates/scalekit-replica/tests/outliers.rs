//! Envoy's outlier detection beyond consecutive failures: the
//! failure-percentage test, enforcing percentages, ejection jitter and the
//! bound on the ejection multiplier.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use scalekit_core::ManualClock;
use scalekit_replica::{
    AlwaysAdmit, Balance, EjectReason, Event, FailurePercentage, Member, OutlierDetection,
    ReplicaSet, SuccessRate,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Set = ReplicaSet<&'static str, AlwaysAdmit, ManualClock>;
type Log = Arc<Mutex<Vec<Event>>>;

fn build(clock: &ManualClock, outliers: OutlierDetection, names: &[&'static str]) -> (Set, Log) {
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    let mut b = ReplicaSet::builder()
        .clock(clock.clone())
        .balance(Balance::RoundRobin)
        .outlier_detection(outliers)
        .on_event(move |e| sink.lock().unwrap().push(e.clone()));
    for n in names {
        b = b.member(Member::replica(*n, *n));
    }
    (b.build().unwrap(), log)
}

/// `calls` rounds of round robin; endpoint `name` fails the share
/// `fail_percent(name)` of its calls (the first ones of each ten).
fn drive(set: &Set, calls: usize, fail_percent: impl Fn(&str) -> usize) {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for _ in 0..calls {
        let s = set.select().unwrap();
        let n = seen.entry(s.name().to_owned()).or_default();
        let fails = *n % 10 < fail_percent(s.name()) / 10;
        *n += 1;
        if fails {
            s.failure()
        } else {
            s.success()
        }
    }
}

fn ejected(log: &Log) -> Vec<(String, EjectReason)> {
    log.lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Ejected { name, reason, .. } => Some((name.to_string(), *reason)),
            _ => None,
        })
        .collect()
}

fn failure_percentage(minimum_hosts: usize, request_volume: u32) -> OutlierDetection {
    let mut fp = FailurePercentage::default();
    fp.minimum_hosts = minimum_hosts;
    fp.request_volume = request_volume;
    let mut o = OutlierDetection::default();
    o.consecutive_failures = None;
    o.failure_percentage = Some(fp);
    o.max_ejection_percent = 100;
    o
}

const FIVE: [&str; 5] = ["a", "b", "c", "d", "e"];

#[test]
fn failure_percentage_ejects_endpoints_at_or_over_the_threshold() {
    let clock = ManualClock::new();
    let (set, log) = build(&clock, failure_percentage(5, 50), &FIVE);
    // 100 calls each; "a" fails 90%, "b" 80% (under the 85% threshold).
    drive(&set, 500, |n| match n {
        "a" => 90,
        "b" => 80,
        _ => 0,
    });
    set.maintain();
    assert_eq!(
        ejected(&log),
        [("a".to_owned(), EjectReason::FailurePercentage)]
    );
    // The interval's counts start over: a quiet interval ejects nothing more.
    set.maintain();
    assert_eq!(ejected(&log).len(), 1);
}

#[test]
fn a_set_failing_together_is_ejected_by_failure_percentage_not_by_success_rate() {
    // A bad deploy: every endpoint fails 90% of its calls. The success-rate
    // test sees no outlier (no spread); the failure-percentage test ejects
    // up to the cap.
    let clock = ManualClock::new();
    let mut o = failure_percentage(5, 50);
    o.success_rate = Some(SuccessRate::default());
    let mut sr = SuccessRate::default();
    sr.request_volume = 50;
    o.success_rate = Some(sr);
    o.max_ejection_percent = 40;
    let (set, log) = build(&clock, o, &FIVE);
    drive(&set, 500, |_| 90);
    set.maintain();
    let out = ejected(&log);
    assert_eq!(out.len(), 2, "the cap: 40% of 5");
    assert!(out
        .iter()
        .all(|(_, r)| *r == EjectReason::FailurePercentage));
}

#[test]
fn failure_percentage_needs_enough_hosts_with_enough_calls() {
    let clock = ManualClock::new();
    // Six endpoints, "f" fails them all, but only five have 50 calls: with
    // minimum_hosts 6 the test does not run.
    let names = ["a", "b", "c", "d", "e", "f"];
    let (set, log) = build(&clock, failure_percentage(6, 50), &names);
    drive(&set, 6 * 49, |n| if n == "f" { 100 } else { 0 });
    set.maintain();
    assert!(ejected(&log).is_empty(), "49 calls each: none qualifies");
    drive(&set, 6 * 50, |n| if n == "f" { 100 } else { 0 });
    set.maintain();
    assert_eq!(
        ejected(&log),
        [("f".to_owned(), EjectReason::FailurePercentage)]
    );
}

#[test]
fn enforcing_zero_detects_without_ejecting_and_fifty_ejects_about_half() {
    let clock = ManualClock::new();
    let mut o = OutlierDetection::default();
    o.consecutive_failures = Some(1);
    o.enforcing_consecutive_failures = 0;
    o.base_ejection_time = Duration::from_secs(1);
    o.max_ejection_time = Duration::from_secs(1);
    let (set, _) = build(&clock, o, &["a"]);
    for _ in 0..100 {
        set.select().unwrap().failure();
    }
    let stats = set.stats();
    assert_eq!(stats.ejections_total, 0);
    assert_eq!(stats.ejections_not_enforced, 100);

    o.enforcing_consecutive_failures = 50;
    let (set, _) = build(&clock, o, &["a"]);
    for _ in 0..400 {
        set.select().unwrap().failure();
        // Past any ejection, so that every call is a new detection.
        clock.advance(Duration::from_secs(2));
    }
    let stats = set.stats();
    assert_eq!(stats.ejections_total + stats.ejections_not_enforced, 400);
    assert!(
        (120..=280).contains(&stats.ejections_total),
        "{} of 400 enforced at 50%",
        stats.ejections_total
    );
}

#[test]
fn a_builder_refuses_percentages_over_100() {
    let mut o = OutlierDetection::default();
    let mut fp = FailurePercentage::default();
    fp.threshold = 101;
    o.failure_percentage = Some(fp);
    let err = ReplicaSet::<u8>::builder()
        .outlier_detection(o)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid replica set setting `outlier_detection.failure_percentage.threshold` = 101: expected a percentage from 0 to 100"
    );
    let mut o = OutlierDetection::default();
    o.enforcing_consecutive_failures = 200;
    let err = ReplicaSet::<u8>::builder()
        .outlier_detection(o)
        .build()
        .unwrap_err();
    assert_eq!(
        err.field(),
        "outlier_detection.enforcing_consecutive_failures"
    );
}

/// Ejects "a" once (one failure with `consecutive_failures = 1`) and returns
/// how long the ejection lasts.
fn eject_once(set: &Set, log: &Log) -> Duration {
    let s = set.select().unwrap();
    assert_eq!(s.name(), "a");
    s.failure();
    match log.lock().unwrap().last() {
        Some(Event::Ejected { duration, .. }) => *duration,
        other => panic!("expected an ejection, got {other:?}"),
    }
}

#[test]
fn jitter_spreads_returns_and_an_endpoint_returns_exactly_when_its_time_is_up() {
    let clock = ManualClock::new();
    let mut o = OutlierDetection::default();
    o.consecutive_failures = Some(1);
    o.base_ejection_time = Duration::from_secs(10);
    o.max_ejection_time = Duration::from_secs(10);
    o.max_ejection_time_jitter = Duration::from_secs(5);
    let (set, log) = build(&clock, o, &["a"]);
    let mut durations = Vec::new();
    for _ in 0..200 {
        let d = eject_once(&set, &log);
        assert!(
            d >= Duration::from_secs(10) && d <= Duration::from_secs(15),
            "{d:?}"
        );
        clock.advance(d - Duration::from_nanos(1));
        set.maintain();
        assert!(set.stats().endpoints[0].ejected, "not back before its time");
        clock.advance(Duration::from_nanos(1));
        set.maintain();
        assert!(
            !set.stats().endpoints[0].ejected,
            "back when its time is up"
        );
        durations.push(d);
    }
    let min = durations.iter().min().unwrap();
    let max = durations.iter().max().unwrap();
    assert!(*min < Duration::from_secs(11) && *max > Duration::from_secs(14));
}

#[test]
fn the_multiplier_stops_one_step_past_the_cap_as_envoys_does() {
    // Base 10 s, cap 25 s: ejections last 10, 20, 25, 25, ...; the multiplier
    // grows while k × base < max + base, so it stops at 4, and four clean
    // intervals bring it back to zero (not ten, after ten ejections).
    let clock = ManualClock::new();
    let mut o = OutlierDetection::default();
    o.consecutive_failures = Some(1);
    o.base_ejection_time = Duration::from_secs(10);
    o.max_ejection_time = Duration::from_secs(25);
    let (set, log) = build(&clock, o, &["a"]);
    let mut durations = Vec::new();
    for _ in 0..10 {
        let d = eject_once(&set, &log);
        durations.push(d.as_secs());
        clock.advance(d);
    }
    assert_eq!(durations, [10, 20, 25, 25, 25, 25, 25, 25, 25, 25]);
    assert_eq!(set.stats().endpoints[0].ejections, 4);
    // One `maintain` marks the start of a clean interval, each next one
    // forgives an ejection.
    for left in [4, 3, 2, 1, 0] {
        set.maintain();
        assert_eq!(set.stats().endpoints[0].ejections, left);
    }
    assert_eq!(eject_once(&set, &log), Duration::from_secs(10));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every ejection lasts `min(k × base, max(max, base))` plus at most the
    /// jitter, `k` following Envoy's bounded multiplier, whatever the
    /// settings and however the ejections and forgiveness interleave.
    #[test]
    fn ejection_times_follow_envoys_rule(
        base_ms in 1u64..5_000,
        max_ms in 0u64..20_000,
        jitter_ms in 0u64..3_000,
        steps in prop::collection::vec(any::<bool>(), 1..40),
    ) {
        let clock = ManualClock::new();
        let mut o = OutlierDetection::default();
        o.consecutive_failures = Some(1);
        o.base_ejection_time = Duration::from_millis(base_ms);
        o.max_ejection_time = Duration::from_millis(max_ms);
        o.max_ejection_time_jitter = Duration::from_millis(jitter_ms);
        let (set, log) = build(&clock, o, &["a"]);
        let (base, max) = (u128::from(base_ms), u128::from(max_ms));
        let longest = max.max(base);
        let mut k: u128 = 0;
        let mut clean = false;
        for eject in steps {
            if eject {
                let dur = eject_once(&set, &log);
                let d = dur.as_millis();
                if k * base < max + base {
                    k += 1;
                }
                let expected = (k * base).min(longest);
                prop_assert!(d >= expected && d <= expected + u128::from(jitter_ms),
                    "k = {}: {} ms, expected {} + up to {}", k, d, expected, jitter_ms);
                clock.advance(dur);
                clean = false;
            } else {
                // A maintain interval in rotation: the second and later in a
                // row forgive one ejection each.
                set.maintain();
                if clean {
                    k = k.saturating_sub(1);
                }
                clean = true;
            }
            prop_assert_eq!(u128::from(set.stats().endpoints[0].ejections), k);
        }
    }
}
