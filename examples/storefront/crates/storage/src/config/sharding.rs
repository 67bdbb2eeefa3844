//! The `[sharding]` section of a stage file (stage 7).

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::Deserialize;
use sqlx::postgres::PgConnectOptions;

/// Where the orders shard databases are and how they are used (stage 7). See
/// [`ShardedOrders`](crate::sharded::ShardedOrders).
///
/// The shard databases are named; each lives on the server `servers` gives it,
/// else on the server of `url` (either URL's database part is replaced by the
/// shard's name, its other settings kept).
///
/// ```toml
/// [sharding]
/// databases = ["storefront_orders_0", "storefront_orders_1"]
/// reshard_to = ["storefront_orders_0", "storefront_orders_2", "storefront_orders_1", "storefront_orders_3"]
///
/// [sharding.servers]
/// storefront_orders_0 = "postgres://postgres@127.0.0.1:5446"
/// storefront_orders_1 = "postgres://postgres@127.0.0.1:5448"
/// storefront_orders_2 = "postgres://postgres@127.0.0.1:5450"
/// storefront_orders_3 = "postgres://postgres@127.0.0.1:5452"
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ShardingConfig {
    /// The environment variable that holds the server URL, if set.
    #[serde(default)]
    pub url_env: Option<String>,
    /// The PostgreSQL server of the shard databases that `servers` does not
    /// place (its database part is replaced by each shard database's name).
    #[serde(default)]
    pub url: Option<String>,
    /// Shard databases on servers of their own: the database's name and its
    /// server's URL (`postgres://user@host:port`; a database part is replaced by
    /// the shard's name).
    #[serde(default)]
    pub servers: BTreeMap<String, String>,
    /// The shard databases in use when the shop starts for the first time; the
    /// first also holds the control tables (routing, resharding state, order ids).
    /// Once started, the routing in the control database is what counts.
    pub databases: Vec<String>,
    /// The databases `storefront reshard` moves the orders to (the first list
    /// plus the new ones). The order matters: the contiguous layout gives slot
    /// `s` of 16 to database number `s * n / 16` of this list, so
    /// `[o0, o2, o1, o3]` after `[o0, o1]` moves half the slots, only to new ones.
    #[serde(default)]
    pub reshard_to: Vec<String>,
    /// How long a process trusts its copy of the routing table before reading it
    /// again (a refused write or read re-reads it at once).
    #[serde(default = "default_routing_ttl_ms")]
    pub routing_ttl_ms: u64,
    /// Connections per shard database and process.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_routing_ttl_ms() -> u64 {
    1000
}
fn default_max_connections() -> u32 {
    8
}

impl ShardingConfig {
    /// The server URL in effect for the databases `servers` does not place: the
    /// environment variable's value, else `url`; `None` without either.
    pub fn server_url(&self) -> Option<String> {
        self.url_env
            .as_deref()
            .and_then(|v| std::env::var(v).ok())
            .filter(|v| !v.is_empty())
            .or_else(|| self.url.clone())
    }

    /// The server URL of shard database `name`: its `servers` entry, else
    /// [`server_url`](Self::server_url).
    pub fn server_of(&self, name: &str) -> Option<String> {
        self.servers
            .get(name)
            .cloned()
            .or_else(|| self.server_url())
    }

    /// The connection options of shard database `name`: its server's, with the
    /// database `name`.
    pub fn database_options(&self, name: &str) -> Result<PgConnectOptions, String> {
        let server = self
            .server_of(name)
            .ok_or_else(|| format!("sharding: no server for {name}"))?;
        PgConnectOptions::from_str(&server)
            .map(|o| o.database(name))
            .map_err(|e| format!("sharding: the server of {name}: {e}"))
    }

    /// Every database named, in use or target of a resharding, each once.
    pub fn all_databases(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for d in self.databases.iter().chain(&self.reshard_to) {
            if !out.contains(d) {
                out.push(d.clone());
            }
        }
        out
    }

    /// Checks the section: at least one database, names that are plain
    /// identifiers (they are used as PostgreSQL database names), a server for
    /// each; `Err((field, message))`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.databases.is_empty() {
            return Err((
                "sharding.databases",
                "list at least one shard database".into(),
            ));
        }
        for (field, list) in [
            ("sharding.databases", &self.databases),
            ("sharding.reshard_to", &self.reshard_to),
        ] {
            for d in list {
                let ok = !d.is_empty()
                    && d.len() <= 63
                    && d.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !ok {
                    return Err((
                        field,
                        format!("database name {d:?} must be 1 to 63 of a-z, 0-9 and _"),
                    ));
                }
            }
        }
        if self.url_env.as_deref().is_some_and(str::is_empty) {
            return Err((
                "sharding.url_env",
                "name an environment variable, or leave it out".into(),
            ));
        }
        if let Some(url) = self.server_url() {
            check_server("sharding.url", "", &url)?;
        }
        let all = self.all_databases();
        for (name, url) in &self.servers {
            if !all.contains(name) {
                return Err((
                    "sharding.servers",
                    format!(
                        "{name:?} is not a shard database: place only those of sharding.databases \
                         and sharding.reshard_to ({})",
                        all.join(", ")
                    ),
                ));
            }
            check_server("sharding.servers", name, url)?;
        }
        if let Some(name) = all.iter().find(|d| self.server_of(d).is_none()) {
            return Err((
                "sharding.url",
                format!(
                    "{name} has no server: give it one in [sharding.servers], like \
                     {name} = \"postgres://postgres@127.0.0.1:5446\", or give sharding.url \
                     (the server of every shard database not placed there)"
                ),
            ));
        }
        if self.max_connections == 0 {
            return Err(("sharding.max_connections", "must be at least 1".into()));
        }
        Ok(())
    }

    /// [`check`](Self::check) as one message, `field: what is wrong`.
    pub fn validate(&self) -> Result<(), String> {
        self.check()
            .map_err(|(field, message)| format!("{field}: {message}"))
    }
}

/// A server URL: `postgres://…`, parsed by sqlx. `name` is the `servers` key.
fn check_server(field: &'static str, name: &str, url: &str) -> Result<(), (&'static str, String)> {
    let which = if name.is_empty() {
        String::new()
    } else {
        format!("{name}: ")
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err((
            field,
            format!("{which}{url:?}: use a URL like \"postgres://postgres@127.0.0.1:5446\""),
        ));
    }
    PgConnectOptions::from_str(url)
        .map(|_| ())
        .map_err(|e| (field, format!("{which}{url:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_SERVER: &str = r#"
        url = "postgres://postgres@127.0.0.1:5434/postgres"
        databases = ["o0", "o1"]
        reshard_to = ["o0", "o2", "o1", "o3"]
    "#;

    const OWN_SERVERS: &str = r#"
        databases = ["o0", "o1"]
        reshard_to = ["o0", "o2", "o1", "o3"]
        [servers]
        o0 = "postgres://postgres@127.0.0.1:5446"
        o1 = "postgres://postgres@127.0.0.1:5448"
        o2 = "postgres://postgres@127.0.0.1:5450/postgres?sslmode=disable"
        o3 = "postgres://postgres@127.0.0.1:5452"
    "#;

    fn parse(text: &str) -> ShardingConfig {
        toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_database_on_the_one_server() {
        let c = parse(ONE_SERVER);
        assert_eq!(c.check(), Ok(()));
        assert_eq!(c.all_databases(), ["o0", "o1", "o2", "o3"]);
        let o2 = c.database_options("o2").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((o2.get_port(), o2.get_database()), (5434, Some("o2")));
    }

    #[test]
    fn each_database_on_a_server_of_its_own() {
        let c = parse(OWN_SERVERS);
        assert_eq!(c.check(), Ok(()));
        assert_eq!(c.server_url(), None);
        for (name, port) in [("o0", 5446), ("o1", 5448), ("o2", 5450), ("o3", 5452)] {
            let o = c.database_options(name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((o.get_port(), o.get_database()), (port, Some(name)));
        }
        // Some placed, the rest on `url`.
        let mut mixed = parse(ONE_SERVER);
        mixed.servers.insert("o3".into(), "postgres://h:9".into());
        assert_eq!(mixed.check(), Ok(()));
        let port = |n: &str| mixed.database_options(n).map(|o| o.get_port());
        assert_eq!((port("o1"), port("o3")), (Ok(5434), Ok(9)));
    }

    #[test]
    fn checks_say_which_field() {
        let err = |c: &ShardingConfig| c.check().err().unwrap_or(("", String::new()));
        let mut c = parse(OWN_SERVERS);
        c.servers.remove("o2");
        let (field, message) = err(&c);
        assert_eq!(field, "sharding.url");
        assert!(message.starts_with("o2 has no server"), "{message}");
        assert!(c.database_options("o2").is_err());
        let mut c = parse(OWN_SERVERS);
        c.servers.insert("o9".into(), "postgres://h:1".into());
        let (field, message) = err(&c);
        assert_eq!(field, "sharding.servers");
        assert!(
            message.contains("\"o9\" is not a shard database"),
            "{message}"
        );
        let mut c = parse(OWN_SERVERS);
        c.servers.insert("o1".into(), "127.0.0.1:5448".into());
        let (field, message) = err(&c);
        assert_eq!(field, "sharding.servers");
        assert!(
            message.starts_with("o1: ") && message.contains("use a URL"),
            "{message}"
        );
        let mut c = parse(ONE_SERVER);
        c.url = Some("mysql://h/x".into());
        assert_eq!(err(&c).0, "sharding.url");
        let mut c = parse(ONE_SERVER);
        c.reshard_to.push("Bad-Name".into());
        let (field, message) = err(&c);
        assert_eq!(field, "sharding.reshard_to");
        assert!(message.contains("\"Bad-Name\""), "{message}");
        let mut c = parse(ONE_SERVER);
        c.databases.clear();
        assert_eq!(err(&c).0, "sharding.databases");
        let mut c = parse(ONE_SERVER);
        c.max_connections = 0;
        assert_eq!(
            c.validate(),
            Err("sharding.max_connections: must be at least 1".into())
        );
        let mut c = parse(ONE_SERVER);
        c.url_env = Some(String::new());
        assert_eq!(err(&c).0, "sharding.url_env");
    }
}
