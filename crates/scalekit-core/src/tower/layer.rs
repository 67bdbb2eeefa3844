use std::sync::Arc;

use tower_layer::Layer;

use super::{AdmissionService, DefaultClassifier};
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
pub struct AdmissionLayer<P, C = MonotonicClock, F = DefaultClassifier> {
    policy: Arc<P>,
    clock: C,
    classify: F,
}

impl<P, C: Clone, F: Clone> Clone for AdmissionLayer<P, C, F> {
    fn clone(&self) -> Self {
        Self {
            policy: Arc::clone(&self.policy),
            clock: self.clock.clone(),
            classify: self.classify.clone(),
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
        }
    }
}

impl<P, C, F> AdmissionLayer<P, C, F> {
    /// Times calls on `clock` instead.
    pub fn with_clock<C2>(self, clock: C2) -> AdmissionLayer<P, C2, F> {
        AdmissionLayer {
            policy: self.policy,
            clock,
            classify: self.classify,
        }
    }

    /// Classifies results with `classify` instead.
    pub fn classify_with<F2>(self, classify: F2) -> AdmissionLayer<P, C, F2> {
        AdmissionLayer {
            policy: self.policy,
            clock: self.clock,
            classify,
        }
    }

    /// The shared policy.
    pub fn policy(&self) -> &Arc<P> {
        &self.policy
    }
}

impl<S, P, C: Clone, F: Clone> Layer<S> for AdmissionLayer<P, C, F> {
    type Service = AdmissionService<S, P, C, F>;

    fn layer(&self, inner: S) -> Self::Service {
        AdmissionService::new(
            inner,
            Arc::clone(&self.policy),
            self.clock.clone(),
            self.classify.clone(),
        )
    }
}
