//! Resharding plans: what moves between two versions of the routing table.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use crate::error::PlanError;
use crate::query::Key;
use crate::router::{pick_strategy, Dim, Pick, Router, RuleKind, SlotHash, Strategy, TableRule};

/// Most residue classes a modulo-to-modulo plan lists (the lcm of the counts).
pub const MAX_PLAN_RESIDUES: u64 = 1 << 20;

/// Which dimension of a table a move is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    /// Rows change database.
    Database,
    /// Rows change physical table (within the database).
    Table,
}

/// A set of keys that moves together.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySet {
    /// Every key.
    All,
    /// Hash slots `first..=last` of `of` (keys whose slot is in the run).
    Slots {
        /// First slot of the run.
        first: u32,
        /// Last slot of the run (inclusive).
        last: u32,
        /// How many slots the table has.
        of: u32,
    },
    /// Keys `from <= key < to` (`None`: unbounded on that side).
    Range {
        /// Inclusive start.
        from: Option<i64>,
        /// Exclusive end.
        to: Option<i64>,
    },
    /// Keys whose residue modulo `modulus` is listed (for text keys, of their
    /// stable hash).
    Residues {
        /// The modulus (the lcm of the old and new shard counts).
        modulus: u64,
        /// The residues that move.
        residues: Vec<u64>,
    },
    /// One key of a directory.
    Key(Box<str>),
}

impl fmt::Display for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySet::All => f.write_str("all keys"),
            KeySet::Slots { first, last, of } if first == last => {
                write!(f, "slot {first} of {of}")
            }
            KeySet::Slots { first, last, of } => write!(f, "slots {first}..={last} of {of}"),
            KeySet::Range { from, to } => {
                match from {
                    Some(x) => write!(f, "keys {x}..")?,
                    None => f.write_str("keys ..")?,
                }
                match to {
                    Some(x) => write!(f, "{x}"),
                    None => Ok(()),
                }
            }
            KeySet::Residues { modulus, residues } => {
                write!(f, "{} residues mod {modulus}", residues.len())
            }
            KeySet::Key(k) => write!(f, "key {k:?}"),
        }
    }
}

/// Keys that move from one shard to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    /// Which dimension.
    pub dimension: Dimension,
    /// The keys.
    pub keys: KeySet,
    /// Where they are (a database, or a physical table).
    pub from: Arc<str>,
    /// Where they go.
    pub to: Arc<str>,
}

impl fmt::Display for Move {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} -> {}", self.keys, self.from, self.to)
    }
}

/// What moves in one logical table.
#[derive(Clone, Debug, PartialEq)]
pub struct TablePlan {
    /// The logical table.
    pub table: Arc<str>,
    /// The moves, database dimension first.
    pub moves: Vec<Move>,
    /// The fraction of keys that change database (slots, residues or the span
    /// of the configured ranges; directory keys aside). `None` when an
    /// open-ended key range moves (`keys 100..` on a range table whose last
    /// range had no end): its share depends on where the keys are, which the
    /// configuration does not say, so no number would be honest. The move
    /// itself is listed in [`moves`](Self::moves) as a [`KeySet::Range`] with
    /// a `None` end.
    pub database_fraction: Option<f64>,
    /// The fraction of keys that change table within their database; `None`
    /// as for [`database_fraction`](Self::database_fraction).
    pub table_fraction: Option<f64>,
}

impl TablePlan {
    /// The fraction of keys whose target changes: `1 - (1 - db) (1 - table)`
    /// (exact when one dimension does not change); `None` when either
    /// dimension moves an unbounded key range (see
    /// [`database_fraction`](Self::database_fraction)).
    ///
    /// ```
    /// use scalekit_shard::{plan, Engines, RouterConfig};
    /// let build = |epoch: u64, ranges: &str| RouterConfig::from_toml(&format!(r#"
    ///     epoch = {epoch}
    ///     databases = ["a", "b"]
    ///     [tables.t.databases]
    ///     key = "id"
    ///     ranges = [{ranges}]
    /// "#)).unwrap().build(&Engines::new()).unwrap();
    /// let old = build(1, r#"{ from = 0, shard = "a" }"#);
    /// let new = build(2, r#"{ from = 0, to = 100, shard = "a" }, { from = 100, shard = "b" }"#);
    /// let t = plan(&old, &new)?.table("t").unwrap().clone();
    /// assert_eq!(t.moves[0].to_string(), "keys 100..: a -> b");
    /// assert_eq!(t.fraction(), None); // not 0: an open-ended tail moves
    /// # Ok::<(), scalekit_shard::PlanError>(())
    /// ```
    pub fn fraction(&self) -> Option<f64> {
        Some(1.0 - (1.0 - self.database_fraction?) * (1.0 - self.table_fraction?))
    }

    /// Whether a move covers an unbounded key range, so the fractions are
    /// `None`.
    pub fn has_unbounded_moves(&self) -> bool {
        self.database_fraction.is_none() || self.table_fraction.is_none()
    }
}

/// What moves between two versions of the routing table.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The old epoch.
    pub from_epoch: u64,
    /// The new epoch.
    pub to_epoch: u64,
    /// Every logical table in both versions, in name order.
    pub tables: Vec<TablePlan>,
    /// Tables only in the new version (nothing to move).
    pub added: Vec<Arc<str>>,
    /// Tables only in the old version.
    pub removed: Vec<Arc<str>>,
}

impl Plan {
    /// The plan for one table.
    pub fn table(&self, name: &str) -> Option<&TablePlan> {
        self.tables.iter().find(|t| &*t.table == name)
    }

    /// Whether nothing moves.
    pub fn is_empty(&self) -> bool {
        self.tables.iter().all(|t| t.moves.is_empty())
    }
}

/// Lists exactly which slots, key ranges, residues and directory keys move from
/// `old` to `new`, and the fraction of keys that moves, table by table.
///
/// The new routing table's epoch must be greater. Hash tables compare slot by
/// slot (same slot count in both), range tables boundary by boundary, modulo
/// tables residue by residue; a fixed dimension compares with any strategy. A
/// strategy that changes kind otherwise (hash to ranges, or a different time
/// interval) cannot be listed exactly and is refused.
///
/// ```
/// use scalekit_ring::Ring;
/// use scalekit_shard::{plan, Engines, RouterConfig};
///
/// let engines = Engines::new()
///     .register("ring", |n| Ok(Box::new(Ring::with_nodes(n.iter().cloned())?)));
/// let build = |epoch: u64, dbs: &str| RouterConfig::from_toml(&format!(r#"
///     epoch = {epoch}
///     databases = [{dbs}]
///     [tables.orders.databases]
///     key = "user_id"
///     hash = [{dbs}]
///     engine = "ring"
/// "#)).unwrap().build(&engines).unwrap();
/// let old = build(1, r#""a", "b", "c""#);
/// let new = build(2, r#""a", "b", "c", "d""#);
/// let p = plan(&old, &new)?;
/// let orders = p.table("orders").unwrap();
/// // Adding a fourth shard moves about a quarter of the keys, all to "d".
/// let f = orders.fraction().unwrap(); // None only when an open-ended key range moves
/// assert!((f - 0.25).abs() < 0.05, "{f}");
/// assert!(orders.moves.iter().all(|m| &*m.to == "d"));
/// # Ok::<(), scalekit_shard::PlanError>(())
/// ```
pub fn plan(old: &Router, new: &Router) -> Result<Plan, PlanError> {
    if new.epoch <= old.epoch {
        return Err(PlanError::Epoch {
            old: old.epoch,
            new: new.epoch,
        });
    }
    let old_names: BTreeSet<&str> = old.tables().collect();
    let new_names: BTreeSet<&str> = new.tables().collect();
    let mut tables = Vec::new();
    for name in old_names.intersection(&new_names) {
        let (Ok(a), Ok(b)) = (old.rule(name), new.rule(name)) else {
            continue;
        };
        tables.push(plan_table(old, a, new, b)?);
    }
    Ok(Plan {
        from_epoch: old.epoch,
        to_epoch: new.epoch,
        tables,
        added: new_names
            .difference(&old_names)
            .map(|s| Arc::from(*s))
            .collect(),
        removed: old_names
            .difference(&new_names)
            .map(|s| Arc::from(*s))
            .collect(),
    })
}

/// A dimension seen as a partition of the key space, with shard names.
enum Part<'a> {
    Const(Arc<str>),
    Slots(&'a [u32], Vec<Arc<str>>, SlotHash),
    Residues(&'a [u32], Vec<Arc<str>>),
    Ranges(&'a [i64], Option<i64>, &'a [u32], Vec<Arc<str>>),
    Time(crate::Interval),
    Every(Vec<Arc<str>>),
}

fn part<'a>(router: &Router, rule: &'a TableRule, dim: Dimension) -> Part<'a> {
    let names: Vec<Arc<str>> = match dim {
        Dimension::Database => router.databases.clone(),
        Dimension::Table => match &rule.kind {
            RuleKind::Sharded { physical, .. } => physical.clone(),
            _ => vec![rule.name.clone()],
        },
    };
    let name = |i: u32| {
        names
            .get(i as usize)
            .cloned()
            .unwrap_or_else(|| rule.name.clone())
    };
    match (&rule.kind, dim) {
        (RuleKind::Single { database }, Dimension::Database) => Part::Const(name(*database)),
        (RuleKind::Broadcast { databases }, Dimension::Database) => {
            Part::Every(databases.iter().map(|&d| name(d)).collect())
        }
        (RuleKind::Single { .. } | RuleKind::Broadcast { .. }, Dimension::Table) => {
            Part::Const(rule.name.clone())
        }
        (RuleKind::Sharded { db, table, .. }, _) => {
            let d = if dim == Dimension::Database {
                db
            } else {
                table
            };
            match &d.strategy {
                Strategy::Fixed(i) => Part::Const(name(*i)),
                Strategy::Slots { owner, hash } => Part::Slots(owner, names, *hash),
                Strategy::Modulo { shards } => Part::Residues(shards, names),
                Strategy::Ranges {
                    starts,
                    end,
                    shards,
                } => Part::Ranges(starts, *end, shards, names),
                Strategy::Time { interval, .. } => Part::Time(*interval),
            }
        }
    }
}

fn dim_of(rule: &TableRule, dim: Dimension) -> Option<&Dim> {
    match &rule.kind {
        RuleKind::Sharded { db, table, .. } => Some(if dim == Dimension::Database {
            db
        } else {
            table
        }),
        _ => None,
    }
}

fn plan_table(
    old: &Router,
    a: &TableRule,
    new: &Router,
    b: &TableRule,
) -> Result<TablePlan, PlanError> {
    let mut moves = Vec::new();
    let mut fractions = [Some(0.0); 2];
    for (k, dim) in [Dimension::Database, Dimension::Table]
        .into_iter()
        .enumerate()
    {
        let pa = part(old, a, dim);
        let pb = part(new, b, dim);
        fractions[k] = compare(&a.name, dim, &pa, &pb, &mut moves)?;
        directory_moves(old, a, new, b, dim, &mut moves);
    }
    Ok(TablePlan {
        table: a.name.clone(),
        moves,
        database_fraction: fractions[0],
        table_fraction: fractions[1],
    })
}

fn incomparable(table: &str, reason: impl Into<String>) -> PlanError {
    PlanError::Incomparable {
        table: table.to_owned(),
        reason: reason.into(),
    }
}

/// Appends the moves between two partitions; returns the fraction that moves,
/// `None` when an unbounded key range moves.
///
/// Over 100 lines on purpose: one arm per pair of strategies that can be
/// compared exactly (slots, modulo, ranges, directories, time), each listing
/// its moves; the arms share the residue arithmetic set up first.
fn compare(
    table: &str,
    dimension: Dimension,
    a: &Part<'_>,
    b: &Part<'_>,
    out: &mut Vec<Move>,
) -> Result<Option<f64>, PlanError> {
    let mv = |keys: KeySet, from: &Arc<str>, to: &Arc<str>| Move {
        dimension,
        keys,
        from: from.clone(),
        to: to.clone(),
    };
    match (a, b) {
        (Part::Const(x), Part::Const(y)) => {
            if x != y {
                out.push(mv(KeySet::All, x, y));
                return Ok(Some(1.0));
            }
            Ok(Some(0.0))
        }
        (Part::Time(x), Part::Time(y)) if x == y => Ok(Some(0.0)),
        (Part::Time(x), Part::Time(y)) => Err(incomparable(
            table,
            format!("the time interval changes from {x} to {y}: rewrite the tables instead"),
        )),
        (Part::Every(x), Part::Every(y)) => {
            // New copies of a broadcast table are filled from an old copy.
            let Some(src) = x.first() else {
                return Ok(Some(0.0));
            };
            let mut n = 0;
            for d in y.iter().filter(|d| !x.contains(d)) {
                out.push(mv(KeySet::All, src, d));
                n += 1;
            }
            Ok(Some(if n > 0 { 1.0 } else { 0.0 }))
        }
        (Part::Slots(..), _) | (_, Part::Slots(..)) => {
            let owners = |p: &Part<'_>, n: usize| -> Option<Vec<Arc<str>>> {
                match p {
                    Part::Slots(o, names, _) => {
                        Some(o.iter().map(|&i| name_of(names, i)).collect())
                    }
                    Part::Const(c) => Some(vec![c.clone(); n]),
                    _ => None,
                }
            };
            let n = match (a, b) {
                (Part::Slots(_, _, x), Part::Slots(_, _, y)) if x != y => {
                    return Err(incomparable(
                        table,
                        "the slot hash changes (stable or redis): every slot number changes meaning",
                    ))
                }
                (Part::Slots(x, _, _), Part::Slots(y, _, _)) if x.len() != y.len() => {
                    return Err(incomparable(
                        table,
                        format!(
                            "the slot count changes from {} to {}: keep it, move slots instead",
                            x.len(),
                            y.len()
                        ),
                    ))
                }
                (Part::Slots(x, _, _), _) | (_, Part::Slots(x, _, _)) => x.len(),
                _ => 0,
            };
            let (Some(oa), Some(ob)) = (owners(a, n), owners(b, n)) else {
                return Err(incomparable(table, "hash slots against another strategy"));
            };
            let mut moved = 0usize;
            let mut s = 0usize;
            while s < n {
                if oa[s] == ob[s] {
                    s += 1;
                    continue;
                }
                let start = s;
                while s + 1 < n && oa[s + 1] == oa[start] && ob[s + 1] == ob[start] {
                    s += 1;
                }
                moved += s - start + 1;
                out.push(mv(
                    KeySet::Slots {
                        first: start as u32,
                        last: s as u32,
                        of: n as u32,
                    },
                    &oa[start],
                    &ob[start],
                ));
                s += 1;
            }
            Ok(Some(moved as f64 / n.max(1) as f64))
        }
        (Part::Residues(..), _) | (_, Part::Residues(..)) => {
            let count = |p: &Part<'_>| match p {
                Part::Residues(s, _) => Some(s.len() as u64),
                Part::Const(_) => Some(1),
                _ => None,
            };
            let (Some(n), Some(m)) = (count(a), count(b)) else {
                return Err(incomparable(table, "modulo against another strategy"));
            };
            let l = lcm(n.max(1), m.max(1));
            if l > MAX_PLAN_RESIDUES {
                return Err(incomparable(
                    table,
                    format!("{l} residue classes; choose shard counts with a smaller lcm"),
                ));
            }
            let owner = |p: &Part<'_>, r: u64| -> Arc<str> {
                match p {
                    Part::Residues(s, names) => name_of(names, s[(r % s.len() as u64) as usize]),
                    Part::Const(c) => c.clone(),
                    _ => Arc::from(""),
                }
            };
            let mut groups: BTreeMap<(Arc<str>, Arc<str>), Vec<u64>> = BTreeMap::new();
            for r in 0..l {
                let (x, y) = (owner(a, r), owner(b, r));
                if x != y {
                    groups.entry((x, y)).or_default().push(r);
                }
            }
            let mut moved = 0;
            for ((x, y), residues) in groups {
                moved += residues.len();
                out.push(mv(
                    KeySet::Residues {
                        modulus: l,
                        residues,
                    },
                    &x,
                    &y,
                ));
            }
            Ok(Some(moved as f64 / l as f64))
        }
        (Part::Ranges(..), _) | (_, Part::Ranges(..)) => {
            let bounds = |p: &Part<'_>, v: &mut Vec<i64>| match p {
                Part::Ranges(starts, end, _, _) => {
                    v.extend_from_slice(starts);
                    v.extend(end);
                    true
                }
                Part::Const(_) => true,
                _ => false,
            };
            let mut points = Vec::new();
            if !(bounds(a, &mut points) && bounds(b, &mut points)) {
                return Err(incomparable(table, "key ranges against another strategy"));
            }
            points.sort_unstable();
            points.dedup();
            let owner = |p: &Part<'_>, k: i64| -> Option<Arc<str>> {
                match p {
                    Part::Ranges(starts, end, shards, names) => {
                        if end.is_some_and(|e| k >= e) {
                            return None;
                        }
                        let i = starts.partition_point(|&s| s <= k).checked_sub(1)?;
                        Some(name_of(names, shards[i]))
                    }
                    Part::Const(c) => Some(c.clone()),
                    _ => None,
                }
            };
            // Elementary intervals: (-inf, p0), [p0, p1), ..., [pn, +inf).
            let mut cuts: Vec<(Option<i64>, Option<i64>)> = Vec::new();
            cuts.push((None, points.first().copied()));
            for w in points.windows(2) {
                cuts.push((Some(w[0]), Some(w[1])));
            }
            cuts.push((points.last().copied(), None));
            let (lo, hi) = (points.first().copied(), points.last().copied());
            let span = match (lo, hi) {
                (Some(l), Some(h)) if h > l => (h as i128 - l as i128) as f64,
                _ => 0.0,
            };
            let mut moved_len = 0f64;
            let mut unbounded = false;
            let mut last: Option<Move> = None;
            for (from, to) in cuts {
                let probe = match (from, to) {
                    (Some(f), _) => f,
                    (None, Some(t)) => t.saturating_sub(1),
                    (None, None) => 0,
                };
                if from.is_none() && to.is_none() && points.is_empty() {
                    // Two constants: handled above; nothing to cut.
                }
                if to.is_some_and(|t| t <= probe) {
                    continue;
                }
                let (x, y) = (owner(a, probe), owner(b, probe));
                let (Some(x), Some(y)) = (x, y) else {
                    continue;
                };
                if x == y {
                    if let Some(m) = last.take() {
                        out.push(m);
                    }
                    continue;
                }
                match (from, to) {
                    (Some(f), Some(t)) => moved_len += (t as i128 - f as i128) as f64,
                    _ => unbounded = true,
                }
                match &mut last {
                    Some(m) if m.from == x && m.to == y => {
                        if let KeySet::Range { to: end, .. } = &mut m.keys {
                            *end = to;
                        }
                    }
                    _ => {
                        if let Some(m) = last.take() {
                            out.push(m);
                        }
                        last = Some(mv(KeySet::Range { from, to }, &x, &y));
                    }
                }
            }
            if let Some(m) = last {
                out.push(m);
            }
            if unbounded {
                // An open-ended range moves: its share of the keys depends on
                // where the keys are, which no configuration says.
                return Ok(None);
            }
            Ok(Some(if span > 0.0 { moved_len / span } else { 0.0 }))
        }
        _ => Err(incomparable(table, "the strategy changes kind")),
    }
}

fn name_of(names: &[Arc<str>], i: u32) -> Arc<str> {
    names
        .get(i as usize)
        .cloned()
        .unwrap_or_else(|| Arc::from(""))
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: u64, b: u64) -> u64 {
    (a / gcd(a, b)).saturating_mul(b)
}

/// Directory keys whose owner changes (by directory or by strategy).
fn directory_moves(
    old: &Router,
    a: &TableRule,
    new: &Router,
    b: &TableRule,
    dimension: Dimension,
    out: &mut Vec<Move>,
) {
    let (da, db) = (dim_of(a, dimension), dim_of(b, dimension));
    let mut keys: BTreeSet<&str> = BTreeSet::new();
    for d in [da, db].into_iter().flatten() {
        keys.extend(d.directory.keys().map(|k| &**k));
    }
    let names = |r: &Router, rule: &TableRule| -> Vec<Arc<str>> {
        match dimension {
            Dimension::Database => r.databases.clone(),
            Dimension::Table => match &rule.kind {
                RuleKind::Sharded { physical, .. } => physical.clone(),
                _ => vec![rule.name.clone()],
            },
        }
    };
    let (na, nb) = (names(old, a), names(new, b));
    for k in keys {
        let key = match k.parse::<i64>() {
            Ok(i) => Key::Int(i),
            Err(_) => Key::Str(k),
        };
        let owner = |rule: &TableRule, d: Option<&Dim>, names: &[Arc<str>]| -> Option<Arc<str>> {
            let Some(d) = d else {
                // A table in one database: every key is there.
                return match (&rule.kind, dimension) {
                    (RuleKind::Single { database }, Dimension::Database) => {
                        Some(name_of(names, *database))
                    }
                    (RuleKind::Single { .. }, Dimension::Table) => Some(rule.name.clone()),
                    _ => None,
                };
            };
            let pick = match d.directory.get(k) {
                Some(&s) => Pick::Shard(s),
                None => pick_strategy(rule, d, key).ok()?,
            };
            match pick {
                Pick::Shard(s) => Some(name_of(names, s)),
                Pick::Interval(_) => None,
            }
        };
        if let (Some(x), Some(y)) = (owner(a, da, &na), owner(b, db, &nb)) {
            if x != y {
                out.push(Move {
                    dimension,
                    keys: KeySet::Key(Box::from(k)),
                    from: x,
                    to: y,
                });
            }
        }
    }
}
