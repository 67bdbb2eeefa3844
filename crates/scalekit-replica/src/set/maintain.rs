//! Periodic upkeep: returns, forgiveness, and the interval outlier tests
//! (success rate, failure percentage).

use crate::config::{FailurePercentage, SuccessRate};
use crate::endpoint::{Endpoint, NOT_EJECTED};
use crate::event::EjectReason;
use crate::set::handle::ReplicaSet;
use scalekit_core::Clock;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl<T, A, C: Clock> ReplicaSet<T, A, C> {
    /// Periodic upkeep; call it every few seconds (Envoy's default interval is
    /// 10 s). It returns ejected endpoints whose time is up (selection also does
    /// that as it meets them), lowers the ejection multiplier of endpoints that
    /// have been in rotation since the previous call (a full interval without
    /// an ejection), and runs the success-rate and failure-percentage outlier
    /// tests (when configured) over the calls since the last call.
    ///
    /// ```no_run
    /// # async fn run(set: scalekit_replica::ReplicaSet<String>) {
    /// let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    /// loop {
    ///     tick.tick().await;
    ///     set.maintain();
    /// }
    /// # }
    /// ```
    pub fn maintain(&self) {
        let shared = &self.inner.shared;
        let snap = self.inner.snap.load();
        let now = self.now();
        for e in &snap.all {
            e.try_return(now);
            if e.ejected_until.load(Ordering::Acquire) == NOT_EJECTED {
                // Forgive one ejection only once the endpoint has been in
                // rotation for a full interval (since the last `maintain`)
                // without being ejected again, as Envoy does.
                let mark = u64::from(e.epoch.load(Ordering::Acquire)) + 1;
                if e.clean_since.swap(mark, Ordering::AcqRel) == mark {
                    let _ = e
                        .ejections
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
                }
            } else {
                e.clean_since.store(0, Ordering::Release);
            }
        }
        self.refresh_serving(&snap, now);
        let od = &shared.config.outliers;
        if od.success_rate.is_none() && od.failure_percentage.is_none() {
            return;
        }
        // This interval's calls of each endpoint in rotation: (endpoint,
        // calls, successes). The counters restart for the next interval.
        let mut tallies = Vec::with_capacity(snap.all.len());
        for e in &snap.all {
            let counts = e.interval.swap(0, Ordering::AcqRel);
            let total = (counts >> 32) as u32;
            let ok = counts as u32;
            if total > 0 && e.ejected_until.load(Ordering::Acquire) == NOT_EJECTED {
                tallies.push((e, total, ok));
            }
        }
        if let Some(sr) = od.success_rate {
            success_rate_test(&tallies, &sr, now);
        }
        if let Some(fp) = od.failure_percentage {
            failure_percentage_test(&tallies, &fp, now);
        }
    }
}

type Tally<'a, T, A, C> = (&'a Arc<Endpoint<T, A, C>>, u32, u32);
type Rated<'a, T, A, C> = (&'a Arc<Endpoint<T, A, C>>, f64);

/// Envoy's success-rate test: among endpoints with `request_volume` calls,
/// if at least `minimum_hosts` qualify, eject those below
/// `mean - stdev_factor × stdev`.
fn success_rate_test<T, A, C>(tallies: &[Tally<'_, T, A, C>], sr: &SuccessRate, now: u64) {
    let rates: Vec<Rated<'_, T, A, C>> = tallies
        .iter()
        .filter(|(_, total, _)| *total >= sr.request_volume.max(1))
        .map(|&(e, total, ok)| (e, f64::from(ok) / f64::from(total)))
        .collect();
    if rates.len() < sr.minimum_hosts.max(1) {
        return;
    }
    let n = rates.len() as f64;
    let mean = rates.iter().map(|(_, r)| r).sum::<f64>() / n;
    let var = rates
        .iter()
        .map(|(_, r)| (r - mean) * (r - mean))
        .sum::<f64>()
        / n;
    let threshold = mean - sr.stdev_factor * var.sqrt();
    for (e, rate) in rates {
        if rate < threshold {
            e.try_eject(now, EjectReason::SuccessRate);
        }
    }
}

/// Envoy's failure-percentage test: among endpoints with `request_volume`
/// calls, if at least `minimum_hosts` qualify, eject those whose failed share
/// is at least `threshold` percent.
fn failure_percentage_test<T, A, C>(
    tallies: &[Tally<'_, T, A, C>],
    fp: &FailurePercentage,
    now: u64,
) {
    let volume = fp.request_volume.max(1);
    let qualified = tallies.iter().filter(|(_, total, _)| *total >= volume);
    if qualified.clone().count() < fp.minimum_hosts.max(1) {
        return;
    }
    for &(e, total, ok) in qualified {
        // failed / total >= threshold / 100, in integers.
        let failed = u64::from(total - ok.min(total));
        if failed * 100 >= u64::from(fp.threshold) * u64::from(total) {
            e.try_eject(now, EjectReason::FailurePercentage);
        }
    }
}
