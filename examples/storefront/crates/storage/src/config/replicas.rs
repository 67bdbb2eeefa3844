//! `[replicas]` (stage 5 on): the servers of the primaries' streaming replicas,
//! and when a replica is too far behind to take reads.

use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use sqlx::postgres::PgConnectOptions;

/// Most replica servers one primary may have.
const MAX_SERVERS: usize = 16;
/// Most `[[replicas.cluster]]` entries.
const MAX_CLUSTERS: usize = 64;

/// The streaming replicas that take reads. A replica holds the same databases and
/// roles as its primary (streaming replication copies the whole cluster), so a
/// server is given without a database or password: the store reads database `d`
/// of a primary from database `d` of each of that primary's replicas, with the
/// primary's connection settings (password, options such as a `search_path`) and
/// the server's host, port and user.
///
/// Two forms. One primary (stage 5, or every database on one server): `servers`
/// are its replicas, and every database of the stage is read there.
///
/// ```toml
/// [replicas]
/// servers = ["postgres://postgres@127.0.0.1:5433"]
/// max_lag_ms = 1000
/// check_interval_ms = 250
/// ```
///
/// Several primaries (stages 6 and 7: a cluster per database): one
/// `[[replicas.cluster]]` per primary server, named by the host and port its
/// databases' URLs give, with its own replicas. A database whose server has no
/// entry is read on its primary.
///
/// ```toml
/// [replicas]
/// max_lag_ms = 1000
///
/// [[replicas.cluster]]
/// primary = "127.0.0.1:5440"
/// servers = ["postgres://postgres@127.0.0.1:5441"]
///
/// [[replicas.cluster]]
/// primary = "127.0.0.1:5442"
/// servers = ["postgres://postgres@127.0.0.1:5443"]
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReplicasConfig {
    /// The replica servers of the stage's one primary, as
    /// `postgres://user@host:port` (no database, no password); empty when
    /// `clusters` says whose replicas are where.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Each primary server with its own replicas (`[[replicas.cluster]]`).
    #[serde(default, rename = "cluster")]
    pub clusters: Vec<ReplicaCluster>,
    /// A replica further behind than this takes no reads (1 ms to one hour).
    #[serde(default = "default_max_lag")]
    pub max_lag_ms: u64,
    /// How often each server's role, replay position and lag are read (10 ms to
    /// one minute).
    #[serde(default = "default_check_interval")]
    pub check_interval_ms: u64,
    /// How long one check may take; longer counts as down (1 ms to one minute).
    #[serde(default = "default_check_timeout")]
    pub check_timeout_ms: u64,
}

/// One primary server and its replicas: a `[[replicas.cluster]]` entry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReplicaCluster {
    /// The primary, as `host:port`, spelt as in the URLs of the databases on it
    /// (`127.0.0.1:5440` for `postgres://postgres@127.0.0.1:5440/storefront_users`).
    pub primary: String,
    /// Its replica servers, as `postgres://user@host:port` (no database, no
    /// password).
    pub servers: Vec<String>,
}

fn default_max_lag() -> u64 {
    1_000
}
fn default_check_interval() -> u64 {
    250
}
fn default_check_timeout() -> u64 {
    1_000
}

/// A server's place: its host (lower case, without IPv6 brackets) and port.
pub(crate) type Place = (String, u16);

/// The place of connection options.
pub(crate) fn place_of(options: &PgConnectOptions) -> Place {
    (
        options
            .get_host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
        options.get_port(),
    )
}

/// `host:port` of a place, for messages.
pub(crate) fn show(place: &Place) -> String {
    if place.0.contains(':') {
        format!("[{}]:{}", place.0, place.1)
    } else {
        format!("{}:{}", place.0, place.1)
    }
}

/// `"127.0.0.1:5440"` (or `"[::1]:5440"`) as a place.
fn parse_place(text: &str) -> Option<Place> {
    let (host, port) = text.rsplit_once(':')?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    let port: u16 = port.parse().ok()?;
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
    (!host.is_empty() && port != 0 && host.chars().all(plain))
        .then(|| (host.to_ascii_lowercase(), port))
}

impl ReplicasConfig {
    /// The lag limit.
    pub fn max_lag(&self) -> Duration {
        Duration::from_millis(self.max_lag_ms)
    }

    /// The interval between health checks.
    pub fn check_interval(&self) -> Duration {
        Duration::from_millis(self.check_interval_ms)
    }

    /// How long one health check may take.
    pub fn check_timeout(&self) -> Duration {
        Duration::from_millis(self.check_timeout_ms)
    }

    /// The replica servers of the primary that `primary` (a database's connection
    /// options) reaches: `servers` in the one-primary form, else its
    /// `[[replicas.cluster]]` entry's, else none (its reads stay on the primary).
    pub fn servers_of(&self, primary: &PgConnectOptions) -> &[String] {
        self.servers_of_place(&place_of(primary))
    }

    /// [`servers_of`](Self::servers_of) the primary at `place`.
    pub(crate) fn servers_of_place(&self, place: &Place) -> &[String] {
        if self.clusters.is_empty() {
            return &self.servers;
        }
        self.clusters
            .iter()
            .find(|c| parse_place(&c.primary).as_ref() == Some(place))
            .map_or(&[], |c| c.servers.as_slice())
    }

    /// The connection options of the replica servers of `primary` (see
    /// [`servers_of`](Self::servers_of)), each with whether its URL names a user.
    pub fn server_options_of(
        &self,
        primary: &PgConnectOptions,
    ) -> Result<Vec<(PgConnectOptions, bool)>, (&'static str, String)> {
        let field = if self.clusters.is_empty() {
            "replicas.servers"
        } else {
            "replicas.cluster.servers"
        };
        self.servers_of(primary)
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let options = server_options(field, &format!("[{i}]"), s)?;
                Ok((options, s.contains('@')))
            })
            .collect()
    }

    /// Every primary the `[[replicas.cluster]]` entries name, with its replicas'
    /// places (empty in the one-primary form).
    pub(crate) fn cluster_places(&self) -> Vec<(Place, Vec<Place>)> {
        self.clusters
            .iter()
            .filter_map(|c| {
                let servers = c
                    .servers
                    .iter()
                    .filter_map(|s| PgConnectOptions::from_str(s).ok())
                    .map(|o| place_of(&o))
                    .collect();
                Some((parse_place(&c.primary)?, servers))
            })
            .collect()
    }

    /// The places of `servers` (the one-primary form).
    pub(crate) fn server_places(&self) -> Vec<Place> {
        self.servers
            .iter()
            .filter_map(|s| PgConnectOptions::from_str(s).ok())
            .map(|o| place_of(&o))
            .collect()
    }

    /// Checks the values; `Err((field, message))`.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        match (self.servers.is_empty(), self.clusters.is_empty()) {
            (true, true) => {
                return Err((
                    "replicas.servers",
                    "empty: name at least one replica server, like [\"postgres://postgres@127.0.0.1:5433\"] \
                     (or each primary's with [[replicas.cluster]] entries, or leave [replicas] out)"
                        .into(),
                ))
            }
            (false, false) => {
                return Err((
                    "replicas.cluster",
                    "give either servers (the replicas of the stage's one primary) or \
                     [[replicas.cluster]] entries (each primary with its replicas), not both"
                        .into(),
                ))
            }
            (false, true) => check_servers("replicas.servers", "", &self.servers)?,
            (true, false) => self.check_clusters()?,
        }
        for (field, value, min, max) in [
            // At most the session cookie's life (600 s): a session whose cookie
            // has gone must not meet a replica older than its writes.
            ("replicas.max_lag_ms", self.max_lag_ms, 1, 600_000),
            (
                "replicas.check_interval_ms",
                self.check_interval_ms,
                10,
                60_000,
            ),
            (
                "replicas.check_timeout_ms",
                self.check_timeout_ms,
                1,
                60_000,
            ),
        ] {
            if !(min..=max).contains(&value) {
                return Err((field, format!("{value}: give from {min} to {max} ms")));
            }
        }
        Ok(())
    }

    fn check_clusters(&self) -> Result<(), (&'static str, String)> {
        if self.clusters.len() > MAX_CLUSTERS {
            return Err((
                "replicas.cluster",
                format!(
                    "{} entries: give at most {MAX_CLUSTERS}",
                    self.clusters.len()
                ),
            ));
        }
        let mut primaries: Vec<Place> = Vec::new();
        let mut replicas: Vec<(Place, usize)> = Vec::new();
        for (i, cluster) in self.clusters.iter().enumerate() {
            let primary = parse_place(&cluster.primary).ok_or_else(|| {
                (
                    "replicas.cluster.primary",
                    format!(
                        "[{i}] {:?}: give the primary server's host and port, like \"127.0.0.1:5440\" \
                         (as the URLs of its databases spell them)",
                        cluster.primary
                    ),
                )
            })?;
            if let Some(j) = primaries.iter().position(|p| *p == primary) {
                return Err((
                    "replicas.cluster.primary",
                    format!(
                        "[{i}] {} is entry [{j}]'s too: list each primary once, with all its replicas",
                        show(&primary)
                    ),
                ));
            }
            if cluster.servers.is_empty() {
                return Err((
                    "replicas.cluster.servers",
                    format!(
                        "[{i}] ({}) empty: name its replica servers, like [\"postgres://postgres@127.0.0.1:5441\"] \
                         (or leave the entry out: its databases are then read on the primary)",
                        show(&primary)
                    ),
                ));
            }
            check_servers(
                "replicas.cluster.servers",
                &format!("[{i}]"),
                &cluster.servers,
            )?;
            for server in &cluster.servers {
                let place = PgConnectOptions::from_str(server)
                    .map(|o| place_of(&o))
                    .map_err(|e| ("replicas.cluster.servers", format!("[{i}] {e}")))?;
                if place == primary {
                    return Err((
                        "replicas.cluster.servers",
                        format!(
                            "[{i}] {} is the primary itself: name the servers that replicate it",
                            show(&place)
                        ),
                    ));
                }
                if let Some((_, j)) = replicas.iter().find(|(p, _)| *p == place) {
                    return Err((
                        "replicas.cluster.servers",
                        format!(
                            "[{i}] {} is a replica of entry [{j}]'s primary: a replica follows one primary",
                            show(&place)
                        ),
                    ));
                }
                replicas.push((place, i));
            }
            primaries.push(primary);
        }
        if let Some((place, i)) = replicas.iter().find(|(p, _)| primaries.contains(p)) {
            return Err((
                "replicas.cluster.servers",
                format!(
                    "[{i}] {} is a primary of another entry: a primary is no replica",
                    show(place)
                ),
            ));
        }
        Ok(())
    }
}

/// Checks a list of replica servers: 1 to 16 URLs, each as [`server_options`].
fn check_servers(
    field: &'static str,
    entry: &str,
    servers: &[String],
) -> Result<(), (&'static str, String)> {
    if servers.len() > MAX_SERVERS {
        return Err((
            field,
            format!(
                "{entry}{}{} servers: give at most {MAX_SERVERS}",
                if entry.is_empty() { "" } else { " " },
                servers.len()
            ),
        ));
    }
    for (j, server) in servers.iter().enumerate() {
        server_options(field, &format!("{entry}[{j}]"), server)?;
    }
    Ok(())
}

/// A replica server's URL parsed: `postgres://user@host:port`, no password, no
/// database. `index` names it in messages (`[0]`, `[1][0]`).
fn server_options(
    field: &'static str,
    index: &str,
    server: &str,
) -> Result<PgConnectOptions, (&'static str, String)> {
    if !(server.starts_with("postgres://") || server.starts_with("postgresql://")) {
        return Err((
            field,
            format!("{index} {server:?}: use a URL like \"postgres://postgres@127.0.0.1:5433\""),
        ));
    }
    let options = PgConnectOptions::from_str(server)
        .map_err(|e| (field, format!("{index} {server:?}: {e}")))?;
    let userinfo = server
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(userinfo, _)| userinfo);
    if userinfo.is_some_and(|u| u.contains(':')) {
        return Err((
            field,
            format!(
                "{index} a password in the URL: leave it out; a replica uses the primary's credentials"
            ),
        ));
    }
    if options.get_database().is_some() {
        return Err((
            field,
            format!(
                "{index} {server:?}: give the server without a database; the replica's database is the primary's"
            ),
        ));
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(servers: &[&str]) -> ReplicasConfig {
        ReplicasConfig {
            servers: servers.iter().map(|s| s.to_string()).collect(),
            clusters: Vec::new(),
            max_lag_ms: default_max_lag(),
            check_interval_ms: default_check_interval(),
            check_timeout_ms: default_check_timeout(),
        }
    }

    fn err(c: &ReplicasConfig) -> (&'static str, String) {
        c.check().err().unwrap_or(("", String::new()))
    }

    fn options(url: &str) -> PgConnectOptions {
        PgConnectOptions::from_str(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn servers_are_urls_without_a_database() {
        assert!(config(&["postgres://postgres@127.0.0.1:5433"])
            .check()
            .is_ok());
        assert!(err(&config(&[])).1.starts_with("empty"));
        assert!(err(&config(&["127.0.0.1:5433"])).1.contains("use a URL"));
        let (field, message) = err(&config(&["postgres://h:5433/shop"]));
        assert_eq!(field, "replicas.servers");
        assert!(message.contains("without a database"), "{message}");
        let (_, message) = err(&config(&["postgres://u:secret@h:5433"]));
        assert!(
            message.contains("password") && !message.contains("secret"),
            "{message}"
        );
        let mut c = config(&["postgres://h:5433"]);
        c.max_lag_ms = 0;
        assert_eq!(err(&c).0, "replicas.max_lag_ms");
        let mut c = config(&["postgres://h:5433"]);
        c.check_interval_ms = 5;
        assert_eq!(err(&c).0, "replicas.check_interval_ms");
    }

    #[test]
    fn the_one_primary_form_gives_its_servers_to_every_database() {
        let c = config(&["postgres://postgres@127.0.0.1:5433"]);
        for url in [
            "postgres://p@127.0.0.1:5434/storefront",
            "postgres://p@elsewhere:1/x",
        ] {
            assert_eq!(c.servers_of(&options(url)), c.servers.as_slice());
        }
        let servers = c
            .server_options_of(&options("postgres://p@h:1/x"))
            .unwrap_or_default();
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].0.get_port(), 5433);
        assert!(servers[0].1, "the URL names its user");
    }

    const CLUSTERS: &str = r#"
        max_lag_ms = 500

        [[cluster]]
        primary = "127.0.0.1:5440"
        servers = ["postgres://postgres@127.0.0.1:5441"]

        [[cluster]]
        primary = "DB.example:5442"
        servers = ["postgres://db2.example:5443", "postgres://postgres@db3.example:5443"]
    "#;

    fn clusters() -> ReplicasConfig {
        toml::from_str(CLUSTERS).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn each_primary_has_its_own_replicas() {
        let c = clusters();
        assert_eq!(c.check(), Ok(()));
        assert_eq!(c.max_lag_ms, 500);
        assert_eq!(
            c.servers_of(&options(
                "postgres://postgres@127.0.0.1:5440/storefront_users?sslmode=disable"
            )),
            ["postgres://postgres@127.0.0.1:5441"]
        );
        // The host as the database URL spells it, in any case.
        assert_eq!(
            c.servers_of(&options("postgresql://u:pw@db.example:5442/catalog"))
                .len(),
            2
        );
        // A server without an entry has no replicas: its reads stay on it.
        assert!(c
            .servers_of(&options("postgres://postgres@127.0.0.1:5444/orders"))
            .is_empty());
        assert!(c
            .servers_of(&options("postgres://postgres@localhost:5440/x"))
            .is_empty());
        let places = c.cluster_places();
        assert_eq!(places.len(), 2);
        assert_eq!(places[1].0, ("db.example".to_owned(), 5442));
        assert_eq!(places[1].1[0], ("db2.example".to_owned(), 5443));
    }

    #[test]
    fn cluster_entries_are_checked_field_by_field() {
        let with = |edit: &dyn Fn(&mut ReplicasConfig)| {
            let mut c = clusters();
            edit(&mut c);
            err(&c)
        };
        let (field, message) = with(&|c| c.servers = vec!["postgres://h:5433".into()]);
        assert_eq!(field, "replicas.cluster");
        assert!(message.contains("not both"), "{message}");
        for bad in [
            "postgres://postgres@127.0.0.1:5440",
            "127.0.0.1",
            "127.0.0.1:port",
            "127.0.0.1:0",
            ":5440",
            "::1:5440",
            "h/x:5440",
        ] {
            let (field, message) = with(&|c| c.clusters[1].primary = bad.into());
            assert_eq!(field, "replicas.cluster.primary", "{bad}");
            assert!(
                message.starts_with("[1] ") && message.contains("host and port"),
                "{bad}: {message}"
            );
        }
        let ok = with(&|c| c.clusters[1].primary = "[::1]:5442".into());
        assert_eq!(ok.0, "", "{}", ok.1);
        let (field, message) = with(&|c| c.clusters[1].primary = "127.0.0.1:5440".into());
        assert_eq!(field, "replicas.cluster.primary");
        assert!(message.contains("entry [0]'s too"), "{message}");
        let (field, message) = with(&|c| c.clusters[0].servers.clear());
        assert_eq!(field, "replicas.cluster.servers");
        assert!(
            message.starts_with("[0] (127.0.0.1:5440) empty"),
            "{message}"
        );
        let (field, message) =
            with(&|c| c.clusters[1].servers[1] = "postgres://h:5443/catalog".into());
        assert_eq!(field, "replicas.cluster.servers");
        assert!(
            message.starts_with("[1][1] ") && message.contains("without a database"),
            "{message}"
        );
        let (field, message) =
            with(&|c| c.clusters[0].servers = vec!["postgres://u:pw@h:1".into()]);
        assert_eq!(field, "replicas.cluster.servers");
        assert!(!message.contains("pw"), "{message}");
        let (_, message) =
            with(&|c| c.clusters[0].servers = vec!["postgres://127.0.0.1:5440".into()]);
        assert!(message.contains("the primary itself"), "{message}");
        let (_, message) =
            with(&|c| c.clusters[0].servers = vec!["postgres://DB2.example:5443".into()]);
        assert!(
            message.starts_with("[1] db2.example:5443 is a replica of entry [0]'s primary"),
            "{message}"
        );
        let (_, message) =
            with(&|c| c.clusters[1].servers = vec!["postgres://127.0.0.1:5440".into()]);
        assert!(message.contains("a primary of another entry"), "{message}");
        let (field, _) = with(&|c| {
            c.clusters[0].servers = (0..17)
                .map(|i| format!("postgres://h:{}", 6000 + i))
                .collect()
        });
        assert_eq!(field, "replicas.cluster.servers");
        let (field, _) = with(&|c| c.check_timeout_ms = 0);
        assert_eq!(field, "replicas.check_timeout_ms");
    }

    #[test]
    fn unknown_fields_are_refused() {
        for text in [
            "[[cluster]]\nprimary = \"h:1\"\nservers = [\"postgres://h:2\"]\nreplicas = []\n",
            "[[clusters]]\nprimary = \"h:1\"\nservers = [\"postgres://h:2\"]\n",
        ] {
            let parsed: Result<ReplicasConfig, _> = toml::from_str(text);
            assert!(parsed.is_err(), "{text}");
        }
    }
}
