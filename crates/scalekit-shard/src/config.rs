//! The routing configuration: TOML (or any serde format) checked at load time,
//! then built into a [`Router`] with the placement engines you pass in.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use ahash::AHashMap;
use scalekit_core::{stable_hash_u64, Placement};
use serde::Deserialize;
use toml::Spanned;

use crate::error::{ConfigError, ConfigErrorKind};
use crate::interval::Interval;
use crate::router::{Dim, Router, RuleKind, ShardNode, SlotHash, Strategy, TableRule};
use crate::slot::REDIS_CLUSTER_SLOTS;

/// The default number of hash slots.
pub const DEFAULT_SLOTS: u32 = 16384;
/// The most hash slots a table may have.
pub const MAX_SLOTS: u32 = 1 << 20;
/// The built-in engine: slot `s` of `S` goes to shard `s * n / S` (contiguous
/// slot ranges, as Vitess key ranges and a fresh Redis Cluster lay them out).
pub const CONTIGUOUS_ENGINE: &str = "contiguous";

/// A placement engine over shard nodes, as [`Engines`] builds them.
pub type DynPlacement = dyn Placement<Node = ShardNode> + Send + Sync;

type Factory =
    dyn Fn(&[ShardNode]) -> Result<Box<DynPlacement>, Box<dyn Error + Send + Sync>> + Send + Sync;

/// The placement engines a configuration may name in `engine = "..."`, each
/// registered under a name by the application. This crate depends on no engine:
/// pass `scalekit-ring`'s (or your own `Placement`) here.
///
/// ```
/// use scalekit_ring::{Jump, Ring};
/// use scalekit_shard::Engines;
///
/// let engines = Engines::new()
///     .register("ring", |nodes| Ok(Box::new(Ring::with_nodes(nodes.iter().cloned())?)))
///     .register("jump", |nodes| Ok(Box::new(Jump::with_nodes(nodes.iter().cloned())?)));
/// assert_eq!(engines.names().collect::<Vec<_>>(), ["contiguous", "jump", "ring"]);
/// ```
#[derive(Clone, Default)]
pub struct Engines {
    map: BTreeMap<String, Arc<Factory>>,
}

impl fmt::Debug for Engines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

impl Engines {
    /// Only the built-in [`CONTIGUOUS_ENGINE`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers an engine under `name`: a function from the shard nodes (in
    /// configured order) to a placement over them.
    pub fn register<F>(mut self, name: impl Into<String>, factory: F) -> Self
    where
        F: Fn(&[ShardNode]) -> Result<Box<DynPlacement>, Box<dyn Error + Send + Sync>>
            + Send
            + Sync
            + 'static,
    {
        self.map.insert(name.into(), Arc::new(factory));
        self
    }

    /// The names a configuration may use, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        let builtin = (!self.map.contains_key(CONTIGUOUS_ENGINE)).then_some(CONTIGUOUS_ENGINE);
        let mut v: Vec<&str> = self.map.keys().map(String::as_str).chain(builtin).collect();
        v.sort_unstable();
        v.into_iter()
    }
}

// ---------------------------------------------------------------------------
// The file's shape.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    epoch: u64,
    databases: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    hot_keys: usize,
    #[serde(default)]
    tables: BTreeMap<String, Spanned<RawTable>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    database: Option<Spanned<String>>,
    broadcast: Option<Spanned<bool>>,
    bind: Option<Spanned<String>>,
    databases: Option<Spanned<RawDim>>,
    tables: Option<Spanned<RawDim>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ShardList {
    Names(Vec<String>),
    Count(i64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDim {
    key: Spanned<String>,
    hash: Option<Spanned<ShardList>>,
    engine: Option<Spanned<String>>,
    slots: Option<Spanned<i64>>,
    slot_hash: Option<Spanned<String>>,
    modulo: Option<Spanned<ShardList>>,
    ranges: Option<Spanned<Vec<Spanned<RawRange>>>>,
    time: Option<Spanned<String>>,
    retention: Option<Spanned<i64>>,
    ahead: Option<Spanned<i64>>,
    #[serde(default)]
    directory: BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    from: Option<Spanned<i64>>,
    to: Option<Spanned<i64>>,
    shard: Spanned<String>,
}

// ---------------------------------------------------------------------------
// The checked configuration.

#[derive(Clone, Debug)]
struct Where {
    line: usize,
    column: usize,
    path: String,
}

#[derive(Clone, Debug)]
enum StrategySpec {
    Fixed(u32),
    Hash {
        shards: Vec<u32>,
        engine: String,
        at: Where,
        slots: u32,
        hash: SlotHash,
    },
    Modulo(Vec<u32>),
    Ranges {
        starts: Vec<i64>,
        end: Option<i64>,
        shards: Vec<u32>,
    },
    Time {
        interval: Interval,
        retention: Option<u32>,
        ahead: u32,
    },
}

#[derive(Clone, Debug)]
struct DimSpec {
    key: Option<Arc<str>>,
    directory: Vec<(Box<str>, u32)>,
    strategy: StrategySpec,
}

#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // one a table, read once
enum KindSpec {
    Single(u32),
    Broadcast(Vec<u32>),
    Sharded {
        db: DimSpec,
        table: DimSpec,
        suffixes: Vec<Arc<str>>,
    },
}

#[derive(Clone, Debug)]
struct TableSpec {
    name: Arc<str>,
    bound_to: Option<Arc<str>>,
    kind: KindSpec,
}

/// A routing configuration that passed every check; [`build`](Self::build) it
/// into a [`Router`] with your engines.
///
/// The TOML form (every strategy is described in `docs/shard.md`):
///
/// ```toml
/// epoch = 1                          # the routing table's version
/// databases = ["users", "catalog", "orders_0", "orders_1"]
/// hot_keys = 32                      # track the 32 most routed keys (0: off)
///
/// [tables.users]                     # domain split: one database
/// database = "users"
///
/// [tables.currencies]                # copied to every database
/// broadcast = true
///
/// [tables.orders.databases]          # database by hash of the user id ...
/// key = "user_id"
/// hash = ["orders_0", "orders_1"]
/// engine = "ring"                    # registered by the application
/// directory = { "42" = "orders_1" }  # large tenants first
///
/// [tables.orders.tables]             # ... table by month of creation
/// key = "created_at"
/// time = "month"
/// retention = 24
/// ahead = 2
///
/// [tables.order_items]               # sharded alike: joins stay on one shard
/// bind = "orders"
/// ```
#[derive(Clone, Debug)]
pub struct RouterConfig {
    epoch: u64,
    databases: Vec<Arc<str>>,
    hot_keys: usize,
    tables: Vec<TableSpec>,
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let mut at = at;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

struct Checker<'a> {
    text: &'a str,
    databases: AHashMap<String, u32>,
}

impl Checker<'_> {
    fn at(&self, span: Range<usize>, path: impl Into<String>) -> Where {
        let (line, column) = line_col(self.text, span.start);
        Where {
            line,
            column,
            path: path.into(),
        }
    }

    fn err(
        &self,
        kind: ConfigErrorKind,
        span: Range<usize>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let w = self.at(span, path);
        ConfigError {
            kind,
            line: w.line,
            column: w.column,
            path: w.path,
            message: message.into(),
            origin: None,
        }
    }

    fn database(&self, name: &Spanned<String>, path: &str) -> Result<u32, ConfigError> {
        self.database_str(name.get_ref(), name.span(), path)
    }

    fn database_str(&self, name: &str, span: Range<usize>, path: &str) -> Result<u32, ConfigError> {
        self.databases.get(name).copied().ok_or_else(|| {
            let mut known: Vec<&str> = self.databases.keys().map(String::as_str).collect();
            known.sort_unstable();
            self.err(
                ConfigErrorKind::UnknownDatabase,
                span,
                path,
                format!(
                    "unknown database {name:?}; add it to `databases` or use one of {}",
                    known.join(", ")
                ),
            )
        })
    }

    /// Resolves a shard list: database indices, or (table dimension) suffix
    /// indices added to `suffixes`.
    fn shard_list(
        &self,
        list: &Spanned<ShardList>,
        path: &str,
        is_db: bool,
        suffixes: &mut Vec<Arc<str>>,
    ) -> Result<Vec<u32>, ConfigError> {
        let span = list.span();
        let names: Vec<String> = match list.get_ref() {
            ShardList::Names(n) => n.clone(),
            ShardList::Count(c) if is_db => {
                return Err(self.err(
                    ConfigErrorKind::Invalid,
                    span,
                    path,
                    format!("a count ({c}) names no database; list the databases"),
                ))
            }
            ShardList::Count(c) => {
                if !(1..=65_536).contains(c) {
                    return Err(self.err(
                        ConfigErrorKind::EmptyShards,
                        span,
                        path,
                        format!("{c} tables: give 1 to 65536"),
                    ));
                }
                (0..*c).map(|i| i.to_string()).collect()
            }
        };
        if names.is_empty() {
            return Err(self.err(
                ConfigErrorKind::EmptyShards,
                span,
                path,
                "no shards: list at least one",
            ));
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(names.len());
        for n in &names {
            if !seen.insert(n.as_str()) {
                return Err(self.err(
                    ConfigErrorKind::Duplicate,
                    span.clone(),
                    path,
                    format!("{n:?} is listed twice"),
                ));
            }
            out.push(if is_db {
                self.database_str(n, span.clone(), path)?
            } else {
                suffix_index(suffixes, n, self, span.clone(), path)?
            });
        }
        Ok(out)
    }

    fn dim(
        &self,
        raw: &Spanned<RawDim>,
        path: &str,
        is_db: bool,
        suffixes: &mut Vec<Arc<str>>,
    ) -> Result<DimSpec, ConfigError> {
        let d = raw.get_ref();
        let given: Vec<&str> = [
            d.hash.as_ref().map(|_| "hash"),
            d.modulo.as_ref().map(|_| "modulo"),
            d.ranges.as_ref().map(|_| "ranges"),
            d.time.as_ref().map(|_| "time"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if given.len() != 1 {
            return Err(self.err(
                ConfigErrorKind::Invalid,
                raw.span(),
                path,
                if given.is_empty() {
                    "no strategy: give one of hash, modulo, ranges or time".to_owned()
                } else {
                    format!("give one strategy, not {}", given.join(" and "))
                },
            ));
        }
        let only = |field: &str, span: Option<Range<usize>>, strategy: &str| match span {
            Some(s) if given[0] != strategy => Err(self.err(
                ConfigErrorKind::Invalid,
                s,
                format!("{path}.{field}"),
                format!("`{field}` goes with `{strategy}`, not `{}`", given[0]),
            )),
            _ => Ok(()),
        };
        only("engine", d.engine.as_ref().map(Spanned::span), "hash")?;
        only("slots", d.slots.as_ref().map(Spanned::span), "hash")?;
        only("slot_hash", d.slot_hash.as_ref().map(Spanned::span), "hash")?;
        only("retention", d.retention.as_ref().map(Spanned::span), "time")?;
        only("ahead", d.ahead.as_ref().map(Spanned::span), "time")?;

        let strategy = if let Some(h) = &d.hash {
            let p = format!("{path}.hash");
            let shards = self.shard_list(h, &p, is_db, suffixes)?;
            let hash = match &d.slot_hash {
                None => SlotHash::Stable,
                Some(s) => match s.get_ref().as_str() {
                    "stable" => SlotHash::Stable,
                    "redis" => SlotHash::Redis,
                    other => {
                        return Err(self.err(
                            ConfigErrorKind::Invalid,
                            s.span(),
                            format!("{path}.slot_hash"),
                            format!("unknown slot hash {other:?}; use \"stable\" or \"redis\""),
                        ))
                    }
                },
            };
            let default_slots = match hash {
                SlotHash::Stable => DEFAULT_SLOTS,
                SlotHash::Redis => u32::from(REDIS_CLUSTER_SLOTS),
            };
            let slots = match &d.slots {
                // Every shard needs a slot, also when the count is the default.
                None if shards.len() > default_slots as usize => {
                    let fix = match hash {
                        SlotHash::Stable => format!(
                            "set `slots` to {} to {MAX_SLOTS}",
                            shards.len()
                        ),
                        SlotHash::Redis => format!(
                            "Redis Cluster has {default_slots} slots, so at most {default_slots} shards"
                        ),
                    };
                    return Err(self.err(
                        ConfigErrorKind::Invalid,
                        h.span(),
                        p,
                        format!(
                            "{} shards but only {default_slots} slots (the default): {fix}",
                            shards.len()
                        ),
                    ));
                }
                None => default_slots,
                Some(s) => {
                    let v = *s.get_ref();
                    let sp = || s.span();
                    let p = format!("{path}.slots");
                    if hash == SlotHash::Redis && v != i64::from(REDIS_CLUSTER_SLOTS) {
                        return Err(self.err(
                            ConfigErrorKind::Invalid,
                            sp(),
                            p,
                            format!("Redis Cluster has 16384 slots, not {v}; drop `slots`"),
                        ));
                    }
                    if v < shards.len() as i64 || v > i64::from(MAX_SLOTS) {
                        return Err(self.err(
                            ConfigErrorKind::Invalid,
                            sp(),
                            p,
                            format!(
                                "{v} slots for {} shards: give {} to {MAX_SLOTS}",
                                shards.len(),
                                shards.len()
                            ),
                        ));
                    }
                    v as u32
                }
            };
            let (engine, at) = match &d.engine {
                Some(e) => (
                    e.get_ref().clone(),
                    self.at(e.span(), format!("{path}.engine")),
                ),
                None => (
                    CONTIGUOUS_ENGINE.to_owned(),
                    self.at(h.span(), format!("{path}.hash")),
                ),
            };
            StrategySpec::Hash {
                shards,
                engine,
                at,
                slots,
                hash,
            }
        } else if let Some(m) = &d.modulo {
            StrategySpec::Modulo(self.shard_list(m, &format!("{path}.modulo"), is_db, suffixes)?)
        } else if let Some(r) = &d.ranges {
            self.ranges(r, &format!("{path}.ranges"), is_db, suffixes)?
        } else if let Some(t) = &d.time {
            let p = format!("{path}.time");
            if is_db {
                return Err(self.err(
                    ConfigErrorKind::Invalid,
                    t.span(),
                    p,
                    "time intervals name tables, not databases: move this to the `tables` dimension",
                ));
            }
            let interval = Interval::parse(t.get_ref()).ok_or_else(|| {
                self.err(
                    ConfigErrorKind::Invalid,
                    t.span(),
                    p.clone(),
                    format!(
                        "unknown interval {:?}; use day, week, month or year",
                        t.get_ref()
                    ),
                )
            })?;
            let count = |v: &Option<Spanned<i64>>, field: &str, min: i64| match v {
                None => Ok(None),
                Some(s) if (min..=100_000).contains(s.get_ref()) => Ok(Some(*s.get_ref() as u32)),
                Some(s) => Err(self.err(
                    ConfigErrorKind::Invalid,
                    s.span(),
                    format!("{path}.{field}"),
                    format!("{field} = {}: give {min} to 100000 intervals", s.get_ref()),
                )),
            };
            if !d.directory.is_empty() {
                return Err(self.err(
                    ConfigErrorKind::Invalid,
                    raw.span(),
                    format!("{path}.directory"),
                    "a time split has no directory",
                ));
            }
            StrategySpec::Time {
                interval,
                retention: count(&d.retention, "retention", 1)?,
                ahead: count(&d.ahead, "ahead", 0)?.unwrap_or(0),
            }
        } else {
            return Err(self.err(ConfigErrorKind::Invalid, raw.span(), path, "no strategy"));
        };
        let mut directory = Vec::new();
        for (key, shard) in &d.directory {
            let p = format!("{path}.directory.{key:?}");
            let s = if is_db {
                self.database(shard, &p)?
            } else {
                suffix_index(suffixes, shard.get_ref(), self, shard.span(), &p)?
            };
            directory.push((Box::from(key.as_str()), s));
        }
        Ok(DimSpec {
            key: Some(Arc::from(d.key.get_ref().as_str())),
            directory,
            strategy,
        })
    }

    fn ranges(
        &self,
        r: &Spanned<Vec<Spanned<RawRange>>>,
        path: &str,
        is_db: bool,
        suffixes: &mut Vec<Arc<str>>,
    ) -> Result<StrategySpec, ConfigError> {
        let list = r.get_ref();
        if list.is_empty() {
            return Err(self.err(
                ConfigErrorKind::EmptyShards,
                r.span(),
                path,
                "no ranges: give at least one { from = .., to = .., shard = .. }",
            ));
        }
        let mut starts = Vec::with_capacity(list.len());
        let mut shards = Vec::with_capacity(list.len());
        let mut prev_end: Option<i64> = None;
        let mut end = None;
        for (i, item) in list.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let raw = item.get_ref();
            let from = match (&raw.from, prev_end) {
                (Some(f), _) => *f.get_ref(),
                (None, Some(e)) => e,
                (None, None) => {
                    return Err(self.err(
                        ConfigErrorKind::Gap,
                        item.span(),
                        p,
                        "the first range needs `from` (where the keys start)",
                    ))
                }
            };
            if i > 0 {
                match prev_end {
                    None => {
                        return Err(self.err(
                            ConfigErrorKind::Overlap,
                            item.span(),
                            p,
                            format!(
                                "range {} has no `to`, so it runs to the end and overlaps this one",
                                i - 1
                            ),
                        ))
                    }
                    Some(e) if from < e => {
                        return Err(self.err(
                            ConfigErrorKind::Overlap,
                            item.span(),
                            p,
                            format!(
                                "starts at {from}, inside range {} (which ends before {e}); ranges must be sorted and disjoint",
                                i - 1
                            ),
                        ))
                    }
                    Some(e) if from > e => {
                        return Err(self.err(
                            ConfigErrorKind::Gap,
                            item.span(),
                            p,
                            format!(
                                "keys {e} to {} belong to no range; start this range at {e}",
                                from - 1
                            ),
                        ))
                    }
                    Some(_) => {}
                }
            }
            let to = raw.to.as_ref().map(|t| *t.get_ref());
            if let Some(t) = to {
                if t <= from {
                    return Err(self.err(
                        ConfigErrorKind::Invalid,
                        item.span(),
                        p,
                        format!("from = {from}, to = {t}: a range holds from <= key < to, so `to` must be greater"),
                    ));
                }
            }
            let shard = if is_db {
                self.database(&raw.shard, &format!("{p}.shard"))?
            } else {
                suffix_index(
                    suffixes,
                    raw.shard.get_ref(),
                    self,
                    raw.shard.span(),
                    &format!("{p}.shard"),
                )?
            };
            starts.push(from);
            shards.push(shard);
            prev_end = to;
            end = to;
        }
        Ok(StrategySpec::Ranges {
            starts,
            end,
            shards,
        })
    }
}

fn suffix_index(
    suffixes: &mut Vec<Arc<str>>,
    name: &str,
    c: &Checker<'_>,
    span: Range<usize>,
    path: &str,
) -> Result<u32, ConfigError> {
    if name.is_empty() {
        return Err(c.err(
            ConfigErrorKind::Invalid,
            span,
            path,
            "an empty table suffix",
        ));
    }
    if let Some(i) = suffixes.iter().position(|s| &**s == name) {
        return Ok(i as u32);
    }
    suffixes.push(Arc::from(name));
    Ok(suffixes.len() as u32 - 1)
}

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
            ConfigError {
                kind: ConfigErrorKind::Syntax,
                line,
                column,
                path: String::new(),
                message: e.message().trim_end().to_owned(),
                origin: None,
            }
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
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            kind: ConfigErrorKind::Syntax,
            line: 1,
            column: 1,
            path: String::new(),
            message: format!("cannot read the file: {e}"),
            origin: None,
        });
        text.and_then(|t| Self::from_toml(&t))
            .map_err(|e| e.with_origin(origin))
    }

    fn check(text: &str, raw: RawFile) -> Result<Self, ConfigError> {
        let mut c = Checker {
            text,
            databases: AHashMap::new(),
        };
        if raw.databases.get_ref().is_empty() {
            return Err(c.err(
                ConfigErrorKind::EmptyShards,
                raw.databases.span(),
                "databases",
                "no databases: list at least one",
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
                    "an empty database name",
                ));
            }
            if c.databases.insert(name.clone(), i as u32).is_some() {
                return Err(c.err(
                    ConfigErrorKind::Duplicate,
                    d.span(),
                    format!("databases[{i}]"),
                    format!("database {name:?} is listed twice"),
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
                        format!("a bound table is sharded like its root; drop `{o}`"),
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
                        format!("a broadcast table is in every database; drop `{o}`"),
                    ));
                }
                if !*bc.get_ref() {
                    return Err(c.err(
                        ConfigErrorKind::Invalid,
                        bc.span(),
                        format!("{path}.broadcast"),
                        "broadcast = false says nothing: say where the table lives (database = ...)",
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
                            "give `database` (one) or `[databases]` (a split), not both",
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
                        "say where the table lives: `database = \"..\"`, a `[tables.NAME.databases]` split, `broadcast = true` or `bind = \"..\"`",
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
                    if bound {
                        format!("{root:?} is itself bound; bind to the table it is bound to")
                    } else {
                        format!("no table {root:?} to bind to")
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

fn check_collisions(
    c: &Checker<'_>,
    raw: &RawFile,
    databases: &[Arc<str>],
    tables: &[TableSpec],
) -> Result<(), ConfigError> {
    // The databases a dimension spreads over: its own shard set (and
    // directory), not every database.
    let dim_dbs = |d: &DimSpec| -> Vec<u32> {
        let mut v = match &d.strategy {
            StrategySpec::Fixed(d) => vec![*d],
            StrategySpec::Hash { shards, .. }
            | StrategySpec::Modulo(shards)
            | StrategySpec::Ranges { shards, .. } => shards.clone(),
            StrategySpec::Time { .. } => (0..databases.len() as u32).collect(),
        };
        v.extend(d.directory.iter().map(|(_, s)| *s));
        v.sort_unstable();
        v.dedup();
        v
    };
    let err = |t: &TableSpec, message: String| {
        let span = raw.tables.get(&*t.name).map_or(0..0, Spanned::span);
        c.err(
            ConfigErrorKind::Duplicate,
            span,
            format!("tables.{}", t.name),
            message,
        )
    };
    // Physical (database, table) names that two logical tables would share.
    let mut seen: BTreeMap<(u32, String), &TableSpec> = BTreeMap::new();
    // Time-split tables: their names are generated, `{name}_{label}`.
    let mut timed: Vec<(&TableSpec, Vec<u32>, Interval)> = Vec::new();
    for t in tables {
        let (dbs, names): (Vec<u32>, Vec<String>) = match &t.kind {
            KindSpec::Single(d) => (vec![*d], vec![t.name.to_string()]),
            KindSpec::Broadcast(d) => (d.clone(), vec![t.name.to_string()]),
            KindSpec::Sharded {
                db,
                table,
                suffixes,
            } => {
                let dbs = dim_dbs(db);
                let names = match (&table.strategy, suffixes.is_empty()) {
                    (StrategySpec::Time { interval, .. }, _) => {
                        timed.push((t, dbs.clone(), *interval));
                        Vec::new()
                    }
                    (_, true) => vec![t.name.to_string()],
                    (_, false) => suffixes.iter().map(|s| format!("{}_{s}", t.name)).collect(),
                };
                (dbs, names)
            }
        };
        for d in dbs {
            for n in &names {
                if let Some(other) = seen.insert((d, n.clone()), t) {
                    if other.name != t.name {
                        return Err(err(
                            t,
                            format!(
                                "physical table {}.{n} would hold rows of both {:?} and {:?}; rename one",
                                databases[d as usize], other.name, t.name
                            ),
                        ));
                    }
                }
            }
        }
    }
    // A physical name that a time-split table generates (`orders_202611` for
    // `orders` by month), in one of its databases.
    for (time_table, dbs, interval) in &timed {
        let prefix = format!("{}_", time_table.name);
        for ((d, n), owner) in &seen {
            let generated = n
                .strip_prefix(&prefix)
                .is_some_and(|label| interval.is_label(label));
            if generated && dbs.binary_search(d).is_ok() {
                return Err(err(
                    owner,
                    format!(
                        "physical table {}.{n} would hold rows of both {:?} and the {interval} table of the time-split {:?}; rename one",
                        databases[*d as usize], owner.name, time_table.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The point a slot is placed by: the stable hash of its number.
#[inline]
pub(crate) fn slot_point(slot: u32) -> u64 {
    stable_hash_u64(u64::from(slot))
}

fn build_dim(spec: &DimSpec, names: &[Arc<str>], engines: &Engines) -> Result<Dim, ConfigError> {
    let directory: AHashMap<Box<str>, u32> = spec.directory.iter().cloned().collect();
    let (strategy, mut all) = match &spec.strategy {
        StrategySpec::Fixed(s) => (Strategy::Fixed(*s), vec![*s]),
        StrategySpec::Modulo(shards) => (
            Strategy::Modulo {
                shards: shards.clone(),
            },
            shards.clone(),
        ),
        StrategySpec::Ranges {
            starts,
            end,
            shards,
        } => (
            Strategy::Ranges {
                starts: starts.clone(),
                end: *end,
                shards: shards.clone(),
            },
            shards.clone(),
        ),
        StrategySpec::Time {
            interval,
            retention,
            ahead,
        } => (
            Strategy::Time {
                interval: *interval,
                retention: *retention,
                ahead: *ahead,
            },
            Vec::new(),
        ),
        StrategySpec::Hash {
            shards,
            engine,
            at,
            slots,
            hash,
        } => {
            let fail = |message: String| ConfigError {
                kind: ConfigErrorKind::UnknownEngine,
                line: at.line,
                column: at.column,
                path: at.path.clone(),
                message,
                origin: None,
            };
            let owner: Vec<u32> = if let Some(factory) = engines.map.get(engine) {
                let nodes: Vec<ShardNode> = shards
                    .iter()
                    .map(|&i| ShardNode {
                        name: names
                            .get(i as usize)
                            .cloned()
                            .unwrap_or_else(|| Arc::from("")),
                        index: i,
                    })
                    .collect();
                let placement =
                    factory(&nodes).map_err(|e| fail(format!("engine {engine:?} failed: {e}")))?;
                let mut owner = Vec::with_capacity(*slots as usize);
                for s in 0..*slots {
                    match placement.locate_hash(slot_point(s)) {
                        Some(n) if shards.contains(&n.index) => owner.push(n.index),
                        _ => {
                            return Err(fail(format!(
                                "engine {engine:?} placed slot {s} on no listed shard"
                            )))
                        }
                    }
                }
                owner
            } else if engine == CONTIGUOUS_ENGINE {
                let n = shards.len() as u64;
                (0..u64::from(*slots))
                    .map(|s| shards[(s * n / u64::from(*slots)) as usize])
                    .collect()
            } else {
                return Err(fail(format!(
                    "no engine registered as {engine:?}; register it with Engines::register or use one of {}",
                    engines.names().collect::<Vec<_>>().join(", ")
                )));
            };
            (Strategy::Slots { owner, hash: *hash }, shards.clone())
        }
    };
    all.extend(directory.values().copied());
    all.sort_unstable();
    all.dedup();
    Ok(Dim {
        key: spec.key.clone(),
        all,
        directory,
        strategy,
    })
}
