//! The tower layer that counts requests and records their latency.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use axum::http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{Ops, RouteId, UNMATCHED};

/// Counts every request by route template and status, and records its latency, in
/// an [`Ops`]. Apply it with `Router::layer` so that axum has matched the route
/// (the label is the route's template, from [`MatchedPath`]).
#[derive(Clone, Debug)]
pub struct OpsLayer {
    ops: Arc<Ops>,
    unmatched: &'static str,
}

impl OpsLayer {
    /// Records into `ops`.
    pub fn new(ops: Arc<Ops>) -> Self {
        Self {
            ops,
            unmatched: UNMATCHED,
        }
    }

    /// Labels requests that no route matched `label` instead of
    /// [`UNMATCHED`]: the gateway's proxied requests are `proxied`.
    pub fn unmatched_as(mut self, label: &'static str) -> Self {
        self.unmatched = label;
        self
    }
}

impl<S> Layer<S> for OpsLayer {
    type Service = OpsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OpsService {
            inner,
            ops: self.ops.clone(),
            unmatched: self.unmatched,
        }
    }
}

/// The service [`OpsLayer`] makes.
#[derive(Clone, Debug)]
pub struct OpsService<S> {
    inner: S,
    ops: Arc<Ops>,
    unmatched: &'static str,
}

impl<S, B, ResBody> Service<Request<B>> for OpsService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = OpsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or(self.unmatched, MatchedPath::as_str);
        let route = self.ops.route_id(route);
        OpsFuture {
            inner: self.inner.call(req),
            ops: Some(self.ops.clone()),
            route,
            started: quanta::Instant::now(),
        }
    }
}

pin_project! {
    /// The response future of [`OpsService`].
    pub struct OpsFuture<F> {
        #[pin]
        inner: F,
        ops: Option<Arc<Ops>>,
        route: RouteId,
        started: quanta::Instant,
    }
}

impl<F: std::fmt::Debug> std::fmt::Debug for OpsFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpsFuture")
            .field("inner", &self.inner)
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for OpsFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Some(ops) = this.ops.take() {
            // An error from the service (never, for axum routes) counts as a 500.
            let status = result.as_ref().map_or(500, |r| r.status().as_u16());
            ops.record(*this.route, status, this.started.elapsed());
        }
        Poll::Ready(result)
    }
}
