//! Monitoring from the start: the ops page, its figures and `/metrics`.
//!
//! One [`Ops`] recorder per process, shared by the app:
//!
//! - [`OpsLayer`] (added by the shop's router) counts every request of the shop
//!   by route template (axum's `MatchedPath`: `/products/{id}`, never the raw path;
//!   `unmatched` for the 404 fallback) and status, and records its latency;
//! - the store's `MeteredStore` counts every call that reaches the database (it
//!   sits below the caches, so a cache hit counts no query) in
//!   [`Ops::db_query_counter`];
//! - the caches' hit counters are read from a [`CacheFigures`] when asked, the
//!   read/write split from a [`ReadSplitFn`].
//!
//! Once a second ([`Ops::start`], or [`Ops::tick`] by hand) the recorder turns the
//! counters into a point of the last minute's history: requests per second, p50 and
//! p99 latency, database queries per second, hit ratio per cache tier.
//!
//! | path | what |
//! | --- | --- |
//! | `GET /ops` | the running stage's topology as a picture and the live figures, refreshed every second (also readable without JavaScript) |
//! | `GET /ops/data.json` | the same figures as a [`Snapshot`] |
//! | `GET /metrics` | Prometheus text format (OpenMetrics) |
//!
//! The ops routes themselves are not counted: a page left open, or Prometheus
//! scraping, does not show up as load on the shop. Who may read them, the stage
//! file's `[ops]` section says ([`access`]: open, or the admin token).
//!
//! ## Cost on the request path
//!
//! Two clock reads (`quanta`, the TSC), a lock-free lookup of the route's counters
//! (an [`ArcSwap`]ped table, written only when a route is seen for the first time),
//! four relaxed atomic increments (status count, latency bucket, latency sum, and
//! the latency histogram behind p50/p99) and a reference count on the recorder held
//! by the response future. No lock, no allocation of ours: about 100 to 250 ns a
//! request on this project's 2-core machine, on top of the 200 to 400 ns axum spends
//! on any `Router::layer` (it boxes each route again). Requests whose future is
//! dropped before answering (the client went away) are not counted.
//!
//! ## The parts of a stage
//!
//! A part of a stage (stage 4's gateway, and what later stages add) registers a
//! source of its typed figures with [`Ops::add_part`]: a struct of the contract
//! that implements [`Figures`]. The snapshot carries them under the part's key, and
//! the page and `/metrics` show every part the same way (a section with its totals
//! and a table of its instances; `storefront_<key>_*`), or as the part's own
//! [`Figures::view`] and [`Figures::metrics`] say (stage 5's replicas, stage 7's
//! shards), so a new part needs no change here. See
//! [`storefront_contract::ops::parts`] for the shape.
//!
//! Snapshots of several instances add up with [`Snapshot::merge`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use histogram::{AtomicHistogram, Config as HistogramConfig, Histogram};
use parking_lot::{Mutex, RwLock};

pub mod access;
mod layer;
mod metrics;
mod page;
pub mod replicas;
pub mod shards;
pub mod topology;

pub use access::{OpsAccess, OpsConfig};
pub use layer::{OpsFuture, OpsLayer, OpsService};
pub use page::router;
pub use storefront_contract::ops::{
    CacheTotals, Figures, Point, Snapshot, StageRef, TierFaults, TierTotals, Totals, Window,
};
pub use topology::Topology;

/// A registered part: its figures now (see [`Ops::add_part`]).
type PartFn = Arc<dyn Fn() -> Option<Box<dyn Shown>> + Send + Sync>;

/// A part's typed figures, shown each way only when asked: the snapshot wants
/// the JSON, the page the view, `/metrics` the lines.
pub(crate) trait Shown {
    /// As JSON, for the snapshot (and the page's section when `view` is `None`).
    fn json(&self) -> Option<serde_json::Value>;
    /// Its own section of the page ([`Figures::view`]).
    fn view(&self) -> Option<storefront_contract::ops::parts::View>;
    /// Its own `/metrics` lines ([`Figures::metrics`]).
    fn metrics(&self) -> Option<String>;
}

impl<F: Figures> Shown for F {
    fn json(&self) -> Option<serde_json::Value> {
        serde_json::to_value(self).ok()
    }
    fn view(&self) -> Option<storefront_contract::ops::parts::View> {
        Figures::view(self)
    }
    fn metrics(&self) -> Option<String> {
        Figures::metrics(self)
    }
}

/// A part of the stage that shows figures (see [`Ops::add_part`]).
#[derive(Clone)]
pub struct Part {
    /// Its key in the snapshot ([`Figures::KEY`]).
    pub key: &'static str,
    /// Its section's title ([`Figures::TITLE`]).
    pub title: &'static str,
    /// Labels of its totals ([`Figures::LABELS`]).
    pub labels: &'static [(&'static str, &'static str)],
    /// Totals that stand out ([`Figures::HIGHLIGHT`]).
    pub highlight: &'static [&'static str],
    read: PartFn,
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The HTTP server's connection figures (see [`storefront_server::Server::stats`]).
pub type ConnectionsFn = Arc<dyn Fn() -> storefront_server::ConnStats + Send + Sync>;

/// PostgreSQL reads by where they went, and writes, since start: see
/// [`Ops::set_read_split`].
pub type ReadSplitFn = Arc<dyn Fn() -> replicas::ReadSplit + Send + Sync>;

/// The caches of a process, as the ops page reads them.
pub trait CacheFigures: Send + Sync {
    /// Lookups per tier since start: L1 hits and misses, what Redis answered, and
    /// Redis's failed and skipped calls apart from misses.
    fn totals(&self) -> CacheTotals;
    /// Why the caches serve in a degraded way, if they do (their Redis tier down).
    fn degraded(&self) -> Option<String>;
}

/// Database queries and cache lookups counted elsewhere (the gateway's instances),
/// cumulative: see [`Ops::set_backends`].
pub type BackendsFn = Arc<dyn Fn() -> (u64, CacheTotals) + Send + Sync>;

/// The route label of requests no route matched (the 404 fallback).
pub const UNMATCHED: &str = "unmatched";

/// How many one-second points the history keeps.
pub const HISTORY: usize = 60;

/// At most this many distinct routes get counters of their own; more (which a
/// router of templates never has) are counted as [`UNMATCHED`].
const MAX_ROUTES: usize = 256;

/// Status codes 100 to 599 are counted one by one; anything above as 599.
const STATUSES: usize = 500;

/// Upper bounds of the Prometheus latency buckets, in microseconds.
pub(crate) const BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// The latency histogram behind p50/p99: microseconds, 32 buckets per power of two
/// (at most about 3 % off), up to 2^32 µs (71 minutes).
const LATENCY: HistogramConfig = match HistogramConfig::new(5, 32) {
    Ok(config) => config,
    Err(_) => panic!("histogram parameters"),
};

/// One route's counters.
pub(crate) struct RouteSeries {
    /// Requests by status code (index = status - 100).
    pub(crate) statuses: Box<[AtomicU64]>,
    /// Requests by latency bucket ([`BUCKETS_US`], then +Inf); not cumulative.
    pub(crate) buckets: [AtomicU64; BUCKETS_US.len() + 1],
    /// Latencies added up, in nanoseconds.
    pub(crate) sum_nanos: AtomicU64,
}

impl RouteSeries {
    fn new() -> Self {
        Self {
            statuses: (0..STATUSES).map(|_| AtomicU64::new(0)).collect(),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// (requests, of which 5xx).
    fn requests_and_errors(&self) -> (u64, u64) {
        let mut all = 0;
        let mut errors = 0;
        for (i, n) in self.statuses.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            all += n;
            if (400..500).contains(&i) {
                errors += n;
            }
        }
        (all, errors)
    }
}

/// The routes seen so far; replaced as a whole (copy on write) when a new one shows.
#[derive(Default)]
pub(crate) struct RouteTable {
    index: HashMap<Box<str>, usize, ahash::RandomState>,
    pub(crate) series: Vec<(Box<str>, Arc<RouteSeries>)>,
}

/// A route's place in the table, looked up before the request runs.
#[derive(Clone, Copy, Debug)]
pub struct RouteId(usize);

/// Figures at one instant, cumulative since start.
#[derive(Clone)]
struct Sample {
    at: Instant,
    requests: u64,
    errors: u64,
    db_queries: u64,
    cache: CacheTotals,
    split: replicas::ReadSplit,
    latency: Histogram,
}

/// The last sample and the points made so far.
struct History {
    last: Sample,
    points: VecDeque<Point>,
}

/// The process's ops recorder (see the module docs).
pub struct Ops {
    stage: StageRef,
    topology: Topology,
    started: Instant,
    routes: ArcSwap<RouteTable>,
    grow: Mutex<()>,
    latency: AtomicHistogram,
    db_queries: Arc<AtomicU64>,
    cache: OnceLock<Arc<dyn CacheFigures>>,
    read_split: RwLock<Option<ReadSplitFn>>,
    parts: RwLock<Vec<Part>>,
    backends: RwLock<Option<BackendsFn>>,
    backend_reads: RwLock<Option<ReadSplitFn>>,
    connections: RwLock<Option<ConnectionsFn>>,
    history: Mutex<History>,
    access: RwLock<OpsAccess>,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops")
            .field("stage", &self.stage)
            .field("topology", &self.topology)
            .finish_non_exhaustive()
    }
}

impl Default for Ops {
    /// Stage 1's recorder (app and SQLite).
    fn default() -> Self {
        Self::new(
            StageRef {
                number: 1,
                title: "Single machine".into(),
            },
            Topology::default(),
        )
    }
}

impl Ops {
    /// A recorder for a stage drawn as `topology`.
    pub fn new(stage: StageRef, topology: Topology) -> Self {
        let started = Instant::now();
        Self {
            stage,
            topology,
            started,
            routes: ArcSwap::from_pointee(RouteTable::default()),
            grow: Mutex::new(()),
            latency: AtomicHistogram::with_config(&LATENCY),
            db_queries: Arc::new(AtomicU64::new(0)),
            read_split: RwLock::new(None),
            cache: OnceLock::new(),
            parts: RwLock::new(Vec::new()),
            backends: RwLock::new(None),
            backend_reads: RwLock::new(None),
            access: RwLock::new(OpsAccess::Open),
            connections: RwLock::new(None),
            history: Mutex::new(History {
                last: Sample {
                    at: started,
                    requests: 0,
                    errors: 0,
                    db_queries: 0,
                    cache: CacheTotals::default(),
                    split: replicas::ReadSplit::default(),
                    latency: Histogram::with_config(&LATENCY),
                },
                points: VecDeque::with_capacity(HISTORY),
            }),
        }
    }

    /// Who may read the ops routes from now on (open until set).
    pub fn set_access(&self, access: OpsAccess) {
        *self.access.write() = access;
    }

    /// Who may read the ops routes.
    pub fn access(&self) -> OpsAccess {
        self.access.read().clone()
    }

    /// The stage this process runs.
    pub fn stage(&self) -> &StageRef {
        &self.stage
    }

    /// The topology drawn on the page.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Reads cache figures from `cache` from now on (the first call wins).
    pub fn set_cache(&self, cache: Arc<dyn CacheFigures>) {
        let _ = self.cache.set(cache);
    }

    /// Shows part `F`'s figures, read from `read` when asked, on the page, in
    /// the snapshot (under [`Figures::KEY`]) and in `/metrics` from now on; a
    /// part registered again with the same key replaces the first. `read` returns
    /// `None` when the part has gone.
    ///
    /// ```
    /// use storefront_contract::ops::gateway::{GatewayFigures, GatewayTotals};
    /// use storefront_ops::Ops;
    ///
    /// let ops = Ops::default();
    /// ops.add_part(|| {
    ///     Some(GatewayFigures {
    ///         totals: GatewayTotals { rate_limited: 3, ..GatewayTotals::default() },
    ///         ..GatewayFigures::default()
    ///     })
    /// });
    /// let gateway = ops.snapshot().part::<GatewayFigures>().unwrap();
    /// assert_eq!(gateway.totals.rate_limited, 3);
    /// assert!(ops.render_metrics().contains("storefront_gateway_rate_limited_total 3"));
    /// ```
    pub fn add_part<F, R>(&self, read: R)
    where
        F: Figures + 'static,
        R: Fn() -> Option<F> + Send + Sync + 'static,
    {
        let part = Part {
            key: F::KEY,
            title: F::TITLE,
            labels: F::LABELS,
            highlight: F::HIGHLIGHT,
            read: Arc::new(move || read().map(|f| Box::new(f) as Box<dyn Shown>)),
        };
        let mut parts = self.parts.write();
        parts.retain(|p| p.key != part.key);
        parts.push(part);
    }

    /// The registered parts, in the order they were added.
    pub fn parts(&self) -> Vec<Part> {
        self.parts.read().clone()
    }

    /// Takes database and cache figures from `backends` from now on, added to this
    /// process's own: the gateway, which queries no database itself, shows the sum
    /// of its instances' figures this way.
    pub fn set_backends(&self, backends: BackendsFn) {
        *self.backends.write() = Some(backends);
    }

    /// Takes read/write counts from `backend` from now on: the gateway's
    /// instances', added to this process's own.
    pub fn set_backend_reads(&self, backend: ReadSplitFn) {
        *self.backend_reads.write() = Some(backend);
    }

    /// PostgreSQL reads by where they went, and writes, since start: this
    /// process's ([`Ops::set_read_split`]) plus the backends'
    /// ([`Ops::set_backend_reads`]).
    pub fn read_split(&self) -> replicas::ReadSplit {
        let own = self
            .read_split
            .read()
            .clone()
            .map(|f| f())
            .unwrap_or_default();
        let backend = self.backend_reads.read().clone();
        match backend {
            None => own,
            Some(f) => own.plus(&f()),
        }
    }

    /// Takes a point of history every second until the recorder is dropped. Needs a
    /// tokio runtime.
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let ops: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                match ops.upgrade() {
                    Some(ops) => ops.tick(),
                    None => break,
                }
            }
        })
    }

    /// Looks up (or adds) a route's counters. Lock-free unless the route is new.
    pub fn route_id(&self, route: &str) -> RouteId {
        if let Some(&i) = self.routes.load().index.get(route) {
            return RouteId(i);
        }
        self.add_route(route)
    }

    #[cold]
    fn add_route(&self, route: &str) -> RouteId {
        let writer = self.grow.lock();
        let table = self.routes.load();
        if let Some(&i) = table.index.get(route) {
            return RouteId(i);
        }
        if table.series.len() >= MAX_ROUTES && route != UNMATCHED {
            drop(table);
            drop(writer);
            return self.route_id(UNMATCHED);
        }
        let mut index = table.index.clone();
        let mut series = table.series.clone();
        let id = series.len();
        index.insert(route.into(), id);
        series.push((route.into(), Arc::new(RouteSeries::new())));
        self.routes.store(Arc::new(RouteTable { index, series }));
        RouteId(id)
    }

    /// Counts a request of `route` that answered `status` after `elapsed`.
    pub fn record(&self, route: RouteId, status: u16, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let micros = nanos / 1_000;
        let table = self.routes.load();
        if let Some((_, series)) = table.series.get(route.0) {
            let status = usize::from(status.clamp(100, 599) - 100);
            if let Some(n) = series.statuses.get(status) {
                n.fetch_add(1, Ordering::Relaxed);
            }
            let bucket = BUCKETS_US.partition_point(|&le| le < micros);
            if let Some(n) = series.buckets.get(bucket) {
                n.fetch_add(1, Ordering::Relaxed);
            }
            series.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        }
        let _ = self.latency.increment(micros.min((1 << 32) - 1));
    }

    /// Counts one call that reached the database.
    pub fn count_db_query(&self) {
        self.db_queries.fetch_add(1, Ordering::Relaxed);
    }

    /// The counter of calls that reached the database, for a store to count
    /// into (one relaxed increment a call).
    pub fn db_query_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.db_queries)
    }

    /// Takes this process's read/write split from `split`
    /// from now on (its stores count them).
    pub fn set_read_split(&self, split: ReadSplitFn) {
        *self.read_split.write() = Some(split);
    }

    pub(crate) fn routes(&self) -> arc_swap::Guard<Arc<RouteTable>> {
        self.routes.load()
    }

    /// Database queries and the caches' counters per tier (empty without caches):
    /// this process's, plus the backends' ([`Ops::set_backends`]).
    pub fn db_queries_and_cache(&self) -> (u64, CacheTotals) {
        let own = self.db_queries.load(Ordering::Relaxed);
        let cache = self.own_cache_totals();
        let backends = self.backends.read().clone();
        match backends {
            None => (own, cache),
            Some(f) => {
                let (queries, theirs) = f();
                (own.saturating_add(queries), cache.plus(&theirs))
            }
        }
    }

    fn own_cache_totals(&self) -> CacheTotals {
        self.cache
            .get()
            .map(|cache| cache.totals())
            .unwrap_or_default()
    }

    /// Shows the HTTP server's connection figures in `/metrics` from now on
    /// (`storefront_connections_*`).
    pub fn set_connections(&self, connections: ConnectionsFn) {
        *self.connections.write() = Some(connections);
    }

    /// The HTTP server's connection figures, if a server is attached.
    pub fn connections(&self) -> Option<storefront_server::ConnStats> {
        let connections = self.connections.read().clone();
        connections.map(|f| f())
    }

    /// The figures of every registered part that has some, by key.
    pub fn part_figures(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
        self.parts()
            .iter()
            .filter_map(|p| Some((p.key.to_owned(), (p.read)()?.json()?)))
            .collect()
    }

    fn sample(&self) -> Sample {
        let (mut requests, mut errors) = (0, 0);
        for (_, series) in &self.routes.load().series {
            let (r, e) = series.requests_and_errors();
            requests += r;
            errors += e;
        }
        let (db_queries, cache) = self.db_queries_and_cache();
        let split = self.read_split();
        Sample {
            at: Instant::now(),
            requests,
            errors,
            db_queries,
            cache,
            split,
            latency: self.latency.load(),
        }
    }

    /// Adds a point to the history: the figures since the last point. [`Ops::start`]
    /// calls it every second.
    pub fn tick(&self) {
        let now = self.sample();
        let mut history = self.history.lock();
        let window = window_between(&history.last, &now);
        if history.points.len() == HISTORY {
            history.points.pop_front();
        }
        history.points.push_back(Point {
            t: round3(now.at.duration_since(self.started).as_secs_f64()),
            figures: window,
        });
        history.last = now;
    }

    /// Everything the ops page shows. `window` is the last point of history, or the
    /// figures since start before the first point.
    pub fn snapshot(&self) -> Snapshot {
        let now = self.sample();
        let (window, history) = {
            let history = self.history.lock();
            let window = match history.points.back() {
                Some(point) => point.figures.clone(),
                None => window_between(&history.last, &now),
            };
            (window, history.points.iter().cloned().collect())
        };
        Snapshot {
            stage: self.stage.clone(),
            uptime_secs: round3(self.started.elapsed().as_secs_f64()),
            totals: Totals {
                requests: now.requests,
                errors: now.errors,
                db_queries: now.db_queries,
                cache: now.cache,
                reads: now.split,
            },
            window,
            history,
            topology: self.topology.clone(),
            degraded: self.degraded(),
            parts: self.part_figures(),
        }
    }

    /// Why this process serves in a degraded way, if it does: its caches' Redis
    /// tier down ([`CacheFigures::degraded`]).
    pub fn degraded(&self) -> Option<String> {
        self.cache.get().and_then(|cache| cache.degraded())
    }

    /// `/metrics`: Prometheus text format (OpenMetrics 1.0).
    pub fn render_metrics(&self) -> String {
        metrics::render(self)
    }
}

fn round3(x: f64) -> f64 {
    (x * 1_000.0).round() / 1_000.0
}

fn ratio(now: Option<TierTotals>, before: Option<TierTotals>) -> Option<f64> {
    let now = now?;
    let before = before.unwrap_or_default();
    let hits = now.hits.saturating_sub(before.hits);
    let lookups = hits + now.misses.saturating_sub(before.misses);
    (lookups > 0).then(|| round3(hits as f64 / lookups as f64))
}

/// The figures between two samples.
fn window_between(before: &Sample, now: &Sample) -> Window {
    let secs = now.at.duration_since(before.at).as_secs_f64().max(1e-3);
    let per_sec = |a: u64, b: u64| round3(a.saturating_sub(b) as f64 / secs);
    let (p50_ms, p99_ms) = match now.latency.wrapping_sub(&before.latency) {
        Ok(delta) => (quantile_ms(&delta, 0.5), quantile_ms(&delta, 0.99)),
        Err(_) => (0.0, 0.0),
    };
    Window {
        rps: per_sec(now.requests, before.requests),
        p50_ms,
        p99_ms,
        db_qps: per_sec(now.db_queries, before.db_queries),
        l1_hit_ratio: ratio(now.cache.l1, before.cache.l1),
        l2_hit_ratio: ratio(now.cache.l2, before.cache.l2),
        split: replicas::SplitWindow::of(&now.split.since(&before.split), secs),
    }
}

/// A quantile in milliseconds: the middle of its bucket; 0 when nothing was recorded.
fn quantile_ms(histogram: &Histogram, q: f64) -> f64 {
    match histogram.quantile_bucket(q) {
        Ok(Some(bucket)) => {
            let mid = (bucket.start() as f64 + bucket.end() as f64) / 2.0;
            round3(mid / 1_000.0)
        }
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_route_and_status() {
        let ops = Ops::default();
        let a = ops.route_id("/a");
        let b = ops.route_id("/b/{id}");
        assert_eq!(ops.route_id("/a").0, a.0);
        for _ in 0..3 {
            ops.record(a, 200, Duration::from_micros(700));
        }
        ops.record(b, 404, Duration::from_millis(3));
        ops.record(b, 503, Duration::from_millis(30));
        let s = ops.snapshot();
        assert_eq!(s.totals.requests, 5);
        assert_eq!(s.totals.errors, 1);
        assert!(s.window.p50_ms > 0.6 && s.window.p50_ms < 0.8, "{s:?}");
        assert!(s.window.p99_ms > 28.0 && s.window.p99_ms < 32.0, "{s:?}");
        let table = ops.routes();
        let (_, series) = &table.series[a.0];
        assert_eq!(series.statuses[100].load(Ordering::Relaxed), 3);
        // 700 µs is in the 1 ms bucket.
        assert_eq!(series.buckets[1].load(Ordering::Relaxed), 3);
    }

    #[test]
    fn ticks_make_history_of_at_most_a_minute() {
        let ops = Ops::default();
        let r = ops.route_id("/");
        for i in 0..70 {
            ops.record(r, 200, Duration::from_micros(100));
            if i % 2 == 0 {
                ops.count_db_query();
            }
            ops.tick();
        }
        let s = ops.snapshot();
        assert_eq!(s.history.len(), HISTORY);
        assert_eq!(s.totals.requests, 70);
        assert_eq!(s.totals.db_queries, 35);
        assert!(s.history.iter().all(|p| p.figures.rps > 0.0));
        assert!(s.history.windows(2).all(|w| w[0].t <= w[1].t));
        assert_eq!(s.window, s.history[HISTORY - 1].figures);
        assert_eq!(s.window.l1_hit_ratio, None);
    }

    #[test]
    fn too_many_routes_fall_back_to_unmatched() {
        let ops = Ops::default();
        for i in 0..MAX_ROUTES + 10 {
            let id = ops.route_id(&format!("/r{i}"));
            ops.record(id, 200, Duration::ZERO);
        }
        assert_eq!(ops.routes().series.len(), MAX_ROUTES + 1);
        assert_eq!(ops.snapshot().totals.requests, (MAX_ROUTES + 10) as u64);
    }
}
