//! The topology a stage file describes, for the ops page's picture.

use std::fmt::Write as _;

use storefront_contract::ops::topology::{DatabaseNode, GatewayNode, Topology};

use crate::config::{DatabaseConfig, StageConfig};

/// `postgres://user:secret@db.example:5432/shop` → `db.example:5432`.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or_default().to_owned()
}

/// The topology a stage file describes.
pub fn of(config: &StageConfig) -> Topology {
    let database = match &config.database {
        DatabaseConfig::Sqlite { file, .. } => DatabaseNode {
            backend: "sqlite".into(),
            place: file.file_name().map_or_else(
                || file.display().to_string(),
                |f| f.to_string_lossy().into(),
            ),
        },
        DatabaseConfig::Postgres { .. } => {
            let mut place = host_of(&config.database.postgres_url().unwrap_or_default());
            // Stage 5: the primary's streaming replicas.
            if let Some(r) = &config.replicas {
                let n = r.servers.len();
                let _ = write!(place, " + {n} replica{}", if n == 1 { "" } else { "s" });
            }
            // Stages 6 and 7: a database per domain, orders sharded.
            match (&config.domains, &config.sharding) {
                (Some(_), Some(s)) => {
                    let _ = write!(
                        place,
                        "; users, catalog, orders in {} shards",
                        s.databases.len()
                    );
                }
                (Some(_), None) => place.push_str("; users, catalog, orders"),
                _ => {}
            }
            DatabaseNode {
                backend: "postgres".into(),
                place,
            }
        }
    };
    Topology {
        gateway: config.gateway.as_ref().map(|g| GatewayNode {
            instances: g.instances,
        }),
        l1: config.cache.is_some(),
        l2: config.cache.as_ref().map(|_| "Redis".to_owned()),
        database,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_without_credentials() {
        assert_eq!(host_of("postgres://u:pw@db:5432/shop?x=1"), "db:5432");
        assert_eq!(host_of("postgres://127.0.0.1/test"), "127.0.0.1");
    }

    #[test]
    fn stage_pictures() {
        let one = of(&StageConfig::builtin(1).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(one.database.backend, "sqlite");
        let svg = storefront_ops::topology::svg(&one);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("SQLite file") && !svg.contains("Redis"));
        let three = of(&StageConfig::builtin(3).unwrap_or_else(|e| panic!("{e}")));
        let svg = storefront_ops::topology::svg(&three);
        assert!(svg.contains("PostgreSQL") && svg.contains("Redis L2") && svg.contains(">L1<"));
        assert_eq!(three.gateway, None);
        let four = of(&StageConfig::builtin(4).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(four.gateway, Some(GatewayNode { instances: 3 }));
        let svg = storefront_ops::topology::svg(&four);
        assert!(svg.contains("Gateway") && svg.contains("App 3") && !svg.contains("App 4"));
        let place = |n| {
            of(&StageConfig::builtin(n).unwrap_or_else(|e| panic!("{e}")))
                .database
                .place
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
}
