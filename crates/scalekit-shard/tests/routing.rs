//! Routing: every strategy, binding and broadcast tables, queries by key, range
//! and nothing (configuration errors: `config_errors.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use proptest::prelude::*;
use scalekit_ring::{Jump, Ring};
use scalekit_shard::{
    redis_cluster_slot, Engines, Op, Query, RouteError, Router, RouterConfig, Target,
};

fn engines() -> Engines {
    Engines::new()
        .register("ring", |nodes| {
            Ok(Box::new(Ring::with_nodes(nodes.iter().cloned())?))
        })
        .register("jump", |nodes| {
            Ok(Box::new(Jump::with_nodes(nodes.iter().cloned())?))
        })
}

fn router(text: &str) -> Router {
    RouterConfig::from_toml(text)
        .unwrap()
        .build(&engines())
        .unwrap()
}

/// 2026-11-24T12:00:00Z.
const NOW: i64 = 1_795_521_600;
const DAY: i64 = 86_400;

const SHOP: &str = r#"
epoch = 7
databases = ["users", "catalog", "orders_0", "orders_1", "orders_2", "big"]
hot_keys = 4

[tables.users]
database = "users"

[tables.products]
database = "catalog"

[tables.currencies]
broadcast = true

[tables.orders.databases]
key = "user_id"
hash = ["orders_0", "orders_1", "orders_2"]
engine = "ring"
directory = { "1000" = "big", "acme" = "big" }

[tables.orders.tables]
key = "created_at"
time = "month"
retention = 12
ahead = 1

[tables.order_items]
bind = "orders"
"#;

#[test]
fn domain_split_puts_each_table_in_its_database() {
    let r = router(SHOP);
    assert_eq!(r.epoch(), 7);
    assert_eq!(
        r.locate("users", &Query::all()).unwrap(),
        Target::new("users", "users")
    );
    assert_eq!(
        r.route("products", &Query::key("id", 5), Op::Write)
            .unwrap()
            .targets,
        [Target::new("catalog", "products")]
    );
}

#[test]
fn composite_database_by_user_table_by_month() {
    let r = router(SHOP);
    let q = Query::key("user_id", 42).and_key("created_at", NOW);
    let t = r.locate("orders", &q).unwrap();
    assert!(t.database.starts_with("orders_"), "{t}");
    assert_eq!(&*t.table, "orders_202611");
    // Same user, another month: same database, another table.
    let earlier = r
        .locate(
            "orders",
            &Query::key("user_id", 42).and_key("created_at", NOW - 40 * DAY),
        )
        .unwrap();
    assert_eq!(earlier.database, t.database);
    assert_eq!(&*earlier.table, "orders_202610");
    // The user alone: every month kept in that one database (12 kept + 1 ahead).
    let route = r
        .route_at("orders", &Query::key("user_id", 42), Op::Read, NOW)
        .unwrap();
    assert_eq!(route.targets.len(), 13);
    assert!(route.targets.iter().all(|x| x.database == t.database));
    assert_eq!(&*route.targets[0].table, "orders_202512");
    assert_eq!(&*route.targets[12].table, "orders_202612");
    // locate refuses a query that reaches several tables.
    assert!(matches!(
        r.locate("orders", &Query::key("user_id", 42)),
        Err(RouteError::NotSingle { .. })
    ));
}

#[test]
fn time_ranges_pick_the_months_they_cover() {
    let r = router(SHOP);
    let q = Query::key("user_id", 42).and_range("created_at", NOW - 60 * DAY..=NOW);
    let names: Vec<String> = r
        .route_at("orders", &q, Op::Read, NOW)
        .unwrap()
        .targets
        .iter()
        .map(|t| t.table.to_string())
        .collect();
    assert_eq!(names, ["orders_202609", "orders_202610", "orders_202611"]);
    // An open start stops at the retention.
    let q = Query::key("user_id", 42).and_range("created_at", ..NOW);
    assert_eq!(
        r.route_at("orders", &q, Op::Read, NOW)
            .unwrap()
            .targets
            .len(),
        12
    );
    // Beyond the kept window: nothing.
    let q = Query::key("user_id", 42).and_range("created_at", NOW - 800 * DAY..NOW - 700 * DAY);
    assert!(r
        .route_at("orders", &q, Op::Read, NOW)
        .unwrap()
        .targets
        .is_empty());
}

#[test]
fn time_tables_are_named_ahead_with_retention() {
    let r = router(SHOP);
    let m = r.time_tables("orders", NOW).unwrap();
    // Two months (current + 1 ahead) in each of the four databases.
    assert_eq!(m.create.len(), 8);
    let names: BTreeSet<String> = m.create.iter().map(|t| t.table.to_string()).collect();
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["orders_202611", "orders_202612"]
    );
    assert_eq!(m.oldest_kept.as_deref(), Some("orders_202512"));
    assert!(matches!(
        r.time_tables("users", NOW),
        Err(RouteError::NotTimeSplit { .. })
    ));
}

#[test]
fn directory_is_consulted_before_the_hash() {
    let r = router(SHOP);
    for k in [
        scalekit_shard::Key::Int(1000),
        scalekit_shard::Key::Str("acme"),
    ] {
        let q = Query::key("user_id", k).and_key("created_at", NOW);
        assert_eq!(&*r.locate("orders", &q).unwrap().database, "big");
    }
    // A scan reaches the directory's database too.
    let all: BTreeSet<String> = r
        .route_at("orders", &Query::all(), Op::Read, NOW)
        .unwrap()
        .targets
        .iter()
        .map(|t| t.database.to_string())
        .collect();
    assert_eq!(
        all.into_iter().collect::<Vec<_>>(),
        ["big", "orders_0", "orders_1", "orders_2"]
    );
}

#[test]
fn binding_tables_land_together() {
    let r = router(SHOP);
    assert_eq!(
        r.binding_group("orders").unwrap(),
        ["order_items", "orders"]
    );
    for user in 0..500 {
        let q = Query::key("user_id", user).and_key("created_at", NOW);
        let o = r.locate("orders", &q).unwrap();
        let i = r.locate("order_items", &q).unwrap();
        assert_eq!(o.database, i.database);
        assert_eq!(&*i.table, "order_items_202611");
    }
}

#[test]
fn broadcast_reads_one_copy_and_writes_all() {
    let r = router(SHOP);
    assert!(r.is_broadcast("currencies"));
    let read = r
        .route("currencies", &Query::key("code", "EUR"), Op::Read)
        .unwrap();
    assert_eq!(read.targets.len(), 1);
    let write = r.route("currencies", &Query::all(), Op::Write).unwrap();
    assert_eq!(write.targets.len(), 6);
}

#[test]
fn modulo_matches_plain_modulo() {
    let r = router(
        r#"
        databases = ["d0", "d1", "d2"]
        [tables.t.databases]
        key = "id"
        modulo = ["d0", "d1", "d2"]
        [tables.t.tables]
        key = "id"
        modulo = 4
        "#,
    );
    for id in -50i64..200 {
        let t = r.locate("t", &Query::key("id", id)).unwrap();
        assert_eq!(&*t.database, format!("d{}", id.rem_euclid(3)));
        assert_eq!(&*t.table, format!("t_{}", id.rem_euclid(4)));
    }
    // A scan: 3 databases x 4 tables.
    assert_eq!(
        r.route("t", &Query::all(), Op::Read).unwrap().targets.len(),
        12
    );
}

#[test]
fn ranges_route_keys_and_key_ranges() {
    let r = router(
        r#"
        databases = ["a", "b", "c"]
        [tables.accounts.databases]
        key = "id"
        ranges = [
          { from = 0, to = 1000, shard = "a" },
          { to = 5000, shard = "b" },       # from = 1000, the previous end
          { from = 5000, shard = "c" },     # no `to`: open end
        ]
        "#,
    );
    let db = |id: i64| {
        r.locate("accounts", &Query::key("id", id))
            .unwrap()
            .database
            .to_string()
    };
    assert_eq!(db(0), "a");
    assert_eq!(db(999), "a");
    assert_eq!(db(1000), "b");
    assert_eq!(db(4999), "b");
    assert_eq!(db(i64::MAX), "c");
    assert!(matches!(
        r.locate("accounts", &Query::key("id", -1)),
        Err(RouteError::NoRange { key: -1, .. })
    ));
    assert!(matches!(
        r.locate("accounts", &Query::key("id", "x")),
        Err(RouteError::KeyType { .. })
    ));
    let dbs = |q: Query<'_>| -> Vec<String> {
        r.route("accounts", &q, Op::Read)
            .unwrap()
            .targets
            .iter()
            .map(|t| t.database.to_string())
            .collect()
    };
    assert_eq!(dbs(Query::range("id", 500..1000)), ["a"]);
    assert_eq!(dbs(Query::range("id", 500..=1000)), ["a", "b"]);
    assert_eq!(dbs(Query::range("id", 4000..)), ["b", "c"]);
    assert_eq!(dbs(Query::all()), ["a", "b", "c"]);
    // Empty or inverted ranges hold no key: no targets, on ranges as elsewhere.
    let none: [&str; 0] = [];
    assert_eq!(dbs(Query::range("id", 500..500)), none);
    let (hi, lo) = (std::hint::black_box(1500), std::hint::black_box(700));
    assert_eq!(dbs(Query::range("id", hi..lo)), none);
    assert_eq!(dbs(Query::range("id", 15..std::hint::black_box(3))), none);
    assert_eq!(
        dbs(Query::range("id", 800..=std::hint::black_box(799))),
        none
    );
    assert_eq!(
        dbs(Query::range(
            "id",
            (
                std::ops::Bound::Excluded(999),
                std::ops::Bound::Excluded(1000)
            )
        )),
        none
    );
    assert_eq!(dbs(Query::range("id", ..i64::MIN)), none);
    assert_eq!(dbs(Query::range("id", 999..1000)), ["a"]);
}

#[test]
fn redis_cluster_slots_and_hash_tags() {
    assert_eq!(redis_cluster_slot(b"foo"), 12182);
    assert_eq!(scalekit_shard::crc16_xmodem(b"123456789"), 0x31C3);
    // A table placed by Redis Cluster slots: keys with one hash tag share a shard.
    let r = router(
        r#"
        databases = ["n0", "n1", "n2"]
        [tables.sessions.databases]
        key = "key"
        hash = ["n0", "n1", "n2"]
        slot_hash = "redis"
        "#,
    );
    // contiguous slots: 0..5461 -> n0, 5462..10922 -> n1, 10923.. -> n2
    let db = |k: &str| {
        r.locate("sessions", &Query::key("key", k))
            .unwrap()
            .database
            .to_string()
    };
    assert_eq!(db("foo"), "n2"); // slot 12182
    assert_eq!(db("hello"), "n0"); // slot 866
    assert_eq!(db("{user1}.cart"), db("{user1}.session"));
}

#[test]
fn weeks_days_and_years_name_their_tables() {
    for (interval, want) in [
        ("day", "log_20261124"),
        ("week", "log_2026w48"),
        ("year", "log_2026"),
    ] {
        let r = router(&format!(
            r#"
            databases = ["a"]
            [tables.log]
            database = "a"
            [tables.log.tables]
            key = "at"
            time = "{interval}"
            "#
        ));
        assert_eq!(
            &*r.locate("log", &Query::key("at", NOW)).unwrap().table,
            want
        );
        // No retention: an open-ended scan is refused, a bounded one works.
        assert!(matches!(
            r.route("log", &Query::all(), Op::Read),
            Err(RouteError::UnboundedTime { .. })
        ));
        assert_eq!(
            r.route("log", &Query::range("at", NOW..NOW + 1), Op::Read)
                .unwrap()
                .targets
                .len(),
            1
        );
    }
}

#[test]
fn unknown_tables_and_stats() {
    let r = router(SHOP);
    assert!(matches!(
        r.locate("nope", &Query::all()),
        Err(RouteError::UnknownTable { .. })
    ));
    for _ in 0..10 {
        r.locate(
            "orders",
            &Query::key("user_id", 7).and_key("created_at", NOW),
        )
        .unwrap();
    }
    r.locate(
        "orders",
        &Query::key("user_id", 8).and_key("created_at", NOW),
    )
    .unwrap();
    r.route_at("orders", &Query::all(), Op::Read, NOW).unwrap();
    let s = r.stats();
    assert_eq!((s.single, s.all, s.errors), (11, 1, 1));
    assert_eq!(s.hot_keys[0].key, scalekit_shard::OwnedKey::Int(7));
    assert_eq!(s.hot_keys[0].count, 10);
}

#[test]
fn engines_place_slots_and_jump_spreads_them() {
    let r = router(
        r#"
        databases = ["a", "b", "c", "d"]
        [tables.t.databases]
        key = "id"
        hash = ["a", "b", "c", "d"]
        engine = "jump"
        slots = 4096
        "#,
    );
    let mut counts = std::collections::BTreeMap::new();
    for id in 0..40_000i64 {
        *counts
            .entry(
                r.locate("t", &Query::key("id", id))
                    .unwrap()
                    .database
                    .to_string(),
            )
            .or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 4);
    for (db, n) in counts {
        assert!((8_500..11_500).contains(&n), "{db}: {n}");
    }
}

proptest! {
    /// Every key routes to exactly one target and to the shard a scan includes.
    #[test]
    fn a_key_is_always_in_the_scan(user in any::<i64>(), at in 1_600_000_000i64..1_900_000_000) {
        let r = router(SHOP);
        let t = r.locate("orders", &Query::key("user_id", user).and_key("created_at", at)).unwrap();
        let scan = r
            .route_at("orders", &Query::range("created_at", at..=at), Op::Read, NOW)
            .unwrap();
        let in_window = (NOW - 300 * DAY..NOW + 25 * DAY).contains(&at);
        if in_window {
            prop_assert!(scan.targets.contains(&t), "{t} not in the scan");
        }
    }

    /// The loader never panics on arbitrary text.
    #[test]
    fn loader_never_panics(text in "\\PC{0,200}") {
        let _ = RouterConfig::from_toml(&text);
    }
}

proptest! {
    /// `locate_with` lends exactly the names `locate` returns.
    #[test]
    fn locate_with_agrees_with_locate(user in any::<i64>(), at in -62_000_000_000i64..253_000_000_000) {
        let r = router(SHOP);
        let q = Query::key("user_id", user).and_key("created_at", at);
        let owned = r.locate("orders", &q);
        let lent = r.locate_with("orders", &q, |d, t| Target::new(d, t));
        prop_assert_eq!(owned, lent);
        for table in ["users", "currencies", "order_items"] {
            prop_assert_eq!(r.locate(table, &q), r.locate_with(table, &q, |d, t| Target::new(d, t)));
        }
    }
}

/// More shards than the default slot count is an error at load that points at
/// the shard list, as it is when `slots` is given.
/// A single-key write for a time outside the tables in place (past the
/// retention, or beyond the `ahead` tables `time_tables` announces) is refused,
/// not sent to a table that does not exist; a read of it reaches no table, as a
/// range scan of that time does.
#[test]
fn single_key_writes_outside_the_time_window_are_refused() {
    let r = router(SHOP); // month tables, retention 12, ahead 1
    let q = |at: i64| Query::key("user_id", 42).and_key("created_at", at);
    let announced: Vec<String> = r
        .time_tables("orders", NOW)
        .unwrap()
        .create
        .iter()
        .map(|t| t.table.to_string())
        .collect();
    for at in [NOW, NOW + 25 * DAY, NOW - 300 * DAY] {
        let w = r.route_at("orders", &q(at), Op::Write, NOW).unwrap();
        assert_eq!(w.targets.len(), 1, "{at}");
        let read = r.route_at("orders", &q(at), Op::Read, NOW).unwrap();
        assert_eq!(read.targets, w.targets);
        if at >= NOW {
            assert!(announced.contains(&w.targets[0].table.to_string()));
        }
    }
    for at in [NOW + 70 * DAY, NOW - 400 * DAY] {
        let e = r.route_at("orders", &q(at), Op::Write, NOW).unwrap_err();
        assert!(
            matches!(&e, RouteError::OutsideTimeWindow { value, .. } if *value == at),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("orders.created_at")
                && msg.contains("orders_202512")
                && msg.contains("orders_202612"),
            "{msg}"
        );
        let read = r.route_at("orders", &q(at), Op::Read, NOW).unwrap();
        assert!(read.targets.is_empty(), "{at}: {:?}", read.targets);
        let scan = r
            .route_at(
                "orders",
                &Query::range("created_at", at..=at),
                Op::Read,
                NOW,
            )
            .unwrap();
        assert!(scan.targets.is_empty());
    }
}
