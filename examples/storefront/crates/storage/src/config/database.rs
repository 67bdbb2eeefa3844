//! The stage file's `[database]` section: SQLite or PostgreSQL, and how to reach it.

use std::path::PathBuf;

use serde::Deserialize;

/// Which database, and how to reach it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum DatabaseConfig {
    /// SQLite, embedded.
    Sqlite {
        /// The database file, relative to the data dir (or absolute); `:memory:` for
        /// a database that lives as long as the process.
        file: PathBuf,
        /// Demo products to create on start when the catalog is empty.
        #[serde(default)]
        seed_if_empty: u32,
    },
    /// PostgreSQL over TCP.
    Postgres {
        /// The environment variable that holds the URL, if set.
        #[serde(default)]
        url_env: Option<String>,
        /// The URL to use when `url_env` is unset or not set in the environment.
        url: String,
        /// Demo products to create on start when the catalog is empty.
        #[serde(default)]
        seed_if_empty: u32,
    },
}

impl DatabaseConfig {
    /// Where the data is, for people: `SQLite at DIR/FILE` or `PostgreSQL at
    /// postgres://…@host:port/db` (never a password).
    pub fn describe(&self, data_dir: &std::path::Path) -> String {
        match self {
            Self::Sqlite { file, .. } => format!("SQLite at {}", data_dir.join(file).display()),
            Self::Postgres { .. } => {
                let url = self.postgres_url().unwrap_or_default();
                let shown = match (url.find("://"), url.rfind('@')) {
                    (Some(s), Some(at)) if at > s => {
                        format!("{}://…@{}", &url[..s], &url[at + 1..])
                    }
                    _ => url,
                };
                format!("PostgreSQL at {shown}")
            }
        }
    }

    /// Demo products to create on start when the catalog is empty.
    pub fn seed_if_empty(&self) -> u32 {
        match self {
            Self::Sqlite { seed_if_empty, .. } | Self::Postgres { seed_if_empty, .. } => {
                *seed_if_empty
            }
        }
    }

    /// The PostgreSQL URL in effect: the environment variable's value, else `url`.
    pub fn postgres_url(&self) -> Option<String> {
        match self {
            Self::Postgres { url_env, url, .. } => Some(
                url_env
                    .as_deref()
                    .and_then(|v| std::env::var(v).ok())
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| url.clone()),
            ),
            Self::Sqlite { .. } => None,
        }
    }
}

impl DatabaseConfig {
    /// Checks the section; the first problem as (field, what to write instead).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        match self {
            DatabaseConfig::Sqlite { file, .. } if file.as_os_str().is_empty() => Err((
                "database.file",
                "give the database file name, like \"storefront.db\" (or \":memory:\")".into(),
            )),
            DatabaseConfig::Postgres { url, url_env, .. } => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err((
                        "database.url",
                        format!("{url:?}: use a URL like \"postgres://user@127.0.0.1:5432/db\""),
                    ));
                }
                if url_env.as_deref().is_some_and(str::is_empty) {
                    return Err((
                        "database.url_env",
                        "name an environment variable, or leave it out".into(),
                    ));
                }
                Ok(())
            }
            DatabaseConfig::Sqlite { .. } => Ok(()),
        }
    }
}
