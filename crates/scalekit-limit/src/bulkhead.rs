//! A fixed cap on calls in flight.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use scalekit_core::{Admission, Outcome, RejectReason, Rejected};

/// At most `max` calls in flight: one atomic, no lock, no clock.
///
/// Through [`Admission`] the slot is freed by `record`; for direct use,
/// [`enter`](Self::enter) returns a guard that frees it on drop.
///
/// ```
/// use scalekit_limit::Bulkhead;
///
/// let bulkhead = Bulkhead::new(2);
/// let a = bulkhead.enter().unwrap();
/// let _b = bulkhead.enter().unwrap();
/// assert!(bulkhead.enter().is_err());
/// drop(a);
/// assert!(bulkhead.enter().is_ok());
/// ```
#[derive(Debug)]
pub struct Bulkhead {
    in_flight: AtomicU32,
    max: AtomicU32,
}

/// A slot in a [`Bulkhead`], freed on drop.
#[derive(Debug)]
pub struct BulkheadGuard<'a> {
    bulkhead: &'a Bulkhead,
}

impl Drop for BulkheadGuard<'_> {
    fn drop(&mut self) {
        self.bulkhead.release();
    }
}

impl Bulkhead {
    /// A bulkhead admitting `max` calls at once.
    pub fn new(max: u32) -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            max: AtomicU32::new(max),
        }
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// The cap.
    pub fn max(&self) -> u32 {
        self.max.load(Ordering::Relaxed)
    }

    /// Changes the cap; calls already in flight above a lower cap finish normally.
    pub fn set_max(&self, max: u32) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Takes a slot, freed when the guard drops.
    pub fn enter(&self) -> Result<BulkheadGuard<'_>, Rejected> {
        self.try_acquire()?;
        Ok(BulkheadGuard { bulkhead: self })
    }

    fn release(&self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

impl Admission for Bulkhead {
    type Permit = ();

    #[inline]
    fn try_acquire(&self) -> Result<(), Rejected> {
        let max = self.max.load(Ordering::Relaxed);
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map(|_| ())
            .map_err(|_| Rejected::new(RejectReason::ConcurrencyLimited))
    }

    #[inline]
    fn record(&self, _permit: (), _outcome: Outcome, _latency: Duration) {
        self.release();
    }
}
