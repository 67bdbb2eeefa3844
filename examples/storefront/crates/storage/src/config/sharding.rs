//! The `[sharding]` section of a stage file (stage 7).

use serde::Deserialize;

/// Where the orders shard databases are and how they are used (stage 7). See
/// [`ShardedOrders`](crate::sharded::ShardedOrders).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ShardingConfig {
    /// The environment variable that holds the server URL, if set.
    #[serde(default)]
    pub url_env: Option<String>,
    /// The PostgreSQL server the shard databases live on (its database part is
    /// replaced by each shard database's name).
    pub url: String,
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
    /// The server URL in effect: the environment variable's value, else `url`.
    pub fn server_url(&self) -> String {
        self.url_env
            .as_deref()
            .and_then(|v| std::env::var(v).ok())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| self.url.clone())
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
    /// identifiers (they are used as PostgreSQL database names).
    pub fn validate(&self) -> Result<(), String> {
        if self.databases.is_empty() {
            return Err("sharding.databases: list at least one shard database".into());
        }
        for d in self.all_databases() {
            let ok = !d.is_empty()
                && d.len() <= 63
                && d.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                return Err(format!(
                    "sharding: database name {d:?} must be 1 to 63 of a-z, 0-9 and _"
                ));
            }
        }
        if self.max_connections == 0 {
            return Err("sharding.max_connections: must be at least 1".into());
        }
        Ok(())
    }
}
