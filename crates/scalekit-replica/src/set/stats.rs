//! What the set shows dashboards: a snapshot of every endpoint, read from
//! atomics without a lock.

use crate::endpoint::{Endpoint, NOT_EJECTED};
use crate::member::{Position, Role};
use crate::set::handle::ReplicaSet;
use scalekit_core::Clock;
use std::ops::Deref;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

impl<T, A, C: Clock> ReplicaSet<T, A, C> {
    /// A snapshot of the set for dashboards: plain atomic reads, no lock.
    pub fn stats(&self) -> SetStats {
        let shared = &self.inner.shared;
        let snap = self.inner.snap.load();
        let now = self.now();
        // Return endpoints whose ejection is over (as selection would on
        // meeting them), so that the serving set reported is the one the next
        // selection uses.
        for e in &snap.all {
            e.try_return(now);
        }
        self.refresh_serving(&snap, now);
        SetStats {
            endpoints: snap
                .all
                .iter()
                .map(|e| {
                    let until = e.ejected_until.load(Ordering::Acquire);
                    EndpointStats {
                        name: Arc::clone(&e.name),
                        role: if e.is_primary.load(Ordering::Relaxed) {
                            Role::Primary
                        } else {
                            Role::Replica
                        },
                        zone: e.zone.clone(),
                        weight: e.weight.load(Ordering::Relaxed),
                        outstanding: e.outstanding.load(Ordering::Relaxed),
                        latency_estimate: Duration::from_nanos(e.ewma_at(now) as u64),
                        ejected: until != NOT_EJECTED && now < until,
                        ejections: e.ejections.load(Ordering::Relaxed),
                        healthy: e.healthy.load(Ordering::Relaxed),
                        lag: Duration::from_nanos(e.lag_nanos.load(Ordering::Relaxed)),
                        serving_reads: e.lag_ok.load(Ordering::Relaxed),
                        applied: Position::new(e.applied.load(Ordering::Relaxed)),
                    }
                })
                .collect(),
            ejected_now: shared.ejected.load(Ordering::Relaxed),
            ejections_total: shared.ejections_total.load(Ordering::Relaxed),
            ejections_not_enforced: shared.ejections_not_enforced.load(Ordering::Relaxed),
            primary_fallbacks: shared.primary_fallbacks.load(Ordering::Relaxed),
        }
    }

    /// The endpoint values with their names and roles (a copy of the current
    /// membership), for health checks and tooling.
    pub fn endpoints(&self) -> Vec<(Arc<str>, Role)> {
        self.inner
            .snap
            .load()
            .all
            .iter()
            .map(|e| {
                let role = if e.is_primary.load(Ordering::Relaxed) {
                    Role::Primary
                } else {
                    Role::Replica
                };
                (Arc::clone(&e.name), role)
            })
            .collect()
    }

    pub(crate) fn for_each_value(&self) -> Vec<(Arc<str>, EndpointRef<T, A, C>)> {
        self.inner
            .snap
            .load()
            .all
            .iter()
            .map(|e| (Arc::clone(&e.name), EndpointRef(Arc::clone(e))))
            .collect()
    }
}

/// A reference to an endpoint held while a health check runs.
pub(crate) struct EndpointRef<T, A, C>(Arc<Endpoint<T, A, C>>);

impl<T, A, C> Deref for EndpointRef<T, A, C> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0.value
    }
}

/// A set's statistics, from [`ReplicaSet::stats`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SetStats {
    /// One entry per endpoint.
    pub endpoints: Vec<EndpointStats>,
    /// Endpoints ejected now.
    pub ejected_now: u32,
    /// Ejections since the set was built.
    pub ejections_total: u64,
    /// Outliers detected since the set was built but left in rotation by an
    /// `enforcing` percentage below 100 (see
    /// [`OutlierDetection`](crate::OutlierDetection)).
    pub ejections_not_enforced: u64,
    /// Reads sent to the primary because no replica could take them.
    pub primary_fallbacks: u64,
}

/// One endpoint's statistics.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// Its name.
    pub name: Arc<str>,
    /// Its role.
    pub role: Role,
    /// Its zone.
    pub zone: Option<Arc<str>>,
    /// Its configured weight.
    pub weight: u32,
    /// Calls in flight.
    pub outstanding: u32,
    /// The peak-EWMA latency estimate now.
    pub latency_estimate: Duration,
    /// Whether it is ejected now.
    pub ejected: bool,
    /// The ejection multiplier (ejections not yet forgiven).
    pub ejections: u32,
    /// The last active health check's verdict (true until one says otherwise).
    pub healthy: bool,
    /// Its last reported replication lag.
    pub lag: Duration,
    /// Whether its lag lets it take reads.
    pub serving_reads: bool,
    /// The replication position it last reported.
    pub applied: Position,
}
