use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::{AdmissionError, Admit, Classify, ResponseFuture, Unkeyed};
use crate::{Admission, Clock};

/// A service whose calls are admitted by a shared policy. Made by
/// [`AdmissionLayer`](super::AdmissionLayer).
///
/// Clones share the policy (it is behind an `Arc`) and clone the inner service.
#[derive(Debug)]
pub struct AdmissionService<S, P, C, F, X = Unkeyed> {
    inner: S,
    policy: Arc<P>,
    clock: C,
    classify: F,
    admit: X,
}

impl<S: Clone, P, C: Clone, F: Clone, X: Clone> Clone for AdmissionService<S, P, C, F, X> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: Arc::clone(&self.policy),
            clock: self.clock.clone(),
            classify: self.classify.clone(),
            admit: self.admit.clone(),
        }
    }
}

impl<S, P, C, F, X> AdmissionService<S, P, C, F, X> {
    pub(super) fn new(inner: S, policy: Arc<P>, clock: C, classify: F, admit: X) -> Self {
        Self {
            inner,
            policy,
            clock,
            classify,
            admit,
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

impl<S, Req, P, C, F, X> Service<Req> for AdmissionService<S, P, C, F, X>
where
    S: Service<Req>,
    P: Admission,
    X: Admit<P, Req>,
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
        match self.admit.admit(&self.policy, &req) {
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
