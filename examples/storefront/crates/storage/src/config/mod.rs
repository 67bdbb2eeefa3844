//! The stage file's sections that say where the shop's data lives, each parsed
//! and checked here: `[database]`, `[domains]` (stage 6), `[sharding]` (stage 7),
//! `[replicas]` (stage 5).

mod database;
mod domains;
mod picture;
mod replicas;
mod sharding;

pub use database::DatabaseConfig;
pub use domains::DomainsConfig;
pub use replicas::ReplicasConfig;
pub use sharding::ShardingConfig;

/// The data sections of one stage file, as [`crate::open`] takes them.
#[derive(Clone, Copy, Debug)]
pub struct Databases<'a> {
    /// `[database]`: the one database, or in stage 6 on the catalog's primary.
    pub database: &'a DatabaseConfig,
    /// `[domains]`: a database per business domain (stage 6).
    pub domains: Option<&'a DomainsConfig>,
    /// `[sharding]`: the orders' shards (stage 7).
    pub sharding: Option<&'a ShardingConfig>,
    /// `[replicas]`: streaming replicas that take reads (stage 5).
    pub replicas: Option<&'a ReplicasConfig>,
}

impl Databases<'_> {
    /// Each section's own check, then what ties them together; the first problem
    /// as (field, what to write instead).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(domains) = self.domains {
            domains.check()?;
        }
        self.check_ties()?;
        if let Some(replicas) = self.replicas {
            replicas.check()?;
        }
        self.database.check()
    }

    /// Where orders live (one database of `[domains]`, or `[sharding]`'s), and
    /// that replicas follow a PostgreSQL primary.
    fn check_ties(&self) -> Result<(), (&'static str, String)> {
        match (self.domains, self.sharding) {
            (Some(domains), sharding) => match (&domains.orders, sharding) {
                (None, None) => return Err((
                    "domains.orders",
                    "name the orders database, like \"postgres://postgres@127.0.0.1:5434/storefront_orders\" (or shard orders with a [sharding] section)".into(),
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
}
