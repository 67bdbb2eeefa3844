//! A per-client-IP rate limit for an axum app, through the core tower layer.
//!
//! * `KeyedRateLimiter<IpAddr>` holds one GCRA bucket per client, with a hard
//!   cap on clients.
//! * `AdmissionLayer::key_by(client_ip)` asks it about each request's IP in
//!   `call`, and every clone of the router (axum clones per connection) shares
//!   it: the limit is per client for the whole app, not per clone.
//! * A rejected request becomes `429 Too Many Requests` with `Retry-After` and the
//!   `RateLimit-*` fields; admitted ones carry `RateLimit-*` too.
//!
//! Run: `cargo run -p scalekit-limit --example axum_per_ip --features tokio`, then
//! `for i in $(seq 7); do curl -si localhost:3000/ | head -1; done`.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use scalekit_core::tower::{AdmissionError, AdmissionLayer};
use scalekit_core::Clock;
use scalekit_limit::{KeyedRateLimiter, Quota, RateLimitState};
use tower::ServiceBuilder;

/// The client's address as the server saw it. (Behind a proxy, read the
/// address the proxy reports instead, and only from a proxy you trust.)
pub(crate) fn client_ip(req: &Request<Body>) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

fn headers(state: &RateLimitState, headers: &mut HeaderMap) {
    let mut put = |name: &'static str, value: u64| {
        headers.insert(name, HeaderValue::from(value));
    };
    put("ratelimit-limit", u64::from(state.limit()));
    put("ratelimit-remaining", u64::from(state.remaining()));
    put("ratelimit-reset", state.reset_after_secs());
}

/// Adds the `RateLimit-*` fields to admitted responses.
async fn rate_limit_headers<C: Clock + 'static>(
    State(limiter): State<Arc<KeyedRateLimiter<IpAddr, C>>>,
    req: Request<Body>,
    next: Next,
) -> Response {
    let ip = client_ip(&req);
    let mut response = next.run(req).await;
    if let Some(ip) = ip {
        headers(&limiter.state_of(&ip), response.headers_mut());
    }
    response
}

/// The app: `/` answers hello, at most `quota` per client IP.
pub(crate) fn app<C: Clock + 'static>(limiter: Arc<KeyedRateLimiter<IpAddr, C>>) -> Router {
    let burst = limiter.quota().burst();
    let on_rejected = move |err: AdmissionError<Infallible>| async move {
        match err.rejected() {
            Some(rejected) => {
                let mut response = StatusCode::TOO_MANY_REQUESTS.into_response();
                let h = response.headers_mut();
                let wait = rejected
                    .retry_after_hint()
                    .map(|d| (d.as_nanos().div_ceil(1_000_000_000) as u64).max(1))
                    .unwrap_or(1);
                h.insert("retry-after", HeaderValue::from(wait));
                h.insert("ratelimit-limit", HeaderValue::from(burst));
                h.insert("ratelimit-remaining", HeaderValue::from(0u32));
                h.insert("ratelimit-reset", HeaderValue::from(wait));
                response
            }
            None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    };
    Router::new().route("/", get(|| async { "hello\n" })).layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn_with_state(
                Arc::clone(&limiter),
                rate_limit_headers::<C>,
            ))
            .layer(HandleErrorLayer::new(on_rejected))
            .layer(AdmissionLayer::from_arc(limiter).key_by(client_ip)),
    )
}

#[allow(dead_code)] // the tests include this file as a module
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quota = Quota::per_second(NonZeroU32::new(5).ok_or("zero")?);
    let limiter = Arc::new(
        KeyedRateLimiter::<IpAddr>::builder(quota)
            .max_keys(100_000)
            .build()?,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app(limiter).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
