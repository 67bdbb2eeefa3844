use super::future::ResponseFuture;
use crate::member::AlwaysAdmit;
use crate::set::ReplicaSet;
use scalekit_core::tower::{Classify, DefaultClassifier};
use scalekit_core::{Admission, Clock, MonotonicClock};
use std::fmt;
use std::task::{Context, Poll};
use tower_service::Service;

use super::error::ReplicaServiceError;

/// A tower [`Service`] that sends each call to an endpoint of a
/// [`ReplicaSet`] whose values are services (one per backend: a gRPC channel,
/// an HTTP client bound to one instance).
///
/// * **The decision is made in `call`**, on the set's shared state (behind an
///   `Arc`): every clone of the service, and every task, balances over the same
///   estimates, ejections and outstanding counts.
/// * **`poll_ready` is always ready**: readiness belongs to the chosen
///   endpoint. The response future first waits for *that* endpoint's service
///   to be ready (on a clone of it, so the set's copy is never borrowed
///   mutably), then calls it. While it waits the call counts as outstanding
///   on that endpoint, which steers other calls elsewhere.
/// * **Feedback**: the result is classified (by default `Ok` a success, `Err`
///   a failure; see [`classify`](Self::classify)) and reported to the set with
///   the latency since selection, so peak-EWMA, outlier ejection and the
///   endpoint's admission policy see every call. A readiness error counts as
///   a failure; a response future dropped unfinished as cancelled.
/// * **No endpoint** (all ejected, unhealthy or refused): the call resolves at
///   once to [`ReplicaServiceError::Unavailable`].
///
/// Endpoint services must be `Clone`, cheaply (tonic's `Channel`, a hyper
/// client, an `Arc`-backed service): each call clones the chosen one.
///
/// ```
/// use scalekit_replica::tower::ReplicaService;
/// use scalekit_replica::{Member, ReplicaSet};
/// use tower::{service_fn, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let backend = |id: u32| service_fn(move |x: u32| async move { Ok::<_, std::io::Error>((id, x * 2)) });
/// let set = ReplicaSet::builder()
///     .member(Member::replica("a", backend(1)))
///     .member(Member::replica("b", backend(2)))
///     .build()?;
/// let svc = ReplicaService::new(set.clone());
/// let (id, doubled) = svc.clone().oneshot(21).await?;
/// assert_eq!(doubled, 42);
/// assert!(id == 1 || id == 2);
/// assert!(set.stats().endpoints.iter().all(|e| e.outstanding == 0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct ReplicaService<S, A = AlwaysAdmit, C = MonotonicClock, F = DefaultClassifier> {
    set: ReplicaSet<S, A, C>,
    classify: F,
}

impl<S, A, C> ReplicaService<S, A, C> {
    /// Balances over `set` (reads: [`ReplicaSet::select`]), `Ok` counting as
    /// a success and `Err` as a failure.
    pub fn new(set: ReplicaSet<S, A, C>) -> Self {
        Self {
            set,
            classify: DefaultClassifier,
        }
    }
}

impl<S, A, C, F> ReplicaService<S, A, C, F> {
    /// How a result counts for the set: for HTTP-like services, where a 5xx
    /// answer is an `Ok`, say it is a failure so that it counts toward
    /// ejection.
    ///
    /// ```
    /// use scalekit_core::Outcome;
    /// use scalekit_replica::tower::ReplicaService;
    /// use scalekit_replica::{Member, ReplicaSet};
    /// use tower::service_fn;
    ///
    /// let set = ReplicaSet::builder()
    ///     .member(Member::replica("a", service_fn(|_: ()| async { Ok::<u16, std::io::Error>(503) })))
    ///     .build()?;
    /// let svc = ReplicaService::new(set).classify(|r: &Result<u16, std::io::Error>| match r {
    ///     Ok(status) if *status >= 500 => Outcome::Failure,
    ///     Ok(_) => Outcome::Success,
    ///     Err(_) => Outcome::Failure,
    /// });
    /// # let _ = svc;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn classify<F2>(self, classify: F2) -> ReplicaService<S, A, C, F2> {
        ReplicaService {
            set: self.set,
            classify,
        }
    }

    /// The replica set this service balances over.
    pub fn set(&self) -> &ReplicaSet<S, A, C> {
        &self.set
    }
}

impl<S, A, C, F: Clone> Clone for ReplicaService<S, A, C, F> {
    fn clone(&self) -> Self {
        Self {
            set: self.set.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<S, A, C, F> fmt::Debug for ReplicaService<S, A, C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicaService")
            .field("set", &self.set)
            .finish_non_exhaustive()
    }
}

impl<S, A, C, F, Req> Service<Req> for ReplicaService<S, A, C, F>
where
    S: Service<Req> + Clone,
    A: Admission,
    C: Clock,
    F: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = ReplicaServiceError<S::Error>;
    type Future = ResponseFuture<S, Req, A, C, F>;

    /// Always ready: the endpoint is chosen in `call`, and its own readiness
    /// is awaited by the response future.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        match self.set.select() {
            Ok(selected) => {
                let service = selected.value().clone();
                ResponseFuture::selected(selected, service, request, self.classify.clone())
            }
            Err(e) => ResponseFuture::unavailable(e),
        }
    }
}
