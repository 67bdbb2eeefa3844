//! Ejection (Envoy's outlier detection), return from it, and whether an
//! endpoint may take a read.

use super::{enforced, nanos, Endpoint, EJECTING, NOT_EJECTED};
use crate::event::{EjectReason, Event};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

impl<T, A, C> Endpoint<T, A, C> {
    /// Returns the endpoint from ejection if its time is up. True if it is
    /// (now) not ejected.
    #[inline]
    pub(crate) fn try_return(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Acquire);
        if until == NOT_EJECTED {
            return true;
        }
        if until == EJECTING || now < until {
            return false;
        }
        self.return_cold(until, now)
    }

    #[cold]
    fn return_cold(&self, until: u64, now: u64) -> bool {
        if self
            .ejected_until
            .compare_exchange(until, NOT_EJECTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let shared = &self.shared;
            if self.holds_slot.swap(false, Ordering::AcqRel) {
                let _ = shared
                    .ejected
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            }
            // A fresh start: failures from before the ejection do not count.
            self.consecutive_failures.store(0, Ordering::Relaxed);
            shared.serving_dirty.store(true, Ordering::Release);
            if let Some(s) = shared.config.slow_start {
                self.warm_from.store(now, Ordering::Relaxed);
                self.warm_until.store(
                    now.saturating_add(nanos(s.window)).max(1),
                    Ordering::Relaxed,
                );
            }
            shared.emit(Event::Returned {
                name: Arc::clone(&self.name),
            });
        }
        self.ejected_until.load(Ordering::Acquire) == NOT_EJECTED
    }

    /// The `enforcing` percentage of the test behind `reason`.
    fn enforcing(&self, reason: EjectReason) -> u32 {
        let od = &self.shared.config.outliers;
        match reason {
            EjectReason::ConsecutiveFailures => od.enforcing_consecutive_failures,
            EjectReason::SuccessRate => od.success_rate.map_or(100, |s| s.enforcing),
            EjectReason::FailurePercentage => od.failure_percentage.map_or(100, |f| f.enforcing),
        }
    }

    /// Ejects the endpoint unless it is ejected already, removed, the test's
    /// `enforcing` draw leaves it in, or the set has reached its ejection cap.
    ///
    /// The ejection lasts `min(k × base, max(max, base))` plus a jitter drawn
    /// from `0..=max_ejection_time_jitter`, `k` the multiplier after this
    /// ejection; the multiplier grows by one per ejection while
    /// `k × base < max + base` (Envoy's rule), so it stops one step past the
    /// cap and a recovered endpoint earns its way back down in a bounded
    /// number of `maintain` intervals.
    #[cold]
    pub(crate) fn try_eject(&self, now: u64, reason: EjectReason) -> bool {
        if self.removed.load(Ordering::Relaxed)
            || self.ejected_until.load(Ordering::Acquire) != NOT_EJECTED
        {
            return false;
        }
        let shared = &self.shared;
        if !enforced(self.enforcing(reason)) {
            shared
                .ejections_not_enforced
                .fetch_add(1, Ordering::Relaxed);
            // As Envoy: detection starts over, so the next verdict needs a
            // new run of failures.
            self.consecutive_failures.store(0, Ordering::Relaxed);
            return false;
        }
        if self
            .ejected_until
            .compare_exchange(NOT_EJECTED, EJECTING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        let od = &shared.config.outliers;
        let members = shared.members.load(Ordering::Relaxed);
        let cap = if od.max_ejection_percent == 0 {
            0
        } else {
            (u64::from(members) * u64::from(od.max_ejection_percent) / 100).max(1) as u32
        };
        // The cap is on replicas: an ejected primary (taken out of the reads
        // under `PrimaryReads::Always`) does not use up a slot.
        let takes_slot = !self.is_primary.load(Ordering::Relaxed);
        if takes_slot
            && shared
                .ejected
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < cap).then_some(n + 1)
                })
                .is_err()
        {
            self.ejected_until.store(NOT_EJECTED, Ordering::Release);
            return false;
        }
        self.holds_slot.store(takes_slot, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        shared.serving_dirty.store(true, Ordering::Release);
        let duration = self.next_ejection_time();
        let until = now.saturating_add(nanos(duration)).clamp(1, EJECTING - 1);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.ejected_until.store(until, Ordering::Release);
        shared.ejections_total.fetch_add(1, Ordering::Relaxed);
        shared.emit(Event::Ejected {
            name: Arc::clone(&self.name),
            reason,
            duration,
        });
        true
    }

    /// Raises the multiplier (within Envoy's bound) and returns how long this
    /// ejection lasts, jitter included.
    fn next_ejection_time(&self) -> Duration {
        let od = &self.shared.config.outliers;
        let base = nanos(od.base_ejection_time);
        let max = nanos(od.max_ejection_time);
        let k = match self
            .ejections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |k| {
                (u64::from(k).saturating_mul(base) < max.saturating_add(base))
                    .then(|| k.saturating_add(1))
            }) {
            Ok(previous) => previous.saturating_add(1),
            Err(unchanged) => unchanged,
        };
        let longest = od.max_ejection_time.max(od.base_ejection_time);
        let jitter = nanos(od.max_ejection_time_jitter);
        let jitter = if jitter == 0 {
            0
        } else {
            crate::rng::below_u64(jitter.saturating_add(1))
        };
        od.base_ejection_time
            .saturating_mul(k.max(1))
            .min(longest)
            .saturating_add(Duration::from_nanos(jitter))
    }

    /// Whether the endpoint may take a read now (the caller's exclusions
    /// aside).
    #[inline]
    pub(crate) fn available(&self, now: u64, min_applied: u64) -> bool {
        // `try_return` before the lag test: an ejected replica left out of the
        // serving set comes back (and the set is recomputed) when its time is up.
        self.healthy.load(Ordering::Relaxed)
            && self.try_return(now)
            && self.lag_ok.load(Ordering::Relaxed)
            && self.refused_until.load(Ordering::Relaxed) <= now
            && (min_applied == 0
                || self.applied.load(Ordering::Acquire) >= min_applied
                || self.is_primary.load(Ordering::Relaxed))
    }

    /// Whether the endpoint could take a read apart from its lag: healthy, not
    /// removed, not ejected (or due to return).
    pub(crate) fn can_serve(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Acquire);
        self.healthy.load(Ordering::Relaxed)
            && !self.removed.load(Ordering::Relaxed)
            && (until == NOT_EJECTED || (until != EJECTING && now >= until))
    }
}
