//! Forwarding one request: the client's limit, its body and headers, the choice of
//! an instance and the retries, and what each answer says of the instance.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, Response, StatusCode, Uri};
use axum::response::IntoResponse;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::Full;
use scalekit_core::{Clock, Outcome};
use scalekit_replica::{SelectError, Selected};

use super::{Breaker, Gateway, Inner, Upstream};

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
    selected: Option<Selected<Arc<Upstream>, Breaker, Arc<dyn Clock>>>,
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

/// The gateway's fallback route: the per-IP limit, the body read whole, the
/// headers rewritten, then [`forward`].
pub(super) async fn proxy(State(gw): State<Gateway>, req: Request) -> Response<Body> {
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
    forward(inner, &parts, &path, body).await
}

/// Sends a request to an instance, and to another when it could not reach one (or,
/// for a `GET` or `HEAD`, when it failed after it was sent); the answer, or why
/// there is none.
async fn forward(
    inner: &Inner,
    parts: &axum::http::request::Parts,
    path: &str,
    body: Bytes,
) -> Response<Body> {
    let idempotent = parts.method == Method::GET || parts.method == Method::HEAD;
    let mut tried: Vec<Arc<str>> = Vec::with_capacity(inner.upstreams.len());
    let mut resent_after_send = false;
    loop {
        // Never the same instance twice for one request.
        let selected = match inner.set.select_excluding(&tried) {
            Ok(sel) => sel,
            Err(e) => return unavailable(inner, &e, !tried.is_empty()),
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
        let attempt = attempt(inner, &up, parts, path, body.clone()).await;
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
/// passed on to the client and counted apart ([`InstanceFigures::app_errors`](super::InstanceFigures::app_errors)),
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

/// The answer when no instance can take a request: 502 after instances were tried
/// and could not be reached, else 503 with `Retry-After`.
fn unavailable(inner: &Inner, e: &SelectError, tried_some: bool) -> Response<Body> {
    inner.totals.unavailable.fetch_add(1, Ordering::Relaxed);
    match e {
        SelectError::Unavailable(None) if tried_some => text(
            StatusCode::BAD_GATEWAY,
            "No app instance could be reached; try again shortly.\n".into(),
        ),
        _ => {
            let secs = match e {
                SelectError::Unavailable(Some(r)) => r.retry_after_hint().map_or(1, ceil_secs),
                _ => 1,
            };
            with_retry_after(
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "No app instance is available now; try again shortly.\n".into(),
                ),
                secs,
            )
        }
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
