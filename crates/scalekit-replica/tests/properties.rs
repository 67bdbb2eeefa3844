//! Invariants under random traffic, failures, health and lag changes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use scalekit_core::ManualClock;
use scalekit_replica::{
    AlwaysAdmit, Balance, Member, OutlierDetection, Position, PrimaryReads, ReplicaSet, Role,
    SelectError, Selected,
};
use std::time::Duration;

#[derive(Clone, Debug)]
enum Op {
    Call { fail: bool, ms: u64 },
    Hold,
    Release,
    Health { who: usize, up: bool },
    Lag { who: usize, secs: u64 },
    Advance { secs: u64 },
    Maintain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), 0u64..50).prop_map(|(fail, ms)| Op::Call { fail, ms }),
        1 => Just(Op::Hold),
        1 => Just(Op::Release),
        1 => (0usize..6, any::<bool>()).prop_map(|(who, up)| Op::Health { who, up }),
        1 => (0usize..6, 0u64..5).prop_map(|(who, secs)| Op::Lag { who, secs }),
        1 => (0u64..40).prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Maintain),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn selection_respects_health_lag_and_the_ejection_cap(ops in prop::collection::vec(op(), 1..300), pct in 1u32..60) {
        let clock = ManualClock::new();
        let mut o = OutlierDetection::default();
        o.consecutive_failures = Some(2);
        o.max_ejection_percent = pct;
        let mut b = ReplicaSet::builder()
            .clock(clock.clone())
            .outlier_detection(o)
            .max_lag(Duration::from_secs(2))
            .min_serving_replicas(2)
            .member(Member::primary("p", 0usize));
        for i in 1..6 {
            b = b.member(Member::replica(format!("r{i}"), i));
        }
        let set = b.build().unwrap();
        let cap = ((6 * pct / 100).max(1)) as usize;
        let mut held: Vec<Selected<usize, AlwaysAdmit, ManualClock>> = Vec::new();
        for op in ops {
            match op {
                Op::Call { fail, ms } => {
                    if let Ok(s) = set.select() {
                        let stats = set.stats();
                        let e = stats.endpoints.iter().find(|e| &*e.name == s.name()).unwrap();
                        if e.role == Role::Replica {
                            prop_assert!(e.healthy && e.serving_reads && !e.ejected, "{e:?}");
                        } else {
                            // The primary takes a read only when no replica can.
                            prop_assert!(stats.endpoints.iter().filter(|e| e.role == Role::Replica)
                                .all(|e| !e.healthy || !e.serving_reads || e.ejected), "{stats:?}");
                        }
                        clock.advance(Duration::from_millis(ms));
                        if fail { s.failure() } else { s.success() }
                    }
                }
                Op::Hold => { if let Ok(s) = set.select() { held.push(s) } }
                Op::Release => { held.pop(); }
                Op::Health { who, up } => set.set_healthy(&format!("r{}", who.max(1)), up).unwrap(),
                Op::Lag { who, secs } => set.report_lag(&format!("r{}", who.max(1)), Duration::from_secs(secs)).unwrap(),
                Op::Advance { secs } => clock.advance(Duration::from_secs(secs)),
                Op::Maintain => set.maintain(),
            }
            let stats = set.stats();
            prop_assert!(stats.ejected_now as usize <= cap);
            prop_assert!(stats.endpoints.iter().filter(|e| e.ejected).count() <= cap);
            // At least min(min_serving, available) replicas can take reads
            // whatever the lags, counting only those available (healthy, not
            // ejected): a down replica does not hold a place in the serving set.
            let available = stats.endpoints.iter().filter(|e| e.role == Role::Replica && e.healthy && !e.ejected).count();
            let serving = stats.endpoints.iter()
                .filter(|e| e.role == Role::Replica && e.healthy && !e.ejected && e.serving_reads)
                .count();
            prop_assert!(serving >= available.min(2), "{stats:?}");
            prop_assert_eq!(stats.endpoints.iter().map(|e| e.outstanding as usize).sum::<usize>(), held.len());
        }
        held.clear();
        prop_assert_eq!(set.stats().endpoints.iter().map(|e| e.outstanding).sum::<u32>(), 0);
    }
}

/// One endpoint of a random set for the exclusion property.
#[derive(Clone, Debug)]
struct Spec {
    healthy: bool,
    lagging: bool,
    applied: u64,
    excluded: bool,
    zone: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<bool>(),
        prop::bool::weighted(0.2),
        0u64..4,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(healthy, lagging, applied, excluded, zone)| Spec {
            healthy,
            lagging,
            applied,
            excluded,
            zone,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// `select_excluding` and `select_at_excluding` never return an excluded
    /// endpoint, and return one whenever a non-excluded endpoint could take
    /// the read.
    #[test]
    fn exclusion_is_never_violated_and_never_starves(
        replicas in prop::collection::vec(spec(), 0..7),
        primary in prop::option::of(any::<bool>()),
        reads in 0usize..3,
        balance in 0usize..3,
        zoned in any::<bool>(),
        token in 0u64..4,
    ) {
        let reads = [PrimaryReads::Fallback, PrimaryReads::Never, PrimaryReads::Always][reads];
        let balance = [Balance::PeakEwma, Balance::LeastLoaded, Balance::RoundRobin][balance];
        let mut b = ReplicaSet::builder()
            .primary_reads(reads)
            .balance(balance)
            .max_lag(Duration::from_secs(1))
            .min_serving_replicas(0);
        if zoned {
            b = b.local_zone("z1");
        }
        let mut excluded: Vec<String> = Vec::new();
        if let Some(primary_excluded) = primary {
            b = b.member(Member::primary("p", 0usize));
            if primary_excluded {
                excluded.push("p".into());
            }
        }
        for (i, r) in replicas.iter().enumerate() {
            let zone = if r.zone { "z1" } else { "z2" };
            b = b.member(Member::replica(format!("r{i}"), i + 1).zone(zone));
            if r.excluded {
                excluded.push(format!("r{i}"));
            }
        }
        let set = b.build().unwrap();
        for (i, r) in replicas.iter().enumerate() {
            let name = format!("r{i}");
            set.set_healthy(&name, r.healthy).unwrap();
            if r.lagging {
                set.report_lag(&name, Duration::from_secs(5)).unwrap();
            }
            set.report_applied(&name, Position::new(r.applied)).unwrap();
        }
        let replica_ok = |r: &Spec, min_applied: u64| {
            !r.excluded && r.healthy && !r.lagging && r.applied >= min_applied
        };
        let primary_ok = primary == Some(false);

        // Plain reads: the primary takes them unless `Never` (when no replica
        // can, or as a candidate under `Always`).
        let expect = replicas.iter().any(|r| replica_ok(r, 0))
            || (primary_ok && reads != PrimaryReads::Never);
        for _ in 0..20 {
            match set.select_excluding(&excluded) {
                Ok(s) => {
                    prop_assert!(expect, "selected {} though nothing qualifies", s.name());
                    prop_assert!(!excluded.iter().any(|n| n == s.name()), "excluded {} returned", s.name());
                    if s.role() == Role::Replica {
                        let i: usize = s.name()[1..].parse().unwrap();
                        prop_assert!(replica_ok(&replicas[i], 0), "{} may not take reads", s.name());
                    }
                }
                Err(e) => {
                    prop_assert!(!expect, "{e} though {replicas:?} / primary {primary:?} / {reads:?}");
                    let empty = replicas.is_empty() && primary.is_none();
                    let want = if empty { SelectError::NoEndpoint } else { SelectError::Unavailable(None) };
                    prop_assert_eq!(e, want);
                }
            }
        }

        // Reads at a token: a replica that applied it, else the primary
        // whatever `PrimaryReads` says (as `select_at`).
        let expect = replicas.iter().any(|r| replica_ok(r, token)) || primary_ok;
        for _ in 0..20 {
            match set.select_at_excluding(Position::new(token), &excluded) {
                Ok(s) => {
                    prop_assert!(expect, "selected {} though nothing qualifies", s.name());
                    prop_assert!(!excluded.iter().any(|n| n == s.name()), "excluded {} returned", s.name());
                    if s.role() == Role::Replica {
                        let i: usize = s.name()[1..].parse().unwrap();
                        prop_assert!(replica_ok(&replicas[i], token), "{} may not take this read", s.name());
                    }
                }
                Err(e) => prop_assert!(!expect, "{e} though {replicas:?} / primary {primary:?}"),
            }
        }
    }
}
