//! The endpoint chosen for one call, and the feedback it carries back.

use crate::endpoint::{nanos, Endpoint};
use crate::event::EjectReason;
use crate::member::{AlwaysAdmit, Role};
use scalekit_core::{Admission, Clock, MonotonicClock, Outcome};
use std::fmt;
use std::ops::Deref;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The endpoint chosen for one call. Dereferences to the endpoint's value.
///
/// Tell it how the call went ([`success`](Self::success),
/// [`failure`](Self::failure), [`finish`](Self::finish)); the latency since
/// selection feeds the endpoint's estimate, failures count toward ejection, and
/// the endpoint's admission policy hears the outcome. Dropped unreported, the
/// call counts as cancelled: its elapsed time raises the estimate if it is
/// above it (the call took at least that long) and changes nothing else.
pub struct Selected<T, A: Admission = AlwaysAdmit, C: Clock = MonotonicClock> {
    pub(crate) ep: Arc<Endpoint<T, A, C>>,
    pub(crate) permit: Option<A::Permit>,
    pub(crate) start: u64,
    /// The endpoint's ejection generation when the call started.
    pub(crate) epoch: u32,
    /// Whether the outcome counts toward ejection: not for calls made through
    /// `select_primary` (writes, and reads that fell back to the primary),
    /// which ignore ejection, so that a failing primary cannot use up the
    /// ejection cap meant for replicas.
    pub(crate) counts: bool,
    pub(crate) finished: bool,
}

impl<T: fmt::Debug, A: Admission, C: Clock> fmt::Debug for Selected<T, A, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selected")
            .field("name", &self.ep.name)
            .field("value", &self.ep.value)
            .finish()
    }
}

impl<T, A: Admission, C: Clock> Deref for Selected<T, A, C> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.ep.value
    }
}

impl<T, A: Admission, C: Clock> Selected<T, A, C> {
    /// The endpoint's value.
    #[inline]
    pub fn value(&self) -> &T {
        &self.ep.value
    }

    /// The endpoint's name.
    pub fn name(&self) -> &str {
        &self.ep.name
    }

    /// The endpoint's role.
    pub fn role(&self) -> Role {
        if self.ep.is_primary.load(Ordering::Relaxed) {
            Role::Primary
        } else {
            Role::Replica
        }
    }

    /// The endpoint's zone.
    pub fn zone(&self) -> Option<&str> {
        self.ep.zone.as_deref()
    }

    /// The call succeeded.
    #[inline]
    pub fn success(self) {
        self.finish(Outcome::Success);
    }

    /// The call failed (counts toward ejection).
    #[inline]
    pub fn failure(self) {
        self.finish(Outcome::Failure);
    }

    /// The call ended with `outcome`; its latency is the time since selection.
    #[inline]
    pub fn finish(mut self, outcome: Outcome) {
        let now = self.ep.shared.clock.now_nanos();
        self.record(outcome, now);
    }

    /// The call ended with `outcome` after `latency` (measured by the caller).
    pub fn finish_with_latency(mut self, outcome: Outcome, latency: Duration) {
        let now = self.start.saturating_add(nanos(latency));
        self.record(outcome, now);
    }

    #[inline]
    fn record(&mut self, outcome: Outcome, now: u64) {
        self.finished = true;
        let ep = &*self.ep;
        let rtt = now.saturating_sub(self.start);
        ep.outstanding.fetch_sub(1, Ordering::Relaxed);
        if let (Some(a), Some(p)) = (&ep.admission, self.permit.take()) {
            a.record(p, outcome, Duration::from_nanos(rtt));
        }
        // Outcomes of calls that ignore ejection, or that started before the
        // endpoint's latest ejection (stragglers), do not count toward the next.
        let counts = self.counts && ep.epoch.load(Ordering::Relaxed) == self.epoch;
        let tally = counts && ep.shared.tally_intervals;
        match outcome {
            Outcome::Success => {
                ep.observe(now, rtt, false);
                if counts && ep.consecutive_failures.load(Ordering::Relaxed) != 0 {
                    ep.consecutive_failures.store(0, Ordering::Relaxed);
                }
                if tally {
                    ep.interval.fetch_add((1 << 32) | 1, Ordering::Relaxed);
                }
            }
            Outcome::Failure => {
                ep.observe_failure(now, rtt);
                if tally {
                    ep.interval.fetch_add(1 << 32, Ordering::Relaxed);
                }
                if !counts {
                    return;
                }
                let n = ep
                    .consecutive_failures
                    .fetch_add(1, Ordering::AcqRel)
                    .saturating_add(1);
                if let Some(limit) = ep.shared.config.outliers.consecutive_failures {
                    if n >= limit {
                        ep.try_eject(now, EjectReason::ConsecutiveFailures);
                    }
                }
            }
            Outcome::Cancelled => ep.observe(now, rtt, true),
            _ => ep.observe(now, rtt, false),
        }
    }
}

impl<T, A: Admission, C: Clock> Drop for Selected<T, A, C> {
    fn drop(&mut self) {
        if !self.finished {
            let now = self.ep.shared.clock.now_nanos();
            self.record(Outcome::Cancelled, now);
        }
    }
}
