use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::{AdmissionError, Classify, ResponseFuture};
use crate::{Admission, Clock};

/// A service whose calls are admitted by a shared policy. Made by
/// [`AdmissionLayer`](super::AdmissionLayer).
///
/// Clones share the policy (it is behind an `Arc`) and clone the inner service.
#[derive(Debug)]
pub struct AdmissionService<S, P, C, F> {
    inner: S,
    policy: Arc<P>,
    clock: C,
    classify: F,
}

impl<S: Clone, P, C: Clone, F: Clone> Clone for AdmissionService<S, P, C, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: Arc::clone(&self.policy),
            clock: self.clock.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<S, P, C, F> AdmissionService<S, P, C, F> {
    pub(super) fn new(inner: S, policy: Arc<P>, clock: C, classify: F) -> Self {
        Self {
            inner,
            policy,
            clock,
            classify,
        }
    }

    /// The shared policy.
    pub fn policy(&self) -> &Arc<P> {
        &self.policy
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req, P, C, F> Service<Req> for AdmissionService<S, P, C, F>
where
    S: Service<Req>,
    P: Admission,
    C: Clock + Clone,
    F: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = AdmissionError<S::Error>;
    type Future = ResponseFuture<S::Future, P, C, F>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(AdmissionError::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.policy.try_acquire() {
            Err(rejected) => ResponseFuture::rejected(rejected),
            Ok(permit) => {
                let started = self.clock.now_nanos();
                let future = self.inner.call(req);
                ResponseFuture::admitted(
                    future,
                    permit,
                    Arc::clone(&self.policy),
                    self.clock.clone(),
                    self.classify.clone(),
                    started,
                )
            }
        }
    }
}
