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
//! [`run_stage`] is `storefront serve --stage 4`: it starts the instances
//! ([`supervisor`]), waits for them, and serves the gateway.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, Response, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use scalekit_breaker::{CircuitBreaker, Window};
use scalekit_core::{Clock, MonotonicClock, Outcome};
use scalekit_limit::{KeyedRateLimiter, Quota};
use scalekit_replica::{
    Event, Health, HealthCheck, Member, OutlierDetection, ReplicaSet, SelectError, Selected,
};
use serde::Serialize;

use crate::config::GatewayConfig;

mod observe;
pub mod supervisor;

pub use supervisor::{instance_setup, run_stage, wait_ready, Supervisor};

type Breaker = Arc<CircuitBreaker<Arc<dyn Clock>>>;
type Set = ReplicaSet<Arc<Upstream>, Breaker>;
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
    ops: std::sync::OnceLock<Arc<crate::ops::Ops>>,
}

/// The stage-4 reverse proxy. Clones share everything (counters, limits, breakers).
#[derive(Clone, Debug)]
pub struct Gateway {
    inner: Arc<Inner>,
}

/// What the gateway knows, for dashboards (the ops page) and tests.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct GatewaySnapshot {
    /// One entry per instance, in configuration order.
    pub instances: Vec<InstanceSnapshot>,
    /// Requests received (rate-limited ones included; `/livez` and `/readyz` not).
    pub requests: u64,
    /// Requests refused with 429.
    pub rate_limited: u64,
    /// Attempts made again on another instance.
    pub retries: u64,
    /// Attempts that failed to get a response from an instance.
    pub upstream_errors: u64,
    /// Requests refused with 503 because no instance could take them.
    pub unavailable: u64,
}

/// One instance in a [`GatewaySnapshot`].
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct InstanceSnapshot {
    /// Its name (`app-1`, ...).
    pub name: String,
    /// Where it listens.
    pub addr: String,
    /// Its last `/readyz` check passed (true until the first check says otherwise).
    pub healthy: bool,
    /// Taken out of rotation for failing calls in a row.
    pub ejected: bool,
    /// Its circuit breaker: `closed`, `open`, `half-open`, ...
    pub breaker: String,
    /// Requests on it now (until their response body has been sent).
    pub in_flight: u64,
    /// Attempts sent to it.
    pub requests: u64,
    /// Attempts that counted against the instance: no connection, no response,
    /// or a `502`, `503` or `504` status (see the module docs).
    pub failures: u64,
    /// Answers with another `5xx` status (a `500` for one request), passed on and
    /// not counted against the instance.
    pub app_errors: u64,
    /// Attempts that failed after the request was sent (in flight when it broke).
    pub failed_after_send: u64,
}

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
        let b = &config.breaker;
        let mut upstreams = Vec::with_capacity(addrs.len());
        for (i, addr) in addrs.iter().enumerate() {
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
                .clock(Arc::clone(&clock))
                .build()
                .map_err(|e| GatewayError(format!("gateway.breaker: {e}")))?;
            upstreams.push(Arc::new(Upstream {
                name,
                addr: *addr,
                breaker: Arc::new(breaker),
                in_flight: AtomicU64::new(0),
                requests: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                app_errors: AtomicU64::new(0),
                failed_after_send: AtomicU64::new(0),
            }));
        }
        let e = &config.ejection;
        let mut outliers = OutlierDetection::default();
        outliers.consecutive_failures =
            (e.consecutive_failures > 0).then_some(e.consecutive_failures);
        outliers.base_ejection_time = Duration::from_secs(e.base_secs);
        outliers.max_ejection_time = Duration::from_secs(e.base_secs.saturating_mul(10));
        outliers.max_ejection_percent = e.max_percent;
        let mut builder = Set::builder_with_admission()
            // An instance with no latency measured yet is assumed to answer in 5 ms
            // (a page from the cache), not the set's 30 ms default: otherwise, with
            // little concurrency, instances that answered once in 1 ms win every
            // comparison and a new one is hardly ever tried.
            .default_rtt(Duration::from_millis(5))
            .failure_penalty_factor(f64::from(e.failure_penalty_factor))
            .outlier_detection(outliers)
            .clock(Arc::clone(&clock))
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
        for up in &upstreams {
            builder = builder.member(
                Member::replica(Arc::clone(&up.name), Arc::clone(up))
                    .admission(Arc::clone(&up.breaker)),
            );
        }
        let set = builder
            .build()
            .map_err(|e| GatewayError(format!("gateway: {e}")))?;
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
    /// [`crate::server::Server`] and axum's
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
                .layer(crate::ops::OpsLayer::new(Arc::clone(ops)).unmatched_as("proxied"))
                .merge(crate::ops::router().with_state(Arc::clone(ops))),
        }
    }

    /// Serves the gateway on `listener` with the default connection limits until
    /// `shutdown` resolves, then drains (see [`crate::server`]).
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<crate::server::Drained> {
        let server = crate::server::Server::new(crate::server::Limits::default());
        self.serve_with(&server, listener, shutdown).await
    }

    /// The same, on `server` (its limits, its figures).
    pub async fn serve_with(
        &self,
        server: &crate::server::Server,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<crate::server::Drained> {
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
    pub fn snapshot(&self) -> GatewaySnapshot {
        let stats = self.inner.set.stats();
        let t = &self.inner.totals;
        GatewaySnapshot {
            instances: self
                .inner
                .upstreams
                .iter()
                .map(|up| {
                    let s = stats.endpoints.iter().find(|e| e.name == up.name);
                    InstanceSnapshot {
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
            requests: t.requests.load(Ordering::Relaxed),
            rate_limited: t.rate_limited.load(Ordering::Relaxed),
            retries: t.retries.load(Ordering::Relaxed),
            upstream_errors: t.upstream_errors.load(Ordering::Relaxed),
            unavailable: t.unavailable.load(Ordering::Relaxed),
        }
    }
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
        let Ok(uri) = Uri::try_from(format!("http://{}/readyz", up.addr)) else {
            return Health::down();
        };
        let Ok(req) = Request::get(uri).body(Full::new(Bytes::new())) else {
            return Health::down();
        };
        match self.client.request(req).await {
            Ok(resp) if resp.status() == StatusCode::OK => {
                // Read the short body so the connection goes back to the pool.
                let _ = resp.into_body().collect().await;
                Health::up()
            }
            _ => Health::down(),
        }
    }
}

/// Headers that concern one connection only (RFC 9110, 7.6.1), never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove("proxy-connection");
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn with_retry_after(mut resp: Response<Body>, secs: u64) -> Response<Body> {
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    resp
}

/// Whole seconds, rounded up, at least 1.
fn ceil_secs(d: Duration) -> u64 {
    (d.as_nanos().div_ceil(1_000_000_000) as u64).max(1)
}

/// Whose budget a client spends: its IPv4 address, or its IPv6 /64. One IPv6
/// subscriber commonly holds a whole /64; keyed by full address, it could start
/// afresh with every request and fill the limiter's key table.
fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
}

/// Whether reading a body failed because it passed the size limit (and not because
/// the client went away or sent broken chunking).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Counts a call on an instance as in flight until dropped, then reports it.
struct CallGuard {
    selected: Option<Selected<Arc<Upstream>, Breaker>>,
    up: Arc<Upstream>,
    outcome: Outcome,
    latency: Duration,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.up.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(sel) = self.selected.take() {
            sel.finish_with_latency(self.outcome, self.latency);
        }
    }
}

/// A response body streamed from an instance; the call ends when it does.
struct Tracked<B> {
    inner: B,
    guard: Option<CallGuard>,
}

impl<B> HttpBody for Tracked<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                this.guard = None;
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(mut guard) = this.guard.take() {
                    guard.outcome = Outcome::Failure;
                    guard.up.failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why an attempt got no response.
enum Failed {
    /// It never reached the instance: any request may go elsewhere.
    NotSent(String),
    /// It was (or may have been) sent.
    Sent { message: String, timed_out: bool },
}

async fn proxy(State(gw): State<Gateway>, req: Request) -> Response<Body> {
    let inner = &*gw.inner;
    inner.totals.requests.fetch_add(1, Ordering::Relaxed);
    let client_ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let limited = match client_ip {
        Some(ip) => inner.limiter.check_key(&limit_key(ip)),
        None => inner.limiter.check_unkeyed(),
    };
    if let Err(denied) = limited {
        inner.totals.rate_limited.fetch_add(1, Ordering::Relaxed);
        let secs = denied.retry_after_secs().unwrap_or(1);
        return with_retry_after(
            text(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many requests from your address: retry in {secs} s.\n"),
            ),
            secs,
        );
    }

    let (mut parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, inner.max_body).await {
        Ok(bytes) => bytes,
        Err(e) if is_length_limit(&e) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "The request body is larger than the gateway accepts ({} bytes).\n",
                    inner.max_body
                ),
            )
        }
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("The request body could not be read: {e}.\n"),
            )
        }
    };
    strip_hop_by_hop(&mut parts.headers);
    if let Some(ip) = client_ip {
        let forwarded = match parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(before) => format!("{before}, {ip}"),
            None => ip.to_string(),
        };
        if let Ok(value) = HeaderValue::try_from(forwarded) {
            parts.headers.insert("x-forwarded-for", value);
        }
    }
    // What the client says of the protocol or of other proxies is not trusted:
    // this gateway is the edge, and it speaks plain HTTP.
    parts
        .headers
        .insert("x-forwarded-proto", HeaderValue::from_static("http"));
    parts.headers.remove("forwarded");
    parts.headers.remove("x-real-ip");
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let idempotent = parts.method == Method::GET || parts.method == Method::HEAD;

    let mut tried: Vec<Arc<str>> = Vec::with_capacity(inner.upstreams.len());
    let mut resent_after_send = false;
    loop {
        // Never the same instance twice for one request.
        let selected = match inner.set.select_excluding(&tried) {
            Ok(sel) => sel,
            Err(SelectError::Unavailable(None)) if !tried.is_empty() => {
                inner.totals.unavailable.fetch_add(1, Ordering::Relaxed);
                return text(
                    StatusCode::BAD_GATEWAY,
                    "No app instance could be reached; try again shortly.\n".into(),
                );
            }
            Err(e) => {
                inner.totals.unavailable.fetch_add(1, Ordering::Relaxed);
                let secs = match e {
                    SelectError::Unavailable(Some(r)) => r.retry_after_hint().map_or(1, ceil_secs),
                    _ => 1,
                };
                return with_retry_after(
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "No app instance is available now; try again shortly.\n".into(),
                    ),
                    secs,
                );
            }
        };
        let up = Arc::clone(selected.value());
        tried.push(Arc::clone(&up.name));
        up.requests.fetch_add(1, Ordering::Relaxed);
        up.in_flight.fetch_add(1, Ordering::Relaxed);
        // Cancelled until the attempt ends: a client that goes away while the
        // instance works must not count against the instance (its breaker, its
        // ejection), or one impatient client could take every instance out.
        let mut guard = CallGuard {
            selected: Some(selected),
            up: Arc::clone(&up),
            outcome: Outcome::Cancelled,
            latency: Duration::ZERO,
        };
        let started = Instant::now();
        let attempt = attempt(inner, &up, &parts, &path, body.clone()).await;
        guard.latency = started.elapsed();
        match attempt {
            Ok(resp) => {
                let (mut head, incoming) = resp.into_parts();
                strip_hop_by_hop(&mut head.headers);
                guard.outcome = outcome_of(head.status);
                match guard.outcome {
                    Outcome::Failure => up.failures.fetch_add(1, Ordering::Relaxed),
                    Outcome::Ignored => up.app_errors.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
                let body = Tracked {
                    inner: incoming,
                    guard: Some(guard),
                };
                return Response::from_parts(head, Body::new(body));
            }
            Err(failed) => {
                inner.totals.upstream_errors.fetch_add(1, Ordering::Relaxed);
                up.failures.fetch_add(1, Ordering::Relaxed);
                // A refused connection fails in microseconds; the replica set
                // counts a failure as `failure_penalty_factor` times the instance's
                // estimate at least, so a dead instance does not look the fastest.
                guard.outcome = Outcome::Failure;
                drop(guard);
                let more = tried.len() < inner.upstreams.len();
                match failed {
                    Failed::NotSent(message) => {
                        tracing::debug!("gateway: {}: {message}; trying another instance", up.name);
                        if !more {
                            return text(
                                StatusCode::BAD_GATEWAY,
                                "No app instance could be reached; try again shortly.\n".into(),
                            );
                        }
                    }
                    Failed::Sent { message, timed_out } => {
                        up.failed_after_send.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "gateway: {} {path} on {}: {message}",
                            parts.method,
                            up.name
                        );
                        if !(idempotent && !resent_after_send && more) {
                            let status = if timed_out {
                                StatusCode::GATEWAY_TIMEOUT
                            } else {
                                StatusCode::BAD_GATEWAY
                            };
                            return text(
                                status,
                                format!(
                                    "The app instance did not answer ({message}). The request was sent, so it may or may not have taken effect: check before repeating it.\n"
                                ),
                            );
                        }
                        resent_after_send = true;
                    }
                }
                inner.totals.retries.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// What an instance's answer says of the instance's health, for its breaker, its
/// ejection and its latency estimate.
///
/// Only what says the instance is unwell counts against it: `503` (the app's
/// answer when its database is unavailable, or an overloaded server's), and `502`
/// and `504` (what a proxy in front of it says when it cannot reach it). Any other
/// `5xx` is about one request (a `500` for input the app could not handle): it is
/// passed on to the client and counted apart ([`InstanceSnapshot::app_errors`]),
/// neither for nor against the instance. Otherwise one client could send requests
/// that fail, well within its rate limit, and open every instance's breaker for
/// everyone. An instance that fails every request is still caught by its `/readyz`
/// check (which asks its database), and by connection failures and timeouts.
fn outcome_of(status: StatusCode) -> Outcome {
    match status {
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => {
            Outcome::Failure
        }
        s if s.is_server_error() => Outcome::Ignored,
        _ => Outcome::Success,
    }
}

/// Sends one attempt to `up` and waits for its response headers.
async fn attempt(
    inner: &Inner,
    up: &Upstream,
    parts: &axum::http::request::Parts,
    path: &str,
    body: Bytes,
) -> Result<Response<hyper::body::Incoming>, Failed> {
    let uri = Uri::try_from(format!("http://{}{path}", up.addr))
        .map_err(|e| Failed::NotSent(format!("bad upstream address: {e}")))?;
    let mut req = axum::http::Request::new(Full::new(body));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = parts.headers.clone();
    match tokio::time::timeout(inner.upstream_timeout, inner.client.request(req)).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) if e.is_connect() => Err(Failed::NotSent(format!("cannot connect: {e}"))),
        Ok(Err(e)) => Err(Failed::Sent {
            message: match std::error::Error::source(&e) {
                Some(source) => format!("{e}: {source}"),
                None => e.to_string(),
            },
            timed_out: false,
        }),
        Err(_) => Err(Failed::Sent {
            message: format!("no response within {:?}", inner.upstream_timeout),
            timed_out: true,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let a = limit_key(ip("2001:db8:1:2:aaaa::1"));
        assert_eq!(a, limit_key(ip("2001:db8:1:2:bbbb::9")));
        assert_ne!(a, limit_key(ip("2001:db8:1:3::1")));
        assert_eq!(limit_key(ip("10.1.2.3")), ip("10.1.2.3"));
        // An IPv4 client seen through a dual-stack socket.
        assert_eq!(limit_key(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
    }
}
