//! Reading a routing file and building the router from it.

use std::sync::Arc;

use crate::config::build::build_dim;
use crate::config::check::line_col;
use crate::config::engines::Engines;
use crate::config::raw::RawFile;
use crate::config::spec::{KindSpec, RouterConfig};
use crate::error::{ConfigError, ConfigErrorKind};
use crate::router::{Router, RuleKind, TableRule};

impl RouterConfig {
    /// Parses and checks a TOML routing configuration.
    ///
    /// Errors say what is wrong, where (line, column, field path) and how to fix
    /// it: unknown databases, overlapping or missing ranges, empty shard sets,
    /// duplicate names, unknown keys.
    ///
    /// ```
    /// use scalekit_shard::{ConfigErrorKind, RouterConfig};
    /// let err = RouterConfig::from_toml(r#"
    /// databases = ["a", "b"]
    /// [tables.t.databases]
    /// key = "id"
    /// ranges = [
    ///   { from = 0, to = 100, shard = "a" },
    ///   { from = 90, shard = "b" },
    /// ]
    /// "#).unwrap_err();
    /// assert_eq!(err.kind(), ConfigErrorKind::Overlap);
    /// assert_eq!((err.line(), err.path()), (7, "tables.t.databases.ranges[1]"));
    /// ```
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            ConfigError::new(
                ConfigErrorKind::Syntax,
                line,
                column,
                String::new(),
                e.message().trim_end(),
                "the routing file's TOML shape (see RouterConfig)",
            )
        })?;
        Self::check(text, raw)
    }

    /// Reads and checks a TOML file; errors name the file.
    ///
    /// ```
    /// use scalekit_shard::RouterConfig;
    /// let err = RouterConfig::from_path("/nonexistent/shards.toml").unwrap_err();
    /// assert!(err.to_string().starts_with("/nonexistent/shards.toml:1:1: cannot read the file"));
    /// ```
    pub fn from_path(path: impl AsRef<std::path::Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                ConfigErrorKind::Syntax,
                1,
                1,
                String::new(),
                format!("cannot read the file: {e}"),
                "a readable TOML file",
            )
        });
        text.and_then(|t| Self::from_toml(&t))
            .map_err(|e| e.with_origin(origin))
    }

    /// The routing table's version.
    ///
    /// ```
    /// use scalekit_shard::RouterConfig;
    /// let c = RouterConfig::from_toml("epoch = 4\ndatabases = [\"a\"]")?;
    /// assert_eq!(c.epoch(), 4);
    /// # Ok::<(), scalekit_shard::ConfigError>(())
    /// ```
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Builds the router, asking `engines` for every `engine = "..."` named.
    /// Errs (with the engine field's line) on an engine not registered, or one
    /// that fails or leaves a slot without a shard.
    ///
    /// ```
    /// use scalekit_shard::{ConfigErrorKind, Engines, RouterConfig};
    /// let c = RouterConfig::from_toml(r#"
    /// databases = ["a", "b"]
    /// [tables.t.databases]
    /// key = "id"
    /// hash = ["a", "b"]
    /// engine = "ring"
    /// "#)?;
    /// let err = c.build(&Engines::new()).unwrap_err();
    /// assert_eq!((err.kind(), err.line()), (ConfigErrorKind::UnknownEngine, 6));
    /// # Ok::<(), scalekit_shard::ConfigError>(())
    /// ```
    pub fn build(&self, engines: &Engines) -> Result<Router, ConfigError> {
        let mut rules = Vec::with_capacity(self.tables.len());
        for t in &self.tables {
            let kind = match &t.kind {
                KindSpec::Single(d) => RuleKind::Single { database: *d },
                KindSpec::Broadcast(d) => RuleKind::Broadcast {
                    databases: d.clone(),
                },
                KindSpec::Sharded {
                    db,
                    table,
                    suffixes,
                } => {
                    let db_names = &self.databases;
                    let db_dim = build_dim(db, db_names, engines)?;
                    let t_dim = build_dim(table, suffixes, engines)?;
                    let physical = if suffixes.is_empty() {
                        vec![t.name.clone()]
                    } else {
                        suffixes
                            .iter()
                            .map(|s| Arc::from(format!("{}_{s}", t.name)))
                            .collect()
                    };
                    RuleKind::Sharded {
                        db: db_dim,
                        table: t_dim,
                        physical,
                    }
                }
            };
            rules.push(TableRule {
                name: t.name.clone(),
                bound_to: t.bound_to.clone(),
                kind,
            });
        }
        Ok(Router::new(
            self.epoch,
            self.databases.clone(),
            rules,
            self.hot_keys,
        ))
    }
}
