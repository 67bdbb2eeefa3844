//! Resharding: plans list exactly what moves, and the migration routes reads
//! and writes where they must go in every phase, through every transition and
//! every rollback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use scalekit_ring::{Jump, Memento, Ring};
use scalekit_shard::{
    plan, Dimension, Engines, KeySet, Migration, MigrationError, Op, Phase, PlanError, Query,
    Router, RouterConfig, Target,
};

fn engines() -> Engines {
    Engines::new()
        .register("ring", |n| {
            Ok(Box::new(Ring::with_nodes(n.iter().cloned())?))
        })
        .register("jump", |n| {
            Ok(Box::new(Jump::with_nodes(n.iter().cloned())?))
        })
        .register("memento", |n| {
            Ok(Box::new(Memento::with_nodes(n.iter().cloned())?))
        })
}

fn router(text: &str) -> Router {
    RouterConfig::from_toml(text)
        .unwrap()
        .build(&engines())
        .unwrap()
}

fn hashed(epoch: u64, n: usize, engine: &str) -> Router {
    let list: Vec<String> = (0..n).map(|i| format!("\"db{i}\"")).collect();
    let list = list.join(", ");
    router(&format!(
        r#"
        epoch = {epoch}
        databases = [{list}]
        [tables.t.databases]
        key = "id"
        hash = [{list}]
        engine = "{engine}"
        "#
    ))
}

#[test]
fn epochs_must_grow() {
    let a = hashed(3, 2, "ring");
    let b = hashed(3, 3, "ring");
    assert_eq!(
        plan(&a, &b).unwrap_err(),
        PlanError::Epoch { old: 3, new: 3 }
    );
}

#[test]
fn the_plan_lists_exactly_the_slots_that_move() {
    let old = hashed(1, 4, "ring");
    let new = hashed(2, 5, "ring");
    let p = plan(&old, &new).unwrap();
    let t = p.table("t").unwrap();
    // Every key: it moves iff its slot is listed, and it moves where the plan says.
    let mut moved = 0;
    for id in 0..20_000i64 {
        let q = Query::key("id", id);
        let (a, b) = (old.locate("t", &q).unwrap(), new.locate("t", &q).unwrap());
        let slot = (scalekit_shard::Key::Int(id).stable_hash() % 16384) as u32;
        let m = t.moves.iter().find(|m| match m.keys {
            KeySet::Slots { first, last, .. } => (first..=last).contains(&slot),
            _ => false,
        });
        match m {
            Some(m) => {
                moved += 1;
                assert_eq!((&*m.from, &*m.to), (&*a.database, &*b.database), "id {id}");
                assert_eq!(m.dimension, Dimension::Database);
            }
            None => assert_eq!(a, b, "id {id} moved but its slot is not listed"),
        }
    }
    // About 1/(n+1) = 20 % of the keys move, all to the new shard.
    let f = t.fraction().unwrap();
    assert!((0.15..0.25).contains(&f), "fraction {f}");
    assert!((moved as f64 / 20_000.0 - f).abs() < 0.02);
    assert!(t.moves.iter().all(|m| &*m.to == "db4"));
}

#[test]
fn adding_one_shard_moves_about_one_in_n_plus_one() {
    for engine in ["ring", "jump", "memento"] {
        for n in [2usize, 4, 9] {
            let p = plan(&hashed(1, n, engine), &hashed(2, n + 1, engine)).unwrap();
            let f = p.table("t").unwrap().fraction().unwrap();
            let want = 1.0 / (n as f64 + 1.0);
            assert!(
                (f - want).abs() < 0.35 * want,
                "{engine} {n}->{}: {f} vs {want}",
                n + 1
            );
        }
    }
    // The contiguous layout is not consistent: far more moves.
    let f = plan(&hashed(1, 4, "contiguous"), &hashed(2, 5, "contiguous"))
        .unwrap()
        .table("t")
        .unwrap()
        .fraction()
        .unwrap();
    assert!(f > 0.35, "{f}");
}

#[test]
fn modulo_plans_list_residues() {
    let m = |epoch: u64, n: usize| {
        let list: Vec<String> = (0..n).map(|i| format!("\"db{i}\"")).collect();
        let list = list.join(", ");
        router(&format!(
            "epoch = {epoch}\ndatabases = [{list}]\n[tables.t.databases]\nkey = \"id\"\nmodulo = [{list}]\n"
        ))
    };
    let (old, new) = (m(1, 2), m(2, 3));
    let p = plan(&old, &new).unwrap();
    let t = p.table("t").unwrap();
    // lcm 6: residues 0,1 stay (0->0, 1->1); 2..5 move: 2/3 of the keys.
    assert!((t.fraction().unwrap() - 4.0 / 6.0).abs() < 1e-9);
    for id in 0..600i64 {
        let q = Query::key("id", id);
        let (a, b) = (old.locate("t", &q).unwrap(), new.locate("t", &q).unwrap());
        let listed = t.moves.iter().any(|mv| match &mv.keys {
            KeySet::Residues { modulus, residues } => {
                residues.contains(&((id as u64) % modulus))
                    && mv.from == a.database
                    && mv.to == b.database
            }
            _ => false,
        });
        assert_eq!(listed, a != b, "id {id}");
    }
}

#[test]
fn range_plans_list_key_ranges() {
    let old = router(
        r#"
        epoch = 1
        databases = ["a", "b", "c"]
        [tables.t.databases]
        key = "id"
        ranges = [{ from = 0, to = 100, shard = "a" }, { from = 100, to = 200, shard = "b" }]
        "#,
    );
    let new = router(
        r#"
        epoch = 2
        databases = ["a", "b", "c"]
        [tables.t.databases]
        key = "id"
        ranges = [
          { from = 0, to = 50, shard = "a" },
          { from = 50, to = 100, shard = "c" },
          { from = 100, to = 150, shard = "b" },
          { from = 150, to = 200, shard = "c" },
        ]
        "#,
    );
    let p = plan(&old, &new).unwrap();
    let t = p.table("t").unwrap();
    let moves: Vec<String> = t.moves.iter().map(|m| m.to_string()).collect();
    assert_eq!(moves, ["keys 50..100: a -> c", "keys 150..200: b -> c"]);
    assert!((t.fraction().unwrap() - 0.5).abs() < 1e-9);
}

#[test]
fn domain_split_to_hash_shards_is_planned_and_directory_keys_are_listed() {
    // Stage 6 -> 7: orders leave their one database for three hash shards.
    let old = router(
        r#"
        epoch = 1
        databases = ["orders", "o0", "o1", "o2"]
        [tables.orders]
        database = "orders"
        "#,
    );
    let new = router(
        r#"
        epoch = 2
        databases = ["orders", "o0", "o1", "o2"]
        [tables.orders.databases]
        key = "user_id"
        hash = ["o0", "o1", "o2"]
        engine = "jump"
        directory = { "acme" = "o2" }
        "#,
    );
    let p = plan(&old, &new).unwrap();
    let t = p.table("orders").unwrap();
    assert!((t.fraction().unwrap() - 1.0).abs() < 1e-9);
    assert!(t.moves.iter().all(|m| &*m.from == "orders"));
    assert!(t
        .moves
        .iter()
        .any(|m| m.keys == KeySet::Key("acme".into()) && &*m.to == "o2"));
}

#[test]
fn changing_the_kind_of_strategy_is_refused() {
    let old = hashed(1, 2, "ring");
    let new = router(
        r#"
        epoch = 2
        databases = ["db0", "db1"]
        [tables.t.databases]
        key = "id"
        ranges = [{ from = 0, shard = "db0" }]
        "#,
    );
    assert!(matches!(
        plan(&old, &new),
        Err(PlanError::Incomparable { .. })
    ));
}

// --- the migration ---------------------------------------------------------

const OLD: &str = r#"
epoch = 1
databases = ["a", "b", "c"]
[tables.t.databases]
key = "id"
modulo = ["a", "b"]
"#;
const NEW: &str = r#"
epoch = 2
databases = ["a", "b", "c"]
[tables.t.databases]
key = "id"
modulo = ["a", "b", "c"]
"#;

fn migration() -> Migration {
    Migration::new(router(OLD), router(NEW)).unwrap()
}

fn db(t: &Target) -> &str {
    &t.database
}

/// Where a moving key (id 2: a -> c) and a staying key (id 0: a -> a) go.
fn check_routes(m: &Migration, phase: Phase) {
    let moving = Query::key("id", 2);
    let staying = Query::key("id", 0);
    let read = m.route_in(phase, "t", &moving, Op::Read).unwrap();
    let write = m.route_in(phase, "t", &moving, Op::Write).unwrap();
    let (r, w, mirror): (&str, &str, Option<&str>) = match phase {
        Phase::Copy | Phase::RolledBack => ("a", "a", None),
        Phase::DualWrite | Phase::Verify => ("a", "a", Some("c")),
        Phase::SwitchReads => ("c", "a", Some("c")),
        Phase::SwitchWrites => ("c", "c", Some("a")),
        Phase::CleanUp | Phase::Done => ("c", "c", None),
    };
    assert_eq!(
        read.targets.iter().map(db).collect::<Vec<_>>(),
        [r],
        "{phase} read"
    );
    assert!(read.mirrors.is_empty(), "{phase}: reads are never mirrored");
    assert_eq!(
        write.targets.iter().map(db).collect::<Vec<_>>(),
        [w],
        "{phase} write"
    );
    assert_eq!(
        write.mirrors.iter().map(db).collect::<Vec<_>>(),
        mirror.into_iter().collect::<Vec<_>>(),
        "{phase} mirror"
    );
    // A key that does not move is never mirrored.
    for op in [Op::Read, Op::Write] {
        let s = m.route_in(phase, "t", &staying, op).unwrap();
        assert_eq!(s.targets.iter().map(db).collect::<Vec<_>>(), ["a"]);
        assert!(s.mirrors.is_empty());
    }
    // A scan in the new layout reaches all three databases.
    let scan = m.route_in(phase, "t", &Query::all(), Op::Read).unwrap();
    let want = if matches!(
        phase,
        Phase::SwitchReads | Phase::SwitchWrites | Phase::CleanUp | Phase::Done
    ) {
        3
    } else {
        2
    };
    assert_eq!(scan.targets.len(), want, "{phase} scan");
}

#[test]
fn every_transition_routes_correctly() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let m = migration().on_transition(move |a, b| log.lock().unwrap().push((a, b)));
    assert_eq!(m.phase(), Phase::Copy);
    assert!(m.plan().table("t").is_some());
    check_routes(&m, Phase::Copy);
    let walk = [
        Phase::DualWrite,
        Phase::Verify,
        Phase::SwitchReads,
        Phase::SwitchWrites,
        Phase::CleanUp,
        Phase::Done,
    ];
    for want in walk {
        if m.phase() == Phase::Verify {
            // Leaving verify needs a clean verification.
            assert_eq!(
                m.advance(),
                Err(MigrationError::NotVerified { mismatches: None })
            );
            m.verified(3).unwrap();
            assert_eq!(
                m.advance(),
                Err(MigrationError::NotVerified {
                    mismatches: Some(3)
                })
            );
            m.verified(0).unwrap();
        } else {
            assert!(matches!(
                m.verified(0),
                Err(MigrationError::Transition {
                    action: "verify",
                    ..
                })
            ));
        }
        assert_eq!(m.advance().unwrap(), want);
        assert_eq!(m.phase(), want);
        check_routes(&m, want);
        // The live route equals the phase's route.
        assert_eq!(
            m.route("t", &Query::key("id", 2), Op::Write).unwrap(),
            m.route_in(want, "t", &Query::key("id", 2), Op::Write)
                .unwrap()
        );
    }
    assert!(matches!(
        m.advance(),
        Err(MigrationError::Transition {
            phase: Phase::Done,
            ..
        })
    ));
    assert!(matches!(
        m.rollback(),
        Err(MigrationError::Transition {
            phase: Phase::Done,
            ..
        })
    ));
    let log = seen.lock().unwrap().clone();
    assert_eq!(log.len(), 6);
    assert_eq!(log[0], (Phase::Copy, Phase::DualWrite));
    assert_eq!(log[5], (Phase::CleanUp, Phase::Done));
}

#[test]
fn every_rollback_before_clean_up_restores_the_old_routes() {
    let steps = [
        Phase::Copy,
        Phase::DualWrite,
        Phase::Verify,
        Phase::SwitchReads,
        Phase::SwitchWrites,
    ];
    for stop in steps {
        let m = migration();
        while m.phase() != stop {
            if m.phase() == Phase::Verify {
                m.verified(0).unwrap();
            }
            m.advance().unwrap();
        }
        assert!(stop.can_roll_back());
        assert_eq!(m.rollback().unwrap(), Phase::RolledBack, "from {stop}");
        check_routes(&m, Phase::RolledBack);
        // Rolled back is final.
        assert!(m.advance().is_err());
        assert!(m.rollback().is_err());
    }
    // From clean-up there is no way back.
    let m = migration();
    while m.phase() != Phase::CleanUp {
        if m.phase() == Phase::Verify {
            m.verified(0).unwrap();
        }
        m.advance().unwrap();
    }
    assert!(!Phase::CleanUp.can_roll_back());
    assert_eq!(
        m.rollback(),
        Err(MigrationError::Transition {
            phase: Phase::CleanUp,
            action: "roll back"
        })
    );
    assert_eq!(m.phase(), Phase::CleanUp);
}

proptest! {
    /// In every phase, a read finds a place that has received every write made
    /// since the migration started (writes go to targets + mirrors; the copy
    /// phase's writes are carried over by the copy's catch-up).
    #[test]
    fn reads_always_see_the_writes(id in any::<i64>(), stop in 0usize..6) {
        let m = migration();
        for _ in 0..stop {
            if m.phase() == Phase::Verify { m.verified(0).unwrap(); }
            m.advance().unwrap();
        }
        let q = Query::key("id", id);
        let read = m.route("t", &q, Op::Read).unwrap();
        // Every phase from dual write on writes to both places until clean-up.
        let mut written: Vec<Target> = Vec::new();
        for p in [Phase::DualWrite, Phase::Verify, Phase::SwitchReads, Phase::SwitchWrites] {
            if p <= m.phase() {
                let w = m.route_in(p, "t", &q, Op::Write).unwrap();
                written = w.targets.iter().chain(&w.mirrors).cloned().collect();
            }
        }
        if !written.is_empty() {
            prop_assert!(read.targets.iter().all(|t| written.contains(t)));
        }
    }
}

/// The transition hook runs with the migration's lock released: a hook that
/// reads the phase and routes does not deadlock. The wait is bounded so that a
/// regression fails instead of hanging the suite.
#[test]
fn transition_hook_may_read_the_migration() {
    use std::sync::{mpsc, OnceLock, Weak};
    use std::time::Duration;

    let me: Arc<OnceLock<Weak<Migration>>> = Arc::new(OnceLock::new());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (hook_me, log) = (me.clone(), seen.clone());
    let m = Arc::new(migration().on_transition(move |_, to| {
        let m = hook_me.get().and_then(Weak::upgrade).unwrap();
        let routed = m.route("t", &Query::all(), Op::Write).is_ok();
        log.lock().unwrap().push((to, m.phase(), routed));
    }));
    me.set(Arc::downgrade(&m)).unwrap();

    let (done, finished) = mpsc::channel();
    let driver = m.clone();
    std::thread::spawn(move || {
        let advanced = driver.advance();
        let rolled_back = driver.rollback();
        let _ = done.send((advanced, rolled_back));
    });
    let (advanced, rolled_back) = finished
        .recv_timeout(Duration::from_secs(20))
        .expect("advance/rollback deadlocked in the transition hook");
    assert_eq!(advanced, Ok(Phase::DualWrite));
    assert_eq!(rolled_back, Ok(Phase::RolledBack));
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (Phase::DualWrite, Phase::DualWrite, true),
            (Phase::RolledBack, Phase::RolledBack, true)
        ]
    );
}

fn ranges(epoch: u64, ranges: &str) -> Router {
    router(&format!(
        "epoch = {epoch}\ndatabases = [\"a\", \"b\"]\n[tables.t.databases]\nkey = \"id\"\nranges = [{ranges}]\n"
    ))
}

#[test]
fn an_open_ended_range_that_moves_has_no_fraction() {
    // [0, inf) -> a  becomes  [0, 100) -> a, [100, inf) -> b.
    let old = ranges(1, r#"{ from = 0, shard = "a" }"#);
    let new = ranges(
        2,
        r#"{ from = 0, to = 100, shard = "a" }, { from = 100, shard = "b" }"#,
    );
    let p = plan(&old, &new).unwrap();
    let t = p.table("t").unwrap();
    let moves: Vec<String> = t.moves.iter().map(|m| m.to_string()).collect();
    assert_eq!(moves, ["keys 100..: a -> b"]);
    // Not 0 %: the share of an open-ended tail is unknown.
    assert_eq!(t.database_fraction, None);
    assert_eq!(t.fraction(), None);
    assert!(t.has_unbounded_moves());
    // The bounded part of the same table still has a number.
    assert_eq!(t.table_fraction, Some(0.0));
    // And bounded moves keep theirs.
    let closed = ranges(
        3,
        r#"{ from = 0, to = 100, shard = "a" }, { from = 100, to = 200, shard = "b" }"#,
    );
    let closed2 = ranges(
        4,
        r#"{ from = 0, to = 150, shard = "a" }, { from = 150, to = 200, shard = "b" }"#,
    );
    let t = plan(&closed, &closed2).unwrap().table("t").unwrap().clone();
    assert_eq!(t.fraction(), Some(0.25));
    assert!(!t.has_unbounded_moves());
}

#[test]
fn domain_split_to_ranges_reports_the_open_tail() {
    // Stage 6 -> 7: the table leaves its one database for two key ranges.
    let old = router("epoch = 1\ndatabases = [\"a\", \"b\"]\n[tables.t]\ndatabase = \"a\"\n");
    let open = ranges(
        2,
        r#"{ from = 0, to = 100, shard = "a" }, { from = 100, shard = "b" }"#,
    );
    let t = plan(&old, &open).unwrap().table("t").unwrap().clone();
    let moves: Vec<String> = t.moves.iter().map(|m| m.to_string()).collect();
    assert_eq!(moves, ["keys 100..: a -> b"]);
    assert_eq!(t.fraction(), None);
    // Closed ranges: half the configured span moves.
    let closed = ranges(
        2,
        r#"{ from = 0, to = 100, shard = "a" }, { from = 100, to = 200, shard = "b" }"#,
    );
    let t = plan(&old, &closed).unwrap().table("t").unwrap().clone();
    let moves: Vec<String> = t.moves.iter().map(|m| m.to_string()).collect();
    assert_eq!(moves, ["keys 100..200: a -> b"]);
    assert_eq!(t.fraction(), Some(0.5));
}
