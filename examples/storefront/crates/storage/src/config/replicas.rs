//! `[replicas]` (stage 5 on): the servers of the primary's streaming replicas,
//! and when a replica is too far behind to take reads.

use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use sqlx::postgres::PgConnectOptions;

/// The primary's streaming replicas. Each server holds the same databases and roles
/// as the primary (streaming replication copies the whole cluster), so a server is
/// given without a database or password: the store reads database `d` of the
/// primary from database `d` of each replica, with the primary's connection
/// settings (password, options such as a `search_path`) and the server's host,
/// port and user.
///
/// ```toml
/// [replicas]
/// servers = ["postgres://postgres@127.0.0.1:5433"]
/// max_lag_ms = 1000
/// check_interval_ms = 250
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReplicasConfig {
    /// The replica servers, as `postgres://user@host:port` (no database, no
    /// password).
    pub servers: Vec<String>,
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

fn default_max_lag() -> u64 {
    1_000
}
fn default_check_interval() -> u64 {
    250
}
fn default_check_timeout() -> u64 {
    1_000
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

    /// The connection options of each server: `servers` parsed.
    pub fn server_options(&self) -> Result<Vec<PgConnectOptions>, (&'static str, String)> {
        self.servers
            .iter()
            .enumerate()
            .map(|(i, s)| server_options(i, s))
            .collect()
    }

    /// Checks the values; `Err((field, message))`.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        if self.servers.is_empty() {
            return Err((
                "replicas.servers",
                "empty: name at least one replica server, like [\"postgres://postgres@127.0.0.1:5433\"] (or leave [replicas] out)".into(),
            ));
        }
        if self.servers.len() > 16 {
            return Err((
                "replicas.servers",
                format!("{} servers: give at most 16", self.servers.len()),
            ));
        }
        self.server_options()?;
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
}

fn server_options(index: usize, server: &str) -> Result<PgConnectOptions, (&'static str, String)> {
    let field = "replicas.servers";
    if !(server.starts_with("postgres://") || server.starts_with("postgresql://")) {
        return Err((
            field,
            format!("[{index}] {server:?}: use a URL like \"postgres://postgres@127.0.0.1:5433\""),
        ));
    }
    let options = PgConnectOptions::from_str(server)
        .map_err(|e| (field, format!("[{index}] {server:?}: {e}")))?;
    let userinfo = server
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(userinfo, _)| userinfo);
    if userinfo.is_some_and(|u| u.contains(':')) {
        return Err((
            field,
            format!(
                "[{index}] a password in the URL: leave it out; a replica uses the primary's credentials"
            ),
        ));
    }
    if options.get_database().is_some() {
        return Err((
            field,
            format!(
                "[{index}] {server:?}: give the server without a database; the replica's database is the primary's"
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
            max_lag_ms: default_max_lag(),
            check_interval_ms: default_check_interval(),
            check_timeout_ms: default_check_timeout(),
        }
    }

    #[test]
    fn servers_are_urls_without_a_database() {
        assert!(config(&["postgres://postgres@127.0.0.1:5433"])
            .check()
            .is_ok());
        let err = |c: ReplicasConfig| c.check().err().unwrap_or(("", String::new()));
        assert!(err(config(&[])).1.starts_with("empty"));
        assert!(err(config(&["127.0.0.1:5433"])).1.contains("use a URL"));
        let (field, message) = err(config(&["postgres://h:5433/shop"]));
        assert_eq!(field, "replicas.servers");
        assert!(message.contains("without a database"), "{message}");
        let (_, message) = err(config(&["postgres://u:secret@h:5433"]));
        assert!(
            message.contains("password") && !message.contains("secret"),
            "{message}"
        );
        let mut c = config(&["postgres://h:5433"]);
        c.max_lag_ms = 0;
        assert_eq!(err(c).0, "replicas.max_lag_ms");
        let mut c = config(&["postgres://h:5433"]);
        c.check_interval_ms = 5;
        assert_eq!(err(c).0, "replicas.check_interval_ms");
    }
}
