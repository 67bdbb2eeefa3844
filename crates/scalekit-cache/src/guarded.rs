//! A tier behind an admission policy (a circuit breaker, a concurrency limit).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use scalekit_core::{Admission, Outcome};
// Tokio's clock: the calls it times are async, and paused time drives it in tests.
use tokio::time::Instant;

use crate::tier::{Tier, TierError};

/// A [`Tier`] whose calls first ask an [`Admission`] policy, and report back
/// how they went.
///
/// While L2 is down, each L1 miss of a [`TieredCache`](crate::TieredCache)
/// waits for the tier's time limit before the loader runs. Put a circuit
/// breaker here (any `Admission`, such as the one in `scalekit-breaker`) and,
/// once it opens, L2 calls fail at once with [`TierError::Rejected`]: the
/// loader answers without the wait, and the breaker's probes find out when L2
/// is back.
///
/// Outcomes: success, and a miss, are [`Outcome::Success`]; a timeout, an
/// unreachable tier or a backend error are [`Outcome::Failure`]; a codec
/// error says nothing about the tier's health and is [`Outcome::Ignored`]; a
/// call dropped before it finished (the tiered cache's own time limit) is
/// [`Outcome::Cancelled`], so keep the tier's own limit below the tiered
/// cache's `l2_timeout` for slow calls to count as failures.
///
/// ```
/// # tokio_test::block_on(async {
/// use std::time::Duration;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use scalekit_cache::{GuardedTier, Tier, TierError};
/// use scalekit_core::{Admission, Outcome, RejectReason, Rejected};
///
/// /// Opens for good after two failures (a real breaker would half-open).
/// #[derive(Default)]
/// struct TwoStrikes(AtomicU32);
/// impl Admission for TwoStrikes {
///     type Permit = ();
///     fn try_acquire(&self) -> Result<(), Rejected> {
///         if self.0.load(Ordering::Relaxed) >= 2 {
///             return Err(Rejected::new(RejectReason::CircuitOpen));
///         }
///         Ok(())
///     }
///     fn record(&self, _: (), outcome: Outcome, _: Duration) {
///         if outcome == Outcome::Failure {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
///
/// struct Down;
/// #[scalekit_cache::async_trait]
/// impl Tier<u64, String> for Down {
///     async fn get(&self, _: &u64) -> Result<Option<String>, TierError> { Err(TierError::Unavailable("refused".into())) }
///     async fn set(&self, _: &u64, _: &String, _: Duration) -> Result<(), TierError> { Err(TierError::Unavailable("refused".into())) }
///     async fn delete(&self, _: &u64) -> Result<(), TierError> { Err(TierError::Unavailable("refused".into())) }
/// }
///
/// let tier = GuardedTier::new(Down, TwoStrikes::default());
/// assert!(matches!(tier.get(&1).await, Err(TierError::Unavailable(_))));
/// assert!(matches!(tier.get(&1).await, Err(TierError::Unavailable(_))));
/// assert!(matches!(tier.get(&1).await, Err(TierError::Rejected(_)))); // open: no call made
/// # });
/// ```
pub struct GuardedTier<T, A> {
    tier: T,
    admission: A,
}

impl<T, A> GuardedTier<T, A> {
    /// `tier`, with every call admitted by `admission` first.
    pub fn new(tier: T, admission: A) -> Self {
        Self { tier, admission }
    }

    /// The tier inside.
    pub fn tier(&self) -> &T {
        &self.tier
    }

    /// The admission policy.
    pub fn admission(&self) -> &A {
        &self.admission
    }
}

impl<T, A> fmt::Debug for GuardedTier<T, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedTier").finish_non_exhaustive()
    }
}

/// Hands the permit back exactly once: with the call's outcome, or as
/// cancelled if the call's future is dropped first.
struct Report<'a, A: Admission> {
    admission: &'a A,
    permit: Option<A::Permit>,
    started: Instant,
}

impl<A: Admission> Report<'_, A> {
    fn finish<T>(mut self, result: &Result<T, TierError>) {
        let outcome = match result {
            Ok(_) => Outcome::Success,
            Err(TierError::Codec(_)) => Outcome::Ignored,
            Err(_) => Outcome::Failure,
        };
        if let Some(permit) = self.permit.take() {
            self.admission
                .record(permit, outcome, self.started.elapsed());
        }
    }
}

impl<A: Admission> Drop for Report<'_, A> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.admission
                .record(permit, Outcome::Cancelled, self.started.elapsed());
        }
    }
}

impl<T, A> GuardedTier<T, A>
where
    A: Admission,
{
    fn admit(&self) -> Result<Report<'_, A>, TierError> {
        let permit = self.admission.try_acquire().map_err(TierError::Rejected)?;
        Ok(Report {
            admission: &self.admission,
            permit: Some(permit),
            started: Instant::now(),
        })
    }
}

#[async_trait]
impl<K, V, T, A> Tier<K, V> for GuardedTier<T, A>
where
    K: Send + Sync,
    V: Send + Sync,
    T: Tier<K, V>,
    A: Admission,
{
    async fn get(&self, key: &K) -> Result<Option<V>, TierError> {
        let report = self.admit()?;
        let result = self.tier.get(key).await;
        report.finish(&result);
        result
    }

    async fn set(&self, key: &K, value: &V, ttl: Duration) -> Result<(), TierError> {
        let report = self.admit()?;
        let result = self.tier.set(key, value, ttl).await;
        report.finish(&result);
        result
    }

    async fn delete(&self, key: &K) -> Result<(), TierError> {
        let report = self.admit()?;
        let result = self.tier.delete(key).await;
        report.finish(&result);
        result
    }

    async fn get_many(&self, keys: &[K]) -> Result<Vec<Option<V>>, TierError> {
        let report = self.admit()?;
        let result = self.tier.get_many(keys).await;
        report.finish(&result);
        result
    }
}
