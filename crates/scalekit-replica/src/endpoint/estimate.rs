//! The latency estimate (peak-EWMA, decaying toward zero), slow start and
//! the cost selection compares.

use super::{nanos, Endpoint};
use crate::config::Balance;
use std::sync::atomic::Ordering;

impl<T, A, C> Endpoint<T, A, C> {
    /// The latency estimate decayed to `now` (toward zero, as Finagle and tower
    /// do, so an endpoint that was slow once is probed again in time).
    #[inline]
    pub(crate) fn ewma_at(&self, now: u64) -> f64 {
        let est = f64::from_bits(self.ewma.load(Ordering::Relaxed));
        let stamp = self.stamp.load(Ordering::Relaxed);
        let elapsed = now.saturating_sub(stamp);
        if elapsed == 0 {
            est
        } else {
            est * (-(elapsed as f64) * self.shared.inv_tau).exp()
        }
    }

    /// Folds one observed latency into the estimate: a higher one replaces it
    /// (the peak), a lower one is averaged in with a weight that grows with the
    /// time since the last observation (tower's and Finagle's rule).
    ///
    /// With `lower_bound` (a call cancelled after `rtt`: it would have taken at
    /// least that long), the estimate is only raised, when `rtt` exceeds the
    /// estimate as selection sees it now (decayed).
    #[inline]
    pub(crate) fn observe(&self, now: u64, rtt: u64, lower_bound: bool) {
        let est = f64::from_bits(self.ewma.load(Ordering::Relaxed));
        let elapsed = now.saturating_sub(self.stamp.load(Ordering::Relaxed));
        let w = if elapsed == 0 {
            1.0
        } else {
            (-(elapsed as f64) * self.shared.inv_tau).exp()
        };
        let rtt = rtt as f64;
        let next = if lower_bound {
            if rtt <= est * w {
                return;
            }
            rtt
        } else if rtt > est {
            rtt
        } else {
            est * w + rtt * (1.0 - w)
        };
        self.store(now, next);
    }

    /// Folds in a failed call that took `rtt`: the estimate becomes at least
    /// `failure_penalty_factor` times what it is now (decayed), and at least
    /// `failure_penalty`, as a peak. A refused connection fails in
    /// microseconds; counted as it is, it would make a dead endpoint the
    /// cheapest of all.
    #[cold]
    pub(crate) fn observe_failure(&self, now: u64, rtt: u64) {
        let config = &self.shared.config;
        let current = self.ewma_at(now);
        let penalised =
            (current * config.failure_penalty_factor).max(nanos(config.failure_penalty) as f64);
        if penalised > rtt as f64 && penalised > current {
            self.store(now, penalised);
        } else {
            self.observe(now, rtt, false);
        }
    }

    /// Whether the estimate has seen a call, and the estimate decayed to `now`.
    pub(crate) fn estimate_seen(&self, now: u64) -> Option<f64> {
        self.seen.load(Ordering::Relaxed).then(|| self.ewma_at(now))
    }

    #[inline]
    fn store(&self, now: u64, estimate: f64) {
        // Two racing observations may lose one of them: the estimate is a
        // heuristic and a lost sample changes nothing that the next one does not.
        self.ewma.store(estimate.to_bits(), Ordering::Relaxed);
        self.stamp.store(now, Ordering::Relaxed);
        if !self.seen.load(Ordering::Relaxed) {
            self.seen.store(true, Ordering::Relaxed);
        }
    }

    /// Weight after slow start.
    #[inline]
    pub(crate) fn effective_weight(&self, now: u64) -> f64 {
        let w = self.weight.load(Ordering::Relaxed) as f64;
        let until = self.warm_until.load(Ordering::Relaxed);
        if until == 0 || now >= until {
            return w;
        }
        let from = self.warm_from.load(Ordering::Relaxed);
        let span = until.saturating_sub(from).max(1) as f64;
        let progress = now.saturating_sub(from) as f64 / span;
        let min = self.shared.slow_start_min;
        w * progress.max(min)
    }
}

impl<T, A, C> Endpoint<T, A, C> {
    /// The cost of one more call. Candidates are drawn in proportion to
    /// weight, so the weight enters the cost only through the load, as calls
    /// in flight per unit of weight: with no calls in flight equal endpoints
    /// cost the same whatever their weights (the draw alone gives each its
    /// share), and under load an endpoint of weight 4 carries four times the
    /// calls of one of weight 1 at equal cost. Slow start divides the cost.
    #[inline]
    pub(crate) fn cost(&self, now: u64, balance: Balance) -> f64 {
        let w = f64::from(self.weight.load(Ordering::Relaxed).max(1));
        let load = f64::from(self.outstanding.load(Ordering::Relaxed)) / w + 1.0;
        let ramp = self.effective_weight(now) / w;
        match balance {
            Balance::LeastLoaded => load / ramp,
            _ => self.ewma_at(now) * load / ramp,
        }
    }
}
