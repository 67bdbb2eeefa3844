//! Admission: a policy asked before a call and told how the call went.
//!
//! Circuit breakers, rate limiters, concurrency limiters and load shedders all
//! answer the same two questions, so they share one trait:
//!
//! 1. **Before the call** — [`Admission::try_acquire`]: may this call go ahead? The
//!    answer is a permit, or a [`Rejected`] value that may say when to retry.
//! 2. **After the call** — [`Admission::record`]: the permit comes back with the
//!    call's [`Outcome`] and latency. A breaker counts failures and slow calls, an
//!    adaptive concurrency limiter learns from latency, a concurrency limiter frees
//!    a slot, a plain rate limiter ignores it.
//!
//! The permit carries whatever the policy needs to match the outcome to the call:
//! a breaker's state generation (so a result from before the last transition is
//! ignored), a limiter's slot. A rejection is a small `Copy` value: rejecting
//! allocates nothing.
//!
//! With the `tower` feature, [`AdmissionLayer`](crate::tower::AdmissionLayer)
//! applies any policy to any tower `Service`.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A policy that admits or rejects calls and learns from their outcomes.
///
/// Implementations use shared state (`&self`), so one policy can be consulted from
/// many threads and many clones of a service at once.
///
/// ```
/// use scalekit_core::{Admission, Outcome, RejectReason, Rejected};
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
///
/// /// At most `max` calls in flight.
/// struct InFlight { now: AtomicU32, max: u32 }
///
/// impl Admission for InFlight {
///     type Permit = ();
///     fn try_acquire(&self) -> Result<(), Rejected> {
///         self.now
///             .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
///             .map(|_| ())
///             .map_err(|_| Rejected::new(RejectReason::ConcurrencyLimited))
///     }
///     fn record(&self, _permit: (), _outcome: Outcome, _latency: Duration) {
///         self.now.fetch_sub(1, Ordering::AcqRel);
///     }
/// }
///
/// let limit = InFlight { now: AtomicU32::new(0), max: 1 };
/// let permit = limit.try_acquire().unwrap();
/// assert!(limit.try_acquire().is_err());
/// limit.record(permit, Outcome::Success, Duration::from_millis(3));
/// assert!(limit.try_acquire().is_ok());
/// ```
pub trait Admission: Send + Sync {
    /// What an admitted call holds until it reports back.
    type Permit: Send + 'static;

    /// Asks whether a call may start now.
    fn try_acquire(&self) -> Result<Self::Permit, Rejected>;

    /// Reports how an admitted call ended and how long it took.
    ///
    /// Every permit should be handed back exactly once; a call abandoned before it
    /// finished is reported as [`Outcome::Cancelled`].
    fn record(&self, permit: Self::Permit, outcome: Outcome, latency: Duration);
}

impl<A: Admission + ?Sized> Admission for &A {
    type Permit = A::Permit;
    #[inline]
    fn try_acquire(&self) -> Result<Self::Permit, Rejected> {
        (**self).try_acquire()
    }
    #[inline]
    fn record(&self, permit: Self::Permit, outcome: Outcome, latency: Duration) {
        (**self).record(permit, outcome, latency)
    }
}

impl<A: Admission + ?Sized> Admission for Arc<A> {
    type Permit = A::Permit;
    #[inline]
    fn try_acquire(&self) -> Result<Self::Permit, Rejected> {
        (**self).try_acquire()
    }
    #[inline]
    fn record(&self, permit: Self::Permit, outcome: Outcome, latency: Duration) {
        (**self).record(permit, outcome, latency)
    }
}

impl<A: Admission + ?Sized> Admission for Box<A> {
    type Permit = A::Permit;
    #[inline]
    fn try_acquire(&self) -> Result<Self::Permit, Rejected> {
        (**self).try_acquire()
    }
    #[inline]
    fn record(&self, permit: Self::Permit, outcome: Outcome, latency: Duration) {
        (**self).record(permit, outcome, latency)
    }
}

/// An [`Admission`] policy that keeps separate state per key: a rate limit per
/// client IP, per user, per API token.
///
/// The key only matters before the call: the permit carries whatever the policy
/// needs afterwards, so outcomes come back through the ordinary
/// [`Admission::record`]. The policy's unkeyed [`Admission::try_acquire`] is its
/// answer for a call that has no key (for a keyed rate limiter, one shared bucket
/// for all of them).
///
/// With the `tower` feature,
/// [`AdmissionLayer::key_by`](crate::tower::AdmissionLayer::key_by) takes a
/// closure that extracts the key from each request.
///
/// ```
/// use scalekit_core::{Admission, KeyedAdmission, Outcome, RejectReason, Rejected};
/// use std::collections::HashSet;
/// use std::sync::Mutex;
/// use std::time::Duration;
///
/// /// Admits each key once.
/// #[derive(Default)]
/// struct OncePerKey(Mutex<HashSet<String>>);
///
/// impl Admission for OncePerKey {
///     type Permit = ();
///     fn try_acquire(&self) -> Result<(), Rejected> { Ok(()) }
///     fn record(&self, _: (), _: Outcome, _: Duration) {}
/// }
///
/// impl KeyedAdmission<str> for OncePerKey {
///     fn try_acquire_key(&self, key: &str) -> Result<(), Rejected> {
///         let mut seen = self.0.lock().map_err(|_| Rejected::new(RejectReason::Overloaded))?;
///         if seen.insert(key.to_owned()) { Ok(()) } else { Err(Rejected::new(RejectReason::RateLimited)) }
///     }
/// }
///
/// let policy = OncePerKey::default();
/// assert!(policy.try_acquire_key("alice").is_ok());
/// assert!(policy.try_acquire_key("bob").is_ok());
/// assert!(policy.try_acquire_key("alice").is_err());
/// ```
pub trait KeyedAdmission<K: ?Sized>: Admission {
    /// Asks whether a call for `key` may start now.
    fn try_acquire_key(&self, key: &K) -> Result<Self::Permit, Rejected>;
}

impl<K: ?Sized, A: KeyedAdmission<K> + ?Sized> KeyedAdmission<K> for &A {
    #[inline]
    fn try_acquire_key(&self, key: &K) -> Result<Self::Permit, Rejected> {
        (**self).try_acquire_key(key)
    }
}

impl<K: ?Sized, A: KeyedAdmission<K> + ?Sized> KeyedAdmission<K> for Arc<A> {
    #[inline]
    fn try_acquire_key(&self, key: &K) -> Result<Self::Permit, Rejected> {
        (**self).try_acquire_key(key)
    }
}

impl<K: ?Sized, A: KeyedAdmission<K> + ?Sized> KeyedAdmission<K> for Box<A> {
    #[inline]
    fn try_acquire_key(&self, key: &K) -> Result<Self::Permit, Rejected> {
        (**self).try_acquire_key(key)
    }
}

/// How an admitted call ended, as the policy should count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The call succeeded.
    Success,
    /// The call failed in a way that says something about the callee's health.
    Failure,
    /// The call ended in a way that should not count either way (a client error, a
    /// business-level "not found").
    Ignored,
    /// The caller gave up before the call finished (a dropped future).
    Cancelled,
}

/// Why a call was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// A rate limit has no capacity left now.
    RateLimited,
    /// Too many calls are in flight.
    ConcurrencyLimited,
    /// A circuit breaker is open (or half-open with all its probes taken).
    CircuitOpen,
    /// The service is shedding load.
    Overloaded,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RejectReason::RateLimited => "rate limit exceeded",
            RejectReason::ConcurrencyLimited => "too many calls in flight",
            RejectReason::CircuitOpen => "circuit breaker is open",
            RejectReason::Overloaded => "service is shedding load",
        })
    }
}

/// A rejected call: why, and when it is worth trying again.
///
/// Small and `Copy`: a rejection on a hot path costs no allocation.
///
/// ```
/// use scalekit_core::{RejectReason, Rejected};
/// use std::time::Duration;
///
/// let r = Rejected::new(RejectReason::RateLimited).retry_after(Duration::from_millis(250));
/// assert_eq!(r.retry_after_hint(), Some(Duration::from_millis(250)));
/// assert_eq!(r.to_string(), "call rejected: rate limit exceeded; retry after 250ms");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rejected {
    reason: RejectReason,
    retry_after: Option<Duration>,
}

impl Rejected {
    /// A rejection with no retry hint.
    #[inline]
    pub const fn new(reason: RejectReason) -> Self {
        Self {
            reason,
            retry_after: None,
        }
    }

    /// Adds the earliest time at which a retry may be admitted.
    #[inline]
    pub const fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// Why the call was rejected.
    #[inline]
    pub const fn reason(&self) -> RejectReason {
        self.reason
    }

    /// How long to wait before a retry may be admitted, when the policy knows.
    /// Suitable for an HTTP `Retry-After` header.
    #[inline]
    pub const fn retry_after_hint(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call rejected: {}", self.reason)?;
        if let Some(wait) = self.retry_after {
            write!(f, "; retry after {wait:?}")?;
        }
        Ok(())
    }
}

impl Error for Rejected {}
