//! The built-in stages' data sections, read through the whole stage file (the
//! sections' own checks are tested in storefront-storage), and the pictures
//! their components' pieces make.

use crate::config::{DatabaseConfig, StageConfig};

#[test]
fn stage_5_has_a_replica_and_checks_the_section() {
    let stage = StageConfig::builtin(5).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(stage.database, DatabaseConfig::Postgres { .. }));
    assert_eq!(
        stage.database.postgres_url().as_deref(),
        Some("postgres://postgres@127.0.0.1:5434/storefront")
    );
    let replicas = stage.replicas.unwrap_or_else(|| panic!("no [replicas]"));
    assert_eq!(replicas.servers, ["postgres://postgres@127.0.0.1:5433"]);
    assert_eq!(stage.gateway.map(|g| g.instances), Some(3));
    assert!(stage.cache.is_some());

    let sqlite = "[stage]\nnumber = 5\nname = \"x\"\ntitle = \"X\"\nadds = \"a\"\nneeds = \"n\"\n\
                  [server]\naddr = \"127.0.0.1:1\"\n[database]\nbackend = \"sqlite\"\nfile = \"a.db\"\n";
    let with = |section: &str| {
        StageConfig::parse("f.toml", &format!("{sqlite}[replicas]\n{section}"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(
        with("servers = [\"postgres://h:1\"]\n").starts_with("f.toml: replicas: "),
        "{}",
        with("servers = [\"postgres://h:1\"]\n")
    );
    let pg = sqlite.replace(
        "backend = \"sqlite\"\nfile = \"a.db\"",
        "backend = \"postgres\"\nurl = \"postgres://h:1/db\"",
    );
    let err = |section: &str| {
        StageConfig::parse("f.toml", &format!("{pg}[replicas]\n{section}"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert_eq!(err("servers = [\"postgres://h:2\"]\n"), "");
    assert!(err("servers = []\n").starts_with("f.toml: replicas.servers: empty"));
    assert!(err("servers = [\"postgres://h:2\"]\nmax_lag_ms = 0\n")
        .starts_with("f.toml: replicas.max_lag_ms: 0: "));
    let typo = err("servers = [\"postgres://h:2\"]\nmax_lag = 5\n");
    assert!(typo.contains("max_lag"), "{typo}");
}

#[test]
fn stage_6_names_the_three_databases_on_the_primary() {
    let stage = StageConfig::parse(
        "stages/06-business-split/stage.toml",
        include_str!("../../../../stages/06-business-split/stage.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stage.stage.number, 6);
    assert!(stage.cache.is_some() && stage.gateway.is_some());
    let domains = stage.domains.unwrap_or_else(|| panic!("no [domains]"));
    assert_eq!(
        domains
            .urls()
            .into_iter()
            .map(|(d, u)| format!("{d} {u}"))
            .collect::<Vec<_>>(),
        [
            "users postgres://postgres@127.0.0.1:5434/storefront_users",
            "catalog postgres://postgres@127.0.0.1:5434/storefront_catalog",
            "orders postgres://postgres@127.0.0.1:5434/storefront_orders",
        ]
    );
}

#[test]
fn the_stage_7_file_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../stages/07-sharding/stage.toml");
    let stage = StageConfig::load(&path).unwrap();
    assert_eq!(stage.stage.number, 7);
    let sharding = stage.sharding.unwrap();
    sharding.validate().unwrap();
    assert_eq!(sharding.databases.len(), 2);
    assert_eq!(sharding.all_databases().len(), 4);
}

#[test]
fn stage_pictures() {
    use storefront_contract::ops::topology::Tier;
    let picture = |n| {
        StageConfig::builtin(n)
            .unwrap_or_else(|e| panic!("{e}"))
            .topology()
    };
    let one = picture(1);
    let tiers: Vec<_> = one.columns().map(|(t, _)| t).collect();
    assert_eq!(tiers, [Tier::Clients, Tier::Apps, Tier::Data]);
    let svg = storefront_ops::topology::svg(&one);
    assert!(svg.contains("SQLite file") && !svg.contains("Redis") && !svg.contains(">L1<"));
    let three = picture(3);
    let svg = storefront_ops::topology::svg(&three);
    assert!(svg.contains("PostgreSQL") && svg.contains("Redis L2") && svg.contains(">L1<"));
    assert!(three.find("gateway").is_none());
    let four = picture(4);
    assert_eq!(four.find("app").map(|a| a.count), Some(3));
    assert_eq!(four.nodes(Tier::Front).len(), 1);
    let svg = storefront_ops::topology::svg(&four);
    assert!(svg.contains("Gateway") && svg.contains("App 3") && !svg.contains("App 4"));
    let place = |n| {
        picture(n)
            .find("database")
            .map(|d| d.sub.clone())
            .unwrap_or_default()
    };
    assert_eq!(place(5), "127.0.0.1:5434 + 1 replica");
    assert_eq!(
        place(6),
        "127.0.0.1:5434 + 1 replica; users, catalog, orders"
    );
    assert_eq!(
        place(7),
        "127.0.0.1:5434 + 1 replica; users, catalog, orders in 2 shards"
    );
}
