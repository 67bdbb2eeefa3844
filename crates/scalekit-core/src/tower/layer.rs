use std::sync::Arc;

use tower_layer::Layer;

use super::{AdmissionService, DefaultClassifier, KeyBy, Unkeyed};
use crate::{Admission, MonotonicClock};

/// Applies an admission policy to every service it wraps (feature `tower`).
///
/// The policy is held in an `Arc`: all services made by this layer, and all their
/// clones, share it. See the [module docs](super) for the full behaviour.
///
/// ```
/// use scalekit_core::tower::AdmissionLayer;
/// use scalekit_core::{Admission, ManualClock, Outcome, Rejected};
/// use std::time::Duration;
///
/// struct AdmitAll;
/// impl Admission for AdmitAll {
///     type Permit = ();
///     fn try_acquire(&self) -> Result<(), Rejected> { Ok(()) }
///     fn record(&self, _: (), _: Outcome, _: Duration) {}
/// }
///
/// // A manual clock makes the reported latencies deterministic in tests, and a
/// // classifier decides what counts as a failure.
/// let layer = AdmissionLayer::new(AdmitAll)
///     .with_clock(ManualClock::new())
///     .classify_with(|r: &Result<u16, ()>| match r {
///         Ok(s) if *s < 500 => Outcome::Success,
///         _ => Outcome::Failure,
///     });
/// # let _ = layer;
/// ```
#[derive(Debug)]
pub struct AdmissionLayer<P, C = MonotonicClock, F = DefaultClassifier, X = Unkeyed> {
    policy: Arc<P>,
    clock: C,
    classify: F,
    admit: X,
}

impl<P, C: Clone, F: Clone, X: Clone> Clone for AdmissionLayer<P, C, F, X> {
    fn clone(&self) -> Self {
        Self {
            policy: Arc::clone(&self.policy),
            clock: self.clock.clone(),
            classify: self.classify.clone(),
            admit: self.admit.clone(),
        }
    }
}

impl<P: Admission> AdmissionLayer<P> {
    /// A layer applying `policy`, timing calls on the real clock and counting `Err`
    /// as failure.
    pub fn new(policy: P) -> Self {
        Self::from_arc(Arc::new(policy))
    }

    /// A layer applying a policy that is also held elsewhere (for its stats, or to
    /// share it with other layers).
    pub fn from_arc(policy: Arc<P>) -> Self {
        Self {
            policy,
            clock: MonotonicClock,
            classify: DefaultClassifier,
            admit: Unkeyed,
        }
    }
}

impl<P, C, F, X> AdmissionLayer<P, C, F, X> {
    /// Times calls on `clock` instead.
    pub fn with_clock<C2>(self, clock: C2) -> AdmissionLayer<P, C2, F, X> {
        AdmissionLayer {
            policy: self.policy,
            clock,
            classify: self.classify,
            admit: self.admit,
        }
    }

    /// Classifies results with `classify` instead.
    pub fn classify_with<F2>(self, classify: F2) -> AdmissionLayer<P, C, F2, X> {
        AdmissionLayer {
            policy: self.policy,
            clock: self.clock,
            classify,
            admit: self.admit,
        }
    }

    /// Asks the policy per key: `key` extracts a key from each request (a client
    /// IP, a user id) and the policy, a [`KeyedAdmission`](crate::KeyedAdmission),
    /// decides for that key. Everything else stays as it was: the decision is
    /// made in `call`, and clones share the policy and so every key's state.
    ///
    /// ```
    /// use scalekit_core::tower::{AdmissionError, AdmissionLayer};
    /// use scalekit_core::{Admission, KeyedAdmission, Outcome, RejectReason, Rejected};
    /// use std::time::Duration;
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// /// Rejects one user id, admits the rest.
    /// struct Deny(u32);
    /// impl Admission for Deny {
    ///     type Permit = ();
    ///     fn try_acquire(&self) -> Result<(), Rejected> { Ok(()) }
    ///     fn record(&self, _: (), _: Outcome, _: Duration) {}
    /// }
    /// impl KeyedAdmission<u32> for Deny {
    ///     fn try_acquire_key(&self, user: &u32) -> Result<(), Rejected> {
    ///         if *user == self.0 { Err(Rejected::new(RejectReason::RateLimited)) } else { Ok(()) }
    ///     }
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// // Requests are (user id, payload) pairs; the key is the user id.
    /// let layer = AdmissionLayer::new(Deny(666)).key_by(|req: &(u32, u32)| req.0);
    /// let svc = layer.layer(service_fn(|(_, x): (u32, u32)| async move { Ok::<_, std::io::Error>(x) }));
    /// assert_eq!(svc.clone().oneshot((1, 7)).await.unwrap(), 7);
    /// assert!(matches!(svc.oneshot((666, 7)).await, Err(AdmissionError::Rejected(_))));
    /// # });
    /// ```
    pub fn key_by<G>(self, key: G) -> AdmissionLayer<P, C, F, KeyBy<G>> {
        AdmissionLayer {
            policy: self.policy,
            clock: self.clock,
            classify: self.classify,
            admit: KeyBy(key),
        }
    }

    /// The shared policy.
    pub fn policy(&self) -> &Arc<P> {
        &self.policy
    }
}

impl<S, P, C: Clone, F: Clone, X: Clone> Layer<S> for AdmissionLayer<P, C, F, X> {
    type Service = AdmissionService<S, P, C, F, X>;

    fn layer(&self, inner: S) -> Self::Service {
        AdmissionService::new(
            inner,
            Arc::clone(&self.policy),
            self.clock.clone(),
            self.classify.clone(),
            self.admit.clone(),
        )
    }
}
