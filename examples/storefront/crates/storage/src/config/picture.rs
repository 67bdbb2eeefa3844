//! Where the data lives, as a piece of the ops page's picture: the SQLite file
//! in the app's process, or the PostgreSQL server with its replicas, its
//! domains' databases and the orders' shards.

use std::fmt::Write as _;

use storefront_contract::ops::topology::{Node, Piece, Shape, Tier};

use super::{DatabaseConfig, Databases};
use crate::Backend;

/// `postgres://user:secret@db.example:5432/shop` → `db.example:5432`.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or_default().to_owned()
}

impl Backend {
    /// The database node of the picture: `place` is the file's name or the
    /// server's host and port (never credentials).
    ///
    /// ```
    /// use storefront_storage::Backend;
    /// use storefront_contract::ops::topology::{Piece, Tier};
    ///
    /// let Piece::Node(tier, node) = Backend::Postgres.piece("db:5432") else { unreachable!() };
    /// assert_eq!((tier, node.title.as_str(), node.link.label.as_str()), (Tier::Data, "PostgreSQL", "SQL over TCP"));
    /// ```
    pub fn piece(&self, place: &str) -> Piece {
        let node = match self {
            Backend::Sqlite => Node::new("database file", "SQLite file", place)
                .linked("in process")
                .dashed(),
            Backend::Postgres => Node::new("database", "PostgreSQL", place)
                .shaped(Shape::Cylinder)
                .linked("SQL over TCP"),
        };
        Piece::Node(Tier::Data, node)
    }
}

impl Databases<'_> {
    /// The stage's data as one piece of the picture: the SQLite file, or the
    /// PostgreSQL server with its replicas (stage 5), the domains' databases
    /// (stage 6) and the orders' shards (stage 7).
    pub fn pieces(&self) -> Vec<Piece> {
        let piece = match self.database {
            DatabaseConfig::Sqlite { file, .. } => {
                let name = file.file_name().map_or_else(
                    || file.display().to_string(),
                    |f| f.to_string_lossy().into(),
                );
                Backend::Sqlite.piece(&name)
            }
            DatabaseConfig::Postgres { .. } => {
                let mut place = host_of(&self.database.postgres_url().unwrap_or_default());
                if let Some(r) = self.replicas {
                    let n = r.servers.len();
                    let _ = write!(place, " + {n} replica{}", if n == 1 { "" } else { "s" });
                }
                match (self.domains, self.sharding) {
                    (Some(_), Some(s)) => {
                        let n = s.databases.len();
                        let _ = write!(place, "; users, catalog, orders in {n} shards");
                    }
                    (Some(_), None) => place.push_str("; users, catalog, orders"),
                    _ => {}
                }
                Backend::Postgres.piece(&place)
            }
        };
        vec![piece]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_without_credentials() {
        assert_eq!(host_of("postgres://u:pw@db:5432/shop?x=1"), "db:5432");
        assert_eq!(host_of("postgres://127.0.0.1/test"), "127.0.0.1");
        assert_eq!(host_of("postgres://u:p@ss@h:1"), "h:1");
    }

    #[test]
    fn the_file_or_the_server() {
        let sqlite: DatabaseConfig =
            toml::from_str("backend = \"sqlite\"\nfile = \"data/shop.db\"")
                .unwrap_or_else(|e| panic!("{e}"));
        let only = |database: &DatabaseConfig| {
            let pieces = Databases {
                database,
                domains: None,
                sharding: None,
                replicas: None,
            }
            .pieces();
            match pieces.as_slice() {
                [Piece::Node(Tier::Data, node)] => node.clone(),
                other => panic!("{other:?}"),
            }
        };
        let file = only(&sqlite);
        assert_eq!(
            (file.title.as_str(), file.sub.as_str()),
            ("SQLite file", "shop.db")
        );
        assert!(file.link.dashed);
        let pg: DatabaseConfig =
            toml::from_str("backend = \"postgres\"\nurl = \"postgres://u:secret@db:5432/shop\"")
                .unwrap_or_else(|e| panic!("{e}"));
        let server = only(&pg);
        assert_eq!(server.sub, "db:5432");
        assert!(!server.sub.contains("secret") && !server.link.dashed);
    }
}
