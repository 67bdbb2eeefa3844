//! Selection: peak-EWMA with two choices, weights, slow start, zones, primary fallback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use scalekit_core::ManualClock;
use scalekit_replica::{AlwaysAdmit, Balance, Member, PrimaryReads, ReplicaSet, Role, SelectError};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs `calls` sequential calls; each endpoint answers after `latency(name)`.
fn drive(
    set: &ReplicaSet<&'static str, AlwaysAdmit, ManualClock>,
    clock: &ManualClock,
    calls: usize,
    latency: impl Fn(&str) -> u64,
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..calls {
        let s = set.select().unwrap();
        *counts.entry(s.name().to_owned()).or_insert(0) += 1;
        clock.advance(ms(latency(s.name())));
        s.success();
    }
    counts
}

#[test]
fn peak_ewma_steers_away_from_a_slow_replica() {
    let clock = ManualClock::new();
    let set = ReplicaSet::builder()
        .clock(clock.clone())
        .member(Member::replica("a", "a"))
        .member(Member::replica("b", "b"))
        .member(Member::replica("slow", "slow"))
        .build()
        .unwrap();
    let counts = drive(&set, &clock, 2_000, |n| if n == "slow" { 200 } else { 5 });
    let slow = counts.get("slow").copied().unwrap_or(0);
    assert!(
        slow < 40,
        "slow replica took {slow} of 2000 calls: {counts:?}"
    );
    assert!(counts["a"] > 700 && counts["b"] > 700, "{counts:?}");
}

#[test]
fn idle_estimates_decay_so_a_once_slow_replica_is_probed_again() {
    let clock = ManualClock::new();
    let set = ReplicaSet::builder()
        .clock(clock.clone())
        .decay(Duration::from_secs(1))
        .member(Member::replica("a", "a"))
        .member(Member::replica("b", "b"))
        .build()
        .unwrap();
    // b was slow once.
    let mut slow_once = false;
    for _ in 0..1_000 {
        let s = set.select().unwrap();
        if s.name() == "b" {
            clock.advance(ms(1_000));
            s.success();
            slow_once = true;
            break;
        }
        s.success();
    }
    assert!(slow_once);
    let counts = drive(&set, &clock, 100, |_| 1);
    assert_eq!(
        counts.get("b"),
        None,
        "b is avoided right after: {counts:?}"
    );
    // Estimates decay toward zero while idle; after a while b is tried again and
    // its fast answers bring it back.
    clock.advance(Duration::from_secs(30));
    let counts = drive(&set, &clock, 1_000, |_| 1);
    assert!(counts.get("b").copied().unwrap_or(0) > 200, "{counts:?}");
}

#[test]
fn outstanding_calls_count_against_an_endpoint() {
    let clock = ManualClock::new();
    let set = ReplicaSet::builder()
        .clock(clock.clone())
        .member(Member::replica("a", "a"))
        .member(Member::replica("b", "b"))
        .build()
        .unwrap();
    // Hold 10 calls open on whichever is chosen first... then the other wins.
    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(set.select().unwrap());
    }
    let on_a = held.iter().filter(|s| s.name() == "a").count();
    assert!(
        (20..=30).contains(&on_a),
        "in-flight calls balance: {on_a} of 50 on a"
    );
    let stats = set.stats();
    assert_eq!(
        stats.endpoints.iter().map(|e| e.outstanding).sum::<u32>(),
        50
    );
    drop(held);
    assert_eq!(
        set.stats()
            .endpoints
            .iter()
            .map(|e| e.outstanding)
            .sum::<u32>(),
        0
    );
}

/// Keeps `depth` calls in flight, finishing the oldest each step.
fn drive_concurrent(
    set: &ReplicaSet<&'static str, AlwaysAdmit, ManualClock>,
    clock: &ManualClock,
    calls: usize,
    depth: usize,
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    let mut open = VecDeque::new();
    for _ in 0..calls {
        let s = set.select().unwrap();
        *counts.entry(s.name().to_owned()).or_insert(0) += 1;
        open.push_back(s);
        if open.len() >= depth {
            clock.advance(ms(1));
            open.pop_front().unwrap().success();
        }
    }
    counts
}

#[test]
fn weights_bias_the_choice() {
    for balance in [Balance::PeakEwma, Balance::LeastLoaded] {
        let clock = ManualClock::new();
        let set = ReplicaSet::builder()
            .clock(clock.clone())
            .balance(balance)
            .member(Member::replica("heavy", "heavy").weight(4))
            .member(Member::replica("b", "b"))
            .member(Member::replica("c", "c"))
            .build()
            .unwrap();
        let counts = drive_concurrent(&set, &clock, 6_000, 12);
        assert!(
            counts["heavy"] > 2 * counts["b"] && counts["heavy"] > 2 * counts["c"],
            "{balance:?}: {counts:?}"
        );
        // Re-weighting takes effect at once.
        set.set_weight("heavy", 1).unwrap();
        let counts = drive_concurrent(&set, &clock, 6_000, 12);
        let (h, b) = (counts["heavy"] as f64, counts["b"] as f64);
        assert!(
            h / b < 1.5 && b / h < 1.5,
            "{balance:?} after re-weight: {counts:?}"
        );
    }
    let set = ReplicaSet::builder()
        .member(Member::replica("a", "a"))
        .build()
        .unwrap();
    assert!(set.set_weight("a", 0).is_err());
    assert!(set.set_weight("nobody", 2).is_err());
}

#[test]
fn weights_set_the_share_of_sequential_calls() {
    // Calls that never overlap: the outstanding counts are always zero, so only
    // the draw can give the weight-4 endpoint its 4/13 of the calls.
    for balance in [Balance::PeakEwma, Balance::LeastLoaded] {
        let clock = ManualClock::new();
        let mut b = ReplicaSet::builder()
            .clock(clock.clone())
            .balance(balance)
            .member(Member::replica("heavy", "heavy").weight(4));
        for name in ["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9"] {
            b = b.member(Member::replica(name, name));
        }
        let set = b.build().unwrap();
        let calls = 26_000;
        let counts = drive(&set, &clock, calls, |_| 0);
        let share = counts["heavy"] as f64 / calls as f64;
        assert!(
            (share - 4.0 / 13.0).abs() < 0.02,
            "{balance:?}: heavy share {share:.3}, want 0.308: {counts:?}"
        );
        // Re-weighting to 1 (a rebuilt draw): a tenth.
        set.set_weight("heavy", 1).unwrap();
        let counts = drive(&set, &clock, calls, |_| 0);
        let share = counts["heavy"] as f64 / calls as f64;
        assert!((share - 0.1).abs() < 0.02, "{balance:?}: {share:.3}");
    }
}

#[test]
fn slow_start_ramps_a_new_endpoint_up() {
    let clock = ManualClock::new();
    let set = ReplicaSet::builder()
        .clock(clock.clone())
        .balance(Balance::LeastLoaded)
        .slow_start(Duration::from_secs(10))
        .member(Member::replica("a", "a"))
        .member(Member::replica("b", "b"))
        .build()
        .unwrap();
    set.add(Member::replica("new", "new")).unwrap();
    let early = drive_concurrent(&set, &clock, 3_000, 12);
    let share_early = early.get("new").copied().unwrap_or(0) as f64 / 3_000.0;
    assert!(
        share_early < 0.15,
        "share at start {share_early}: {early:?}"
    );
    clock.advance(Duration::from_secs(10));
    let late = drive_concurrent(&set, &clock, 3_000, 12);
    let share_late = late["new"] as f64 / 3_000.0;
    assert!(share_late > 0.28, "share when warm {share_late}: {late:?}");
}

#[test]
fn zones_prefer_local_and_spill_when_local_is_out_or_overloaded() {
    let clock = ManualClock::new();
    let set = ReplicaSet::builder()
        .clock(clock.clone())
        .local_zone("eu")
        .member(Member::replica("eu-1", "eu-1").zone("eu"))
        .member(Member::replica("eu-2", "eu-2").zone("eu"))
        .member(Member::replica("us-1", "us-1").zone("us"))
        .build()
        .unwrap();
    let counts = drive(&set, &clock, 1_000, |_| 2);
    assert_eq!(counts.get("us-1"), None, "{counts:?}");

    // Overloaded: the local endpoints hold many calls, the remote one is idle.
    let mut held = Vec::new();
    let mut spilled = 0;
    for _ in 0..40 {
        let s = set.select().unwrap();
        if s.zone() == Some("us") {
            spilled += 1;
        }
        held.push(s);
    }
    assert!(
        spilled > 5,
        "reads spill over to the remote zone under load ({spilled} of 40)"
    );
    drop(held);

    // Unavailable: both local endpoints fail their health checks.
    set.set_healthy("eu-1", false).unwrap();
    set.set_healthy("eu-2", false).unwrap();
    for _ in 0..20 {
        assert_eq!(set.select().unwrap().name(), "us-1");
    }
    set.set_healthy("eu-1", true).unwrap();
    let counts = drive(&set, &clock, 200, |_| 2);
    assert_eq!(counts.get("eu-1"), Some(&200), "{counts:?}");
}

#[test]
fn reads_fall_back_to_the_primary_only_as_configured() {
    for (reads, expect_primary) in [(PrimaryReads::Fallback, true), (PrimaryReads::Never, false)] {
        let set = ReplicaSet::builder()
            .primary_reads(reads)
            .member(Member::primary("p", "p"))
            .member(Member::replica("r", "r"))
            .build()
            .unwrap();
        assert_eq!(set.select().unwrap().role(), Role::Replica);
        set.set_healthy("r", false).unwrap();
        match set.select() {
            Ok(s) => {
                assert!(expect_primary);
                assert_eq!(s.role(), Role::Primary);
                s.success();
                assert_eq!(set.stats().primary_fallbacks, 1);
            }
            Err(e) => {
                assert!(!expect_primary);
                assert_eq!(e, SelectError::Unavailable(None));
            }
        }
    }
    let set = ReplicaSet::builder()
        .primary_reads(PrimaryReads::Always)
        .member(Member::primary("p", "p"))
        .member(Member::replica("r", "r"))
        .build()
        .unwrap();
    let clock_free: HashMap<String, usize> = (0..200).fold(HashMap::new(), |mut m, _| {
        *m.entry(set.select().unwrap().name().to_owned())
            .or_insert(0) += 1;
        m
    });
    assert_eq!(
        clock_free.len(),
        2,
        "the primary takes reads too: {clock_free:?}"
    );

    let empty: ReplicaSet<&str> = ReplicaSet::builder().build().unwrap();
    assert_eq!(empty.select().unwrap_err(), SelectError::NoEndpoint);
    assert_eq!(empty.select_primary().unwrap_err(), SelectError::NoEndpoint);
}

#[test]
fn round_robin_visits_each_available_endpoint_in_turn() {
    let set = ReplicaSet::builder()
        .balance(Balance::RoundRobin)
        .member(Member::replica("a", "a"))
        .member(Member::replica("b", "b"))
        .member(Member::replica("c", "c"))
        .build()
        .unwrap();
    let names: Vec<String> = (0..6)
        .map(|_| set.select().unwrap().name().to_owned())
        .collect();
    assert_eq!(names, ["a", "b", "c", "a", "b", "c"]);
    set.set_healthy("b", false).unwrap();
    assert!((0..6).all(|_| set.select().unwrap().name() != "b"));
}

#[test]
fn bad_settings_are_refused_with_the_field_named() {
    let err = ReplicaSet::<&str>::builder()
        .decay(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "decay");
    let err = ReplicaSet::builder()
        .member(Member::replica("a", 1))
        .member(Member::replica("a", 2))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "member");
    let err = ReplicaSet::builder()
        .member(Member::primary("a", 1))
        .member(Member::primary("b", 2))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("at most one primary"), "{err}");
    let err = ReplicaSet::builder()
        .member(Member::replica("a", 1).weight(0))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "member.weight");
    let err = ReplicaSet::<u8>::builder()
        .slow_start_min_weight(0.0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "slow_start_min_weight");
}

#[test]
fn a_cancelled_call_raises_the_estimate_only_above_it() {
    let clock = ManualClock::new();
    let set = ReplicaSet::builder()
        .clock(clock.clone())
        .default_rtt(ms(10))
        .member(Member::replica("a", "a"))
        .build()
        .unwrap();
    let estimate = || set.stats().endpoints[0].latency_estimate;
    // Dropped after 5 ms: it took at least 5 ms, below the estimate: no change.
    let s = set.select().unwrap();
    clock.advance(ms(5));
    drop(s);
    let before = estimate();
    assert!(before <= ms(10) && before > ms(9), "{before:?}");
    // Dropped after 400 ms: the estimate is raised to it.
    let s = set.select().unwrap();
    clock.advance(ms(400));
    drop(s);
    assert_eq!(estimate(), ms(400));
    assert_eq!(set.stats().endpoints[0].outstanding, 0);
}

#[test]
fn an_endpoint_back_from_ejection_ramps_up_again() {
    let clock = ManualClock::new();
    let mut outliers = scalekit_replica::OutlierDetection::default();
    outliers.consecutive_failures = Some(1);
    outliers.base_ejection_time = Duration::from_secs(5);
    outliers.max_ejection_percent = 50;
    let set = ReplicaSet::builder()
        .clock(clock.clone())
        .balance(Balance::LeastLoaded)
        .slow_start(Duration::from_secs(20))
        .outlier_detection(outliers)
        .member(Member::replica("a", "a"))
        .member(Member::replica("b", "b"))
        .member(Member::replica("c", "c"))
        .build()
        .unwrap();
    for _ in 0..1_000 {
        let s = set.select().unwrap();
        if s.name() == "c" {
            s.failure();
            break;
        }
        s.success();
    }
    assert_eq!(set.stats().ejected_now, 1);
    clock.advance(Duration::from_secs(5));
    let early = drive_concurrent(&set, &clock, 3_000, 12);
    let share = early.get("c").copied().unwrap_or(0) as f64 / 3_000.0;
    assert!(
        share > 0.0 && share < 0.15,
        "c returns at a fraction of its weight: {early:?}"
    );
    clock.advance(Duration::from_secs(20));
    let late = drive_concurrent(&set, &clock, 3_000, 12);
    assert!(late["c"] as f64 / 3_000.0 > 0.28, "{late:?}");
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

#[test]
fn select_excluding_retries_elsewhere_and_says_when_all_were_tried() {
    let set = ReplicaSet::builder()
        .member(Member::primary("p", "p"))
        .member(Member::replica("a", "a"))
        .member(Member::replica("b", "b"))
        .member(Member::replica("c", "c"))
        .build()
        .unwrap();
    for _ in 0..200 {
        assert_eq!(set.select_excluding(&["a", "b"]).unwrap().name(), "c");
        let s = set.select_excluding(&["b"]).unwrap();
        assert!(s.name() == "a" || s.name() == "c", "{}", s.name());
    }
    // Names of any string type: the tried list a retry loop keeps.
    let tried: Vec<std::sync::Arc<str>> = vec!["a".into(), "b".into(), "c".into()];
    // Every replica tried: the primary takes the read, as for `select`.
    assert_eq!(set.select_excluding(&tried).unwrap().role(), Role::Primary);
    let err = set
        .select_excluding(&["a", "b", "c", "p"])
        .map(|s| s.name().to_owned())
        .unwrap_err();
    assert_eq!(err, SelectError::Unavailable(None));
    assert!(err.to_string().contains("excluded"), "{err}");
    // Unknown names exclude nothing.
    assert!(set.select_excluding(&["nobody"]).is_ok());
    assert!(set.select_excluding::<&str>(&[]).is_ok());

    let never = ReplicaSet::builder()
        .primary_reads(PrimaryReads::Never)
        .member(Member::primary("p", "p"))
        .member(Member::replica("a", "a"))
        .build()
        .unwrap();
    assert_eq!(
        never.select_excluding(&["a"]).map(|s| s.name().to_owned()),
        Err(SelectError::Unavailable(None))
    );
    // Each balance honours the exclusion, in every zone.
    for balance in [Balance::PeakEwma, Balance::LeastLoaded, Balance::RoundRobin] {
        let zoned = ReplicaSet::builder()
            .balance(balance)
            .local_zone("z1")
            .member(Member::replica("l1", "l1").zone("z1"))
            .member(Member::replica("l2", "l2").zone("z1"))
            .member(Member::replica("r1", "r1").zone("z2"))
            .build()
            .unwrap();
        for _ in 0..100 {
            let s = zoned.select_excluding(&["l1", "l2"]).unwrap();
            assert_eq!(s.name(), "r1", "{balance:?}");
            let s = zoned.select_excluding(&["l1", "r1"]).unwrap();
            assert_eq!(s.name(), "l2", "{balance:?}");
        }
    }
}

#[test]
fn select_at_excluding_keeps_read_your_writes() {
    let set = ReplicaSet::builder()
        .member(Member::primary("p", "p"))
        .member(Member::replica("fresh", "fresh"))
        .member(Member::replica("fresh2", "fresh2"))
        .member(Member::replica("stale", "stale"))
        .build()
        .unwrap();
    let token = scalekit_replica::Position::new(50);
    set.report_applied("fresh", scalekit_replica::Position::new(60))
        .unwrap();
    set.report_applied("fresh2", scalekit_replica::Position::new(50))
        .unwrap();
    for _ in 0..100 {
        assert_eq!(
            set.select_at_excluding(token, &["fresh"]).unwrap().name(),
            "fresh2"
        );
    }
    // The stale replica never takes the read; the primary does.
    assert_eq!(
        set.select_at_excluding(token, &["fresh", "fresh2"])
            .unwrap()
            .name(),
        "p"
    );
    assert_eq!(
        set.select_at_excluding(token, &["fresh", "fresh2", "p"])
            .map(|s| s.name().to_owned()),
        Err(SelectError::Unavailable(None))
    );
}

/// Sequential calls on a dead endpoint that refuses in 10 µs and a live one
/// that answers in 50 ms; how many went to the dead one.
fn dead_share(
    set: &ReplicaSet<&'static str, AlwaysAdmit, ManualClock>,
    clock: &ManualClock,
    calls: usize,
) -> usize {
    let mut dead = 0;
    for _ in 0..calls {
        let s = set.select().unwrap();
        if s.name() == "dead" {
            dead += 1;
            clock.advance(us(10));
            s.failure();
        } else {
            clock.advance(ms(50));
            s.success();
        }
    }
    dead
}

fn dead_and_slow(
    clock: &ManualClock,
    factor: f64,
    floor: Duration,
) -> ReplicaSet<&'static str, AlwaysAdmit, ManualClock> {
    let mut o = scalekit_replica::OutlierDetection::default();
    // No ejection: the balancer alone is under test.
    o.consecutive_failures = None;
    ReplicaSet::builder()
        .clock(clock.clone())
        .outlier_detection(o)
        .failure_penalty_factor(factor)
        .failure_penalty(floor)
        .member(Member::replica("dead", "dead"))
        .member(Member::replica("slow", "slow"))
        .build()
        .unwrap()
}

#[test]
fn a_fast_failing_endpoint_is_not_a_black_hole() {
    // The default penalty: a failure costs five times the estimate.
    let clock = ManualClock::new();
    let set = dead_and_slow(&clock, 5.0, Duration::ZERO);
    let dead = dead_share(&set, &clock, 2_000);
    assert!(dead < 40, "the dead endpoint took {dead} of 2000 calls");
    let defaults = ReplicaSet::builder()
        .clock(clock.clone())
        .member(Member::replica("dead", "dead"))
        .build()
        .unwrap();
    defaults.select().unwrap().failure();
    assert_eq!(
        defaults.stats().endpoints[0].latency_estimate,
        ms(150),
        "the default factor is 5 (30 ms start)"
    );

    // A fixed floor alone does it as well.
    let clock = ManualClock::new();
    let set = dead_and_slow(&clock, 1.0, Duration::from_secs(1));
    let dead = dead_share(&set, &clock, 2_000);
    assert!(dead < 40, "the dead endpoint took {dead} of 2000 calls");

    // Without a penalty, failures counted at 10 µs: the black hole.
    let clock = ManualClock::new();
    let set = dead_and_slow(&clock, 1.0, Duration::ZERO);
    let dead = dead_share(&set, &clock, 2_000);
    assert!(
        dead > 1_800,
        "the dead endpoint took only {dead} of 2000 calls"
    );
}

#[test]
fn a_slow_failure_counts_at_its_latency_when_above_the_penalty() {
    let clock = ManualClock::new();
    let set = ReplicaSet::builder()
        .clock(clock.clone())
        .default_rtt(ms(10))
        .member(Member::replica("a", "a"))
        .build()
        .unwrap();
    let s = set.select().unwrap();
    clock.advance(ms(2_000));
    s.failure();
    assert_eq!(set.stats().endpoints[0].latency_estimate, ms(2_000));
}

#[test]
fn an_endpoint_added_later_starts_at_the_median_estimate() {
    let clock = ManualClock::new();
    let set = ReplicaSet::builder()
        .clock(clock.clone())
        .member(Member::replica("a", "a"))
        .member(Member::replica("b", "b"))
        .member(Member::replica("c", "c"))
        .build()
        .unwrap();
    // Nothing answered yet: a newcomer starts at default_rtt.
    set.add(Member::replica("early", "early")).unwrap();
    let stats = set.stats();
    assert_eq!(stats.endpoints[3].latency_estimate, ms(30));
    set.remove("early").unwrap();

    // Sub-millisecond answers: let the 30 ms starting estimates decay, then
    // the first answers set them (a peak) at 200 to 400 µs.
    clock.advance(Duration::from_secs(120));
    let latency = |name: &str| match name {
        "a" => 200,
        "b" => 300,
        _ => 400,
    };
    for _ in 0..300 {
        let s = set.select().unwrap();
        clock.advance(us(latency(s.name())));
        s.success();
    }
    set.add(Member::replica("new", "new")).unwrap();
    let stats = set.stats();
    let new = stats.endpoints.iter().find(|e| &*e.name == "new").unwrap();
    assert!(
        new.latency_estimate >= us(200) && new.latency_estimate <= us(400),
        "{:?}",
        new.latency_estimate
    );
    // It takes its share at once instead of starving behind a 30 ms start.
    let mut to_new = 0;
    for _ in 0..400 {
        let s = set.select().unwrap();
        if s.name() == "new" {
            to_new += 1;
        }
        clock.advance(us(300));
        s.success();
    }
    assert!(to_new > 50, "the new endpoint took {to_new} of 400 calls");
}
