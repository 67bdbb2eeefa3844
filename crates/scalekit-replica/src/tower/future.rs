use super::error::ReplicaServiceError;
use crate::error::SelectError;
use crate::set::Selected;
use pin_project_lite::pin_project;
use scalekit_core::tower::Classify;
use scalekit_core::{Admission, Clock, Outcome};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower_service::Service;

pin_project! {
    #[project = StateProj]
    enum State<S: Service<Req>, Req> {
        /// Waiting for the chosen endpoint's service to be ready.
        Ready { service: S, request: Option<Req> },
        /// The endpoint's service has the request.
        Calling { #[pin] future: S::Future },
        /// No endpoint could take the call.
        Unavailable { error: Option<SelectError> },
        Done,
    }
}

pin_project! {
    /// The response future of a [`ReplicaService`](super::ReplicaService): waits
    /// for the chosen endpoint to be ready, calls it, and reports the outcome
    /// and latency to the set ([`Outcome::Cancelled`] if dropped first).
    pub struct ResponseFuture<S: Service<Req>, Req, A: Admission, C: Clock, F> {
        #[pin]
        state: State<S, Req>,
        selected: Option<Selected<S, A, C>>,
        classify: Option<F>,
    }
}

impl<S: Service<Req>, Req, A: Admission, C: Clock, F> ResponseFuture<S, Req, A, C, F> {
    pub(super) fn selected(
        selected: Selected<S, A, C>,
        service: S,
        request: Req,
        classify: F,
    ) -> Self {
        Self {
            state: State::Ready {
                service,
                request: Some(request),
            },
            selected: Some(selected),
            classify: Some(classify),
        }
    }

    pub(super) fn unavailable(error: SelectError) -> Self {
        Self {
            state: State::Unavailable { error: Some(error) },
            selected: None,
            classify: None,
        }
    }
}

impl<S, Req, A, C, F> Future for ResponseFuture<S, Req, A, C, F>
where
    S: Service<Req>,
    A: Admission,
    C: Clock,
    F: Classify<S::Response, S::Error>,
{
    type Output = Result<S::Response, ReplicaServiceError<S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Unavailable { error } => {
                    let e = error.take().unwrap_or(SelectError::Unavailable(None));
                    this.state.set(State::Done);
                    return Poll::Ready(Err(ReplicaServiceError::Unavailable(e)));
                }
                StateProj::Ready { service, request } => {
                    if let Err(e) = std::task::ready!(service.poll_ready(cx)) {
                        // Not ready, ever: a failure of this endpoint; the
                        // request was never sent.
                        if let Some(s) = this.selected.take() {
                            s.finish(Outcome::Failure);
                        }
                        this.state.set(State::Done);
                        return Poll::Ready(Err(ReplicaServiceError::Inner(e)));
                    }
                    let Some(request) = request.take() else {
                        this.state.set(State::Done);
                        return Poll::Pending;
                    };
                    let future = service.call(request);
                    this.state.set(State::Calling { future });
                }
                StateProj::Calling { future } => {
                    let result = std::task::ready!(future.poll(cx));
                    if let (Some(classify), Some(s)) =
                        (this.classify.as_ref(), this.selected.take())
                    {
                        s.finish(classify.classify(&result));
                    }
                    this.state.set(State::Done);
                    return Poll::Ready(result.map_err(ReplicaServiceError::Inner));
                }
                // Polled after completion: stay pending rather than panic.
                StateProj::Done => return Poll::Pending,
            }
        }
    }
}

impl<S: Service<Req>, Req, A: Admission, C: Clock, F> fmt::Debug
    for ResponseFuture<S, Req, A, C, F>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("endpoint", &self.selected.as_ref().map(|s| s.name()))
            .finish_non_exhaustive()
    }
}
