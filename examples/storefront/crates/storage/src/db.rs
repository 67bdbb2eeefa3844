//! [`Db`]: one PostgreSQL database as the store sees it, from stage 5 on: where its
//! writes go and where its reads may go. Without replicas both are the primary.
//!
//! With replicas (stage 5 on: the `[replicas]` servers of the database's primary),
//! a [`ReplicaSet`] of scalekit-replica chooses among the
//! primary and the replicas for each read: power of two choices over peak-EWMA
//! latency, among the replicas that are up, within the lag limit and, for a read
//! that must see this session's writes, have replayed the session's last write
//! position; else the primary. A task reads every server's role, replay position
//! and lag ([`pg::PgCheck`]) every `check_interval_ms`.
//!
//! The session's position comes from the request context ([`super::context`]):
//! [`Db::wrote`] puts the primary's WAL position there after a commit, the app's
//! middleware carries it to the next request in the `sk_wal` cookie (one position:
//! with a cluster per database, the highest of the session's writes in any of
//! them). A cookie is client input: a position beyond the primary's is taken as
//! the primary's current one (asked; or, when it does not answer, a position more
//! than [`FORGED_MARGIN`] beyond its last known one is taken as that), so a
//! forged cookie can only send its own client's reads to the primary for a
//! moment (as a real write would), never pin them there.
//!
//! Kept in one file (a little over 800 lines, half of it tests): the reader
//! choice, the read-your-writes position and their tests read as one piece.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use scalekit_replica::{pg, Member, Outcome, Position, ReplicaSet, Role, Selected};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use super::{context, StoreError, StoreResult};
use crate::config::ReplicasConfig;
use crate::split as counters;

/// How far (in bytes of WAL) a session's position may be beyond the primary's
/// last known position before it is taken for a forged one: 1 GiB, far more WAL
/// than a primary writes between two health checks.
pub const FORGED_MARGIN: u64 = 1 << 30;

/// How long a session read waits for the primary to say where its WAL is, when
/// the session's position is beyond what this process knows (see [`Db::reader`]).
pub const PRIMARY_ASK_TIMEOUT: Duration = Duration::from_millis(100);

/// How long a session read waits for a replica to say how far it has replayed
/// (see [`Db::reader`]).
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(20);

/// One PostgreSQL database: its primary, and (stage 5 on) the replicas reads may
/// use. Stores of stages 5 to 7 send every statement through a `Db`, so that read
/// splitting applies to each of their databases alike.
#[derive(Clone, Debug)]
pub struct Db {
    primary: PgPool,
    replicas: Option<Arc<Replicas>>,
}

/// The replicas of one database and what the process knows of them.
pub(crate) struct Replicas {
    /// The database's name (for the ops page).
    database: String,
    set: ReplicaSet<PgPool>,
    /// Reads sent to each endpoint, by name (membership is fixed).
    reads: Vec<(Arc<str>, AtomicU64)>,
    /// The replicas' pools, and whether each took reads at the last check (only
    /// those are asked for their position).
    replica_pools: Vec<(Arc<str>, PgPool, AtomicBool)>,
    /// The highest position a replica that takes reads has replayed, as far as
    /// this process knows.
    replayed: AtomicU64,
    /// The highest WAL position of the primary this process has seen (health
    /// checks and its own writes); 0 before the first.
    primary_known: AtomicU64,
    /// The highest position this process wrote: reads outside any request (seeding,
    /// tools) must see it.
    last_written: AtomicU64,
    checker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicas")
            .field("database", &self.database)
            .field("endpoints", &self.set.endpoints())
            .finish_non_exhaustive()
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        if let Some(task) = self.checker.lock().take() {
            task.abort();
        }
    }
}

/// Every `Db` with replicas in this process, for the ops page.
static REGISTRY: Mutex<Vec<Weak<Replicas>>> = Mutex::new(Vec::new());

/// Which reads a reader serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Freshness {
    /// Must see this session's writes.
    Session,
    /// Any replica within the lag limit will do (the catalog).
    Any,
}

/// A session position, bounded: more than [`FORGED_MARGIN`] beyond the primary's
/// known position (`known`, 0 if unknown) it is taken as `known`.
pub fn bound_position(token: Position, known: Position) -> Position {
    if known.get() != 0 && token.get() > known.get().saturating_add(FORGED_MARGIN) {
        known
    } else {
        token
    }
}

fn pg_error(e: pg::PgError) -> StoreError {
    match e {
        pg::PgError::Query(e) => StoreError::Database(e),
        other => StoreError::Database(sqlx::Error::Protocol(other.to_string())),
    }
}

/// `host:port` of connection options, to name an endpoint.
fn server_name(options: &PgConnectOptions) -> String {
    format!("{}:{}", options.get_host(), options.get_port())
}

/// The cluster's system identifier (`pg_control_system()`), the same on a
/// primary and on every replica made from it; `None` when it cannot be read
/// within `timeout` (a server that is down, a role not allowed to read it).
async fn system_identifier(pool: &PgPool, timeout: Duration) -> Option<i64> {
    let ask = sqlx::query_scalar::<_, i64>("SELECT system_identifier FROM pg_control_system()")
        .fetch_one(pool);
    tokio::time::timeout(timeout, ask).await.ok()?.ok()
}

/// Refuses replicas that answer but are copies of another cluster than the
/// primary's (a `[replicas]` entry that names the wrong server would otherwise
/// serve reads from someone else's database of the same name). A replica that
/// does not answer now is let through: it counts as down until it does.
async fn same_cluster(
    database: &str,
    options: &PgConnectOptions,
    primary: &PgPool,
    replicas: &[(String, PgPool)],
    timeout: Duration,
) -> StoreResult<()> {
    let Some(ours) = system_identifier(primary, timeout).await else {
        return Ok(());
    };
    for (name, pool) in replicas {
        match system_identifier(pool, timeout).await {
            Some(theirs) if theirs != ours => {
                return Err(StoreError::Database(sqlx::Error::Configuration(
                    format!(
                        "[replicas]: {name} is not a replica of {} (database {database}): it is a copy \
                         of another cluster; list it under its own primary",
                        server_name(options)
                    )
                    .into(),
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

impl Db {
    /// A database without replicas: reads and writes go to `primary`.
    pub fn single(primary: PgPool) -> Self {
        Self {
            primary,
            replicas: None,
        }
    }

    /// Connects to database `primary_url` (`postgres://user@host:port/db`) with a
    /// pool of at most `max_connections`, and, with `replicas`, to the same
    /// database (same password and options) on each replica server: pools of the
    /// same size, connected lazily, so that a replica that is down at start counts
    /// as down until it answers. Reads one round of health checks before
    /// returning and keeps reading them every `check_interval_ms` (needs a tokio
    /// runtime). Any stage can build its databases this way.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), storefront_storage::StoreError> {
    /// use storefront_storage::{config::ReplicasConfig, Db};
    ///
    /// let replicas: ReplicasConfig =
    ///     toml::from_str(r#"servers = ["postgres://postgres@127.0.0.1:5433"]"#).expect("section");
    /// let orders = Db::connect(
    ///     "postgres://postgres@127.0.0.1:5434/orders",
    ///     Some(&replicas),
    ///     16,
    /// )
    /// .await?;
    /// let reader = orders.reader().await?; // a replica, or the primary
    /// let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
    ///     .fetch_one(&*reader)
    ///     .await?;
    /// # let _ = n; Ok(()) }
    /// ```
    pub async fn connect(
        primary_url: &str,
        replicas: Option<&ReplicasConfig>,
        max_connections: u32,
    ) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(primary_url)?;
        Self::connect_with(options, replicas, max_connections).await
    }

    /// [`Db::connect`] with connection options.
    pub async fn connect_with(
        options: PgConnectOptions,
        replicas: Option<&ReplicasConfig>,
        max_connections: u32,
    ) -> StoreResult<Self> {
        let pool = |o: PgConnectOptions| {
            PgPoolOptions::new()
                .max_connections(max_connections)
                .connect_lazy_with(o)
        };
        let primary = super::connect_pool(
            &options,
            PgPoolOptions::new().max_connections(max_connections),
        )
        .await?;
        let Some(config) = replicas else {
            return Ok(Self::single(primary));
        };
        let database = options.get_database().unwrap_or("postgres").to_owned();
        let servers = config
            .server_options_of(&options)
            .map_err(|(field, message)| {
                StoreError::Database(sqlx::Error::Configuration(
                    format!("{field}: {message}").into(),
                ))
            })?;
        if servers.is_empty() {
            // No replicas follow this database's server.
            return Ok(Self::single(primary));
        }
        // The primary's settings (database, password, options) on each server.
        let members: Vec<(String, PgPool)> = servers
            .into_iter()
            .map(|(server, names_user)| {
                let mut o = options
                    .clone()
                    .host(server.get_host())
                    .port(server.get_port());
                if names_user {
                    o = o.username(server.get_username());
                }
                (server_name(&o), pool(o))
            })
            .collect();
        same_cluster(
            &database,
            &options,
            &primary,
            &members,
            config.check_timeout(),
        )
        .await?;
        let db = Self::with_replicas(
            &database,
            (server_name(&options), primary),
            members,
            config.max_lag(),
        )?;
        db.check_now(config.check_timeout()).await;
        db.start_checks(config.check_interval(), config.check_timeout());
        Ok(db)
    }

    /// A database with replicas from pools at hand: `primary` and `replicas` are
    /// `(name, pool)`, names distinct. No health check runs until
    /// [`start_checks`](Self::start_checks) or [`check_now`](Self::check_now):
    /// until then every replica counts as up, unlagged and at position 0 (so only
    /// reads without a session position go to them).
    pub fn with_replicas(
        database: &str,
        primary: (String, PgPool),
        replicas: Vec<(String, PgPool)>,
        max_lag: Duration,
    ) -> StoreResult<Self> {
        let mut builder = ReplicaSet::builder()
            .max_lag(max_lag)
            // Stale reads are worse than a loaded primary: a lagging replica takes
            // no reads even when it is the only one.
            .min_serving_replicas(0)
            .member(Member::primary(primary.0.as_str(), primary.1.clone()));
        let mut reads = vec![(Arc::<str>::from(primary.0.as_str()), AtomicU64::new(0))];
        let mut replica_pools = Vec::new();
        for (name, pool) in replicas {
            reads.push((Arc::from(name.as_str()), AtomicU64::new(0)));
            replica_pools.push((
                Arc::from(name.as_str()),
                pool.clone(),
                AtomicBool::new(true),
            ));
            builder = builder.member(Member::replica(name, pool));
        }
        let set = builder.build().map_err(|e| {
            StoreError::Database(sqlx::Error::Configuration(
                format!("replicas of {database}: {e}").into(),
            ))
        })?;
        let replicas = Arc::new(Replicas {
            database: database.to_owned(),
            set,
            reads,
            replica_pools,
            replayed: AtomicU64::new(0),
            primary_known: AtomicU64::new(0),
            last_written: AtomicU64::new(0),
            checker: Mutex::new(None),
        });
        let mut registry = REGISTRY.lock();
        registry.retain(|w| w.strong_count() > 0);
        registry.push(Arc::downgrade(&replicas));
        drop(registry);
        Ok(Self {
            primary: primary.1,
            replicas: Some(replicas),
        })
    }

    /// Reads every server's role, position and lag once (each within `timeout`).
    pub async fn check_now(&self, timeout: Duration) {
        if let Some(r) = &self.replicas {
            r.check(timeout).await;
        }
    }

    /// Reads every server's role, position and lag every `interval` from now on,
    /// in a task that ends when the last clone of this `Db` is dropped.
    pub fn start_checks(&self, interval: Duration, timeout: Duration) {
        let Some(r) = &self.replicas else { return };
        let weak = Arc::downgrade(r);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let maintain_every =
                (Duration::from_secs(10).as_millis() / interval.as_millis().max(1)).max(1);
            let mut rounds: u128 = 0;
            loop {
                tick.tick().await;
                let Some(r) = weak.upgrade() else { break };
                r.check(timeout).await;
                rounds += 1;
                if rounds % maintain_every == 0 {
                    r.set.maintain();
                }
            }
        });
        if let Some(old) = r.checker.lock().replace(task) {
            old.abort();
        }
    }

    /// The primary: for writes, and for reads that must see the latest state
    /// (stock checked inside a checkout).
    pub fn primary(&self) -> &PgPool {
        &self.primary
    }

    /// Whether reads may go to replicas.
    pub fn has_replicas(&self) -> bool {
        self.replicas.is_some()
    }

    /// Where a read may go: a replica that has replayed this session's last write
    /// (in a request: the position its cookie or its own writes gave; outside any
    /// request: this process's last write) and is within the lag limit, or the
    /// primary when none has (or there are none).
    ///
    /// Health checks learn replay positions every `check_interval_ms`, while a
    /// replica usually replays a write within a millisecond: so when no replica
    /// is known to have the session's position yet, the replicas that take reads
    /// are asked (`pg_last_wal_replay_lsn()`, at most [`PROBE_TIMEOUT`] each)
    /// before the read falls back to the primary. That costs the read a small
    /// query on a replica and spares the primary the read that follows a write.
    ///
    /// A position beyond what this process knows of the primary was written a
    /// moment ago through another instance, or in another cluster (stages 6 and
    /// 7 put each database in a cluster of its own, and the session carries the
    /// highest position of all), or the cookie is forged: the primary is asked
    /// for its current position (one small query), and a position beyond that is
    /// taken as that, so a forged cookie cannot keep a client's reads on the
    /// primary. Only when the primary does not answer within
    /// [`PRIMARY_ASK_TIMEOUT`] is a position far beyond the known one taken as
    /// the known one ([`bound_position`]).
    pub async fn reader(&self) -> StoreResult<Reader> {
        let Some(r) = &self.replicas else {
            return Ok(self.read(Freshness::Session));
        };
        let Some(mut token) = self.unbounded_session_token() else {
            return Ok(self.read(Freshness::Session));
        };
        let known = r.primary_known.load(Ordering::Relaxed);
        if token.get() > known {
            match tokio::time::timeout(PRIMARY_ASK_TIMEOUT, pg::current_wal_lsn(&self.primary))
                .await
            {
                Ok(Ok(now)) => {
                    r.primary_known.fetch_max(now.get(), Ordering::Relaxed);
                    token = token.min(now);
                }
                _ => token = bound_position(token, Position::new(known)),
            }
        }
        if r.replayed.load(Ordering::Relaxed) < token.get() {
            r.probe(token).await;
        }
        Ok(self.read_at(Some(token)))
    }

    /// The position a session read must see, bounded (see [`bound_position`]).
    fn session_token(&self) -> Option<Position> {
        let r = self.replicas.as_ref()?;
        let token = self.unbounded_session_token()?;
        let known = Position::new(r.primary_known.load(Ordering::Relaxed));
        Some(bound_position(token, known))
    }

    /// The position a session read must see, as the request (or this process's
    /// last write) gives it. With a cluster per database, the session's position
    /// is the highest of its writes in any cluster, and positions of different
    /// clusters do not compare: one may lie far beyond this primary's.
    fn unbounded_session_token(&self) -> Option<Position> {
        let r = self.replicas.as_ref()?;
        match context::current() {
            Some(in_request) => in_request,
            None => {
                let p = r.last_written.load(Ordering::Relaxed);
                (p != 0).then(|| Position::new(p))
            }
        }
    }

    /// Where a read that need not see this session's writes may go (the catalog):
    /// any replica within the lag limit, else the primary.
    pub fn catalog_reader(&self) -> Reader {
        self.read(Freshness::Any)
    }

    fn read(&self, freshness: Freshness) -> Reader {
        let token = match freshness {
            Freshness::Any => None,
            Freshness::Session => self.session_token(),
        };
        self.read_at(token)
    }

    /// A read that must see `token` (`None`: any replica within the lag limit).
    fn read_at(&self, token: Option<Position>) -> Reader {
        let Some(r) = &self.replicas else {
            counters::count_read(Role::Primary);
            return Reader::primary(self.primary.clone());
        };
        let chosen = match token {
            Some(t) => r.set.select_at(t),
            None => r.set.select(),
        };
        match chosen {
            Ok(s) => {
                counters::count_read(s.role());
                if let Some((_, n)) = r.reads.iter().find(|(name, _)| **name == *s.name()) {
                    n.fetch_add(1, Ordering::Relaxed);
                }
                Reader {
                    pool: s.value().clone(),
                    chosen: Some(s),
                    failed: AtomicBool::new(false),
                }
            }
            // Only an admission policy refuses the primary, and it has none.
            Err(_) => {
                counters::count_read(Role::Primary);
                Reader::primary(self.primary.clone())
            }
        }
    }

    /// Call after committing a write: records how far the primary's WAL has come,
    /// in this request's context (so that the response carries it to the
    /// session's next requests) and in the process, so that the next reads wait
    /// for a replica that has it. Without replicas it only counts the write.
    ///
    /// It never fails: the write is committed, and an error here must not make a
    /// caller undo it (a checkout would give back stock it sold). When the position
    /// cannot be read, the highest one this process knows is recorded instead and
    /// the failure is logged; the session may then read a replica that has not
    /// replayed this write yet.
    pub async fn wrote(&self) {
        counters::count_write();
        let Some(r) = &self.replicas else {
            return;
        };
        let position = match pg::current_wal_lsn(&self.primary).await {
            Ok(position) => position,
            Err(e) => {
                tracing::warn!("cannot read the primary's WAL position after a write: {e}");
                let known = r
                    .primary_known
                    .load(Ordering::Relaxed)
                    .max(r.last_written.load(Ordering::Relaxed));
                if known == 0 {
                    return;
                }
                Position::new(known)
            }
        };
        r.primary_known.fetch_max(position.get(), Ordering::Relaxed);
        r.last_written.fetch_max(position.get(), Ordering::Relaxed);
        context::record_write(position);
    }

    /// Waits up to `max_wait` until every replica that is up has replayed the
    /// primary's current WAL position (read now); false if the time ran out.
    /// Checks the servers itself every 20 ms meanwhile.
    pub async fn wait_for_replicas(&self, max_wait: Duration) -> StoreResult<bool> {
        let Some(r) = &self.replicas else {
            return Ok(true);
        };
        let target = pg::current_wal_lsn(&self.primary).await.map_err(pg_error)?;
        let deadline = Instant::now() + max_wait;
        loop {
            r.check(Duration::from_secs(1)).await;
            let stats = r.set.stats();
            let behind = stats
                .endpoints
                .iter()
                .any(|e| e.role == Role::Replica && e.healthy && e.applied < target);
            if !behind {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// This database's replicas as the ops page shows them (none without).
    pub fn replica_view(&self) -> Option<storefront_contract::ops::replicas::DatabaseView> {
        self.replicas.as_ref().map(|r| r.view())
    }
}

impl Replicas {
    async fn check(&self, timeout: Duration) {
        self.set.check_health(&pg::PgCheck, timeout).await;
        let stats = self.set.stats();
        for e in &stats.endpoints {
            match e.role {
                Role::Primary => {
                    self.primary_known
                        .fetch_max(e.applied.get(), Ordering::Relaxed);
                }
                _ => {
                    let serving = e.healthy && !e.ejected && e.serving_reads;
                    if let Some((_, _, ok)) =
                        self.replica_pools.iter().find(|(n, _, _)| **n == *e.name)
                    {
                        ok.store(serving, Ordering::Relaxed);
                    }
                    if serving {
                        self.replayed.fetch_max(e.applied.get(), Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Asks the replicas that took reads at the last check how far they have
    /// replayed, until one has reached `token`; records what they say.
    async fn probe(&self, token: Position) {
        for (name, pool, serving) in &self.replica_pools {
            if !serving.load(Ordering::Relaxed) {
                continue;
            }
            let asked = tokio::time::timeout(PROBE_TIMEOUT, pg::last_replay_lsn(pool)).await;
            if let Ok(Ok(Some(position))) = asked {
                let _ = self.set.report_applied(name, position);
                self.replayed.fetch_max(position.get(), Ordering::Relaxed);
                if position >= token {
                    return;
                }
            }
        }
    }

    fn view(&self) -> storefront_contract::ops::replicas::DatabaseView {
        let stats = self.set.stats();
        let reads = |name: &str| {
            self.reads
                .iter()
                .find(|(n, _)| &**n == name)
                .map_or(0, |(_, c)| c.load(Ordering::Relaxed))
        };
        storefront_contract::ops::replicas::DatabaseView {
            database: self.database.clone(),
            primary_lsn: pg::format_lsn(Position::new(self.primary_known.load(Ordering::Relaxed))),
            replicas: stats
                .endpoints
                .iter()
                .filter(|e| e.role == Role::Replica)
                .map(|e| storefront_contract::ops::replicas::ReplicaView {
                    name: e.name.to_string(),
                    state: if !e.healthy || e.ejected {
                        storefront_contract::ops::replicas::ReplicaState::Down
                    } else if !e.serving_reads {
                        storefront_contract::ops::replicas::ReplicaState::Lagging
                    } else {
                        storefront_contract::ops::replicas::ReplicaState::Serving
                    },
                    lag_ms: u64::try_from(e.lag.as_millis()).unwrap_or(u64::MAX),
                    replayed_lsn: pg::format_lsn(e.applied),
                    reads: reads(&e.name),
                })
                .collect(),
            primary_reads: stats
                .endpoints
                .iter()
                .filter(|e| e.role == Role::Primary)
                .map(|e| reads(&e.name))
                .sum(),
        }
    }
}

/// Every database with replicas in this process, as the ops page shows them.
pub fn replica_views() -> Vec<storefront_contract::ops::replicas::DatabaseView> {
    let live: Vec<Arc<Replicas>> = {
        let mut registry = REGISTRY.lock();
        registry.retain(|w| w.strong_count() > 0);
        registry.iter().filter_map(Weak::upgrade).collect()
    };
    live.iter().map(|r| r.view()).collect()
}

/// A pool to read from, chosen by [`Db::reader`]. Dropping it tells the replica
/// set the read's latency and outcome (a failure if [`check`](Self::check) saw
/// one), which steers later reads.
#[derive(Debug)]
pub struct Reader {
    pool: PgPool,
    chosen: Option<Selected<PgPool>>,
    failed: AtomicBool,
}

impl Reader {
    fn primary(pool: PgPool) -> Self {
        Self {
            pool,
            chosen: None,
            failed: AtomicBool::new(false),
        }
    }

    /// Whether the read goes to the primary or a replica.
    pub fn role(&self) -> Role {
        self.chosen.as_ref().map_or(Role::Primary, Selected::role)
    }

    /// Passes a query's result through, noting a failure for the replica set.
    pub fn check<T>(&self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        if result.is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
        result
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(s) = self.chosen.take() {
            s.finish(if self.failed.load(Ordering::Relaxed) {
                Outcome::Failure
            } else {
                Outcome::Success
            });
        }
    }
}

impl std::ops::Deref for Reader {
    type Target = PgPool;
    fn deref(&self) -> &PgPool {
        &self.pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lazy(port: u16) -> PgPool {
        PgPoolOptions::new().connect_lazy_with(
            PgConnectOptions::new()
                .host("127.0.0.1")
                .port(port)
                .database("x"),
        )
    }

    fn db(replicas: usize, max_lag: Duration) -> Db {
        let members = (0..replicas)
            .map(|i| (format!("r{i}"), lazy(1 + i as u16)))
            .collect();
        match Db::with_replicas("x", ("p".into(), lazy(9)), members, max_lag) {
            Ok(db) => db,
            Err(e) => panic!("{e}"),
        }
    }

    fn set(db: &Db) -> &ReplicaSet<PgPool> {
        match &db.replicas {
            Some(r) => &r.set,
            None => panic!("no replicas"),
        }
    }

    #[test]
    fn forged_positions_are_bounded_by_the_primary() {
        let known = Position::new(1_000);
        assert_eq!(
            bound_position(Position::new(900), known),
            Position::new(900)
        );
        assert_eq!(
            bound_position(Position::new(1_000 + FORGED_MARGIN), known),
            Position::new(1_000 + FORGED_MARGIN)
        );
        assert_eq!(bound_position(Position::new(u64::MAX), known), known);
        // Nothing known yet: believed.
        assert_eq!(
            bound_position(Position::new(u64::MAX), Position::new(0)),
            Position::new(u64::MAX)
        );
    }

    proptest! {
        /// A read goes to a replica that is within the lag limit and, for a
        /// session read, has replayed the session's position; to the primary
        /// only when no replica qualifies.
        #[test]
        fn reads_go_where_they_may(
            replicas in proptest::collection::vec((0u64..100, 0u64..3_000, any::<bool>()), 1..4),
            token in proptest::option::of(1u64..120),
            catalog in any::<bool>(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
            let Ok(rt) = rt else { return Err(TestCaseError::fail("runtime")) };
            let _guard = rt.enter();
            let db = db(replicas.len(), Duration::from_millis(1_000));
            let s = set(&db);
            for (i, (applied, lag_ms, healthy)) in replicas.iter().enumerate() {
                let name = format!("r{i}");
                prop_assert!(s.report_applied(&name, Position::new(*applied)).is_ok());
                prop_assert!(s.report_lag(&name, Duration::from_millis(*lag_ms)).is_ok());
                prop_assert!(s.set_healthy(&name, *healthy).is_ok());
            }
            let ctx = context::RequestContext::new(token.map(Position::new));
            let (role, name) = rt.block_on(context::scope(ctx, async {
                let r = if catalog { db.catalog_reader() } else { db.read(Freshness::Session) };
                let name = r.chosen.as_ref().map(|s| s.name().to_owned());
                (r.role(), name)
            }));
            let eligible: Vec<String> = replicas
                .iter()
                .enumerate()
                .filter(|(_, (applied, lag_ms, healthy))| {
                    *healthy
                        && *lag_ms <= 1_000
                        && (catalog || token.is_none_or(|t| *applied >= t))
                })
                .map(|(i, _)| format!("r{i}"))
                .collect();
            match role {
                Role::Replica => {
                    let name = name.unwrap_or_default();
                    prop_assert!(eligible.contains(&name), "{name} not in {eligible:?}");
                }
                Role::Primary => prop_assert!(eligible.is_empty(), "primary while {eligible:?} may serve"),
            }
        }
    }

    #[tokio::test]
    async fn without_replicas_everything_is_the_primary() {
        let db = Db::single(lazy(9));
        assert!(!db.has_replicas());
        assert_eq!(db.catalog_reader().role(), Role::Primary);
        assert!(db.replica_view().is_none());
        let r = db.reader().await;
        assert!(matches!(r.map(|r| r.role()), Ok(Role::Primary)));
    }
}
