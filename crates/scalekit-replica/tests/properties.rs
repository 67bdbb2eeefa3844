//! Invariants under random traffic, failures, health and lag changes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use scalekit_core::ManualClock;
use scalekit_replica::{Member, OutlierDetection, ReplicaSet, Role, Selected};
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
        let mut held: Vec<Selected<usize>> = Vec::new();
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
