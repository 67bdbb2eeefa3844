//! The router: lookups of one row, routes of a statement, time tables.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ahash::AHashMap;
use parking_lot::Mutex;

use crate::error::RouteError;
use crate::hot::SpaceSaving;
use crate::query::{Cond, Op, Query};
use crate::router::names::{broadcast_read, physical_name, pick_shard, with_time_name};
use crate::router::pick::{picks, single_pick};
use crate::router::rule::{Dim, Pick, RuleKind, Strategy, TableRule};
use crate::router::stats::{Counters, RouterStats, ALL, ERRORS, MULTI, SINGLE};
use crate::router::target::{Route, Target};

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
