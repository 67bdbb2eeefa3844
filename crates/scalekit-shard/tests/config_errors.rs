//! Configuration errors that say where (line, column, field path) and what
//! to write instead, and physical names two tables would share.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use scalekit_ring::{Jump, Ring};
use scalekit_shard::{ConfigErrorKind, Engines, Router, RouterConfig};

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
        "line 3, column 12: invalid shard routing setting `tables.t.database` = \"zz\": expected a database listed in `databases` (a), or add it there"
    );
    assert_eq!(
        e.clone().with_origin("shards.toml").to_string(),
        "shards.toml:3:12: invalid shard routing setting `tables.t.database` = \"zz\": expected a database listed in `databases` (a), or add it there"
    );
    // The same field, value and expectation as every kit's ConfigError.
    let setting: scalekit_core::ConfigError = e.clone().into();
    assert_eq!(
        (setting.component(), setting.field(), setting.value()),
        ("shard routing", "tables.t.database", "\"zz\"")
    );
    assert_eq!(setting.expected(), e.expected());
    // A file that is not TOML of the right shape names no setting.
    let e = err("databases = [\"a\"]\n[tables.t]\ndatabase = \"a\"\nshards = 3\n");
    assert_eq!(e.field(), "");
    assert!(
        e.to_string()
            .starts_with("line 4, column 1: unknown field `shards`"),
        "{e}"
    );
    // Ranges: the value given and where the next range must start.
    let e = err("databases = [\"a\", \"b\"]\n[tables.t.databases]\nkey = \"id\"\nranges = [\n {from = 0, to = 10, shard = \"a\"},\n {from = 11, shard = \"b\"},\n]\n");
    assert_eq!(e.value(), "from = 11");
    assert_eq!(
        e.expected(),
        "from = 10, where range 0 ends (keys 10 to 10 belong to no range)"
    );
}

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
