//! The whole file's check: databases, then each table (bound tables after
//! their roots), then names two tables would share.

use std::sync::Arc;

use ahash::AHashMap;

use crate::config::check::Checker;
use crate::config::collisions::check_collisions;
use crate::config::raw::RawFile;
use crate::config::spec::{DimSpec, KindSpec, RouterConfig, StrategySpec, TableSpec};
use crate::error::{ConfigError, ConfigErrorKind};

impl RouterConfig {
    /// Over 100 lines on purpose: the file is checked in the order it is read
    /// (databases, each table and its placement, bound tables, collisions), each
    /// refusal naming its line and field.
    pub(crate) fn check(text: &str, raw: RawFile) -> Result<Self, ConfigError> {
        let mut c = Checker {
            text,
            databases: AHashMap::new(),
        };
        if raw.databases.get_ref().is_empty() {
            return Err(c.err(
                ConfigErrorKind::EmptyShards,
                raw.databases.span(),
                "databases",
                "[]",
                "at least one database",
            ));
        }
        let mut databases = Vec::new();
        for (i, d) in raw.databases.get_ref().iter().enumerate() {
            let name = d.get_ref();
            if name.is_empty() {
                return Err(c.err(
                    ConfigErrorKind::Invalid,
                    d.span(),
                    format!("databases[{i}]"),
                    "\"\"",
                    "a database name that is not empty",
                ));
            }
            if c.databases.insert(name.clone(), i as u32).is_some() {
                return Err(c.err(
                    ConfigErrorKind::Duplicate,
                    d.span(),
                    format!("databases[{i}]"),
                    format!("{name:?} (listed twice)"),
                    "each database listed once",
                ));
            }
            databases.push(Arc::from(name.as_str()));
        }
        let mut tables = Vec::new();
        // First the tables that are not bound, then the bound ones.
        for (name, t) in &raw.tables {
            let path = format!("tables.{name}");
            let r = t.get_ref();
            if let Some(b) = &r.bind {
                let others = [
                    r.database.as_ref().map(|_| "database"),
                    r.broadcast.as_ref().map(|_| "broadcast"),
                    r.databases.as_ref().map(|_| "databases"),
                    r.tables.as_ref().map(|_| "tables"),
                ];
                if let Some(o) = others.into_iter().flatten().next() {
                    return Err(c.err(
                        ConfigErrorKind::Invalid,
                        b.span(),
                        format!("{path}.bind"),
                        format!("`bind` with `{o}`"),
                        format!(
                            "`bind` alone (a bound table is sharded like its root): drop `{o}`"
                        ),
                    ));
                }
                continue;
            }
            let mut suffixes = Vec::new();
            let kind = if let Some(bc) = &r.broadcast {
                if let Some(o) = [
                    r.database.as_ref().map(|_| "database"),
                    r.databases.as_ref().map(|_| "databases"),
                    r.tables.as_ref().map(|_| "tables"),
                ]
                .into_iter()
                .flatten()
                .next()
                {
                    return Err(c.err(
                        ConfigErrorKind::Invalid,
                        bc.span(),
                        format!("{path}.broadcast"),
                        format!("`broadcast` with `{o}`"),
                        format!("`broadcast` alone (a broadcast table is in every database): drop `{o}`"),
                    ));
                }
                if !*bc.get_ref() {
                    return Err(c.err(
                        ConfigErrorKind::Invalid,
                        bc.span(),
                        format!("{path}.broadcast"),
                        "false",
                        "`broadcast = true`, or where the table lives instead (`database = ...`)",
                    ));
                }
                KindSpec::Broadcast((0..databases.len() as u32).collect())
            } else {
                let db = match (&r.database, &r.databases) {
                    (Some(d), Some(_)) => {
                        return Err(c.err(
                            ConfigErrorKind::Invalid,
                            d.span(),
                            format!("{path}.database"),
                            "both `database` and `[databases]`",
                            "one of them: `database` (one) or `[databases]` (a split)",
                        ))
                    }
                    (Some(d), None) => Some(DimSpec {
                        key: None,
                        directory: Vec::new(),
                        strategy: StrategySpec::Fixed(c.database(d, &format!("{path}.database"))?),
                    }),
                    (None, Some(d)) => {
                        Some(c.dim(d, &format!("{path}.databases"), true, &mut Vec::new())?)
                    }
                    (None, None) => None,
                };
                let Some(db) = db else {
                    return Err(c.err(
                        ConfigErrorKind::Invalid,
                        t.span(),
                        path,
                        "no placement",
                        "where the table lives: `database = \"..\"`, a `[tables.NAME.databases]` split, `broadcast = true` or `bind = \"..\"`",
                    ));
                };
                match (&db.strategy, &r.tables) {
                    (StrategySpec::Fixed(d), None) => KindSpec::Single(*d),
                    (_, tdim) => {
                        let table = match tdim {
                            Some(tdim) => {
                                c.dim(tdim, &format!("{path}.tables"), false, &mut suffixes)?
                            }
                            None => DimSpec {
                                key: None,
                                directory: Vec::new(),
                                strategy: StrategySpec::Fixed(0),
                            },
                        };
                        KindSpec::Sharded {
                            db,
                            table,
                            suffixes,
                        }
                    }
                }
            };
            tables.push(TableSpec {
                name: Arc::from(name.as_str()),
                bound_to: None,
                kind,
            });
        }
        for (name, t) in &raw.tables {
            let Some(b) = &t.get_ref().bind else { continue };
            let path = format!("tables.{name}.bind");
            let root = b.get_ref();
            let Some(spec) = tables.iter().find(|s| &*s.name == root.as_str()) else {
                let bound = raw
                    .tables
                    .get(root)
                    .is_some_and(|r| r.get_ref().bind.is_some());
                return Err(c.err(
                    if bound {
                        ConfigErrorKind::Invalid
                    } else {
                        ConfigErrorKind::UnknownTable
                    },
                    b.span(),
                    path,
                    format!("{root:?}"),
                    if bound {
                        "the table it is bound to (a bound table is not a root)"
                    } else {
                        "a table defined under `[tables]`"
                    },
                ));
            };
            let kind = spec.kind.clone();
            tables.push(TableSpec {
                name: Arc::from(name.as_str()),
                bound_to: Some(spec.name.clone()),
                kind,
            });
        }
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        check_collisions(&c, &raw, &databases, &tables)?;
        c.databases.clear();
        Ok(Self {
            epoch: raw.epoch,
            databases,
            hot_keys: raw.hot_keys.min(100_000),
            tables,
        })
    }
}
