//! The open connections: the cap, making room by closing the longest-idle one, and
//! waiting for all of them to close.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::conn::ConnState;

/// The connections open now, at most `max`.
#[derive(Debug)]
pub(super) struct Registry {
    max: usize,
    inner: Mutex<Inner>,
    /// Woken when the last connection closes.
    emptied: Notify,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    open: HashMap<u64, Arc<ConnState>, ahash::RandomState>,
}

/// See [`Registry::counts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) open: usize,
    pub(super) idle: usize,
    pub(super) busy: usize,
}

/// What [`Registry::admit`] decided.
#[derive(Debug)]
pub(super) enum Admission {
    /// Room was free.
    Admitted(Slot),
    /// The longest-idle connection was closed to make room.
    MadeRoom(Slot),
    /// Every connection is busy or sending a request: refuse this one.
    Full,
}

/// A place in the registry, given back when dropped.
#[derive(Debug)]
pub(super) struct Slot {
    id: u64,
    registry: Arc<Registry>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.registry.inner.lock();
        inner.open.remove(&self.id);
        if inner.open.is_empty() {
            drop(inner);
            self.registry.emptied.notify_waiters();
        }
    }
}

impl Registry {
    pub(super) fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            inner: Mutex::default(),
            emptied: Notify::new(),
        }
    }

    pub(super) fn max(&self) -> usize {
        self.max
    }

    /// Connections open now (an evicted one stops counting at once).
    pub(super) fn len(&self) -> usize {
        self.inner.lock().open.len()
    }

    /// Takes a place for `conn`: a free one, or the longest-idle connection's
    /// (which is told to close), or none.
    pub(super) fn admit(self: &Arc<Self>, conn: Arc<ConnState>) -> Admission {
        let mut inner = self.inner.lock();
        let mut made_room = false;
        if inner.open.len() >= self.max {
            // A scan, only when full: at 10,000 connections about 20 µs, against a
            // connection that would otherwise be refused.
            let victim = inner
                .open
                .iter()
                .filter(|(_, c)| c.is_idle())
                .filter_map(|(id, c)| Some((c.idle_since()?, *id)))
                .min();
            let Some((_, id)) = victim else {
                return Admission::Full;
            };
            if let Some(old) = inner.open.remove(&id) {
                old.evict();
            }
            made_room = true;
        }
        let id = inner.next;
        inner.next += 1;
        inner.open.insert(id, conn);
        let slot = Slot {
            id,
            registry: Arc::clone(self),
        };
        if made_room {
            Admission::MadeRoom(slot)
        } else {
            Admission::Admitted(slot)
        }
    }

    /// Closes the longest-idle connection, if one is; whether one was.
    pub(super) fn evict_one(&self) -> bool {
        let mut inner = self.inner.lock();
        let victim = inner
            .open
            .iter()
            .filter(|(_, c)| c.is_idle())
            .filter_map(|(id, c)| Some((c.idle_since()?, *id)))
            .min();
        match victim.and_then(|(_, id)| inner.open.remove(&id)) {
            Some(old) => {
                old.evict();
                true
            }
            None => false,
        }
    }

    /// The connections open now: how many, how many of them idle, and how many
    /// answering a request.
    pub(super) fn counts(&self) -> Counts {
        let inner = self.inner.lock();
        let mut counts = Counts {
            open: inner.open.len(),
            ..Counts::default()
        };
        for c in inner.open.values() {
            if c.is_idle() {
                counts.idle += 1;
            } else if c.is_busy() {
                counts.busy += 1;
            }
        }
        counts
    }

    /// Resolves once no connection is open.
    pub(super) async fn all_closed(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable();
            if self.inner.lock().open.is_empty() {
                return;
            }
            emptied.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Limits;

    fn conn() -> Arc<ConnState> {
        Arc::new(ConnState::new(Arc::new(Limits::default()), Arc::default()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_registry_closes_the_longest_idle_connection() {
        let registry = Arc::new(Registry::new(3));
        let (a, b, c) = (conn(), conn(), conn());
        tokio::time::advance(Duration::from_secs(1)).await;
        let d = conn();
        let mut slots = Vec::new();
        for x in [&b, &a, &c] {
            match registry.admit(Arc::clone(x)) {
                Admission::Admitted(slot) => slots.push(slot),
                other => panic!("{other:?}"),
            }
        }
        // a and b are sending requests, c is busy: nothing to close.
        let _a = a.begin_request();
        let _c = c.begin_request();
        drop(_a);
        // a is idle again, since now: b (idle since its start) is the oldest.
        let made = registry.admit(Arc::clone(&d));
        assert!(matches!(made, Admission::MadeRoom(_)), "{made:?}");
        assert!(tokio::time::timeout(Duration::from_millis(1), b.evicted())
            .await
            .is_ok());
        assert!(tokio::time::timeout(Duration::from_millis(1), a.evicted())
            .await
            .is_err());
        assert_eq!(registry.len(), 3);
        assert_eq!(
            registry.counts(),
            Counts {
                open: 3,
                idle: 2,
                busy: 1
            }
        );
    }

    #[tokio::test]
    async fn full_of_busy_connections_refuses_and_reports_when_all_closed() {
        let registry = Arc::new(Registry::new(1));
        let a = conn();
        let _busy = a.begin_request();
        let Admission::Admitted(slot) = registry.admit(Arc::clone(&a)) else {
            panic!("room for one")
        };
        assert!(matches!(registry.admit(conn()), Admission::Full));
        assert!(!registry.evict_one());
        let waiter = {
            let registry = Arc::clone(&registry);
            tokio::spawn(async move { registry.all_closed().await })
        };
        drop(slot);
        assert!(tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .is_ok());
        assert_eq!(registry.len(), 0);
    }
}
