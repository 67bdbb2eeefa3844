//! Physical names two logical tables would share, written out or generated
//! by a time split.

use std::collections::BTreeMap;
use std::sync::Arc;

use toml::Spanned;

use crate::config::check::Checker;
use crate::config::raw::RawFile;
use crate::config::spec::{DimSpec, KindSpec, StrategySpec, TableSpec};
use crate::error::{ConfigError, ConfigErrorKind};
use crate::interval::Interval;

pub(crate) fn check_collisions(
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
    let err = |t: &TableSpec, value: String, expected: String| {
        let span = raw.tables.get(&*t.name).map_or(0..0, Spanned::span);
        c.err(
            ConfigErrorKind::Duplicate,
            span,
            format!("tables.{}", t.name),
            value,
            expected,
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
                            format!("physical table {}.{n}", databases[d as usize]),
                            format!(
                                "a name no other table uses (it would hold rows of both {:?} and {:?}): rename one",
                                other.name, t.name
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
                    format!("physical table {}.{n}", databases[*d as usize]),
                    format!(
                        "a name no other table uses (it would hold rows of both {:?} and the {interval} table of the time-split {:?}): rename one",
                        owner.name, time_table.name
                    ),
                ));
            }
        }
    }
    Ok(())
}
