use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::{AdmissionError, Classify};
use crate::{Admission, Clock, Outcome, Rejected};

/// The policy's side of an admitted call, handed back exactly once.
struct Pending<P: Admission, C> {
    permit: P::Permit,
    policy: Arc<P>,
    clock: C,
    started: u64,
}

impl<P: Admission, C: Clock> Pending<P, C> {
    fn finish(self, outcome: Outcome) {
        let latency = self.clock.elapsed_since(self.started);
        self.policy.record(self.permit, outcome, latency);
    }
}

pin_project! {
    /// The response future of an [`AdmissionService`](super::AdmissionService).
    ///
    /// Reports the call's outcome to the policy when it completes;
    /// [`Outcome::Cancelled`] if it is dropped first, or [`Outcome::Failure`] if the
    /// call (or the classifier) panicked. Every admitted call is reported once.
    pub struct ResponseFuture<Fut, P: Admission, C: Clock, F> {
        #[pin]
        future: Option<Fut>,
        rejected: Option<Rejected>,
        pending: Option<Pending<P, C>>,
        classify: Option<F>,
    }

    impl<Fut, P: Admission, C: Clock, F> PinnedDrop for ResponseFuture<Fut, P, C, F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(pending) = this.project().pending.take() {
                // Dropped unfinished: the caller gave up, or the call panicked.
                let outcome = if std::thread::panicking() {
                    Outcome::Failure
                } else {
                    Outcome::Cancelled
                };
                pending.finish(outcome);
            }
        }
    }
}

impl<Fut, P: Admission, C: Clock, F> ResponseFuture<Fut, P, C, F> {
    pub(super) fn rejected(rejected: Rejected) -> Self {
        Self {
            future: None,
            rejected: Some(rejected),
            pending: None,
            classify: None,
        }
    }

    pub(super) fn admitted(
        future: Fut,
        permit: P::Permit,
        policy: Arc<P>,
        clock: C,
        classify: F,
        started: u64,
    ) -> Self {
        Self {
            future: Some(future),
            rejected: None,
            pending: Some(Pending {
                permit,
                policy,
                clock,
                started,
            }),
            classify: Some(classify),
        }
    }
}

impl<Fut, R, E, P, C, F> Future for ResponseFuture<Fut, P, C, F>
where
    Fut: Future<Output = Result<R, E>>,
    P: Admission,
    C: Clock,
    F: Classify<R, E>,
{
    type Output = Result<R, AdmissionError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(rejected) = this.rejected.take() {
            return Poll::Ready(Err(AdmissionError::Rejected(rejected)));
        }
        let mut slot = this.future;
        let Some(future) = slot.as_mut().as_pin_mut() else {
            // Polled after completion: the contract of `Future` allows anything but
            // undefined behaviour; we stay pending rather than panic.
            return Poll::Pending;
        };
        let result = std::task::ready!(future.poll(cx));
        slot.set(None);
        // Classify before taking the permit: if the classifier panics, the permit
        // is still here and the drop below hands it back.
        if let Some(classify) = this.classify.as_ref() {
            let outcome = classify.classify(&result);
            if let Some(pending) = this.pending.take() {
                pending.finish(outcome);
            }
        }
        Poll::Ready(result.map_err(AdmissionError::Inner))
    }
}

impl<Fut, P: Admission, C: Clock, F> fmt::Debug for ResponseFuture<Fut, P, C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("rejected", &self.rejected)
            .field("admitted", &self.pending.is_some())
            .finish_non_exhaustive()
    }
}
