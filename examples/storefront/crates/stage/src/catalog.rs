//! The built-in stages as the tools see them ([`StageCatalog`]): their prose,
//! and a stage file made ready for one isolated run of `evolve` or `bench-http`
//! (PostgreSQL schemas and a Redis namespace of the run's own, per-client limits
//! lifted).

use sqlx::{Connection, Executor, PgConnection};
use storefront_tools::stages::{About, Prepared, StageCatalog};

use crate::config::{BuiltinStage, StageConfig, BUILTIN};

/// The gateway's per-client rate and burst under evolve (one address plays every
/// customer).
const UNLIMITED: i64 = 1_000_000_000;

/// The stages built into this binary (`stages/NN-name/`).
#[derive(Clone, Copy, Debug, Default)]
pub struct BuiltinStages;

#[async_trait::async_trait]
impl StageCatalog for BuiltinStages {
    fn numbers(&self) -> Vec<u32> {
        BUILTIN
            .iter()
            .filter_map(|s| StageConfig::parse(&s.origin(), s.file).ok())
            .map(|c| c.stage.number)
            .collect()
    }

    fn about(&self, number: u32) -> Option<About> {
        let builtin = BuiltinStage::find(number)?;
        let config = StageConfig::parse(&builtin.origin(), builtin.file).ok()?;
        let (adds, caveat) = builtin.about();
        Some(About {
            title: config.stage.title,
            adds,
            caveat,
        })
    }

    fn not_evolvable(&self, number: u32) -> Option<String> {
        let builtin = BuiltinStage::find(number)?;
        let config = StageConfig::parse(&builtin.origin(), builtin.file).ok()?;
        config.l4.is_some().then(|| {
            "it builds a network of namespaces that evolve does not drive yet; `storefront l4 bench` measures its balancers, `cargo test -p storefront --test l4` its faults".to_owned()
        })
    }

    async fn prepare(&self, number: u32, tag: &str) -> Result<Prepared, String> {
        let builtin = BuiltinStage::find(number)
            .ok_or_else(|| format!("stage {number} is not built into this storefront"))?;
        let (origin, text) = (builtin.origin(), builtin.file);
        let config = StageConfig::parse(&origin, text).map_err(|e| e.to_string())?;
        let (text, schemas) = isolated(&config, &origin, text, tag)?;
        let mut prepared = Prepared {
            text,
            ops_token_env: config.ops.as_ref().and_then(|o| o.token_env.clone()),
            schemas: Vec::new(),
            tag: tag.to_owned(),
        };
        for url in schemas {
            if let Err(e) = conn_create_schema(&url, tag, number).await {
                self.release(&prepared).await;
                return Err(e);
            }
            prepared.schemas.push(url);
        }
        Ok(prepared)
    }

    async fn release(&self, prepared: &Prepared) {
        for url in &prepared.schemas {
            if let Ok(mut conn) = PgConnection::connect(url).await {
                let _ = conn
                    .execute(format!("DROP SCHEMA IF EXISTS {} CASCADE", prepared.tag).as_str())
                    .await;
            }
        }
    }
}

/// Stage file `text` rewritten for one run named `tag`, and the databases (URLs)
/// that need the run's schema. Every PostgreSQL database the stage names (its
/// `[database]`, and from stage 6 on its domain and shard databases, on one
/// server or on servers of their own) gets the schema through `search_path`;
/// replica servers, of the one primary or of each (`[[replicas.cluster]]`), are
/// left as they are: the schema replicates to them, and a database's replicas
/// are found by its server's host and port, which the search_path leaves alone. The caches get the namespace `tag`; the
/// per-client limits of the gateway and of sign-in per address are lifted, as
/// every customer of a run comes from one address.
fn isolated(
    config: &StageConfig,
    origin: &str,
    text: &str,
    tag: &str,
) -> Result<(String, Vec<String>), String> {
    let mut doc: toml::Table = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
    if let Some(url) = config.database.postgres_url() {
        if let Some(db) = doc.get_mut("database").and_then(toml::Value::as_table_mut) {
            db.insert("url".into(), toml::Value::String(url));
            db.remove("url_env");
        }
    }
    // The shard databases are named, not given as URLs: their servers' URLs
    // (`url` and each of `servers`, with or without a database part) carry the
    // search_path to them.
    if let Some(sharding) = &config.sharding {
        if let Some(table) = doc.get_mut("sharding").and_then(toml::Value::as_table_mut) {
            table.remove("url_env");
            match sharding.server_url() {
                Some(url) => {
                    table.insert(
                        "url".into(),
                        toml::Value::String(with_search_path(&url, tag)),
                    );
                }
                None => {
                    table.remove("url");
                }
            }
            if let Some(servers) = table.get_mut("servers").and_then(toml::Value::as_table_mut) {
                for (_, server) in servers.iter_mut() {
                    if let Some(url) = server.as_str() {
                        *server = toml::Value::String(with_search_path(url, tag));
                    }
                }
            }
        }
    }
    let mut schemas = Vec::new();
    for (key, value) in doc.iter_mut() {
        if key != "replicas" && key != "sharding" {
            isolate_postgres(value, tag, &mut schemas);
        }
    }
    // Each shard database gets the schema too.
    if let Some(sharding) = &config.sharding {
        for name in sharding.all_databases() {
            let Some(server) = sharding.server_of(&name) else {
                continue;
            };
            let url = with_database(&server, &name);
            if !schemas.contains(&url) {
                schemas.push(url);
            }
        }
    }
    if let Some(cache) = &config.cache {
        if let Some(table) = doc.get_mut("cache").and_then(toml::Value::as_table_mut) {
            table.insert("namespace".into(), toml::Value::String(tag.to_owned()));
            table.insert("redis_url".into(), toml::Value::String(cache.redis_url()));
            table.remove("redis_url_env");
            let cluster = cache.redis_cluster();
            table.remove("redis_cluster_env");
            if !cluster.is_empty() {
                let nodes = cluster.into_iter().map(toml::Value::String).collect();
                table.insert("redis_cluster".into(), toml::Value::Array(nodes));
            }
        }
    }
    lift_limits(&mut doc);
    let text = toml::to_string(&doc).map_err(|e| format!("{origin}: {e}"))?;
    StageConfig::parse(origin, &text).map_err(|e| e.to_string())?;
    Ok((text, schemas))
}

/// Every customer evolve plays comes from one address: a per-client limit would
/// refuse nearly all of them (429), so it is lifted (the page says so); the same
/// for the sign-in attempts per address. The per-account limits stay.
fn lift_limits(doc: &mut toml::Table) {
    if let Some(table) = doc.get_mut("gateway").and_then(toml::Value::as_table_mut) {
        table.insert("rate_per_sec".into(), toml::Value::Integer(UNLIMITED));
        table.insert("burst".into(), toml::Value::Integer(UNLIMITED));
    }
    if let Some(table) = doc
        .entry("auth")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
    {
        table.insert(
            "attempts_per_address".into(),
            toml::Value::Integer(UNLIMITED),
        );
        table.insert("attempt_refill_ms".into(), toml::Value::Integer(1));
    }
}

async fn conn_create_schema(url: &str, tag: &str, number: u32) -> Result<(), String> {
    let mut conn = PgConnection::connect(url).await.map_err(|e| {
        format!("stage {number} needs PostgreSQL: cannot connect to {url} (storefront services up starts it): {e}")
    })?;
    conn.execute(format!("CREATE SCHEMA IF NOT EXISTS {tag}").as_str())
        .await
        .map_err(|e| format!("cannot create schema {tag} in {url}: {e}"))?;
    let _ = conn.close().await;
    Ok(())
}

/// `url` with its database replaced by `database` (the query string is kept).
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let server = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{database}?{q}"),
        None => format!("{server}/{database}"),
    }
}

/// `url` with the connection option that sets `search_path` to `tag`.
fn with_search_path(url: &str, tag: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{tag}")
}

/// Points every PostgreSQL database URL in a stage file (a string starting with
/// `postgres://` and naming a database) at schema `tag` through `search_path`,
/// collecting the URLs (without the option) in `urls`. The caller skips the
/// `replicas` table: replica servers are read-only and get the schema by
/// replication.
fn isolate_postgres(value: &mut toml::Value, tag: &str, urls: &mut Vec<String>) {
    match value {
        toml::Value::String(s) if is_database_url(s) => {
            if !urls.contains(s) {
                urls.push(s.clone());
            }
            *s = with_search_path(s, tag);
        }
        toml::Value::Array(items) => {
            for item in items {
                isolate_postgres(item, tag, urls);
            }
        }
        toml::Value::Table(table) => {
            for (_, item) in table.iter_mut() {
                isolate_postgres(item, tag, urls);
            }
        }
        _ => {}
    }
}

fn is_database_url(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("postgres://")
        .or_else(|| s.strip_prefix("postgresql://"))
    else {
        return false;
    };
    let path = rest.split('?').next().unwrap_or("");
    path.split_once('/').is_some_and(|(_, db)| !db.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_database_url_gets_the_run_schema_and_replicas_are_left_alone() {
        let mut doc: toml::Table = toml::from_str(
            r#"
            [database]
            url = "postgres://postgres@127.0.0.1:5434/storefront"
            [domains]
            users = "postgres://postgres@127.0.0.1:5434/u?sslmode=disable"
            [sharding]
            databases = ["postgres://p@h:1/s0", "postgres://p@h:1/s0"]
            [replicas]
            servers = ["postgres://postgres@127.0.0.1:5433/x"]
            [cache]
            redis_url = "redis://127.0.0.1:6379"
            other = "postgres://postgres@127.0.0.1:5434"
            "#,
        )
        .unwrap();
        let mut urls = Vec::new();
        for (key, value) in doc.iter_mut() {
            if key != "replicas" {
                isolate_postgres(value, "t1", &mut urls);
            }
        }
        assert_eq!(
            urls,
            [
                "postgres://postgres@127.0.0.1:5434/storefront",
                "postgres://postgres@127.0.0.1:5434/u?sslmode=disable",
                "postgres://p@h:1/s0",
            ]
        );
        let text = toml::to_string(&doc).unwrap();
        assert!(
            text.contains("5434/storefront?options=-c%20search_path%3Dt1"),
            "{text}"
        );
        assert!(
            text.contains("/u?sslmode=disable&options=-c%20search_path%3Dt1"),
            "{text}"
        );
        assert!(
            text.contains("\"postgres://postgres@127.0.0.1:5433/x\""),
            "{text}"
        );
        assert!(
            text.contains("\"postgres://postgres@127.0.0.1:5434\""),
            "server URL kept: {text}"
        );
    }

    #[test]
    fn shard_servers_get_the_run_schema_and_each_primary_keeps_its_replicas() {
        let builtin = BuiltinStage::find(7).unwrap_or_else(|| panic!("stage 7"));
        let config = StageConfig::parse(&builtin.origin(), builtin.file).unwrap();
        let (text, schemas) = isolated(&config, &builtin.origin(), builtin.file, "t7").unwrap();
        let run = StageConfig::parse("run.toml", &text).unwrap();
        let option = "options=-c%20search_path%3Dt7";
        let sharding = run.sharding.clone().unwrap();
        assert_eq!(sharding.servers.len(), 4);
        for (name, server) in &sharding.servers {
            assert_eq!(server.matches(option).count(), 1, "{name}: {server}");
        }
        // Each shard database (on its own server), the users and the catalog.
        assert_eq!(
            schemas,
            [
                "postgres://postgres@127.0.0.1:5442/storefront_catalog",
                "postgres://postgres@127.0.0.1:5440/storefront_users",
                "postgres://postgres@127.0.0.1:5446/storefront_orders_0",
                "postgres://postgres@127.0.0.1:5448/storefront_orders_1",
                "postgres://postgres@127.0.0.1:5450/storefront_orders_2",
                "postgres://postgres@127.0.0.1:5452/storefront_orders_3",
            ]
        );
        // The replica entries are left as they are, and still name each
        // database's server: the search_path changes no host or port.
        assert_eq!(run.replicas, config.replicas);
        let replicas = run.replicas.clone().unwrap();
        let domains = run.domains.clone().unwrap();
        let mut databases: Vec<_> = [&domains.users, &domains.catalog]
            .into_iter()
            .map(|url| {
                assert!(url.contains(option), "{url}");
                <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(url).unwrap()
            })
            .collect();
        for name in sharding.all_databases() {
            databases.push(sharding.database_options(&name).unwrap());
        }
        for options in &databases {
            assert_eq!(
                replicas.servers_of(options).len(),
                1,
                "{:?}",
                options.get_database()
            );
        }
    }

    #[test]
    fn a_shard_server_given_by_url_gets_the_run_schema() {
        let text = include_str!("../../../stages/07-sharding/stage.toml")
            .replace(
                "[sharding.servers]",
                "url = \"postgres://postgres@127.0.0.1:5446/postgres?sslmode=disable\"\n[sharding.servers]",
            )
            .replace(
                "storefront_orders_3 = \"postgres://postgres@127.0.0.1:5452\"\n",
                "",
            )
            .replace(
                "primary = \"127.0.0.1:5452\"\nservers = [\"postgres://postgres@127.0.0.1:5453\"]",
                "primary = \"127.0.0.1:5446\"\nservers = [\"postgres://postgres@127.0.0.1:5455\"]",
            );
        let config = StageConfig::parse("f.toml", &text)
            .err()
            .map(|e| e.to_string());
        // Two entries for 5446 now: refused, naming the field.
        assert!(
            config.as_deref().is_some_and(|e| e.starts_with(
                "f.toml: replicas.cluster.primary: [5] 127.0.0.1:5446 is entry [2]'s too"
            )),
            "{config:?}"
        );
        let text = text.replace(
            "[[replicas.cluster]]\nprimary = \"127.0.0.1:5446\"\nservers = [\"postgres://postgres@127.0.0.1:5455\"]",
            "",
        );
        let config = StageConfig::parse("f.toml", &text).unwrap();
        let (text, schemas) = isolated(&config, "f.toml", &text, "t8").unwrap();
        assert!(
            text.contains("url = \"postgres://postgres@127.0.0.1:5446/postgres?sslmode=disable&options=-c%20search_path%3Dt8\""),
            "{text}"
        );
        assert!(
            schemas.contains(
                &"postgres://postgres@127.0.0.1:5446/storefront_orders_3?sslmode=disable"
                    .to_owned()
            ),
            "{schemas:?}"
        );
    }

    #[test]
    fn every_built_in_stage_is_listed_with_its_prose_and_prepares_alone() {
        let catalog = BuiltinStages;
        let numbers = catalog.numbers();
        assert_eq!(numbers, (1..=BUILTIN.len() as u32).collect::<Vec<_>>());
        for n in numbers {
            let about = catalog.about(n).unwrap_or_else(|| panic!("stage {n}"));
            assert!(
                !about.title.is_empty() && !about.adds.is_empty(),
                "stage {n}"
            );
            let builtin = BuiltinStage::find(n).unwrap_or_else(|| panic!("stage {n}"));
            let config = StageConfig::parse(&builtin.origin(), builtin.file)
                .unwrap_or_else(|e| panic!("{e}"));
            let (text, schemas) = isolated(&config, &builtin.origin(), builtin.file, "run_1")
                .unwrap_or_else(|e| panic!("stage {n}: {e}"));
            let run = StageConfig::parse("run.toml", &text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(run.stage, config.stage);
            assert_eq!(schemas.is_empty(), config.database.postgres_url().is_none());
            if let Some(cache) = &run.cache {
                assert_eq!(cache.namespace, "run_1");
            }
            if let Some(gateway) = &run.gateway {
                assert_eq!(i64::from(gateway.rate_per_sec), UNLIMITED);
            }
        }
        assert_eq!(catalog.about(99), None);
    }
}
