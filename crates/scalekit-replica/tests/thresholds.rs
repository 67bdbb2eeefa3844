//! Active health checks with Envoy's thresholds: unhealthy after N failed
//! checks in a row, healthy again after M passed ones.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use proptest::prelude::*;
use scalekit_replica::{Event, Health, HealthCheck, Member, ReplicaSet};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Answers from a script, one per round, per endpoint value.
struct Script(Mutex<VecDeque<bool>>);

#[async_trait]
impl HealthCheck<u32> for Script {
    async fn check(&self, n: &u32) -> Health {
        if *n == 1 {
            return Health::up();
        }
        match self.0.lock().unwrap().pop_front() {
            Some(true) | None => Health::up(),
            Some(false) => Health::down(),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn check_health_applies_the_thresholds_and_reports_transitions_only() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&events);
    let set = ReplicaSet::builder()
        .unhealthy_threshold(3)
        .healthy_threshold(2)
        .on_event(move |e| {
            if let Event::Health { name, healthy } = e {
                log.lock().unwrap().push((name.to_string(), *healthy));
            }
        })
        .member(Member::replica("steady", 1u32))
        .member(Member::replica("flaky", 2u32))
        .build()
        .unwrap();
    // flaky: down, down, up (the run breaks), down, down, down (unhealthy),
    // up, down (the run of passes breaks), up, up (healthy).
    let script = [
        false, false, true, false, false, false, true, false, true, true,
    ];
    let check = Script(Mutex::new(script.into_iter().collect()));
    let mut seen = Vec::new();
    for _ in 0..script.len() {
        set.check_health(&check, Duration::from_secs(1)).await;
        seen.push(set.stats().endpoints[1].healthy);
    }
    assert_eq!(
        seen,
        [true, true, true, true, true, false, false, false, false, true]
    );
    assert_eq!(
        *events.lock().unwrap(),
        [("flaky".to_owned(), false), ("flaky".to_owned(), true)]
    );
    assert!(set.stats().endpoints[0].healthy);
}

#[test]
fn set_healthy_overrides_at_once_and_restarts_the_runs() {
    let set = ReplicaSet::builder()
        .unhealthy_threshold(2)
        .healthy_threshold(2)
        .member(Member::replica("a", 1))
        .build()
        .unwrap();
    set.report_check("a", false).unwrap();
    set.set_healthy("a", false).unwrap(); // the operator's verdict, at once
    assert!(!set.stats().endpoints[0].healthy);
    set.report_check("a", true).unwrap();
    assert!(!set.stats().endpoints[0].healthy);
    set.set_healthy("a", true).unwrap();
    // The failure before the override does not count toward the next run.
    set.report_check("a", false).unwrap();
    assert!(set.stats().endpoints[0].healthy);
    assert!(set.report_check("nobody", true).is_err());
}

#[test]
fn zero_thresholds_are_refused() {
    let err = ReplicaSet::<u8>::builder()
        .unhealthy_threshold(0)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid replica set setting `unhealthy_threshold` = 0: expected at least 1 check"
    );
    let err = ReplicaSet::<u8>::builder()
        .healthy_threshold(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "healthy_threshold");
}

proptest! {
    /// After any sequence of checks, an endpoint is healthy exactly when the
    /// model says: it turns unhealthy at the N-th failure in a row while
    /// healthy, healthy at the M-th pass in a row while unhealthy.
    #[test]
    fn health_follows_the_threshold_model(
        unhealthy in 1u32..6,
        healthy in 1u32..6,
        checks in prop::collection::vec(any::<bool>(), 0..200),
    ) {
        let set = ReplicaSet::builder()
            .unhealthy_threshold(unhealthy)
            .healthy_threshold(healthy)
            .member(Member::replica("a", 1))
            .build()
            .unwrap();
        let (mut up, mut passes, mut failures) = (true, 0u32, 0u32);
        for ok in checks {
            set.report_check("a", ok).unwrap();
            if ok {
                failures = 0;
                passes += 1;
                if passes >= healthy { up = true; }
            } else {
                passes = 0;
                failures += 1;
                if failures >= unhealthy { up = false; }
            }
            prop_assert_eq!(set.stats().endpoints[0].healthy, up);
            prop_assert_eq!(set.select().is_ok(), up);
        }
    }
}
