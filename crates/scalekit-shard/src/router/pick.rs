//! What a dimension resolves a query to: one shard, several, or the time
//! tables in place.

use std::ops::Bound;
use std::sync::Arc;

use crate::error::RouteError;
use crate::query::{Cond, Key, Op, Query};
use crate::router::names::key_text;
use crate::router::rule::{Dim, Pick, SlotHash, Strategy, TableRule};
use crate::slot::redis_cluster_slot;

/// Most intervals a range query over a time-split table may touch.
pub const MAX_TIME_TARGETS: usize = 100_000;

/// The shard for one key.
#[inline]
pub(crate) fn pick_key(rule: &TableRule, dim: &Dim, key: Key<'_>) -> Result<Pick, RouteError> {
    if !dim.directory.is_empty() {
        if let Some(s) = key_text(key, |t| t.and_then(|t| dim.directory.get(t).copied())) {
            return Ok(Pick::Shard(s));
        }
    }
    pick_strategy(rule, dim, key)
}

/// The shard the strategy gives a key, the directory aside.
#[inline]
pub(crate) fn pick_strategy(rule: &TableRule, dim: &Dim, key: Key<'_>) -> Result<Pick, RouteError> {
    let column = || dim.key.clone().unwrap_or_else(|| Arc::from(""));
    match &dim.strategy {
        Strategy::Fixed(s) => Ok(Pick::Shard(*s)),
        Strategy::Slots { owner, hash, .. } => {
            let slot = match hash {
                SlotHash::Stable => {
                    let n = owner.len() as u64;
                    let h = key.stable_hash();
                    // The same as `h % n`; a mask for the usual power-of-two counts.
                    (if n.is_power_of_two() {
                        h & (n - 1)
                    } else {
                        h % n
                    }) as usize
                }
                SlotHash::Redis => usize::from(key.with_bytes(redis_cluster_slot)),
            };
            Ok(Pick::Shard(owner.get(slot).copied().unwrap_or(0)))
        }
        Strategy::Modulo { shards } => {
            let n = shards.len() as u64;
            let i = match key {
                Key::Int(i) => i.rem_euclid(n as i64) as u64,
                other => other.stable_hash() % n,
            };
            Ok(Pick::Shard(shards.get(i as usize).copied().unwrap_or(0)))
        }
        Strategy::Ranges {
            starts,
            end,
            shards,
        } => {
            let Key::Int(k) = key else {
                return Err(RouteError::KeyType {
                    table: rule.name.clone(),
                    column: column(),
                    expected: "an integer (a range strategy)",
                });
            };
            let beyond = end.is_some_and(|e| k >= e);
            match starts.partition_point(|&s| s <= k).checked_sub(1) {
                Some(i) if !beyond => Ok(Pick::Shard(shards[i])),
                _ => Err(RouteError::NoRange {
                    table: rule.name.clone(),
                    column: column(),
                    key: k,
                }),
            }
        }
        Strategy::Time { interval, .. } => {
            let Key::Int(t) = key else {
                return Err(RouteError::KeyType {
                    table: rule.name.clone(),
                    column: column(),
                    expected: "an integer time in Unix seconds (a time strategy)",
                });
            };
            interval
                .index_of(t)
                .map(Pick::Interval)
                .ok_or_else(|| RouteError::TimeOutOfRange {
                    table: rule.name.clone(),
                    column: column(),
                    value: t,
                })
        }
    }
}

#[inline]
pub(crate) fn single_pick(
    rule: &TableRule,
    dim: &Dim,
    query: &Query<'_>,
) -> Result<Pick, RouteError> {
    match &dim.key {
        None => pick_strategy(rule, dim, Key::Int(0)),
        Some(col) => match query.get(col) {
            Some(Cond::Eq(k)) => pick_key(rule, dim, *k),
            _ => Err(RouteError::NotSingle {
                table: rule.name.clone(),
                column: col.clone(),
            }),
        },
    }
}

/// Every pick of a dimension under the query, sorted; `true` when it is the
/// dimension's whole set.
///
/// One time of a time-split table whose table is not in place at `now` (see
/// [`time_window`]): a write is refused, a read reaches no table (as a range
/// scan of that time does).
pub(crate) fn picks(
    rule: &TableRule,
    dim: &Dim,
    query: &Query<'_>,
    op: Op,
    now: i64,
) -> Result<(Vec<Pick>, bool), RouteError> {
    let Some(col) = &dim.key else {
        return Ok((vec![pick_strategy(rule, dim, Key::Int(0))?], true));
    };
    let all = || dim.all.iter().map(|&s| Pick::Shard(s)).collect::<Vec<_>>();
    match query.get(col) {
        Some(Cond::Eq(k)) => {
            let pick = pick_key(rule, dim, *k)?;
            if let (Pick::Interval(i), Some((first, last))) = (pick, time_window(dim, now)) {
                if first.is_some_and(|f| i < f) || i > last {
                    if op == Op::Read {
                        return Ok((Vec::new(), false));
                    }
                    let Strategy::Time { interval, .. } = dim.strategy else {
                        return Ok((Vec::new(), false));
                    };
                    let name = |i: i64| -> Box<str> {
                        interval
                            .label(i)
                            .map_or_else(|| Box::from(""), |l| format!("{}_{l}", rule.name).into())
                    };
                    return Err(RouteError::OutsideTimeWindow {
                        table: rule.name.clone(),
                        column: col.clone(),
                        value: match k {
                            Key::Int(t) => *t,
                            _ => 0,
                        },
                        oldest: first.map(name),
                        newest: name(last),
                    });
                }
            }
            Ok((vec![pick], false))
        }
        None => match &dim.strategy {
            Strategy::Time { .. } => Ok((
                time_picks(rule, dim, Bound::Unbounded, Bound::Unbounded, now)?,
                true,
            )),
            _ => Ok((all(), true)),
        },
        Some(Cond::Range(lo, hi)) if is_empty_range(*lo, *hi) => {
            // No key is in an empty or inverted range (`5..5`, `15..3`): no
            // targets, whatever the strategy.
            Ok((Vec::new(), false))
        }
        Some(Cond::Range(lo, hi)) => match &dim.strategy {
            Strategy::Ranges {
                starts,
                end,
                shards,
            } => {
                let (Some(lo), Some(hi)) = (lower(*lo), upper(*hi)) else {
                    return Ok((Vec::new(), false));
                };
                let mut out: Vec<Pick> = Vec::new();
                for (i, &s) in starts.iter().enumerate() {
                    let e = starts.get(i + 1).copied().or(*end);
                    // Range i is [s, e); the query is [lo, hi].
                    let below = e.is_some_and(|e| e <= lo);
                    if !below && s <= hi {
                        out.push(Pick::Shard(shards[i]));
                    }
                }
                // Directory keys are text: a range may hold any of them.
                out.extend(dim.directory.values().map(|&s| Pick::Shard(s)));
                out.sort();
                out.dedup();
                let whole = out.len() == dim.all.len();
                Ok((out, whole))
            }
            Strategy::Time { .. } => Ok((time_picks(rule, dim, *lo, *hi, now)?, false)),
            _ => Ok((all(), true)),
        },
    }
}

/// Whether no `i64` lies within the bounds (once made inclusive).
pub(crate) fn is_empty_range(lo: Bound<i64>, hi: Bound<i64>) -> bool {
    match (lower(lo), upper(hi)) {
        (Some(lo), Some(hi)) => lo > hi,
        _ => true,
    }
}

/// The intervals whose tables are in place at `now` for a time dimension:
/// from `retention - 1` back (`None`: no retention, no lower end) to `ahead`
/// forward; `None` for another strategy or a `now` outside years 1 to 9999.
pub(crate) fn time_window(dim: &Dim, now: i64) -> Option<(Option<i64>, i64)> {
    let Strategy::Time {
        interval,
        retention,
        ahead,
    } = dim.strategy
    else {
        return None;
    };
    let current = interval.index_of(now)?;
    Some((
        retention.map(|r| current - i64::from(r) + 1),
        current + i64::from(ahead),
    ))
}

pub(crate) fn lower(b: Bound<i64>) -> Option<i64> {
    match b {
        Bound::Included(x) => Some(x),
        Bound::Excluded(x) => x.checked_add(1),
        Bound::Unbounded => Some(i64::MIN),
    }
}

pub(crate) fn upper(b: Bound<i64>) -> Option<i64> {
    match b {
        Bound::Included(x) => Some(x),
        Bound::Excluded(x) => x.checked_sub(1),
        Bound::Unbounded => Some(i64::MAX),
    }
}

pub(crate) fn time_picks(
    rule: &TableRule,
    dim: &Dim,
    lo: Bound<i64>,
    hi: Bound<i64>,
    now: i64,
) -> Result<Vec<Pick>, RouteError> {
    let Strategy::Time {
        interval,
        retention,
        ahead,
    } = dim.strategy
    else {
        return Ok(Vec::new());
    };
    let column = dim.key.clone().unwrap_or_else(|| Arc::from(""));
    let (Some(lo), Some(hi)) = (lower(lo), upper(hi)) else {
        return Ok(Vec::new());
    };
    if lo > hi {
        return Ok(Vec::new());
    }
    // The window of tables that exist: retention back from now, `ahead` forward.
    let window = match (retention, interval.index_of(now)) {
        (Some(r), Some(c)) => Some((c - i64::from(r) + 1, c + i64::from(ahead))),
        _ => None,
    };
    let first = match interval.index_of(lo) {
        Some(i) => Some(i),
        None if lo == i64::MIN => None,
        None => {
            return Err(RouteError::TimeOutOfRange {
                table: rule.name.clone(),
                column,
                value: lo,
            })
        }
    };
    let last = match interval.index_of(hi) {
        Some(i) => Some(i),
        None if hi == i64::MAX => None,
        None => {
            return Err(RouteError::TimeOutOfRange {
                table: rule.name.clone(),
                column,
                value: hi,
            })
        }
    };
    let (first, last) = match (first, last, window) {
        (f, l, Some((ws, we))) => (f.unwrap_or(ws).max(ws), l.unwrap_or(we).min(we)),
        (Some(f), Some(l), None) => (f, l),
        _ => {
            return Err(RouteError::UnboundedTime {
                table: rule.name.clone(),
                column,
            })
        }
    };
    if first > last {
        return Ok(Vec::new());
    }
    if (last - first) as u64 >= MAX_TIME_TARGETS as u64 {
        return Err(RouteError::TooManyTargets {
            table: rule.name.clone(),
            count: (last - first) as u64 + 1,
        });
    }
    Ok((first..=last).map(Pick::Interval).collect())
}
