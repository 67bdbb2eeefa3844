//! The replica set handle: what clones share, and the lookups every part of
//! the set uses.

use crate::endpoint::{Endpoint, Shared};
use crate::error::MembershipError;
use crate::member::AlwaysAdmit;
use crate::set::snapshot::Snapshot;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use scalekit_core::{Clock, MonotonicClock};
use std::fmt;
use std::sync::Arc;

/// What clones of a set share.
pub(crate) struct Inner<T, A, C> {
    pub(crate) shared: Arc<Shared<C>>,
    pub(crate) snap: ArcSwap<Snapshot<T, A, C>>,
    /// Taken by membership changes only; selection takes no lock.
    pub(crate) control: Mutex<()>,
}

/// A primary and its replicas (or a pool of equal instances), and the choice of
/// the best one for each call.
///
/// Cloning is cheap and clones share everything. [`select`](Self::select)
/// takes no lock: the endpoint list is an `arc-swap` snapshot replaced whole on
/// membership changes, and each endpoint's state is a handful of atomics.
///
/// ```
/// use scalekit_replica::{Member, ReplicaSet, Role};
///
/// let set = ReplicaSet::builder()
///     .member(Member::primary("db-1", "postgres://db-1/app"))
///     .member(Member::replica("db-2", "postgres://db-2/app"))
///     .member(Member::replica("db-3", "postgres://db-3/app"))
///     .build()?;
///
/// let read = set.select()?;            // a replica, by peak-EWMA and two choices
/// assert_eq!(read.role(), Role::Replica);
/// read.success();                      // its latency feeds the estimate
///
/// let write = set.select_primary()?;
/// assert_eq!(*write, "postgres://db-1/app");
/// write.success();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ReplicaSet<T, A = AlwaysAdmit, C = MonotonicClock> {
    pub(crate) inner: Arc<Inner<T, A, C>>,
}

impl<T, A, C> Clone for ReplicaSet<T, A, C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T, A, C> fmt::Debug for ReplicaSet<T, A, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snap = self.inner.snap.load();
        let names: Vec<&str> = snap.all.iter().map(|e| &*e.name).collect();
        f.debug_struct("ReplicaSet")
            .field("endpoints", &names)
            .field("primary", &snap.primary.as_ref().map(|p| &*p.name))
            .finish()
    }
}

impl<T, A, C: Clock> ReplicaSet<T, A, C> {
    pub(crate) fn now(&self) -> u64 {
        self.inner.shared.clock.now_nanos()
    }

    pub(crate) fn find(
        snap: &Snapshot<T, A, C>,
        name: &str,
    ) -> Result<Arc<Endpoint<T, A, C>>, MembershipError> {
        snap.all
            .iter()
            .find(|e| &*e.name == name)
            .cloned()
            .ok_or_else(|| MembershipError::Unknown(name.to_owned()))
    }
}
