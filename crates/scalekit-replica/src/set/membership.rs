//! Membership at run time: add, remove, re-weight, promote; and what
//! health checks and replication report about each endpoint.

use crate::endpoint::{nanos, Endpoint, EJECTING, NOT_EJECTED};
use crate::error::MembershipError;
use crate::event::Event;
use crate::member::{Member, Position, Role};
use crate::set::handle::ReplicaSet;
use crate::set::snapshot::{build_snapshot, median_estimate};
use scalekit_core::Clock;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

impl<T, A, C: Clock> ReplicaSet<T, A, C> {
    /// Adds an endpoint at run time without stopping traffic. With slow start
    /// configured it ramps up over the window. A primary added to a set that
    /// has one takes its place (the old one becomes a replica).
    ///
    /// ```
    /// use scalekit_replica::{Member, ReplicaSet};
    ///
    /// let set = ReplicaSet::builder().member(Member::replica("a", 1)).build()?;
    /// set.add(Member::replica("b", 2))?;
    /// assert_eq!(set.stats().endpoints.len(), 2);
    /// assert!(set.add(Member::replica("b", 3)).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add(&self, member: Member<T, A>) -> Result<(), MembershipError> {
        if member.weight == 0 {
            return Err(MembershipError::ZeroWeight(member.name.to_string()));
        }
        let _guard = self.inner.control.lock();
        let shared = &self.inner.shared;
        let snap = self.inner.snap.load();
        if snap.all.iter().any(|e| e.name == member.name) {
            return Err(MembershipError::Duplicate(member.name.to_string()));
        }
        let role = member.role;
        let now = self.now();
        let initial =
            median_estimate(&snap.all, now).unwrap_or(shared.config.default_rtt.as_nanos() as f64);
        let ep = Arc::new(Endpoint::new(
            member,
            Arc::clone(shared),
            now,
            true,
            initial,
        ));
        let name = Arc::clone(&ep.name);
        let previous = if role == Role::Primary {
            snap.primary.as_ref().map(|p| {
                p.is_primary.store(false, Ordering::Relaxed);
                Arc::clone(&p.name)
            })
        } else {
            None
        };
        let mut all = snap.all.clone();
        all.push(ep);
        self.inner.snap.store(Arc::new(build_snapshot(shared, all)));
        drop(snap);
        shared.emit(Event::Added {
            name: Arc::clone(&name),
            role,
        });
        if role == Role::Primary {
            shared.emit(Event::Promoted { name, previous });
        }
        self.recompute_serving();
        Ok(())
    }

    /// Removes an endpoint. Calls already running on it finish normally.
    pub fn remove(&self, name: &str) -> Result<(), MembershipError> {
        let _guard = self.inner.control.lock();
        let shared = &self.inner.shared;
        let snap = self.inner.snap.load();
        let ep = Self::find(&snap, name)?;
        ep.removed.store(true, Ordering::Relaxed);
        let until = ep.ejected_until.load(Ordering::Acquire);
        if until != NOT_EJECTED
            && until != EJECTING
            && ep
                .ejected_until
                .compare_exchange(until, NOT_EJECTED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            && ep.holds_slot.swap(false, Ordering::AcqRel)
        {
            shared.ejected.fetch_sub(1, Ordering::AcqRel);
        }
        let all = snap
            .all
            .iter()
            .filter(|e| !Arc::ptr_eq(e, &ep))
            .cloned()
            .collect();
        self.inner.snap.store(Arc::new(build_snapshot(shared, all)));
        drop(snap);
        shared.emit(Event::Removed {
            name: Arc::clone(&ep.name),
        });
        self.recompute_serving();
        Ok(())
    }

    /// Changes an endpoint's weight; takes effect on the next selection.
    pub fn set_weight(&self, name: &str, weight: u32) -> Result<(), MembershipError> {
        if weight == 0 {
            return Err(MembershipError::ZeroWeight(name.to_owned()));
        }
        let _guard = self.inner.control.lock();
        let shared = &self.inner.shared;
        let snap = self.inner.snap.load();
        let ep = Self::find(&snap, name)?;
        if ep.weight.swap(weight, Ordering::Relaxed) != weight {
            // The draw's cumulative weights live in the snapshot.
            self.inner
                .snap
                .store(Arc::new(build_snapshot(shared, snap.all.clone())));
        }
        Ok(())
    }

    /// Fails over: `name` becomes the primary and the previous primary, if
    /// any, a replica. Writes selected after this go to the new primary.
    ///
    /// ```
    /// use scalekit_replica::{Member, ReplicaSet};
    ///
    /// let set = ReplicaSet::builder()
    ///     .member(Member::primary("a", 1))
    ///     .member(Member::replica("b", 2))
    ///     .build()?;
    /// set.promote("b")?;
    /// assert_eq!(*set.select_primary()?, 2);
    /// assert_eq!(*set.select()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn promote(&self, name: &str) -> Result<(), MembershipError> {
        let _guard = self.inner.control.lock();
        let shared = &self.inner.shared;
        let snap = self.inner.snap.load();
        let ep = Self::find(&snap, name)?;
        let previous = snap
            .primary
            .as_ref()
            .filter(|p| !Arc::ptr_eq(p, &ep))
            .map(|p| {
                p.is_primary.store(false, Ordering::Relaxed);
                Arc::clone(&p.name)
            });
        ep.is_primary.store(true, Ordering::Relaxed);
        ep.lag_ok.store(true, Ordering::Relaxed);
        ep.lag_nanos.store(0, Ordering::Relaxed);
        self.inner
            .snap
            .store(Arc::new(build_snapshot(shared, snap.all.clone())));
        drop(snap);
        shared.emit(Event::Promoted {
            name: Arc::clone(&ep.name),
            previous,
        });
        self.recompute_serving();
        Ok(())
    }

    /// Records a replica's replication lag. Replicas over
    /// [`max_lag`](crate::ReplicaSetBuilder::max_lag) stop taking reads, except the
    /// least-lagged [`min_serving_replicas`](crate::ReplicaSetBuilder::min_serving_replicas).
    ///
    /// ```
    /// use scalekit_replica::{Member, ReplicaSet};
    /// use std::time::Duration;
    ///
    /// let set = ReplicaSet::builder()
    ///     .max_lag(Duration::from_secs(1))
    ///     .member(Member::replica("a", 1))
    ///     .member(Member::replica("b", 2))
    ///     .build()?;
    /// set.report_lag("a", Duration::from_secs(5))?;
    /// for _ in 0..100 {
    ///     assert_eq!(*set.select()?, 2);
    /// }
    /// // b lags too: the least-lagged replica keeps serving.
    /// set.report_lag("b", Duration::from_secs(9))?;
    /// assert_eq!(*set.select()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn report_lag(&self, name: &str, lag: Duration) -> Result<(), MembershipError> {
        let _guard = self.inner.control.lock();
        let ep = Self::find(&self.inner.snap.load(), name)?;
        ep.lag_nanos.store(nanos(lag), Ordering::Relaxed);
        self.recompute_serving();
        Ok(())
    }

    /// Records how far an endpoint has applied the primary's history, and
    /// wakes reads waiting for that position.
    pub fn report_applied(&self, name: &str, position: Position) -> Result<(), MembershipError> {
        let ep = Self::find(&self.inner.snap.load(), name)?;
        ep.applied.fetch_max(position.get(), Ordering::AcqRel);
        self.inner.shared.notify.notify_waiters();
        Ok(())
    }

    /// Marks an endpoint healthy or not at once, whatever the health-check
    /// thresholds (an operator's verdict; [`report_check`](Self::report_check)
    /// applies the thresholds). Restarts the count of checks in a row.
    pub fn set_healthy(&self, name: &str, healthy: bool) -> Result<(), MembershipError> {
        let ep = Self::find(&self.inner.snap.load(), name)?;
        ep.check_passes.store(0, Ordering::Relaxed);
        ep.check_failures.store(0, Ordering::Relaxed);
        self.mark_healthy(&ep, healthy);
        Ok(())
    }

    /// Sets the endpoint's health; on a change, tells the listener and
    /// recomputes the serving set.
    pub(crate) fn mark_healthy(&self, ep: &Endpoint<T, A, C>, healthy: bool) {
        if ep.healthy.swap(healthy, Ordering::AcqRel) != healthy {
            self.inner.shared.emit(Event::Health {
                name: Arc::clone(&ep.name),
                healthy,
            });
            self.recompute_serving();
        }
    }
}
