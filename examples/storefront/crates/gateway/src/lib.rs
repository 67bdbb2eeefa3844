//! Stage 4: a reverse proxy in front of N app processes.
//!
//! The [`Gateway`] takes every request on the stage's address and forwards it to one
//! of the instances, built from the kit's crates:
//!
//! * **which instance**: a `scalekit_replica::ReplicaSet` (power of two choices over
//!   peak-EWMA latency times requests in flight), which also ejects an instance that
//!   fails several calls in a row and skips the ones whose `/readyz` check fails;
//! * **failing fast**: a `scalekit_breaker::CircuitBreaker` per instance, asked by the
//!   set before it picks the instance, so an open breaker costs nothing per request;
//! * **fair use**: a `scalekit_limit::KeyedRateLimiter` per client IP (the TCP peer),
//!   answering `429 Too Many Requests` with `Retry-After` in whole seconds.
//!
//! What counts as an instance's failure (for its breaker, its ejection and its
//! latency estimate): a refused or reset connection, no answer within
//! `upstream_timeout_ms`, a response body cut short, and a `502`, `503` or `504`
//! answer. A `500` (or another `5xx`) is one request's error: passed on, counted
//! apart, neither for nor against the instance, so that one client sending
//! requests that fail cannot open the breakers for everyone.
//!
//! Forwarding: request bodies are read first (up to `max_body_bytes`, as nginx's
//! `proxy_request_buffering` does) so that a request that never reached an instance
//! can be sent to another; responses stream through. Hop-by-hop headers are removed
//! both ways, `Host` is kept, `X-Forwarded-For` gets the client's address and
//! `X-Forwarded-Proto` is set when absent.
//!
//! Retries: a request that could not reach an instance (connection refused or timed
//! out, breaker open) goes to another one, whatever its method: it never arrived. A
//! `GET` or `HEAD` that failed after it was sent (connection reset, no answer within
//! `upstream_timeout_ms`) is retried once on another instance. Any other request that
//! was sent is not retried: the client gets `502` (or `504`) with a body saying the
//! outcome is unknown.
//!
//! The gateway answers its own `/livez` and `/readyz` (ready while at least one
//! instance is), and [`Gateway::snapshot`] reports per instance and in total.
//! `storefront serve --stage 4` starts the instances, waits for them and serves
//! the gateway (the storefront's `supervisor`).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use scalekit_breaker::{CircuitBreaker, Window};
use scalekit_core::{Clock, MonotonicClock};
use scalekit_limit::{KeyedRateLimiter, Quota};
use scalekit_replica::{Event, Health, HealthCheck, Member, OutlierDetection, ReplicaSet};

pub use crate::config::GatewayConfig;

pub mod config;
mod observe;
mod proxy;

use proxy::proxy;

type Breaker = Arc<CircuitBreaker<Arc<dyn Clock>>>;
type Set = ReplicaSet<Arc<Upstream>, Breaker, Arc<dyn Clock>>;
type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One app instance as the gateway sees it.
#[derive(Debug)]
struct Upstream {
    name: Arc<str>,
    addr: SocketAddr,
    breaker: Breaker,
    in_flight: AtomicU64,
    requests: AtomicU64,
    failures: AtomicU64,
    app_errors: AtomicU64,
    failed_after_send: AtomicU64,
}

/// Totals over all requests.
#[derive(Debug, Default)]
struct Totals {
    requests: AtomicU64,
    rate_limited: AtomicU64,
    retries: AtomicU64,
    upstream_errors: AtomicU64,
    unavailable: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    set: Set,
    upstreams: Vec<Arc<Upstream>>,
    limiter: KeyedRateLimiter<IpAddr, Arc<dyn Clock>>,
    client: HttpClient,
    totals: Totals,
    upstream_timeout: Duration,
    health_interval: Duration,
    health_timeout: Duration,
    max_body: usize,
    /// The ops recorder, once [`Gateway::attach_ops`] gave one.
    ops: std::sync::OnceLock<Arc<storefront_ops::Ops>>,
}

/// The stage-4 reverse proxy. Clones share everything (counters, limits, breakers).
#[derive(Clone, Debug)]
pub struct Gateway {
    inner: Arc<Inner>,
}

/// What the gateway knows ([`Gateway::snapshot`]): the contract's typed figures,
/// which the gateway also registers with the ops recorder.
pub use storefront_contract::ops::gateway::{GatewayFigures, GatewayTotals, InstanceFigures};

/// A gateway that cannot be built from its settings.
#[derive(Debug)]
pub struct GatewayError(String);

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GatewayError {}

impl Gateway {
    /// A gateway over the instances at `addrs` (named `app-1`, `app-2`, ...), with
    /// the limits, breakers and ejection of `config` (its `instances`, `base_port`
    /// and `addresses` are not used here).
    pub fn new(config: &GatewayConfig, addrs: &[SocketAddr]) -> Result<Self, GatewayError> {
        Self::with_clock(config, addrs, Arc::new(MonotonicClock))
    }

    /// The same, with the limiter, the breakers and the replica set reading time
    /// from `clock` (a `ManualClock` in tests).
    pub fn with_clock(
        config: &GatewayConfig,
        addrs: &[SocketAddr],
        clock: Arc<dyn Clock>,
    ) -> Result<Self, GatewayError> {
        if addrs.is_empty() {
            return Err(GatewayError(
                "the gateway needs at least one instance".into(),
            ));
        }
        let upstreams = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| upstream(config, i, *addr, &clock))
            .collect::<Result<Vec<_>, _>>()?;
        let set = replica_set(config, &upstreams, &clock)?;
        let rate = NonZeroU32::new(config.rate_per_sec)
            .ok_or_else(|| GatewayError("gateway.rate_per_sec: give at least 1".into()))?;
        let burst = NonZeroU32::new(config.burst)
            .ok_or_else(|| GatewayError("gateway.burst: give at least 1".into()))?;
        let limiter =
            KeyedRateLimiter::<IpAddr>::builder(Quota::per_second(rate).allow_burst(burst))
                .max_keys(100_000)
                .clock(Arc::clone(&clock))
                .build()
                .map_err(|e| GatewayError(format!("gateway.rate_per_sec: {e}")))?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector);
        Ok(Self {
            inner: Arc::new(Inner {
                set,
                upstreams,
                limiter,
                client,
                totals: Totals::default(),
                upstream_timeout: Duration::from_millis(config.upstream_timeout_ms),
                health_interval: Duration::from_millis(config.health_interval_ms),
                health_timeout: Duration::from_millis(config.health_timeout_ms),
                max_body: config.max_body_bytes,
                ops: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The gateway's HTTP face: `/livez`, `/readyz`, and everything else proxied;
    /// with an ops recorder attached ([`attach_ops`](Self::attach_ops)), also its
    /// own `/ops`, `/ops/data.json` and `/metrics`, and every other request counted
    /// (proxied ones under the route label `proxied`).
    /// [`serve`](Self::serve) serves it; to serve it yourself, give each request
    /// the client's address as `ConnectInfo<SocketAddr>` (as
    /// [`storefront_server::Server`] and axum's
    /// `into_make_service_with_connect_info::<SocketAddr>()` do) so the rate limit
    /// sees client addresses (without, all clients share one bucket).
    pub fn router(&self) -> Router {
        let router = Router::new()
            .route("/livez", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .fallback(proxy)
            .with_state(self.clone());
        match self.inner.ops.get() {
            None => router,
            Some(ops) => router
                .layer(storefront_ops::OpsLayer::new(Arc::clone(ops)).unmatched_as("proxied"))
                .merge(storefront_ops::router().with_state(Arc::clone(ops))),
        }
    }

    /// Serves the gateway on `listener` with the default connection limits until
    /// `shutdown` resolves, then drains (see [`storefront_server`]).
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<storefront_server::Drained> {
        let server = storefront_server::Server::new(storefront_server::Limits::default());
        self.serve_with(&server, listener, shutdown).await
    }

    /// The same, on `server` (its limits, its figures).
    pub async fn serve_with(
        &self,
        server: &storefront_server::Server,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<storefront_server::Drained> {
        server.serve(listener, self.router(), shutdown).await
    }

    /// Checks every instance's `/readyz` once (bounded by the health timeout).
    pub async fn check_health(&self) {
        let check = ReadyzCheck {
            client: self.inner.client.clone(),
        };
        self.inner
            .set
            .check_health(&check, self.inner.health_timeout)
            .await;
    }

    /// Checks the instances every `health_interval_ms` and runs the replica set's
    /// upkeep (returning ejected instances, forgiving old ejections) about every
    /// 10 s, until the task is aborted.
    pub fn spawn_health_checks(&self) -> tokio::task::JoinHandle<()> {
        // A weak reference: the task ends when the last clone of the gateway is gone.
        let weak = Arc::downgrade(&self.inner);
        let interval = self.inner.health_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_upkeep = Instant::now();
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let gw = Gateway { inner };
                gw.check_health().await;
                if last_upkeep.elapsed() >= Duration::from_secs(10) {
                    gw.inner.set.maintain();
                    last_upkeep = Instant::now();
                }
            }
        })
    }

    /// Whether at least one instance is healthy and not ejected.
    pub fn is_ready(&self) -> bool {
        self.inner
            .set
            .stats()
            .endpoints
            .iter()
            .any(|e| e.healthy && !e.ejected)
    }

    /// Per-instance state and totals.
    pub fn snapshot(&self) -> GatewayFigures {
        let stats = self.inner.set.stats();
        let t = &self.inner.totals;
        GatewayFigures {
            instances: self
                .inner
                .upstreams
                .iter()
                .map(|up| {
                    let s = stats.endpoints.iter().find(|e| e.name == up.name);
                    InstanceFigures {
                        name: up.name.to_string(),
                        addr: up.addr.to_string(),
                        healthy: s.is_some_and(|s| s.healthy),
                        ejected: s.is_some_and(|s| s.ejected),
                        breaker: up.breaker.state().to_string(),
                        in_flight: up.in_flight.load(Ordering::Relaxed),
                        requests: up.requests.load(Ordering::Relaxed),
                        failures: up.failures.load(Ordering::Relaxed),
                        app_errors: up.app_errors.load(Ordering::Relaxed),
                        failed_after_send: up.failed_after_send.load(Ordering::Relaxed),
                    }
                })
                .collect(),
            totals: GatewayTotals {
                requests: t.requests.load(Ordering::Relaxed),
                rate_limited: t.rate_limited.load(Ordering::Relaxed),
                retries: t.retries.load(Ordering::Relaxed),
                upstream_errors: t.upstream_errors.load(Ordering::Relaxed),
                unavailable: t.unavailable.load(Ordering::Relaxed),
            },
        }
    }
}

/// Instance `i` (from 0) at `addr`, named `app-{i+1}`, with its breaker.
fn upstream(
    config: &GatewayConfig,
    i: usize,
    addr: SocketAddr,
    clock: &Arc<dyn Clock>,
) -> Result<Arc<Upstream>, GatewayError> {
    let b = &config.breaker;
    let name: Arc<str> = format!("app-{}", i + 1).into();
    let log_name = Arc::clone(&name);
    let breaker = CircuitBreaker::builder()
        .window(Window::Count(b.window))
        .minimum_calls(b.minimum_calls)
        .failure_rate_threshold(f64::from(b.failure_rate))
        .wait_in_open(Duration::from_secs(b.open_secs))
        .half_open_probes(b.half_open_probes)
        .on_transition(move |t| {
            tracing::warn!("gateway: {log_name}: breaker {} -> {}", t.from, t.to)
        })
        .clock(Arc::clone(clock))
        .build()
        .map_err(|e| GatewayError(format!("gateway.breaker: {e}")))?;
    Ok(Arc::new(Upstream {
        name,
        addr,
        breaker: Arc::new(breaker),
        in_flight: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        app_errors: AtomicU64::new(0),
        failed_after_send: AtomicU64::new(0),
    }))
}

/// The set that picks an instance: power of two choices over peak-EWMA latency,
/// each instance behind its breaker, failing ones ejected.
fn replica_set(
    config: &GatewayConfig,
    upstreams: &[Arc<Upstream>],
    clock: &Arc<dyn Clock>,
) -> Result<Set, GatewayError> {
    let e = &config.ejection;
    let mut outliers = OutlierDetection::default();
    outliers.consecutive_failures = (e.consecutive_failures > 0).then_some(e.consecutive_failures);
    outliers.base_ejection_time = Duration::from_secs(e.base_secs);
    outliers.max_ejection_time = Duration::from_secs(e.base_secs.saturating_mul(10));
    outliers.max_ejection_percent = e.max_percent;
    let mut builder = ReplicaSet::builder_with_admission()
        // An instance with no latency measured yet is assumed to answer in 5 ms
        // (a page from the cache), not the set's 30 ms default: otherwise, with
        // little concurrency, instances that answered once in 1 ms win every
        // comparison and a new one is hardly ever tried.
        .default_rtt(Duration::from_millis(5))
        .failure_penalty_factor(f64::from(e.failure_penalty_factor))
        .outlier_detection(outliers)
        .clock(Arc::clone(clock))
        .on_event(|event| match event {
            Event::Ejected {
                name,
                reason,
                duration,
            } => tracing::warn!("gateway: {name} ejected for {duration:?} ({reason:?})"),
            Event::Returned { name } => tracing::info!("gateway: {name} back in rotation"),
            Event::Health { name, healthy } => {
                tracing::info!(
                    "gateway: {name} is {}",
                    if *healthy { "ready" } else { "not ready" }
                )
            }
            _ => {}
        });
    for up in upstreams {
        builder = builder.member(
            Member::replica(Arc::clone(&up.name), Arc::clone(up))
                .admission(Arc::clone(&up.breaker)),
        );
    }
    builder
        .build()
        .map_err(|e| GatewayError(format!("gateway: {e}")))
}

async fn readyz(State(gw): State<Gateway>) -> impl IntoResponse {
    if gw.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no app instance is ready\n",
        )
    }
}

/// `GET /readyz` on an instance: up on 200.
struct ReadyzCheck {
    client: HttpClient,
}

#[async_trait::async_trait]
impl HealthCheck<Arc<Upstream>> for ReadyzCheck {
    async fn check(&self, up: &Arc<Upstream>) -> Health {
        check_readyz(&self.client, up.addr).await
    }
}

/// A client for [`check_readyz`]: connections kept, a connect timeout of
/// `connect_timeout`, no Nagle delay.
pub fn health_client(connect_timeout: Duration) -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// `GET http://addr/readyz` through `client`: up on `200`, down on anything
/// else (another status, no connection). The check the gateway runs on its
/// instances, and stage 8's balancers on the gateways. Bound it with a
/// timeout (as `ReplicaSet::check_health` does).
pub async fn check_readyz(client: &Client<HttpConnector, Full<Bytes>>, addr: SocketAddr) -> Health {
    let Ok(uri) = Uri::try_from(format!("http://{addr}/readyz")) else {
        return Health::down();
    };
    let Ok(req) = Request::get(uri).body(Full::new(Bytes::new())) else {
        return Health::down();
    };
    match client.request(req).await {
        Ok(resp) if resp.status() == StatusCode::OK => {
            // Read the short body so the connection goes back to the pool.
            let _ = resp.into_body().collect().await;
            Health::up()
        }
        _ => Health::down(),
    }
}
