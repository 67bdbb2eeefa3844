//! The serving set: which replicas take reads given their lag, recomputed on
//! lag, health and membership changes and after ejections and returns.

use crate::endpoint::{nanos, Endpoint, Shared};
use crate::event::Event;
use crate::set::handle::ReplicaSet;
use crate::set::snapshot::Snapshot;
use scalekit_core::Clock;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

impl<T, A, C: Clock> ReplicaSet<T, A, C> {
    pub(crate) fn recompute_serving(&self) {
        let snap = self.inner.snap.load();
        recompute_serving(&self.inner.shared, &snap, self.now());
    }

    /// Recomputes the serving set if health or ejection changed since.
    #[inline]
    pub(crate) fn refresh_serving(&self, snap: &Snapshot<T, A, C>, now: u64) {
        let shared = &*self.inner.shared;
        if shared.serving_dirty.load(Ordering::Relaxed) {
            refresh_serving_cold(shared, snap, now);
        }
    }
}

#[cold]
fn refresh_serving_cold<T, A, C>(shared: &Shared<C>, snap: &Snapshot<T, A, C>, now: u64) {
    if shared.serving_dirty.swap(false, Ordering::AcqRel) {
        recompute_serving(shared, snap, now);
    }
}

/// Which replicas take reads given their lag: those within `max_lag`, and the
/// `min_serving_replicas` least-lagged among those that can take reads at all
/// (healthy, not ejected), so that a down or ejected replica does not hold a
/// place in the minimum serving set. Run on lag reports, health reports and
/// membership changes, and, without a lock, by the next selection after an
/// ejection or a return: racing runs read the same atomics and converge.
fn recompute_serving<T, A, C>(shared: &Shared<C>, snap: &Snapshot<T, A, C>, now: u64) {
    let mut replicas: Vec<&Arc<Endpoint<T, A, C>>> = snap
        .all
        .iter()
        .filter(|e| !e.is_primary.load(Ordering::Relaxed))
        .collect();
    // Replicas that can take reads first, each group by lag.
    replicas.sort_by_key(|e| (!e.can_serve(now), e.lag_nanos.load(Ordering::Relaxed)));
    let max = shared.config.max_lag.map(nanos);
    for (rank, e) in replicas.iter().enumerate() {
        let lag = e.lag_nanos.load(Ordering::Relaxed);
        let serving = match max {
            None => true,
            Some(max) => {
                lag <= max || (rank < shared.config.min_serving_replicas && e.can_serve(now))
            }
        };
        if e.lag_ok.swap(serving, Ordering::AcqRel) != serving {
            shared.emit(Event::Lag {
                name: Arc::clone(&e.name),
                lag: Duration::from_nanos(lag),
                serving,
            });
        }
    }
    if let Some(p) = &snap.primary {
        p.lag_ok.store(true, Ordering::Relaxed);
    }
}
