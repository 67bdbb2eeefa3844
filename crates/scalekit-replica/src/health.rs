//! Active health checks: a trait the user implements (or the `postgres`
//! feature's `pg::PgCheck`), run over the set by
//! [`ReplicaSet::check_health`].

use crate::error::MembershipError;
use crate::member::Position;
use crate::set::ReplicaSet;
use async_trait::async_trait;
use scalekit_core::Clock;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What one health check found.
///
/// ```
/// use scalekit_replica::{Health, Position};
/// use std::time::Duration;
///
/// let h = Health::up().lag(Duration::from_millis(40)).applied(Position::new(7));
/// assert!(h.is_up());
/// assert!(!Health::down().is_up());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    up: bool,
    lag: Option<Duration>,
    applied: Option<Position>,
}

impl Health {
    /// The endpoint answered and can serve.
    pub fn up() -> Self {
        Self {
            up: true,
            lag: None,
            applied: None,
        }
    }

    /// The endpoint did not answer, or cannot serve.
    pub fn down() -> Self {
        Self {
            up: false,
            lag: None,
            applied: None,
        }
    }

    /// Adds the replica's replication lag.
    pub fn lag(mut self, lag: Duration) -> Self {
        self.lag = Some(lag);
        self
    }

    /// Adds the replication position the endpoint has applied.
    pub fn applied(mut self, position: Position) -> Self {
        self.applied = Some(position);
        self
    }

    /// Whether the endpoint is up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The lag, if the check measured it.
    pub fn lag_value(&self) -> Option<Duration> {
        self.lag
    }

    /// The applied position, if the check read it.
    pub fn applied_value(&self) -> Option<Position> {
        self.applied
    }
}

/// An active health check of one endpoint value.
///
/// ```
/// use async_trait::async_trait;
/// use scalekit_replica::{Health, HealthCheck};
///
/// struct Ping;
///
/// #[async_trait]
/// impl HealthCheck<String> for Ping {
///     async fn check(&self, addr: &String) -> Health {
///         if addr.is_empty() { Health::down() } else { Health::up() }
///     }
/// }
/// ```
#[async_trait]
pub trait HealthCheck<T: ?Sized + Sync>: Send + Sync {
    /// Checks one endpoint.
    async fn check(&self, endpoint: &T) -> Health;
}

impl<T: Send + Sync, A, C: Clock> ReplicaSet<T, A, C> {
    /// Runs `check` on every endpoint at once, each bounded by `timeout` (a
    /// check that takes longer counts as down), and applies the results:
    /// health (through the thresholds, see [`report_check`](Self::report_check)),
    /// lag, applied position, each as soon as its check ends. A round takes at
    /// most `timeout` however many endpoints hang. Call it from a timer.
    ///
    /// The checks are polled together on the calling task (no task is
    /// spawned), so they need no `'static` bound; a check that blocks the
    /// thread instead of awaiting holds up the others.
    ///
    /// ```
    /// use async_trait::async_trait;
    /// use scalekit_replica::{Health, HealthCheck, Member, ReplicaSet};
    /// use std::time::Duration;
    ///
    /// struct UpIfEven;
    /// #[async_trait]
    /// impl HealthCheck<u32> for UpIfEven {
    ///     async fn check(&self, n: &u32) -> Health {
    ///         if n % 2 == 0 { Health::up() } else { Health::down() }
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let set = ReplicaSet::builder()
    ///     .member(Member::replica("one", 1))
    ///     .member(Member::replica("two", 2))
    ///     .build()?;
    /// set.check_health(&UpIfEven, Duration::from_secs(1)).await;
    /// for _ in 0..20 {
    ///     assert_eq!(*set.select()?, 2);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn check_health<H: HealthCheck<T> + ?Sized>(&self, check: &H, timeout: Duration) {
        let endpoints = self.for_each_value();
        futures_util::future::join_all(endpoints.iter().map(|(name, value)| async move {
            let health = tokio::time::timeout(timeout, check.check(value))
                .await
                .unwrap_or_else(|_| Health::down());
            // The endpoint may have left meanwhile: nothing to record then.
            let _ = self.report_check(name, health.up);
            if let Some(lag) = health.lag {
                let _ = self.report_lag(name, lag);
            }
            if let Some(pos) = health.applied {
                let _ = self.report_applied(name, pos);
            }
        }))
        .await;
    }
}

impl<T, A, C: Clock> ReplicaSet<T, A, C> {
    /// Records one active health check of `name`: a healthy endpoint becomes
    /// unhealthy after
    /// [`unhealthy_threshold`](crate::ReplicaSetBuilder::unhealthy_threshold)
    /// failed checks in a row, an unhealthy one healthy again after
    /// [`healthy_threshold`](crate::ReplicaSetBuilder::healthy_threshold)
    /// passed checks in a row (Envoy's thresholds; both 1 by default).
    /// [`check_health`](Self::check_health) calls it for each check; call it
    /// yourself when you run checks your own way.
    ///
    /// ```
    /// use scalekit_replica::{Member, ReplicaSet};
    ///
    /// let set = ReplicaSet::builder()
    ///     .unhealthy_threshold(2)
    ///     .member(Member::replica("a", 1))
    ///     .member(Member::replica("b", 2))
    ///     .build()?;
    /// set.report_check("a", false)?;
    /// set.report_check("a", true)?;  // a pass breaks the run
    /// set.report_check("a", false)?;
    /// assert!(set.stats().endpoints[0].healthy);
    /// set.report_check("a", false)?; // two in a row
    /// assert!(!set.stats().endpoints[0].healthy);
    /// assert_eq!(*set.select()?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn report_check(&self, name: &str, up: bool) -> Result<(), MembershipError> {
        let ep = Self::find(&self.inner.snap.load(), name)?;
        let config = &self.inner.shared.config;
        if up {
            ep.check_failures.store(0, Ordering::Relaxed);
            let passes = ep
                .check_passes
                .fetch_add(1, Ordering::AcqRel)
                .saturating_add(1);
            if passes >= config.healthy_threshold {
                self.mark_healthy(&ep, true);
            }
        } else {
            ep.check_passes.store(0, Ordering::Relaxed);
            let failures = ep
                .check_failures
                .fetch_add(1, Ordering::AcqRel)
                .saturating_add(1);
            if failures >= config.unhealthy_threshold {
                self.mark_healthy(&ep, false);
            }
        }
        Ok(())
    }
}
