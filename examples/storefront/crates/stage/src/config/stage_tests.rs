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
    // Each primary's replicas: the entry must name the database's server.
    let cluster = |primary: &str| {
        err(&format!(
            "[[replicas.cluster]]\nprimary = \"{primary}\"\nservers = [\"postgres://h:2\"]\n"
        ))
    };
    assert_eq!(cluster("h:1"), "");
    assert!(
        cluster("h:9").starts_with("f.toml: replicas.cluster.primary: [0] h:9 holds none"),
        "{}",
        cluster("h:9")
    );
    assert!(
        cluster("postgres://h:1").starts_with("f.toml: replicas.cluster.primary: [0] "),
        "{}",
        cluster("postgres://h:1")
    );
    let both = err("servers = [\"postgres://h:2\"]\n[[replicas.cluster]]\nprimary = \"h:1\"\nservers = [\"postgres://h:3\"]\n");
    assert!(
        both.starts_with("f.toml: replicas.cluster: give either"),
        "{both}"
    );
}

/// The replica servers `stage`'s `[replicas]` gives the database at `url`.
fn replicas_of(stage: &StageConfig, url: &str) -> Vec<String> {
    let options = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(url)
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    stage
        .replicas
        .as_ref()
        .map(|r| r.servers_of(&options).to_vec())
        .unwrap_or_default()
}

#[test]
fn stage_6_puts_each_database_in_a_cluster_of_its_own_with_its_replica() {
    let stage = StageConfig::parse(
        "stages/06-business-split/stage.toml",
        include_str!("../../../../stages/06-business-split/stage.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stage.stage.number, 6);
    assert!(stage.cache.is_some() && stage.gateway.is_some());
    let domains = stage
        .domains
        .clone()
        .unwrap_or_else(|| panic!("no [domains]"));
    assert_eq!(
        domains
            .urls()
            .into_iter()
            .map(|(d, u)| format!("{d} {u} {:?}", replicas_of(&stage, u)))
            .collect::<Vec<_>>(),
        [
            "users postgres://postgres@127.0.0.1:5440/storefront_users [\"postgres://postgres@127.0.0.1:5441\"]",
            "catalog postgres://postgres@127.0.0.1:5442/storefront_catalog [\"postgres://postgres@127.0.0.1:5443\"]",
            "orders postgres://postgres@127.0.0.1:5444/storefront_orders [\"postgres://postgres@127.0.0.1:5445\"]",
        ]
    );
    // The lag limit and the checks as stage 5's.
    let (five, six) = (
        StageConfig::builtin(5).unwrap_or_else(|e| panic!("{e}")),
        stage.replicas.unwrap_or_else(|| panic!("no [replicas]")),
    );
    let five = five.replicas.unwrap_or_else(|| panic!("no [replicas]"));
    assert_eq!(
        (six.max_lag_ms, six.check_interval_ms, six.check_timeout_ms),
        (
            five.max_lag_ms,
            five.check_interval_ms,
            five.check_timeout_ms
        )
    );
}

#[test]
fn the_stage_7_file_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../stages/07-sharding/stage.toml");
    let stage = StageConfig::load(&path).unwrap();
    assert_eq!(stage.stage.number, 7);
    let sharding = stage.sharding.clone().unwrap();
    sharding.validate().unwrap();
    assert_eq!(sharding.databases.len(), 2);
    assert_eq!(sharding.all_databases().len(), 4);
    // Users and catalog in stage 6's clusters; each shard in one of its own,
    // with its replica (stage 7 reads orders on the replicas, as stage 6 does).
    let six = StageConfig::builtin(6).unwrap();
    let (domains, six_domains) = (stage.domains.clone().unwrap(), six.domains.unwrap());
    assert_eq!(
        (&domains.users, &domains.catalog),
        (&six_domains.users, &six_domains.catalog)
    );
    for url in [&domains.users, &domains.catalog] {
        assert_eq!(replicas_of(&stage, url).len(), 1, "{url}");
    }
    let mut ports = Vec::new();
    for (i, name) in sharding.all_databases().iter().enumerate() {
        assert_eq!(name, &format!("storefront_orders_{i}"));
        let options = sharding.database_options(name).unwrap();
        assert_eq!(options.get_database(), Some(name.as_str()));
        let port = options.get_port();
        assert_eq!(port, 5446 + 2 * i as u16, "{name}");
        let url = format!("postgres://postgres@127.0.0.1:{port}/{name}");
        assert_eq!(
            replicas_of(&stage, &url),
            [format!("postgres://postgres@127.0.0.1:{}", port + 1)],
            "{name}"
        );
        ports.push(port);
    }
    ports.dedup();
    assert_eq!(ports.len(), 4, "a server per shard");
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
    // Stages 6 and 7: a node per server, with what it holds.
    let databases = |n| {
        picture(n)
            .nodes(Tier::Data)
            .iter()
            .filter(|d| d.class == "database")
            .map(|d| format!("{} | {}", d.title, d.sub))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        databases(6),
        [
            "PostgreSQL: users | 127.0.0.1:5440 + 1 replica",
            "PostgreSQL: catalog | 127.0.0.1:5442 + 1 replica",
            "PostgreSQL: orders | 127.0.0.1:5444 + 1 replica",
        ]
    );
    assert_eq!(
        databases(7),
        [
            "PostgreSQL: users | 127.0.0.1:5440 + 1 replica",
            "PostgreSQL: catalog | 127.0.0.1:5442 + 1 replica",
            "PostgreSQL: storefront_orders_0 | 127.0.0.1:5446 + 1 replica",
            "PostgreSQL: storefront_orders_1 | 127.0.0.1:5448 + 1 replica",
            "PostgreSQL: storefront_orders_2 | 127.0.0.1:5450 + 1 replica, reshard target",
            "PostgreSQL: storefront_orders_3 | 127.0.0.1:5452 + 1 replica, reshard target",
        ]
    );
    let svg = storefront_ops::topology::svg(&picture(7));
    assert!(svg.contains(">PostgreSQL: storefront_orders_3<"), "{svg}");
}
