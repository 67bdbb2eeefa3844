//! Where the data lives, as pieces of the ops page's picture: the SQLite file
//! in the app's process, or the PostgreSQL server with its replicas, its
//! domains' databases and the orders' shards; with a server per database, a
//! node per server.

use std::fmt::Write as _;

use storefront_contract::ops::topology::{Node, Piece, Shape, Tier};

use super::replicas::{show, Place};
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
    /// The stage's data as pieces of the picture: the SQLite file, or the
    /// PostgreSQL server with its replicas (stage 5), the domains' databases
    /// (stage 6) and the orders' shards (stage 7) — or, when those databases are
    /// on servers of their own, one node per server, titled with what it holds.
    pub fn pieces(&self) -> Vec<Piece> {
        match self.database {
            DatabaseConfig::Sqlite { file, .. } => {
                let name = file.file_name().map_or_else(
                    || file.display().to_string(),
                    |f| f.to_string_lossy().into(),
                );
                vec![Backend::Sqlite.piece(&name)]
            }
            DatabaseConfig::Postgres { .. } => self.postgres_pieces(),
        }
    }

    fn postgres_pieces(&self) -> Vec<Piece> {
        let places = self.places();
        // The servers in the order their databases come, each with what it holds.
        let mut servers: Vec<(&Place, Vec<&str>)> = Vec::new();
        for (what, place) in &places {
            match servers.iter_mut().find(|(p, _)| *p == place) {
                Some((_, held)) => held.push(what),
                None => servers.push((place, vec![what])),
            }
        }
        let replicas = |place: &Place| -> String {
            let n = self.replicas.map_or(0, |r| r.servers_of_place(place).len());
            match n {
                0 => String::new(),
                1 => " + 1 replica".into(),
                n => format!(" + {n} replicas"),
            }
        };
        if servers.len() <= 1 {
            // One server (or an unparsable URL, which its check reports): as
            // before the split, the domains and shards named after it.
            let mut place = host_of(&self.database.postgres_url().unwrap_or_default());
            if let Some((server, _)) = servers.first() {
                place = show(server);
                place.push_str(&replicas(server));
            }
            match (self.domains, self.sharding) {
                (Some(_), Some(s)) => {
                    let n = s.databases.len();
                    let _ = write!(place, "; users, catalog, orders in {n} shards");
                }
                (Some(_), None) => place.push_str("; users, catalog, orders"),
                _ => {}
            }
            return vec![Backend::Postgres.piece(&place)];
        }
        // A shard database the resharding moves orders to, not in use at first.
        let target = |what: &str| {
            self.sharding.is_some_and(|s| {
                s.reshard_to.iter().any(|d| d == what) && !s.databases.iter().any(|d| d == what)
            })
        };
        servers
            .into_iter()
            .map(|(place, held)| {
                let mut sub = show(place);
                sub.push_str(&replicas(place));
                if held.iter().all(|what| target(what)) {
                    sub.push_str(", reshard target");
                }
                let mut piece = Backend::Postgres.piece(&sub);
                if let Piece::Node(_, node) = &mut piece {
                    node.title = format!("{}: {}", node.title, held.join(", "));
                }
                piece
            })
            .collect()
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

#[cfg(test)]
mod fleet_tests {
    use super::super::tests::{Sections, ONE_PRIMARY, SHARDED, SPLIT};
    use super::*;

    /// Each data node's title and the line under it.
    fn nodes(text: &str) -> Vec<(String, String)> {
        Sections::parse(text)
            .databases()
            .pieces()
            .into_iter()
            .map(|piece| match piece {
                Piece::Node(Tier::Data, node) => (node.title, node.sub),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn one_server_is_one_node() {
        assert_eq!(
            nodes(ONE_PRIMARY),
            [(
                "PostgreSQL".to_owned(),
                "127.0.0.1:5434 + 1 replica; users, catalog, orders".to_owned()
            )]
        );
    }

    #[test]
    fn a_server_per_database_is_a_node_per_server() {
        let pairs = |list: &[(&str, &str)]| {
            list.iter()
                .map(|(t, s)| (t.to_string(), s.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            nodes(SPLIT),
            pairs(&[
                ("PostgreSQL: users", "127.0.0.1:5440 + 1 replica"),
                ("PostgreSQL: catalog", "127.0.0.1:5442 + 1 replica"),
                ("PostgreSQL: orders", "127.0.0.1:5444 + 1 replica"),
            ])
        );
        assert_eq!(
            nodes(SHARDED),
            pairs(&[
                ("PostgreSQL: users", "127.0.0.1:5440 + 1 replica"),
                ("PostgreSQL: catalog", "127.0.0.1:5442 + 1 replica"),
                ("PostgreSQL: o0", "127.0.0.1:5446 + 1 replica"),
                ("PostgreSQL: o1", "127.0.0.1:5448 + 1 replica"),
                (
                    "PostgreSQL: o2",
                    "127.0.0.1:5450 + 2 replicas, reshard target"
                ),
                ("PostgreSQL: o3", "127.0.0.1:5452, reshard target"),
            ])
        );
        // Two domains on one server, the third apart.
        let shared = SPLIT.replace("5440/storefront_users", "5442/storefront_users").replace(
            "primary = \"127.0.0.1:5440\"\n        servers = [\"postgres://postgres@127.0.0.1:5441\"]",
            "primary = \"127.0.0.1:5446\"\n        servers = [\"postgres://postgres@127.0.0.1:5441\"]",
        );
        assert_eq!(nodes(&shared)[0].0, "PostgreSQL: users, catalog");
    }
}
