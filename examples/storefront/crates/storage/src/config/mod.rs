//! The stage file's sections that say where the shop's data lives, each parsed
//! and checked here: `[database]`, `[domains]` (stage 6), `[sharding]` (stage 7),
//! `[replicas]` (stage 5).

use std::str::FromStr;

mod database;
mod domains;
mod picture;
mod replicas;
mod sharding;

pub use database::DatabaseConfig;
pub use domains::DomainsConfig;
pub use replicas::{ReplicaCluster, ReplicasConfig};
pub use sharding::ShardingConfig;

/// The data sections of one stage file, as [`crate::open`] takes them.
#[derive(Clone, Copy, Debug)]
pub struct Databases<'a> {
    /// `[database]`: the one database, or from stage 6 on the catalog's (it then
    /// says how much to seed).
    pub database: &'a DatabaseConfig,
    /// `[domains]`: a database per business domain (stage 6).
    pub domains: Option<&'a DomainsConfig>,
    /// `[sharding]`: the orders' shards (stage 7).
    pub sharding: Option<&'a ShardingConfig>,
    /// `[replicas]`: streaming replicas that take reads (stage 5 on), of the one
    /// primary or of each.
    pub replicas: Option<&'a ReplicasConfig>,
}

impl Databases<'_> {
    /// Each section's own check, then what ties them together; the first problem
    /// as (field, what to write instead).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(domains) = self.domains {
            domains.check()?;
        }
        if let Some(sharding) = self.sharding {
            sharding.check()?;
        }
        self.check_ties()?;
        if let Some(replicas) = self.replicas {
            replicas.check()?;
        }
        self.database.check()?;
        self.check_replica_places()
    }

    /// Where orders live (one database of `[domains]`, or `[sharding]`'s), and
    /// that replicas follow a PostgreSQL primary.
    fn check_ties(&self) -> Result<(), (&'static str, String)> {
        match (self.domains, self.sharding) {
            (Some(domains), sharding) => match (&domains.orders, sharding) {
                (None, None) => return Err((
                    "domains.orders",
                    "name the orders database, like \"postgres://postgres@127.0.0.1:5444/storefront_orders\" (or shard orders with a [sharding] section)".into(),
                )),
                (Some(_), Some(_)) => return Err((
                    "domains.orders",
                    "orders live in [sharding]'s databases in this stage: remove domains.orders".into(),
                )),
                _ => {}
            },
            (None, Some(_)) => {
                return Err((
                    "sharding",
                    "sharded orders need the users and catalog databases of a [domains] section".into(),
                ))
            }
            (None, None) => {}
        }
        if self.replicas.is_some() && !matches!(self.database, DatabaseConfig::Postgres { .. }) {
            return Err((
                "replicas",
                "replicas need backend = \"postgres\" in [database]".into(),
            ));
        }
        Ok(())
    }

    /// The PostgreSQL databases the store opens, each as (its name in the stage
    /// file, its server's place): `[database]`'s (`main`), or with `[domains]`
    /// the domains' (`users`, `catalog`, `orders`) and the shards' (by database
    /// name). A URL that does not parse is left out (its own check says so).
    pub(crate) fn places(&self) -> Vec<(String, replicas::Place)> {
        let parse = |url: &str| {
            sqlx::postgres::PgConnectOptions::from_str(url)
                .ok()
                .map(|o| replicas::place_of(&o))
        };
        let mut out = Vec::new();
        let Some(domains) = self.domains else {
            if let Some(place) = self.database.postgres_url().as_deref().and_then(parse) {
                out.push(("main".to_owned(), place));
            }
            return out;
        };
        for (name, url) in domains.urls() {
            if let Some(place) = parse(url) {
                out.push((name.to_owned(), place));
            }
        }
        if let Some(sharding) = self.sharding {
            for name in sharding.all_databases() {
                if let Ok(options) = sharding.database_options(&name) {
                    out.push((name, replicas::place_of(&options)));
                }
            }
        }
        out
    }

    /// That the replicas follow the servers the databases are on: in the
    /// one-primary form every database is on one server, which is no replica;
    /// each `[[replicas.cluster]]` primary holds a database of the stage.
    fn check_replica_places(&self) -> Result<(), (&'static str, String)> {
        let Some(replicas) = self.replicas else {
            return Ok(());
        };
        let places = self.places();
        let mut servers: Vec<&replicas::Place> = Vec::new();
        for (_, place) in &places {
            if !servers.contains(&place) {
                servers.push(place);
            }
        }
        let listed = |list: &[&replicas::Place]| {
            list.iter()
                .map(|p| replicas::show(p))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let holder = |place: &replicas::Place| {
            places
                .iter()
                .find(|(_, p)| p == place)
                .map(|(what, _)| what.clone())
        };
        if replicas.clusters.is_empty() {
            if servers.len() > 1 {
                return Err((
                    "replicas.servers",
                    format!(
                        "this stage's databases are on {} servers ({}) and a replica follows one \
                         primary: give each primary its replicas with [[replicas.cluster]] entries \
                         (primary = \"host:port\", servers = [...]) instead",
                        servers.len(),
                        listed(&servers)
                    ),
                ));
            }
            for (i, place) in replicas.server_places().iter().enumerate() {
                if let Some(what) = holder(place) {
                    return Err((
                        "replicas.servers",
                        format!(
                            "[{i}] {} holds the stage's {what} database: name the servers that replicate it",
                            replicas::show(place)
                        ),
                    ));
                }
            }
            return Ok(());
        }
        for (i, (primary, replica_places)) in replicas.cluster_places().iter().enumerate() {
            if holder(primary).is_none() {
                return Err((
                    "replicas.cluster.primary",
                    format!(
                        "[{i}] {} holds none of this stage's databases (they are on {}): \
                         give the host and port as the databases' URLs spell them",
                        replicas::show(primary),
                        listed(&servers)
                    ),
                ));
            }
            for place in replica_places {
                if let Some(what) = holder(place) {
                    return Err((
                        "replicas.cluster.servers",
                        format!(
                            "[{i}] {} holds the stage's {what} database: a primary is no replica",
                            replicas::show(place)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data sections of a stage file.
    pub(in crate::config) struct Sections {
        database: DatabaseConfig,
        domains: Option<DomainsConfig>,
        sharding: Option<ShardingConfig>,
        replicas: Option<ReplicasConfig>,
    }

    impl Sections {
        pub(in crate::config) fn parse(text: &str) -> Sections {
            #[derive(serde::Deserialize)]
            struct File {
                database: DatabaseConfig,
                domains: Option<DomainsConfig>,
                sharding: Option<ShardingConfig>,
                replicas: Option<ReplicasConfig>,
            }
            let f: File = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
            Sections {
                database: f.database,
                domains: f.domains,
                sharding: f.sharding,
                replicas: f.replicas,
            }
        }

        pub(in crate::config) fn databases(&self) -> Databases<'_> {
            Databases {
                database: &self.database,
                domains: self.domains.as_ref(),
                sharding: self.sharding.as_ref(),
                replicas: self.replicas.as_ref(),
            }
        }
    }

    /// Stage 6 with a cluster per domain.
    pub(in crate::config) const SPLIT: &str = r#"
        [database]
        backend = "postgres"
        url = "postgres://postgres@127.0.0.1:5442/storefront_catalog"
        [domains]
        users = "postgres://postgres@127.0.0.1:5440/storefront_users"
        catalog = "postgres://postgres@127.0.0.1:5442/storefront_catalog"
        orders = "postgres://postgres@127.0.0.1:5444/storefront_orders"
        [replicas]
        [[replicas.cluster]]
        primary = "127.0.0.1:5440"
        servers = ["postgres://postgres@127.0.0.1:5441"]
        [[replicas.cluster]]
        primary = "127.0.0.1:5442"
        servers = ["postgres://postgres@127.0.0.1:5443"]
        [[replicas.cluster]]
        primary = "127.0.0.1:5444"
        servers = ["postgres://postgres@127.0.0.1:5445"]
    "#;

    /// Stage 7 with a cluster per database; shard o3's server has no replica.
    pub(in crate::config) const SHARDED: &str = r#"
        [database]
        backend = "postgres"
        url = "postgres://postgres@127.0.0.1:5442/storefront_catalog"
        [domains]
        users = "postgres://postgres@127.0.0.1:5440/storefront_users"
        catalog = "postgres://postgres@127.0.0.1:5442/storefront_catalog"
        [sharding]
        databases = ["o0", "o1"]
        reshard_to = ["o0", "o2", "o1", "o3"]
        [sharding.servers]
        o0 = "postgres://postgres@127.0.0.1:5446"
        o1 = "postgres://postgres@127.0.0.1:5448"
        o2 = "postgres://postgres@127.0.0.1:5450"
        o3 = "postgres://postgres@127.0.0.1:5452"
        [replicas]
        [[replicas.cluster]]
        primary = "127.0.0.1:5440"
        servers = ["postgres://postgres@127.0.0.1:5441"]
        [[replicas.cluster]]
        primary = "127.0.0.1:5442"
        servers = ["postgres://postgres@127.0.0.1:5443"]
        [[replicas.cluster]]
        primary = "127.0.0.1:5446"
        servers = ["postgres://postgres@127.0.0.1:5447"]
        [[replicas.cluster]]
        primary = "127.0.0.1:5448"
        servers = ["postgres://postgres@127.0.0.1:5449"]
        [[replicas.cluster]]
        primary = "127.0.0.1:5450"
        servers = ["postgres://postgres@127.0.0.1:5451", "postgres://postgres@127.0.0.1:5461"]
    "#;

    /// Stage 6 as stage files written for one primary have it.
    pub(in crate::config) const ONE_PRIMARY: &str = r#"
        [database]
        backend = "postgres"
        url = "postgres://postgres@127.0.0.1:5434/postgres"
        [domains]
        users = "postgres://postgres@127.0.0.1:5434/storefront_users"
        catalog = "postgres://postgres@127.0.0.1:5434/storefront_catalog"
        orders = "postgres://postgres@127.0.0.1:5434/storefront_orders"
        [replicas]
        servers = ["postgres://postgres@127.0.0.1:5433"]
    "#;

    fn check(text: &str) -> Result<(), (&'static str, String)> {
        Sections::parse(text).databases().check()
    }

    #[test]
    fn each_database_has_its_place() {
        let sections = Sections::parse(SHARDED);
        let places: Vec<String> = sections
            .databases()
            .places()
            .iter()
            .map(|(what, place)| format!("{what} {}", replicas::show(place)))
            .collect();
        assert_eq!(
            places,
            [
                "users 127.0.0.1:5440",
                "catalog 127.0.0.1:5442",
                "o0 127.0.0.1:5446",
                "o1 127.0.0.1:5448",
                "o2 127.0.0.1:5450",
                "o3 127.0.0.1:5452",
            ]
        );
        let one = Sections::parse(ONE_PRIMARY);
        let databases = one.databases();
        let mut servers: Vec<_> = databases.places().into_iter().map(|(_, p)| p).collect();
        servers.dedup();
        assert_eq!(servers, [("127.0.0.1".to_owned(), 5434)]);
    }

    #[test]
    fn replicas_follow_the_servers_the_databases_are_on() {
        assert_eq!(check(SPLIT), Ok(()));
        assert_eq!(
            check(SHARDED),
            Ok(()),
            "a server without replicas is read alone"
        );
        assert_eq!(check(ONE_PRIMARY), Ok(()));
        // The one-primary form over three servers: whose replicas are they?
        let three = SPLIT
            .split("[replicas]")
            .next()
            .map(|s| format!("{s}[replicas]\nservers = [\"postgres://postgres@127.0.0.1:5433\"]\n"))
            .unwrap_or_default();
        let (field, message) = check(&three).err().unwrap_or_default();
        assert_eq!(field, "replicas.servers");
        assert!(
            message.contains("on 3 servers (127.0.0.1:5440, 127.0.0.1:5442, 127.0.0.1:5444)")
                && message.contains("[[replicas.cluster]]"),
            "{message}"
        );
        // A replica that is the primary.
        let (field, message) = check(&ONE_PRIMARY.replace("5433", "5434"))
            .err()
            .unwrap_or_default();
        assert_eq!(field, "replicas.servers");
        assert!(
            message.contains("holds the stage's users database"),
            "{message}"
        );
        // A primary that holds none of the stage's databases (a typo).
        let (field, message) = check(&SPLIT.replace(
            "primary = \"127.0.0.1:5444\"",
            "primary = \"localhost:5444\"",
        ))
        .err()
        .unwrap_or_default();
        assert_eq!(field, "replicas.cluster.primary");
        assert!(
            message.starts_with("[2] localhost:5444 holds none of this stage's databases"),
            "{message}"
        );
        // A replica server that holds one of the stage's databases.
        let (field, message) = check(&SHARDED.replace(
            "postgres://postgres@127.0.0.1:5461",
            "postgres://postgres@127.0.0.1:5452",
        ))
        .err()
        .unwrap_or_default();
        assert_eq!(field, "replicas.cluster.servers");
        assert!(
            message.starts_with("[4] 127.0.0.1:5452 holds the stage's o3 database"),
            "{message}"
        );
    }

    #[test]
    fn the_sharding_section_is_checked_with_the_file() {
        let (field, message) =
            check(&SHARDED.replace("o2 = \"postgres://postgres@127.0.0.1:5450\"", ""))
                .err()
                .unwrap_or_default();
        assert_eq!(field, "sharding.url");
        assert!(message.starts_with("o2 has no server"), "{message}");
    }
}
