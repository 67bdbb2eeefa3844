//! `[domains]`: the business split of stage 6, one PostgreSQL database per domain.

use std::str::FromStr;

use serde::Deserialize;

/// The three databases of stage 6 (see [`crate::DomainStore`]): which
/// tables live in which is decided by [`crate::DOMAIN_ROUTES`].
///
/// ```toml
/// [domains]
/// users = "postgres://postgres@127.0.0.1:5434/storefront_users"
/// catalog = "postgres://postgres@127.0.0.1:5434/storefront_catalog"
/// orders = "postgres://postgres@127.0.0.1:5434/storefront_orders"
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DomainsConfig {
    /// Accounts, sessions and carts.
    pub users: String,
    /// Categories and products.
    pub catalog: String,
    /// Orders and their lines; left out in stage 7, whose `[sharding]` holds them.
    #[serde(default)]
    pub orders: Option<String>,
    /// Connections each process opens to each database at most (1 to 100).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_max_connections() -> u32 {
    8
}

impl DomainsConfig {
    /// The databases by the names the routing uses: `users`, `catalog` and, when
    /// given, `orders`.
    pub fn urls(&self) -> Vec<(&'static str, &str)> {
        let mut urls = vec![("users", self.users.as_str()), ("catalog", &self.catalog)];
        if let Some(orders) = &self.orders {
            urls.push(("orders", orders));
        }
        urls
    }

    /// Checks the values; `Err((field, message))`.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        let mut fields = vec![
            ("domains.users", &self.users),
            ("domains.catalog", &self.catalog),
        ];
        if let Some(orders) = &self.orders {
            fields.push(("domains.orders", orders));
        }
        for &(field, url) in &fields {
            let rest = url
                .strip_prefix("postgres://")
                .or_else(|| url.strip_prefix("postgresql://"));
            let database = rest
                .and_then(|r| r.split_once('/'))
                .map(|(_, db)| db.split('?').next().unwrap_or_default());
            if database.is_none_or(str::is_empty) {
                return Err((
                    field,
                    format!(
                        "{url:?}: use a URL that names its database, like \
                         \"postgres://postgres@127.0.0.1:5434/storefront_users\""
                    ),
                ));
            }
        }
        // The same database however the URLs spell it (options, user, scheme).
        let mut places = Vec::with_capacity(fields.len());
        for &(field, url) in &fields {
            let options = sqlx::postgres::PgConnectOptions::from_str(url)
                .map_err(|e| (field, format!("{url:?}: {e}")))?;
            places.push((
                options.get_host().to_ascii_lowercase(),
                options.get_port(),
                options.get_database().unwrap_or_default().to_owned(),
            ));
        }
        for (i, (field, url)) in fields.iter().enumerate() {
            if let Some((other, _)) = fields[..i]
                .iter()
                .zip(&places)
                .find(|(_, place)| **place == places[i])
                .map(|(f, _)| f)
            {
                return Err((
                    field,
                    format!(
                        "{url:?} is {other} too: each domain needs a database of its own \
                         (each has its own schema and migrations)"
                    ),
                ));
            }
        }
        if !(1..=100).contains(&self.max_connections) {
            return Err((
                "domains.max_connections",
                format!(
                    "{}: give from 1 to 100 connections per database",
                    self.max_connections
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DomainsConfig {
        DomainsConfig {
            users: "postgres://p@h:1/u".into(),
            catalog: "postgresql://p@h:1/c?sslmode=disable".into(),
            orders: Some("postgres://p@h:1/o".into()),
            max_connections: 8,
        }
    }

    #[test]
    fn checks_say_which_field() {
        assert_eq!(config().check(), Ok(()));
        let err = |c: DomainsConfig| c.check().err().unwrap_or(("", String::new()));
        let (field, message) = err(DomainsConfig {
            users: "mysql://h/u".into(),
            ..config()
        });
        assert_eq!(field, "domains.users");
        assert!(message.contains("names its database"), "{message}");
        let (field, _) = err(DomainsConfig {
            catalog: "postgres://h:1/".into(),
            ..config()
        });
        assert_eq!(field, "domains.catalog");
        let (field, message) = err(DomainsConfig {
            orders: Some("postgres://p@h:1/u".into()),
            ..config()
        });
        assert_eq!(field, "domains.orders");
        assert!(message.contains("domains.users too"), "{message}");
        // The same host, port and database, spelt otherwise.
        for same in [
            "postgres://p@h:1/u?sslmode=disable",
            "postgresql://other@H:1/u",
            "postgres://p:secret@h:1/u?application_name=x",
        ] {
            let (field, message) = err(DomainsConfig {
                orders: Some(same.into()),
                ..config()
            });
            assert_eq!(field, "domains.orders", "{same}");
            assert!(message.contains("domains.users too"), "{same}: {message}");
        }
        // Another port or database is another database.
        for other in ["postgres://p@h:2/u", "postgres://p@h:1/u2"] {
            let ok = DomainsConfig {
                orders: Some(other.into()),
                ..config()
            };
            assert_eq!(ok.check(), Ok(()), "{other}");
        }
        let (field, _) = err(DomainsConfig {
            max_connections: 0,
            ..config()
        });
        assert_eq!(field, "domains.max_connections");
    }
}
