//! Model-based fuzzing of `scalekit-replica`'s `ReplicaSet`, with a manual clock.
//!
//! The input is a sequence of membership changes (add, remove, re-weight,
//! promote), calls (completed with success or failure, held open, or dropped),
//! health and lag reports, applied positions, token reads, clock steps and
//! `maintain`. A model of the membership, roles, health, lag and positions is
//! kept here. After every operation:
//!
//! * membership and roles equal the model (at most one primary);
//! * a read is served by a replica that is healthy, serving reads (lag) and not
//!   ejected, or by the primary only when no replica qualifies;
//! * a read with a token goes to an endpoint that has applied it, or the primary;
//! * at most `max(1, members × percent / 100)` endpoints are ejected;
//! * at least `min(min_serving, replicas)` replicas serve reads;
//! * outstanding calls in the stats equal the calls held open.

#![no_main]

use std::collections::BTreeMap;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use scalekit_core::ManualClock;
use scalekit_replica::{
    AlwaysAdmit, Balance, Member, OutlierDetection, Position, ReplicaSet, Role, Selected,
};

const NAMES: u8 = 8;
const MAX_OPS: usize = 256;

#[derive(Arbitrary, Debug)]
enum Op {
    AddReplica { id: u8, weight: u8, zone: bool },
    AddPrimary { id: u8 },
    Remove { id: u8 },
    Weight { id: u8, weight: u8 },
    Promote { id: u8 },
    Call { fail: bool, ms: u8 },
    Hold,
    Release { which: u8 },
    Health { id: u8, up: bool },
    Lag { id: u8, secs: u8 },
    Applied { id: u8, pos: u8 },
    ReadAt { pos: u8 },
    Advance { secs: u8 },
    Maintain,
}

#[derive(Arbitrary, Debug)]
struct Input {
    balance: u8,
    percent: u8,
    min_serving: u8,
    zones: bool,
    ops: Vec<Op>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Model {
    generation: u32,
    primary: bool,
    healthy: bool,
    applied: u64,
}

fn name(id: u8) -> String {
    format!("e{}", id % NAMES)
}

fuzz_target!(|input: Input| {
    let clock = ManualClock::new();
    let mut outliers = OutlierDetection::default();
    outliers.consecutive_failures = Some(2);
    outliers.max_ejection_percent = u32::from(input.percent % 101);
    let min_serving = usize::from(input.min_serving % 4);
    let mut builder = ReplicaSet::builder()
        .clock(clock.clone())
        .balance(match input.balance % 3 {
            0 => Balance::PeakEwma,
            1 => Balance::LeastLoaded,
            _ => Balance::RoundRobin,
        })
        .outlier_detection(outliers)
        .max_lag(Duration::from_secs(2))
        .min_serving_replicas(min_serving)
        .slow_start(Duration::from_secs(10));
    if input.zones {
        builder = builder.local_zone("here");
    }
    let Ok(set) = builder.build() else { return };
    let mut model: BTreeMap<String, Model> = BTreeMap::new();
    let mut held: Vec<(Selected<u8, AlwaysAdmit, ManualClock>, u32)> = Vec::new();
    let mut generation = 0u32;

    for op in input.ops.into_iter().take(MAX_OPS) {
        match op {
            Op::AddReplica { id, weight, zone } => {
                let mut m = Member::replica(name(id), id).weight(u32::from(weight % 5));
                if zone {
                    m = m.zone("here");
                }
                let r = set.add(m);
                let ok = weight % 5 != 0 && !model.contains_key(&name(id));
                assert_eq!(r.is_ok(), ok, "{r:?}");
                if ok {
                    generation += 1;
                    model.insert(
                        name(id),
                        Model {
                            generation,
                            primary: false,
                            healthy: true,
                            applied: 0,
                        },
                    );
                }
            }
            Op::AddPrimary { id } => {
                let r = set.add(Member::primary(name(id), id));
                assert_eq!(r.is_ok(), !model.contains_key(&name(id)));
                if r.is_ok() {
                    for m in model.values_mut() {
                        m.primary = false;
                    }
                    generation += 1;
                    model.insert(
                        name(id),
                        Model {
                            generation,
                            primary: true,
                            healthy: true,
                            applied: 0,
                        },
                    );
                }
            }
            Op::Remove { id } => {
                let r = set.remove(&name(id));
                assert_eq!(r.is_ok(), model.remove(&name(id)).is_some());
            }
            Op::Weight { id, weight } => {
                let r = set.set_weight(&name(id), u32::from(weight % 5));
                assert_eq!(r.is_ok(), weight % 5 != 0 && model.contains_key(&name(id)));
            }
            Op::Promote { id } => {
                let r = set.promote(&name(id));
                assert_eq!(r.is_ok(), model.contains_key(&name(id)));
                if r.is_ok() {
                    for (n, m) in model.iter_mut() {
                        m.primary = *n == name(id);
                    }
                }
            }
            Op::Call { fail, ms } => {
                if let Ok(s) = set.select() {
                    check_read(&set, &s, 0);
                    clock.advance(Duration::from_millis(u64::from(ms)));
                    if fail {
                        s.failure();
                    } else {
                        s.success();
                    }
                }
            }
            Op::Hold => {
                if let Ok(s) = set.select() {
                    check_read(&set, &s, 0);
                    let g = model[s.name()].generation;
                    held.push((s, g));
                }
            }
            Op::Release { which } => {
                if !held.is_empty() {
                    let (s, _) = held.swap_remove(usize::from(which) % held.len());
                    if which % 2 == 0 {
                        s.success();
                    }
                }
            }
            Op::Health { id, up } => {
                let r = set.set_healthy(&name(id), up);
                if let Some(m) = model.get_mut(&name(id)) {
                    assert!(r.is_ok());
                    m.healthy = up;
                } else {
                    assert!(r.is_err());
                }
            }
            Op::Lag { id, secs } => {
                let r = set.report_lag(&name(id), Duration::from_secs(u64::from(secs % 6)));
                assert_eq!(r.is_ok(), model.contains_key(&name(id)));
            }
            Op::Applied { id, pos } => {
                let r = set.report_applied(&name(id), Position::new(u64::from(pos)));
                if let Some(m) = model.get_mut(&name(id)) {
                    assert!(r.is_ok());
                    m.applied = m.applied.max(u64::from(pos));
                } else {
                    assert!(r.is_err());
                }
            }
            Op::ReadAt { pos } => {
                if let Ok(s) = set.select_at(Position::new(u64::from(pos))) {
                    if s.role() == Role::Replica {
                        let applied = model.get(s.name()).map_or(0, |m| m.applied);
                        assert!(
                            applied >= u64::from(pos),
                            "{} has {applied} < {pos}",
                            s.name()
                        );
                    }
                    check_read(&set, &s, u64::from(pos));
                }
            }
            Op::Advance { secs } => clock.advance(Duration::from_secs(u64::from(secs))),
            Op::Maintain => set.maintain(),
        }

        // Membership and roles.
        let stats = set.stats();
        let names: Vec<&str> = stats.endpoints.iter().map(|e| &*e.name).collect();
        let mut expected: Vec<&str> = model.keys().map(String::as_str).collect();
        let mut got = names.clone();
        got.sort_unstable();
        expected.sort_unstable();
        assert_eq!(got, expected);
        assert!(
            stats
                .endpoints
                .iter()
                .filter(|e| e.role == Role::Primary)
                .count()
                <= 1
        );
        for e in &stats.endpoints {
            let m = model[&*e.name];
            assert_eq!(e.role == Role::Primary, m.primary, "{e:?}");
            assert_eq!(e.healthy, m.healthy);
            assert_eq!(e.applied.get(), m.applied);
        }
        // Ejection cap.
        let cap = if outliers.max_ejection_percent == 0 {
            0
        } else {
            (stats.endpoints.len() * outliers.max_ejection_percent as usize / 100).max(1)
        };
        assert!(
            stats.endpoints.iter().filter(|e| e.ejected).count()
                <= cap.max(stats.ejected_now as usize)
        );
        assert!(stats.ejected_now as usize <= cap.max(model.len()));
        // The minimum serving set, taken among the replicas that are
        // available (healthy, not ejected): a down replica holds no place in it.
        let available = |e: &&scalekit_replica::EndpointStats| {
            e.role == Role::Replica && e.healthy && !e.ejected
        };
        let replicas = stats.endpoints.iter().filter(available).count();
        let serving = stats
            .endpoints
            .iter()
            .filter(available)
            .filter(|e| e.serving_reads)
            .count();
        assert!(
            serving >= min_serving.min(replicas),
            "{serving} of {replicas} available replicas serve, minimum {min_serving}"
        );
        // Outstanding calls.
        assert_eq!(
            stats
                .endpoints
                .iter()
                .map(|e| e.outstanding as usize)
                .sum::<usize>(),
            held.iter()
                .filter(|(s, g)| model.get(s.name()).is_some_and(|m| m.generation == *g))
                .count()
        );
    }
    drop(held);
    assert!(set.stats().endpoints.iter().all(|e| e.outstanding == 0));
});

/// A read went to a replica that could take it, or to the primary because none could.
fn check_read(
    set: &ReplicaSet<u8, AlwaysAdmit, ManualClock>,
    s: &Selected<u8, AlwaysAdmit, ManualClock>,
    token: u64,
) {
    let stats = set.stats();
    let Some(e) = stats.endpoints.iter().find(|e| &*e.name == s.name()) else {
        panic!("selected endpoint {} is not a member", s.name());
    };
    let fit = |e: &scalekit_replica::EndpointStats| {
        e.role == Role::Replica
            && e.healthy
            && e.serving_reads
            && !e.ejected
            && (token == 0 || e.applied.get() >= token)
    };
    if e.role == Role::Replica {
        assert!(e.healthy && e.serving_reads, "{e:?}");
        assert!(token == 0 || e.applied.get() >= token);
    } else {
        assert!(
            !stats.endpoints.iter().any(fit),
            "the primary read while a replica could: {stats:?}"
        );
    }
}
