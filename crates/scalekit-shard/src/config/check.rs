//! The checks of each part of the file: databases, shard lists, strategies
//! and ranges, each error with its line, column and field path.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use ahash::AHashMap;
use toml::Spanned;

use crate::config::engines::CONTIGUOUS_ENGINE;
use crate::config::raw::{RawDim, RawRange, ShardList};
use crate::config::spec::{DimSpec, StrategySpec, Where, DEFAULT_SLOTS, MAX_SLOTS};
use crate::error::{ConfigError, ConfigErrorKind};
use crate::interval::Interval;
use crate::router::SlotHash;
use crate::slot::REDIS_CLUSTER_SLOTS;

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(text: &str, at: usize) -> (usize, usize) {
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

pub(crate) struct Checker<'a> {
    pub(crate) text: &'a str,
    pub(crate) databases: AHashMap<String, u32>,
}

impl Checker<'_> {
    pub(crate) fn at(&self, span: Range<usize>, path: impl Into<String>) -> Where {
        let (line, column) = line_col(self.text, span.start);
        Where {
            line,
            column,
            path: path.into(),
        }
    }

    /// A refused setting at `span`: `path` was given `value`; `expected`
    /// says what to write instead.
    pub(crate) fn err(
        &self,
        kind: ConfigErrorKind,
        span: Range<usize>,
        path: impl Into<String>,
        value: impl fmt::Display,
        expected: impl Into<String>,
    ) -> ConfigError {
        let w = self.at(span, path);
        ConfigError::new(kind, w.line, w.column, w.path, value, expected)
    }

    pub(crate) fn database(&self, name: &Spanned<String>, path: &str) -> Result<u32, ConfigError> {
        self.database_str(name.get_ref(), name.span(), path)
    }

    pub(crate) fn database_str(
        &self,
        name: &str,
        span: Range<usize>,
        path: &str,
    ) -> Result<u32, ConfigError> {
        self.databases.get(name).copied().ok_or_else(|| {
            let mut known: Vec<&str> = self.databases.keys().map(String::as_str).collect();
            known.sort_unstable();
            self.err(
                ConfigErrorKind::UnknownDatabase,
                span,
                path,
                format!("{name:?}"),
                format!(
                    "a database listed in `databases` ({}), or add it there",
                    known.join(", ")
                ),
            )
        })
    }

    /// Resolves a shard list: database indices, or (table dimension) suffix
    /// indices added to `suffixes`.
    pub(crate) fn shard_list(
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
                    c,
                    "a list of database names (a count names no database)",
                ))
            }
            ShardList::Count(c) => {
                if !(1..=65_536).contains(c) {
                    return Err(self.err(
                        ConfigErrorKind::EmptyShards,
                        span,
                        path,
                        c,
                        "a table count from 1 to 65536",
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
                "[]",
                "at least one shard",
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
                    format!("{n:?} (listed twice)"),
                    "each shard listed once",
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

    /// Over 100 lines on purpose: one check per strategy and per setting, in the
    /// order a reader of the file meets them, each with its own message; split up,
    /// the path, the span and the strategies given would travel through every piece.
    pub(crate) fn dim(
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
                    "no strategy".to_owned()
                } else {
                    given.join(" and ")
                },
                "one strategy: hash, modulo, ranges or time",
            ));
        }
        let only = |field: &str, span: Option<Range<usize>>, strategy: &str| match span {
            Some(s) if given[0] != strategy => Err(self.err(
                ConfigErrorKind::Invalid,
                s,
                format!("{path}.{field}"),
                format!("a `{field}` in a `{}` split", given[0]),
                format!("`{field}` only with `{strategy}`: drop it"),
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
                            format!("{other:?}"),
                            "\"stable\" or \"redis\"",
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
                            "`slots` set to {} to {MAX_SLOTS}",
                            shards.len()
                        ),
                        SlotHash::Redis => format!(
                            "at most {default_slots} shards (Redis Cluster has {default_slots} slots)"
                        ),
                    };
                    return Err(self.err(
                        ConfigErrorKind::Invalid,
                        h.span(),
                        p,
                        format!(
                            "{} shards with {default_slots} slots (the default)",
                            shards.len()
                        ),
                        fix,
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
                            v,
                            "16384 (Redis Cluster's slots), or no `slots` at all",
                        ));
                    }
                    if v < shards.len() as i64 || v > i64::from(MAX_SLOTS) {
                        return Err(self.err(
                            ConfigErrorKind::Invalid,
                            sp(),
                            p,
                            v,
                            format!(
                                "{} to {MAX_SLOTS} slots for {} shards",
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
                    format!("{:?}", t.get_ref()),
                    "time intervals on the `tables` dimension (they name tables, not databases)",
                ));
            }
            let interval = Interval::parse(t.get_ref()).ok_or_else(|| {
                self.err(
                    ConfigErrorKind::Invalid,
                    t.span(),
                    p.clone(),
                    format!("{:?}", t.get_ref()),
                    "day, week, month or year",
                )
            })?;
            let count = |v: &Option<Spanned<i64>>, field: &str, min: i64| match v {
                None => Ok(None),
                Some(s) if (min..=100_000).contains(s.get_ref()) => Ok(Some(*s.get_ref() as u32)),
                Some(s) => Err(self.err(
                    ConfigErrorKind::Invalid,
                    s.span(),
                    format!("{path}.{field}"),
                    s.get_ref(),
                    format!("{min} to 100000 intervals"),
                )),
            };
            if !d.directory.is_empty() {
                return Err(self.err(
                    ConfigErrorKind::Invalid,
                    raw.span(),
                    format!("{path}.directory"),
                    "a directory",
                    "no directory with a time split (it names tables by time)",
                ));
            }
            StrategySpec::Time {
                interval,
                retention: count(&d.retention, "retention", 1)?,
                ahead: count(&d.ahead, "ahead", 0)?.unwrap_or(0),
            }
        } else {
            return Err(self.err(
                ConfigErrorKind::Invalid,
                raw.span(),
                path,
                "no strategy",
                "one strategy: hash, modulo, ranges or time",
            ));
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

    /// Over 100 lines on purpose: each range is checked against the one before
    /// (overlap, gap, open end, order), one message each, in one pass.
    pub(crate) fn ranges(
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
                "[]",
                "at least one { from = .., to = .., shard = .. }",
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
                        "no `from`",
                        "a `from` on the first range (where the keys start)",
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
                            format!("from = {from}"),
                            format!(
                                "a `to` on range {} (without one it runs to the end and overlaps this one)",
                                i - 1
                            ),
                        ))
                    }
                    Some(e) if from < e => {
                        return Err(self.err(
                            ConfigErrorKind::Overlap,
                            item.span(),
                            p,
                            format!("from = {from}"),
                            format!(
                                "a start at {e} or later, past range {} (ranges must be sorted and disjoint)",
                                i - 1
                            ),
                        ))
                    }
                    Some(e) if from > e => {
                        return Err(self.err(
                            ConfigErrorKind::Gap,
                            item.span(),
                            p,
                            format!("from = {from}"),
                            format!(
                                "from = {e}, where range {} ends (keys {e} to {} belong to no range)",
                                i - 1,
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
                        format!("from = {from}, to = {t}"),
                        "a `to` greater than `from` (a range holds from <= key < to)",
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

pub(crate) fn suffix_index(
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
            "\"\"",
            "a table suffix that is not empty",
        ));
    }
    if let Some(i) = suffixes.iter().position(|s| &**s == name) {
        return Ok(i as u32);
    }
    suffixes.push(Arc::from(name));
    Ok(suffixes.len() as u32 - 1)
}
