//! The router: logical tables to physical `(database, table)` targets.

use std::fmt;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ahash::AHashMap;
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use crate::error::RouteError;
use crate::hot::{HotKey, SpaceSaving};
use crate::interval::Interval;
use crate::query::{decimal, Cond, Key, Op, Query};
use crate::slot::redis_cluster_slot;

/// Most intervals a range query over a time-split table may touch.
pub const MAX_TIME_TARGETS: usize = 100_000;

/// A physical place for rows: a database and a table in it.
///
/// ```
/// use scalekit_shard::Target;
/// let t = Target::new("orders_1", "orders_202611");
/// assert_eq!(t.to_string(), "orders_1.orders_202611");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// The database (a name from the configuration's `databases`).
    pub database: Arc<str>,
    /// The physical table in it.
    pub table: Arc<str>,
}

impl Target {
    /// A target.
    pub fn new(database: impl Into<Arc<str>>, table: impl Into<Arc<str>>) -> Self {
        Self {
            database: database.into(),
            table: table.into(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.database, self.table)
    }
}

/// Where a statement goes.
///
/// `targets` must all be asked (a read merges their answers; a write applies to
/// each). `mirrors` are extra writes during a migration's dual-write phases:
/// apply them too, or roll the migration back.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Route {
    /// The targets, sorted, without duplicates.
    pub targets: Vec<Target>,
    /// Writes that must also be applied (dual write during a migration).
    pub mirrors: Vec<Target>,
}

impl Route {
    /// The single target, when there is exactly one.
    ///
    /// ```
    /// use scalekit_shard::{Route, Target};
    /// let one = Route { targets: vec![Target::new("a", "t")], mirrors: vec![] };
    /// assert_eq!(one.single(), Some(&Target::new("a", "t")));
    /// assert_eq!(Route::default().single(), None);
    /// ```
    pub fn single(&self) -> Option<&Target> {
        match self.targets.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

/// A node handed to a placement engine: a shard's name and its position in the
/// configured list. Engines hash nodes by name only, so placement does not
/// change when the list is reordered.
///
/// ```
/// use scalekit_shard::Engines;
/// // An engine of your own sees the nodes in configured order.
/// let engines = Engines::new().register("first", |nodes| {
///     assert_eq!(nodes[0].index(), 0);
///     Ok(Box::new(scalekit_ring::Jump::with_nodes(nodes.iter().cloned())?))
/// });
/// # let _ = engines;
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ShardNode {
    pub(crate) name: Arc<str>,
    pub(crate) index: u32,
}

impl ShardNode {
    /// The shard's name (a database, or a table suffix).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its position in the configured list.
    pub fn index(&self) -> u32 {
        self.index
    }
}

impl scalekit_core::StableHash for ShardNode {
    fn stable_hash_into(&self, state: &mut scalekit_core::StableHasher) {
        state.write(self.name.as_bytes());
    }
}

/// How a hash strategy turns a key into a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotHash {
    /// `stable_hash(key) mod slots`.
    Stable,
    /// Redis Cluster's CRC16 slot (16384 slots).
    Redis,
}

#[derive(Clone, Debug)]
pub(crate) enum Strategy {
    /// Always this shard (a table dimension with no split).
    Fixed(u32),
    /// Key -> slot -> shard, the slot table filled from a placement engine.
    Slots { owner: Vec<u32>, hash: SlotHash },
    /// `key mod n` for integers, `stable_hash mod n` for text.
    Modulo { shards: Vec<u32> },
    /// Contiguous half-open ranges: `starts[i] <= key < starts[i+1]` (or `< end`).
    Ranges {
        starts: Vec<i64>,
        end: Option<i64>,
        shards: Vec<u32>,
    },
    /// One table per interval.
    Time {
        interval: Interval,
        retention: Option<u32>,
        ahead: u32,
    },
}

/// One dimension of a sharded table: which database, or which table.
#[derive(Clone, Debug)]
pub(crate) struct Dim {
    pub(crate) key: Option<Arc<str>>,
    /// Every shard the dimension can return, sorted (not used by `Time`).
    pub(crate) all: Vec<u32>,
    pub(crate) directory: AHashMap<Box<str>, u32>,
    pub(crate) strategy: Strategy,
}

/// What a dimension resolved to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Pick {
    Shard(u32),
    Interval(i64),
}

#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // one a table, built once
pub(crate) enum RuleKind {
    /// A table that lives in one database (domain split).
    Single { database: u32 },
    /// A reference table copied to every listed database.
    Broadcast { databases: Vec<u32> },
    /// Split by a database dimension and a table dimension.
    Sharded {
        db: Dim,
        table: Dim,
        /// Physical names by table-dimension shard (for non-time dimensions).
        physical: Vec<Arc<str>>,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct TableRule {
    pub(crate) name: Arc<str>,
    /// The table this one is bound to (sharded alike), if any.
    pub(crate) bound_to: Option<Arc<str>>,
    pub(crate) kind: RuleKind,
}

const STRIPES: usize = 32;
const SINGLE: usize = 0;
const MULTI: usize = 1;
const ALL: usize = 2;
const ERRORS: usize = 3;

/// Counters of the router, read with [`Router::stats`]: one cache line of four
/// counters per thread stripe, added with a plain load and store (no locked
/// instruction on the routing path, no line shared between routing threads).
/// Exact while no two running threads share a stripe (up to 32); beyond, two
/// threads counting in the same instant can lose one count.
#[derive(Debug)]
struct Counters {
    stripes: Box<[CachePadded<[AtomicU64; 4]>]>,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES)
                .map(|_| CachePadded::new(Default::default()))
                .collect(),
        }
    }
}

fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.try_with(|s| *s).unwrap_or(0)
}

impl Counters {
    #[inline]
    fn add(&self, which: usize) {
        let cell = &self.stripes[stripe()][which];
        cell.store(cell.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    fn sum(&self, which: usize) -> u64 {
        self.stripes
            .iter()
            .map(|s| s[which].load(Ordering::Relaxed))
            .sum()
    }
}

/// A snapshot of the router's counters and hot keys.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouterStats {
    /// Routes that gave one target.
    pub single: u64,
    /// Routes that gave several targets but not every shard.
    pub multi: u64,
    /// Routes that had no key and went to every shard (scatter).
    pub all: u64,
    /// Routes that failed.
    pub errors: u64,
    /// The most routed keys, highest first (empty unless hot-key tracking is on).
    pub hot_keys: Vec<HotKey>,
}

/// Routes logical tables to physical targets. Build it from a configuration
/// ([`RouterConfig`](crate::RouterConfig)); lookups take `&self` and are safe to
/// share between threads.
///
/// ```
/// use scalekit_shard::{Engines, Op, Query, RouterConfig, Target};
///
/// let router = RouterConfig::from_toml(r#"
///     databases = ["users", "orders_0", "orders_1"]
///     [tables.users]
///     database = "users"
///     [tables.orders.databases]
///     key = "user_id"
///     modulo = ["orders_0", "orders_1"]
/// "#)?.build(&Engines::new())?;
///
/// assert_eq!(router.locate("orders", &Query::key("user_id", 7))?, Target::new("orders_1", "orders"));
/// assert_eq!(router.route("orders", &Query::all(), Op::Read)?.targets.len(), 2);
/// assert_eq!(router.locate("users", &Query::all())?, Target::new("users", "users"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Router {
    pub(crate) epoch: u64,
    pub(crate) databases: Vec<Arc<str>>,
    pub(crate) index: AHashMap<Box<str>, usize>,
    pub(crate) rules: Vec<TableRule>,
    counters: Counters,
    hot: Option<Mutex<SpaceSaving>>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("epoch", &self.epoch)
            .field("databases", &self.databases)
            .field(
                "tables",
                &self.rules.iter().map(|r| &r.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn now_secs() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

impl Router {
    pub(crate) fn new(
        epoch: u64,
        databases: Vec<Arc<str>>,
        rules: Vec<TableRule>,
        hot_keys: usize,
    ) -> Self {
        let index = rules
            .iter()
            .enumerate()
            .map(|(i, r)| (Box::from(&*r.name), i))
            .collect();
        Self {
            epoch,
            databases,
            index,
            rules,
            counters: Counters::default(),
            hot: (hot_keys > 0).then(|| Mutex::new(SpaceSaving::new(hot_keys))),
        }
    }

    /// The routing table's version (`epoch` in the configuration).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The databases, in configured order.
    pub fn databases(&self) -> impl Iterator<Item = &str> + '_ {
        self.databases.iter().map(|d| &**d)
    }

    /// The logical tables, in configured (alphabetical) order.
    pub fn tables(&self) -> impl Iterator<Item = &str> + '_ {
        self.rules.iter().map(|r| &*r.name)
    }

    /// The tables sharded alike with `table` (its binding group, itself included),
    /// or `None` for an unknown table.
    ///
    /// ```
    /// use scalekit_shard::{Engines, RouterConfig};
    /// let router = RouterConfig::from_toml(r#"
    ///     databases = ["a", "b"]
    ///     [tables.orders.databases]
    ///     key = "user_id"
    ///     modulo = ["a", "b"]
    ///     [tables.order_items]
    ///     bind = "orders"
    /// "#)?.build(&Engines::new())?;
    /// assert_eq!(router.binding_group("order_items").unwrap(), ["order_items", "orders"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn binding_group(&self, table: &str) -> Option<Vec<&str>> {
        let rule = self.rule(table).ok()?;
        let root = rule.bound_to.as_deref().unwrap_or(&rule.name);
        Some(
            self.rules
                .iter()
                .filter(|r| &*r.name == root || r.bound_to.as_deref() == Some(root))
                .map(|r| &*r.name)
                .collect(),
        )
    }

    /// Whether `table` is a broadcast table.
    pub fn is_broadcast(&self, table: &str) -> bool {
        matches!(
            self.rule(table).map(|r| &r.kind),
            Ok(RuleKind::Broadcast { .. })
        )
    }

    pub(crate) fn rule(&self, table: &str) -> Result<&TableRule, RouteError> {
        match self.index.get(table) {
            Some(&i) => Ok(&self.rules[i]),
            None => Err(RouteError::UnknownTable {
                table: Arc::from(table),
            }),
        }
    }

    /// The one target of a statement that names its shard keys (a read; for a
    /// broadcast table, the copy a read goes to). Errs with
    /// [`RouteError::NotSingle`] when the query reaches several targets.
    ///
    /// This is the hot path: no allocation for hash, modulo and range tables
    /// (a time-split table names its table, which allocates). It reads no
    /// clock, so it names the table of any time, in place or not; route writes
    /// through [`route_at`](Self::route_at), which refuses a time outside the
    /// retention and `ahead` window ([`RouteError::OutsideTimeWindow`]).
    #[inline]
    pub fn locate(&self, table: &str, query: &Query<'_>) -> Result<Target, RouteError> {
        let result = self.locate_inner(table, query);
        self.counters
            .add(if result.is_ok() { SINGLE } else { ERRORS });
        result
    }

    fn locate_inner(&self, table: &str, query: &Query<'_>) -> Result<Target, RouteError> {
        let rule = self.rule(table)?;
        match &rule.kind {
            RuleKind::Single { database } => Ok(Target {
                database: self.databases[*database as usize].clone(),
                table: rule.name.clone(),
            }),
            RuleKind::Broadcast { databases } => {
                let db = broadcast_read(databases, rule, query);
                Ok(Target {
                    database: self.databases[db as usize].clone(),
                    table: rule.name.clone(),
                })
            }
            RuleKind::Sharded {
                db,
                table: tdim,
                physical,
            } => {
                let d = single_pick(rule, db, query)?;
                let t = single_pick(rule, tdim, query)?;
                self.record_hot(db, tdim, query);
                Ok(Target {
                    database: self.databases[pick_shard(d) as usize].clone(),
                    table: physical_name(rule, tdim, physical, t)?,
                })
            }
        }
    }

    /// [`locate`](Self::locate) without building a [`Target`]: calls `f` with the
    /// database and physical table names, borrowed (no reference counting; a
    /// time table's name is built on the stack), and returns what it returns.
    ///
    /// ```
    /// use scalekit_shard::{Engines, Query, RouterConfig};
    /// let router = RouterConfig::from_toml(r#"
    ///     databases = ["a", "b"]
    ///     [tables.orders.databases]
    ///     key = "user_id"
    ///     modulo = ["a", "b"]
    ///     [tables.orders.tables]
    ///     key = "created_at"
    ///     time = "month"
    /// "#)?.build(&Engines::new())?;
    /// let q = Query::key("user_id", 3).and_key("created_at", 1_795_482_000);
    /// let sql = router.locate_with("orders", &q, |db, table| {
    ///     format!("/* {db} */ SELECT * FROM {table} WHERE user_id = $1")
    /// })?;
    /// assert_eq!(sql, "/* b */ SELECT * FROM orders_202611 WHERE user_id = $1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn locate_with<R>(
        &self,
        table: &str,
        query: &Query<'_>,
        f: impl FnOnce(&str, &str) -> R,
    ) -> Result<R, RouteError> {
        let result = self.locate_with_inner(table, query, f);
        self.counters
            .add(if result.is_ok() { SINGLE } else { ERRORS });
        result
    }

    fn locate_with_inner<R>(
        &self,
        table: &str,
        query: &Query<'_>,
        f: impl FnOnce(&str, &str) -> R,
    ) -> Result<R, RouteError> {
        let rule = self.rule(table)?;
        let db_name = |i: u32| self.databases.get(i as usize).map_or("", |d| &**d);
        match &rule.kind {
            RuleKind::Single { database } => Ok(f(db_name(*database), &rule.name)),
            RuleKind::Broadcast { databases } => {
                let db = broadcast_read(databases, rule, query);
                Ok(f(db_name(db), &rule.name))
            }
            RuleKind::Sharded {
                db,
                table: tdim,
                physical,
            } => {
                let d = single_pick(rule, db, query)?;
                let t = single_pick(rule, tdim, query)?;
                self.record_hot(db, tdim, query);
                let database = db_name(pick_shard(d));
                match (t, &tdim.strategy) {
                    (Pick::Interval(i), Strategy::Time { interval, .. }) => {
                        with_time_name(&rule.name, *interval, i, |name| f(database, name))
                            .ok_or_else(|| RouteError::TimeOutOfRange {
                                table: rule.name.clone(),
                                column: tdim.key.clone().unwrap_or_else(|| Arc::from("")),
                                value: i,
                            })
                    }
                    (Pick::Shard(s), _) => Ok(f(
                        database,
                        physical.get(s as usize).map_or(&*rule.name, |p| &**p),
                    )),
                    (Pick::Interval(_), _) => Ok(f(database, &rule.name)),
                }
            }
        }
    }

    /// Every target of a statement: one for a key, several for a key range, all
    /// for no key. Broadcast tables: a read goes to one copy, a write to all.
    ///
    /// ```
    /// use scalekit_shard::{Engines, Op, Query, RouterConfig};
    /// let router = RouterConfig::from_toml(r#"
    ///     databases = ["a", "b"]
    ///     [tables.currencies]
    ///     broadcast = true
    /// "#)?.build(&Engines::new())?;
    /// assert_eq!(router.route("currencies", &Query::all(), Op::Read)?.targets.len(), 1);
    /// assert_eq!(router.route("currencies", &Query::all(), Op::Write)?.targets.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn route(&self, table: &str, query: &Query<'_>, op: Op) -> Result<Route, RouteError> {
        self.route_at(table, query, op, now_secs())
    }

    /// [`route`](Self::route) with "now" given, in Unix seconds: a range scan of a
    /// time-split table with an open end stops at the intervals kept (retention)
    /// and made ahead, counted from now. One time outside those intervals
    /// reaches no table on a read, and is refused on a write
    /// ([`RouteError::OutsideTimeWindow`]): its table is gone or not yet made.
    ///
    /// ```
    /// use scalekit_shard::{Engines, Op, Query, RouterConfig};
    /// let router = RouterConfig::from_toml(r#"
    ///     databases = ["a"]
    ///     [tables.log]
    ///     database = "a"
    ///     [tables.log.tables]
    ///     key = "at"
    ///     time = "day"
    ///     retention = 7
    /// "#)?.build(&Engines::new())?;
    /// let now = 1_795_482_000; // 2026-11-24
    /// // The last three days: three tables.
    /// let r = router.route_at("log", &Query::range("at", now - 2 * 86_400..=now), Op::Read, now)?;
    /// assert_eq!(r.targets.len(), 3);
    /// // Everything kept: seven.
    /// assert_eq!(router.route_at("log", &Query::all(), Op::Read, now)?.targets.len(), 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn route_at(
        &self,
        table: &str,
        query: &Query<'_>,
        op: Op,
        now: i64,
    ) -> Result<Route, RouteError> {
        let result = self.route_inner(table, query, op, now);
        self.counters.add(match &result {
            Ok((_, Scope::One)) => SINGLE,
            Ok((_, Scope::Some)) => MULTI,
            Ok((_, Scope::All)) => ALL,
            Err(_) => ERRORS,
        });
        result.map(|(r, _)| r)
    }

    fn route_inner(
        &self,
        table: &str,
        query: &Query<'_>,
        op: Op,
        now: i64,
    ) -> Result<(Route, Scope), RouteError> {
        let rule = self.rule(table)?;
        let target = |db: u32, t: Arc<str>| Target {
            database: self.databases[db as usize].clone(),
            table: t,
        };
        let (mut targets, scope) = match &rule.kind {
            RuleKind::Single { database } => {
                (vec![target(*database, rule.name.clone())], Scope::One)
            }
            RuleKind::Broadcast { databases } => match op {
                Op::Read => {
                    let db = broadcast_read(databases, rule, query);
                    (vec![target(db, rule.name.clone())], Scope::One)
                }
                Op::Write => (
                    databases
                        .iter()
                        .map(|&d| target(d, rule.name.clone()))
                        .collect(),
                    Scope::All,
                ),
            },
            RuleKind::Sharded {
                db,
                table: tdim,
                physical,
            } => {
                let (dbs, db_all) = picks(rule, db, query, op, now)?;
                let (tables, t_all) = picks(rule, tdim, query, op, now)?;
                self.record_hot(db, tdim, query);
                let mut names = Vec::with_capacity(tables.len());
                for &t in &tables {
                    names.push(physical_name(rule, tdim, physical, t)?);
                }
                let mut out = Vec::with_capacity(dbs.len() * names.len());
                for &d in &dbs {
                    for n in &names {
                        out.push(target(pick_shard(d), n.clone()));
                    }
                }
                let scope = if out.len() == 1 {
                    Scope::One
                } else if db_all && t_all {
                    Scope::All
                } else {
                    Scope::Some
                };
                (out, scope)
            }
        };
        targets.sort();
        targets.dedup();
        Ok((
            Route {
                targets,
                mirrors: Vec::new(),
            },
            scope,
        ))
    }

    /// The tables of a time-split table to have in place at `now` (Unix seconds):
    /// the current interval's and the next `ahead` ones, in every database, and
    /// the first label that is kept (tables with an older label have passed the
    /// retention and may be dropped).
    ///
    /// ```
    /// use scalekit_shard::{Engines, RouterConfig};
    /// let router = RouterConfig::from_toml(r#"
    ///     databases = ["a"]
    ///     [tables.orders]
    ///     database = "a"
    ///     [tables.orders.tables]
    ///     key = "created_at"
    ///     time = "month"
    ///     retention = 12
    ///     ahead = 2
    /// "#)?.build(&Engines::new())?;
    /// let m = router.time_tables("orders", 1_795_482_000)?; // 2026-11-24
    /// let names: Vec<_> = m.create.iter().map(|t| t.table.to_string()).collect();
    /// assert_eq!(names, ["orders_202611", "orders_202612", "orders_202701"]);
    /// assert_eq!(m.oldest_kept.as_deref(), Some("orders_202512"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn time_tables(&self, table: &str, now: i64) -> Result<TimeTables, RouteError> {
        let rule = self.rule(table)?;
        let RuleKind::Sharded {
            db, table: tdim, ..
        } = &rule.kind
        else {
            return Err(RouteError::NotTimeSplit {
                table: rule.name.clone(),
            });
        };
        let Strategy::Time {
            interval,
            retention,
            ahead,
        } = tdim.strategy
        else {
            return Err(RouteError::NotTimeSplit {
                table: rule.name.clone(),
            });
        };
        let column = tdim.key.clone().unwrap_or_else(|| Arc::from(""));
        let out_of_range = || RouteError::TimeOutOfRange {
            table: rule.name.clone(),
            column: column.clone(),
            value: now,
        };
        let current = interval.index_of(now).ok_or_else(out_of_range)?;
        let mut create = Vec::new();
        for i in current..=current.saturating_add(i64::from(ahead)) {
            let label = interval.label(i).ok_or_else(out_of_range)?;
            let name: Arc<str> = Arc::from(format!("{}_{label}", rule.name));
            for &d in &db.all {
                create.push(Target {
                    database: self.databases[d as usize].clone(),
                    table: name.clone(),
                });
            }
        }
        let oldest_kept = match retention {
            Some(r) => interval
                .label(current - i64::from(r) + 1)
                .map(|l| format!("{}_{l}", rule.name)),
            None => None,
        };
        Ok(TimeTables {
            create,
            oldest_kept,
        })
    }

    /// The counters and the hot keys.
    ///
    /// ```
    /// use scalekit_shard::{Engines, OwnedKey, Query, RouterConfig};
    /// let router = RouterConfig::from_toml(r#"
    ///     databases = ["a", "b"]
    ///     hot_keys = 8
    ///     [tables.t.databases]
    ///     key = "id"
    ///     modulo = ["a", "b"]
    /// "#)?.build(&Engines::new())?;
    /// for id in [7, 7, 7, 3] {
    ///     router.locate("t", &Query::key("id", id))?;
    /// }
    /// let stats = router.stats();
    /// assert_eq!(stats.single, 4);
    /// assert_eq!((stats.hot_keys[0].key.clone(), stats.hot_keys[0].count), (OwnedKey::Int(7), 3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> RouterStats {
        RouterStats {
            single: self.counters.sum(SINGLE),
            multi: self.counters.sum(MULTI),
            all: self.counters.sum(ALL),
            errors: self.counters.sum(ERRORS),
            hot_keys: self
                .hot
                .as_ref()
                .map(|h| h.lock().top(usize::MAX))
                .unwrap_or_default(),
        }
    }

    fn record_hot(&self, db: &Dim, table: &Dim, query: &Query<'_>) {
        let Some(hot) = &self.hot else { return };
        let key = [db, table]
            .into_iter()
            .find_map(|d| match d.key.as_deref() {
                Some(col) => match query.get(col) {
                    Some(Cond::Eq(k)) => Some(*k),
                    _ => None,
                },
                None => None,
            });
        if let Some(k) = key {
            hot.lock().offer(k.to_owned_key());
        }
    }
}

/// What [`Router::time_tables`] says to create and what may go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeTables {
    /// The current interval's table and the next `ahead` ones, in every database.
    pub create: Vec<Target>,
    /// The oldest physical table name within the retention; older ones may be
    /// dropped. `None` without a retention.
    pub oldest_kept: Option<String>,
}

#[derive(Clone, Copy)]
enum Scope {
    One,
    Some,
    All,
}

fn pick_shard(p: Pick) -> u32 {
    match p {
        Pick::Shard(s) => s,
        // A database dimension never splits by time (the loader refuses it).
        Pick::Interval(_) => 0,
    }
}

fn broadcast_read(databases: &[u32], rule: &TableRule, query: &Query<'_>) -> u32 {
    // Spread reads over the copies by the key when there is one.
    let _ = rule;
    let n = databases.len().max(1) as u64;
    let i = match query.get_first_key() {
        Some(k) => (k.stable_hash() % n) as usize,
        None => 0,
    };
    databases.get(i).copied().unwrap_or(0)
}

impl Query<'_> {
    fn get_first_key(&self) -> Option<Key<'_>> {
        match self.first_cond() {
            Some(Cond::Eq(k)) => Some(*k),
            _ => None,
        }
    }
}

fn physical_name(
    rule: &TableRule,
    tdim: &Dim,
    physical: &[Arc<str>],
    pick: Pick,
) -> Result<Arc<str>, RouteError> {
    match (pick, &tdim.strategy) {
        (Pick::Interval(i), Strategy::Time { interval, .. }) => {
            match time_name(&rule.name, *interval, i) {
                Some(name) => Ok(name),
                None => Err(RouteError::TimeOutOfRange {
                    table: rule.name.clone(),
                    column: tdim.key.clone().unwrap_or_else(|| Arc::from("")),
                    value: i,
                }),
            }
        }
        (Pick::Shard(s), _) => Ok(physical
            .get(s as usize)
            .cloned()
            .unwrap_or_else(|| rule.name.clone())),
        (Pick::Interval(_), _) => Ok(rule.name.clone()),
    }
}

/// `{logical}_{label}`, built on the stack and copied once into the `Arc`.
fn time_name(logical: &str, interval: Interval, index: i64) -> Option<Arc<str>> {
    with_time_name(logical, interval, index, |s: &str| Arc::from(s))
}

/// Calls `f` with `{logical}_{label}`, built on the stack when it fits.
fn with_time_name<R>(
    logical: &str,
    interval: Interval,
    index: i64,
    f: impl FnOnce(&str) -> R,
) -> Option<R> {
    struct Buf {
        bytes: [u8; 96],
        len: usize,
    }
    impl fmt::Write for Buf {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let end = self.len + s.len();
            let dst = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
            dst.copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }
    let mut buf = Buf {
        bytes: [0; 96],
        len: 0,
    };
    let fits = fmt::Write::write_str(&mut buf, logical).is_ok()
        && fmt::Write::write_str(&mut buf, "_").is_ok()
        && interval.write_label(index, &mut buf).is_some();
    if fits {
        if let Ok(s) = std::str::from_utf8(&buf.bytes[..buf.len]) {
            return Some(f(s));
        }
    }
    // A long logical name: the slow way.
    let label = interval.label(index)?;
    Some(f(&format!("{logical}_{label}")))
}

fn key_text<R>(key: Key<'_>, f: impl FnOnce(Option<&str>) -> R) -> R {
    match key {
        Key::Int(i) => {
            let mut buf = [0u8; 20];
            let n = decimal(i, &mut buf);
            f(std::str::from_utf8(&buf[..n]).ok())
        }
        Key::Str(s) => f(Some(s)),
        Key::Bytes(b) => f(std::str::from_utf8(b).ok()),
    }
}

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
fn single_pick(rule: &TableRule, dim: &Dim, query: &Query<'_>) -> Result<Pick, RouteError> {
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
fn picks(
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
fn is_empty_range(lo: Bound<i64>, hi: Bound<i64>) -> bool {
    match (lower(lo), upper(hi)) {
        (Some(lo), Some(hi)) => lo > hi,
        _ => true,
    }
}

/// The intervals whose tables are in place at `now` for a time dimension:
/// from `retention - 1` back (`None`: no retention, no lower end) to `ahead`
/// forward; `None` for another strategy or a `now` outside years 1 to 9999.
fn time_window(dim: &Dim, now: i64) -> Option<(Option<i64>, i64)> {
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

fn lower(b: Bound<i64>) -> Option<i64> {
    match b {
        Bound::Included(x) => Some(x),
        Bound::Excluded(x) => x.checked_add(1),
        Bound::Unbounded => Some(i64::MIN),
    }
}

fn upper(b: Bound<i64>) -> Option<i64> {
    match b {
        Bound::Included(x) => Some(x),
        Bound::Excluded(x) => x.checked_sub(1),
        Bound::Unbounded => Some(i64::MAX),
    }
}

fn time_picks(
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
