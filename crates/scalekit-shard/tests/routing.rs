//! Routing: every strategy, binding and broadcast tables, queries by key, range
//! and nothing, and configuration errors that say where.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use proptest::prelude::*;
use scalekit_ring::{Jump, Ring};
use scalekit_shard::{
    redis_cluster_slot, ConfigErrorKind, Engines, Op, Query, RouteError, Router, RouterConfig,
    Target,
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

// --- configuration errors -------------------------------------------------

fn err(text: &str) -> scalekit_shard::ConfigError {
    match RouterConfig::from_toml(text).and_then(|c| c.build(&engines())) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e,
    }
}

#[test]
fn config_errors_say_where() {
    let cases: &[(&str, ConfigErrorKind, usize, &str)] = &[
        (
            "databases = [\"a\"]\n[tables.t]\ndatabase = \"zz\"\n",
            ConfigErrorKind::UnknownDatabase,
            3,
            "tables.t.database",
        ),
        (
            "databases = [\"a\", \"b\"]\n[tables.t.databases]\nkey = \"id\"\nhash = [\"a\", \"q\"]\n",
            ConfigErrorKind::UnknownDatabase,
            4,
            "tables.t.databases.hash",
        ),
        (
            "databases = [\"a\", \"b\"]\n[tables.t.databases]\nkey = \"id\"\nranges = [\n {from = 0, to = 10, shard = \"a\"},\n {from = 5, shard = \"b\"},\n]\n",
            ConfigErrorKind::Overlap,
            6,
            "tables.t.databases.ranges[1]",
        ),
        (
            "databases = [\"a\", \"b\"]\n[tables.t.databases]\nkey = \"id\"\nranges = [\n {from = 0, to = 10, shard = \"a\"},\n {from = 11, shard = \"b\"},\n]\n",
            ConfigErrorKind::Gap,
            6,
            "tables.t.databases.ranges[1]",
        ),
        (
            "databases = [\"a\", \"b\"]\n[tables.t.databases]\nkey = \"id\"\nranges = [\n {from = 0, shard = \"a\"},\n {from = 11, shard = \"b\"},\n]\n",
            ConfigErrorKind::Overlap,
            6,
            "tables.t.databases.ranges[1]",
        ),
        (
            "databases = [\"a\"]\n[tables.t.databases]\nkey = \"id\"\nranges = []\n",
            ConfigErrorKind::EmptyShards,
            4,
            "tables.t.databases.ranges",
        ),
        (
            "databases = [\"a\"]\n[tables.t.databases]\nkey = \"id\"\nhash = []\n",
            ConfigErrorKind::EmptyShards,
            4,
            "tables.t.databases.hash",
        ),
        (
            "databases = []\n",
            ConfigErrorKind::EmptyShards,
            1,
            "databases",
        ),
        (
            "databases = [\"a\", \"b\", \"a\"]\n",
            ConfigErrorKind::Duplicate,
            1,
            "databases[2]",
        ),
        (
            "databases = [\"a\", \"b\"]\n[tables.t.databases]\nkey = \"id\"\nmodulo = [\"a\", \"b\", \"a\"]\n",
            ConfigErrorKind::Duplicate,
            4,
            "tables.t.databases.modulo",
        ),
        (
            "databases = [\"a\"]\n[tables.t]\ndatabase = \"a\"\n[tables.t]\ndatabase = \"a\"\n",
            ConfigErrorKind::Syntax,
            4,
            "",
        ),
        (
            "databases = [\"a\"]\n[tables.t_0]\ndatabase = \"a\"\n[tables.t]\ndatabase = \"a\"\n[tables.t.tables]\nkey = \"id\"\nmodulo = 2\n",
            ConfigErrorKind::Duplicate,
            2,
            "tables.t_0",
        ),
        (
            "databases = [\"a\"]\n[tables.t]\ndatabase = \"a\"\nshards = 3\n",
            ConfigErrorKind::Syntax,
            4,
            "",
        ),
        (
            "databases = [\"a\"]\n[tables.t.databases]\nkey = \"id\"\nhash = [\"a\"]\nengine = \"nope\"\n",
            ConfigErrorKind::UnknownEngine,
            5,
            "tables.t.databases.engine",
        ),
        (
            "databases = [\"a\"]\n[tables.t.databases]\nkey = \"id\"\ntime = \"month\"\n",
            ConfigErrorKind::Invalid,
            4,
            "tables.t.databases.time",
        ),
        (
            "databases = [\"a\"]\n[tables.u]\nbind = \"t\"\n",
            ConfigErrorKind::UnknownTable,
            3,
            "tables.u.bind",
        ),
        (
            "databases = [\"a\"]\n[tables.t.databases]\nkey = \"id\"\nhash = [\"a\"]\nmodulo = [\"a\"]\n",
            ConfigErrorKind::Invalid,
            2,
            "tables.t.databases",
        ),
        (
            "databases = [\"a\"]\n[tables.t.databases]\nkey = \"id\"\nmodulo = [\"a\"]\nslots = 8\n",
            ConfigErrorKind::Invalid,
            5,
            "tables.t.databases.slots",
        ),
        (
            "databases = [\"a\"]\n[tables.t]\n",
            ConfigErrorKind::Invalid,
            2,
            "tables.t",
        ),
    ];
    for (text, kind, line, path) in cases {
        let e = err(text);
        assert_eq!(
            (e.kind(), e.line(), e.path()),
            (*kind, *line, *path),
            "{text}\n-> {e}"
        );
        assert!(e.column() >= 1);
        assert!(e.to_string().contains(&format!("line {line}")), "{e}");
    }
    let e = err("databases = [\"a\"]\n[tables.t]\ndatabase = \"zz\"\n");
    assert_eq!(
        e.to_string(),
        "line 3, column 12: tables.t.database: unknown database \"zz\"; add it to `databases` or use one of a"
    );
    assert_eq!(
        e.clone().with_origin("shards.toml").to_string(),
        "shards.toml:3:12: tables.t.database: unknown database \"zz\"; add it to `databases` or use one of a"
    );
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
#[test]
fn more_shards_than_default_slots_is_an_error() {
    let n = scalekit_shard::DEFAULT_SLOTS as usize + 1;
    let names: Vec<String> = (0..n).map(|i| format!("\"t_{i}\"")).collect();
    let list = names.join(", ");
    for (extra, hint) in [("", "slots"), ("slot_hash = \"redis\"\n", "Redis")] {
        let text = format!(
            "databases = [\"a\"]\n[tables.t]\ndatabase = \"a\"\n[tables.t.tables]\nkey = \"id\"\n{extra}hash = [{list}]\n"
        );
        let e = err(&text);
        let line = if extra.is_empty() { 6 } else { 7 };
        assert_eq!(
            (e.kind(), e.line(), e.path()),
            (ConfigErrorKind::Invalid, line, "tables.t.tables.hash"),
            "{e}"
        );
        let msg = e.to_string();
        assert!(msg.contains(&format!("{n} shards")), "{msg}");
        assert!(msg.contains(hint), "{msg}");
    }
    // Given explicitly, enough slots make the same list fine.
    let text = format!(
        "databases = [\"a\"]\n[tables.t]\ndatabase = \"a\"\n[tables.t.tables]\nkey = \"id\"\nslots = {n}\nhash = [{list}]\n"
    );
    router(&text);
}

fn accepted(text: &str) {
    if let Err(e) = RouterConfig::from_toml(text).and_then(|c| c.build(&engines())) {
        panic!("refused: {e}\n{text}");
    }
}

/// Physical names are compared within each table's own databases: a table
/// hashed over d0 and d1 does not collide with a table of the same physical
/// name in d2, and does in d0.
#[test]
fn physical_collisions_use_the_dimensions_own_databases() {
    let text = |db: &str| {
        format!(
            r#"
            databases = ["d0", "d1", "d2"]
            [tables.t.databases]
            key = "id"
            hash = ["d0", "d1"]
            [tables.t.tables]
            key = "id"
            modulo = ["0", "1"]
            [tables.t_0]
            database = "{db}"
            "#
        )
    };
    accepted(&text("d2"));
    let e = err(&text("d0"));
    assert_eq!(e.kind(), ConfigErrorKind::Duplicate, "{e}");
    assert!(e.to_string().contains("d0.t_0"), "{e}");
    // A directory entry widens the set.
    let with_dir = text("d2").replace(
        "hash = [\"d0\", \"d1\"]",
        "hash = [\"d0\", \"d1\"]\n            directory = { \"acme\" = \"d2\" }",
    );
    assert_eq!(err(&with_dir).kind(), ConfigErrorKind::Duplicate);
}

/// A logical table named like a table that a time split generates
/// (`orders_202611` beside `orders` by month) is refused, and so is a time
/// split whose generated names a sharded table's physical names hit.
#[test]
fn physical_collisions_with_time_split_names() {
    let orders = |other: &str, db: &str| {
        format!(
            r#"
            databases = ["a", "b"]
            [tables.orders]
            database = "a"
            [tables.orders.tables]
            key = "created_at"
            time = "month"
            retention = 24
            [tables.{other}]
            database = "{db}"
            "#
        )
    };
    // A logical table that is one of the generated month tables.
    let e = err(&orders("orders_202611", "a"));
    assert_eq!(
        (e.kind(), e.path()),
        (ConfigErrorKind::Duplicate, "tables.orders_202611"),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("a.orders_202611") && msg.contains("month"),
        "{msg}"
    );
    // In another database, or not a month label: no collision.
    accepted(&orders("orders_202611", "b"));
    accepted(&orders("orders_2026", "a"));
    accepted(&orders("orders_202613", "a"));
    accepted(&orders("orders_archive", "a"));

    // The other way round: the time-split table's name is the longer one, and
    // a sharded table's physical names land on its generated names.
    let text = |time_db: &str| {
        format!(
            r#"
            databases = ["a", "b"]
            [tables.log]
            database = "a"
            [tables.log.tables]
            key = "id"
            modulo = ["2026_202611", "x"]
            [tables.log_2026]
            database = "{time_db}"
            [tables.log_2026.tables]
            key = "at"
            time = "month"
            retention = 3
            "#
        )
    };
    let e = err(&text("a"));
    assert_eq!(
        (e.kind(), e.path()),
        (ConfigErrorKind::Duplicate, "tables.log"),
        "{e}"
    );
    assert!(e.to_string().contains("log_2026"), "{e}");
    accepted(&text("b"));
}

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
