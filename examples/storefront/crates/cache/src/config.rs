//! The stage file's `[cache]` section (stage 3 on).

use scalekit_core::redis::RedisTarget;
use serde::Deserialize;
use storefront_contract::ops::topology::{Node, Piece, Tier};
use storefront_contract::section::{Invalid, Section};

/// The caches: an L1 in each process over a shared Redis L2 (see the [crate docs](crate)).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// The environment variable that holds the Redis URL, if set.
    #[serde(default)]
    pub redis_url_env: Option<String>,
    /// The Redis URL to use when `redis_url_env` is unset or not set.
    pub redis_url: String,
    /// The environment variable that holds a Redis Cluster's nodes
    /// (comma-separated URLs), if set: when it is set and not empty, the caches
    /// live on that cluster.
    #[serde(default)]
    pub redis_cluster_env: Option<String>,
    /// A Redis Cluster's nodes (some of them suffice): when given (and
    /// `redis_cluster_env` names no set variable), the caches live on this
    /// cluster instead of the server at `redis_url`.
    #[serde(default)]
    pub redis_cluster: Vec<String>,
    /// Key prefix in Redis: instances with the same namespace share the caches.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Entries each L1 holds at most.
    #[serde(default = "default_l1_capacity")]
    pub l1_capacity: u64,
    /// How long a product stays in L1 (it is also invalidated on change).
    #[serde(default = "default_product_ttl")]
    pub product_ttl_secs: u64,
    /// How long a listing or search result stays in L1 (4 times that in Redis).
    #[serde(default = "default_listing_ttl")]
    pub listing_ttl_secs: u64,
}

fn default_namespace() -> String {
    "storefront".into()
}
fn default_l1_capacity() -> u64 {
    50_000
}
fn default_product_ttl() -> u64 {
    60
}
fn default_listing_ttl() -> u64 {
    5
}

impl CacheConfig {
    /// The Redis URL in effect: the environment variable's value, else `redis_url`.
    pub fn redis_url(&self) -> String {
        self.redis_url_env
            .as_deref()
            .and_then(|v| std::env::var(v).ok())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| self.redis_url.clone())
    }

    /// The cluster's nodes in effect: `redis_cluster_env`'s value (split at
    /// commas), else `redis_cluster`; empty when the caches use one server.
    pub fn redis_cluster(&self) -> Vec<String> {
        match self
            .redis_cluster_env
            .as_deref()
            .and_then(|v| std::env::var(v).ok())
            .filter(|v| !v.trim().is_empty())
        {
            Some(list) => list.split(',').map(|u| u.trim().to_owned()).collect(),
            None => self.redis_cluster.clone(),
        }
    }

    /// Where the caches live: the cluster when one is named, else the server.
    pub fn redis_target(&self) -> Result<RedisTarget, scalekit_core::ConfigError> {
        let cluster = self.redis_cluster();
        if cluster.is_empty() {
            RedisTarget::server(self.redis_url())
        } else {
            RedisTarget::cluster(cluster)
        }
    }
}

impl Section for CacheConfig {
    /// The pieces of the picture: an L1 in every app, Redis beside the database.
    fn pieces(&self) -> Vec<Piece> {
        vec![
            Piece::Badge {
                class: "app".into(),
                text: "L1".into(),
            },
            Piece::Node(
                Tier::Data,
                if self.redis_cluster().is_empty() {
                    Node::new("l2", "Redis L2", "shared cache, invalidations").dashed()
                } else {
                    Node::new(
                        "l2",
                        "Redis Cluster L2",
                        "shared cache, sharded invalidations",
                    )
                    .dashed()
                },
            ),
        ]
    }

    /// Checks the section; the first problem as (field, what to write instead).
    fn check(&self) -> Result<(), Invalid> {
        if !(self.redis_url.starts_with("redis://") || self.redis_url.starts_with("rediss://")) {
            return Err((
                "cache.redis_url",
                format!(
                    "{:?}: use a URL like \"redis://127.0.0.1:6379\"",
                    self.redis_url
                ),
            ));
        }
        if let Some(bad) = self
            .redis_cluster
            .iter()
            .find(|u| RedisTarget::server(u.as_str()).is_err())
        {
            return Err((
                "cache.redis_cluster",
                format!(
                    "{bad:?}: list the cluster's nodes as URLs like \"redis://127.0.0.1:7000\""
                ),
            ));
        }
        if self.l1_capacity == 0 {
            return Err((
                "cache.l1_capacity",
                "0: give L1 room for at least one entry".into(),
            ));
        }
        if self.product_ttl_secs == 0 || self.listing_ttl_secs == 0 {
            return Err((
                "cache.*_ttl_secs",
                "0: entries need at least one second to live".into(),
            ));
        }
        if self.namespace.is_empty() {
            return Err((
                "cache.namespace",
                "give a key prefix, like \"storefront\"".into(),
            ));
        }
        Ok(())
    }
}
