//! The membership snapshot selection reads: every endpoint, the primary,
//! the read candidates by zone and their cumulative weights.

use crate::config::PrimaryReads;
use crate::endpoint::{Endpoint, Shared};
use crate::rng;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One membership, replaced whole on every change.
pub(crate) struct Snapshot<T, A, C> {
    pub(crate) all: Vec<Arc<Endpoint<T, A, C>>>,
    pub(crate) primary: Option<Arc<Endpoint<T, A, C>>>,
    /// Read candidates in the local zone (all of them when no zone is set).
    pub(crate) local: Vec<Arc<Endpoint<T, A, C>>>,
    /// Read candidates in other zones.
    pub(crate) remote: Vec<Arc<Endpoint<T, A, C>>>,
    /// Cumulative weights of `local` and `remote`, to draw candidates in
    /// proportion to weight (empty when all weights are equal: uniform draw).
    pub(crate) local_cum: Vec<u64>,
    pub(crate) remote_cum: Vec<u64>,
}

/// Cumulative weights of `list`, or nothing when they are all equal.
fn cumulative<T, A, C>(list: &[Arc<Endpoint<T, A, C>>]) -> Vec<u64> {
    let weights: Vec<u64> = list
        .iter()
        .map(|e| u64::from(e.weight.load(Ordering::Relaxed).max(1)))
        .collect();
    if weights.windows(2).all(|w| w[0] == w[1]) {
        return Vec::new();
    }
    let mut total = 0u64;
    weights
        .into_iter()
        .map(|w| {
            total = total.saturating_add(w);
            total
        })
        .collect()
}

/// An index into a list of `n` drawn in proportion to weight (`cum` its
/// cumulative weights, empty for equal weights), other than `not` if given.
#[inline]
pub(crate) fn draw(n: usize, cum: &[u64], not: Option<usize>) -> usize {
    if cum.len() != n || n == 0 {
        return match not {
            None => rng::below(n),
            Some(i) => {
                let j = rng::below(n - 1);
                if j >= i {
                    j + 1
                } else {
                    j
                }
            }
        };
    }
    let total = cum[n - 1];
    let r = match not {
        None => rng::below_u64(total),
        Some(i) => {
            // Draw from the weights without `i`'s, then skip over its range.
            let start = if i == 0 { 0 } else { cum[i - 1] };
            let w = cum[i] - start;
            let r = rng::below_u64(total - w);
            if r >= start {
                r + w
            } else {
                r
            }
        }
    };
    cum.partition_point(|&c| c <= r).min(n - 1)
}

/// The median latency estimate (decayed to `now`) of the endpoints that have
/// seen a call, if any has: where an endpoint joining at run time starts.
pub(crate) fn median_estimate<T, A, C>(all: &[Arc<Endpoint<T, A, C>>], now: u64) -> Option<f64> {
    let mut seen: Vec<f64> = all.iter().filter_map(|e| e.estimate_seen(now)).collect();
    if seen.is_empty() {
        return None;
    }
    seen.sort_by(f64::total_cmp);
    let mid = seen.len() / 2;
    Some(if seen.len() % 2 == 1 {
        seen[mid]
    } else {
        (seen[mid - 1] + seen[mid]) / 2.0
    })
}

pub(crate) fn build_snapshot<T, A, C>(
    shared: &Shared<C>,
    all: Vec<Arc<Endpoint<T, A, C>>>,
) -> Snapshot<T, A, C> {
    let primary = all
        .iter()
        .find(|e| e.is_primary.load(Ordering::Relaxed))
        .cloned();
    let mut local = Vec::new();
    let mut remote = Vec::new();
    for e in &all {
        let is_primary = e.is_primary.load(Ordering::Relaxed);
        if is_primary && shared.config.primary_reads != PrimaryReads::Always {
            continue;
        }
        let is_local = match (&shared.config.local_zone, &e.zone) {
            (None, _) => true,
            (Some(z), Some(ez)) => z == ez,
            (Some(_), None) => false,
        };
        if is_local {
            local.push(Arc::clone(e));
        } else {
            remote.push(Arc::clone(e));
        }
    }
    shared.members.store(all.len() as u32, Ordering::Relaxed);
    Snapshot {
        local_cum: cumulative(&local),
        remote_cum: cumulative(&remote),
        all,
        primary,
        local,
        remote,
    }
}
