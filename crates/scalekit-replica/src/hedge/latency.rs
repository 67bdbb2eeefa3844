//! The hedge delay taken from a latency percentile: a log-linear histogram of
//! recent latencies with atomic buckets, read once per window.
//!
//! Buckets: one per nanosecond below 8 ns, then 8 per power of two (each at
//! most 12.5% wide), up to 2^62 ns. A latency is one `fetch_add`; at the end
//! of each window the percentile is read from the buckets (the upper edge of
//! the bucket it falls in, so the delay errs late, never early), clamped to
//! `[min, max]`, and the buckets start over. tower's `hedge` does the same
//! with an HDR histogram rotated each period.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Sub-buckets per power of two: 2^3.
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Buckets: values below `SUB` one each, then `SUB` per octave up to 2^62.
const BUCKETS: usize = ((63 - SUB_BITS as usize) * SUB as usize) + SUB as usize;

/// The bucket of a latency in nanoseconds.
#[inline]
fn bucket(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let sub = (v >> (msb - SUB_BITS)) & (SUB - 1);
    (((msb - SUB_BITS + 1) as u64) * SUB + sub).min(BUCKETS as u64 - 1) as usize
}

/// The largest latency that falls in bucket `i` (inclusive upper edge).
fn upper_edge(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let octave = i / SUB - 1 + u64::from(SUB_BITS); // the msb
    let sub = i % SUB;
    let shift = octave - u64::from(SUB_BITS);
    ((SUB + sub + 1) << shift).saturating_sub(1)
}

/// Recent latencies and the delay read from them.
pub(crate) struct LatencyPercentile {
    quantile: f64,
    min: u64,
    max: u64,
    window: u64,
    min_samples: u64,
    buckets: Box<[AtomicU64]>,
    /// When the current window started (clock reading), and the delay in force.
    window_start: AtomicU64,
    delay: AtomicU64,
    rotating: Mutex<()>,
}

impl LatencyPercentile {
    /// `quantile` in (0, 1); delays in nanoseconds; the first window starts
    /// at `now`, with the delay at `max` until a window has `min_samples`.
    pub(crate) fn new(
        quantile: f64,
        min: u64,
        max: u64,
        window: u64,
        min_samples: u64,
        now: u64,
    ) -> Self {
        Self {
            quantile,
            min,
            max,
            window,
            min_samples,
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            window_start: AtomicU64::new(now),
            delay: AtomicU64::new(max),
            rotating: Mutex::new(()),
        }
    }

    /// Counts one latency (nanoseconds) observed at `now`.
    #[inline]
    pub(crate) fn record(&self, latency: u64, now: u64) {
        self.rotate_if_due(now);
        self.buckets[bucket(latency)].fetch_add(1, Ordering::Relaxed);
    }

    /// The delay in force at `now` (nanoseconds).
    #[inline]
    pub(crate) fn delay(&self, now: u64) -> u64 {
        self.rotate_if_due(now);
        self.delay.load(Ordering::Relaxed)
    }

    #[inline]
    fn rotate_if_due(&self, now: u64) {
        let start = self.window_start.load(Ordering::Acquire);
        if now.saturating_sub(start) >= self.window {
            self.rotate(now);
        }
    }

    /// Ends the window: reads the percentile (if the window has enough
    /// samples, else the delay stays) and empties the buckets. One thread
    /// rotates; the others go on (a latency counted meanwhile lands in one
    /// window or the next, never lost).
    #[cold]
    fn rotate(&self, now: u64) {
        let Some(_guard) = self.rotating.try_lock() else {
            return;
        };
        let start = self.window_start.load(Ordering::Acquire);
        if now.saturating_sub(start) < self.window {
            return;
        }
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.swap(0, Ordering::AcqRel))
            .collect();
        if let Some(v) = percentile(&counts, self.quantile, self.min_samples) {
            self.delay
                .store(v.clamp(self.min, self.max), Ordering::Relaxed);
        }
        self.window_start.store(now, Ordering::Release);
    }
}

/// The `quantile` of the counted latencies (the upper edge of its bucket), or
/// `None` with fewer than `min_samples` (and at least one).
fn percentile(counts: &[u64], quantile: f64, min_samples: u64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 || total < min_samples {
        return None;
    }
    // The smallest value with at least ceil(q × total) samples at or below it.
    let rank = ((quantile * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(upper_edge(i));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotone_and_edges_hold_their_values() {
        let mut last = 0;
        for v in 0..5_000u64 {
            let b = bucket(v);
            assert!(b >= last);
            last = b;
        }
        for v in (0..5_000u64)
            .chain((0..64).map(|s| 1u64 << s))
            .chain([u64::MAX])
        {
            let b = bucket(v);
            assert!(b < BUCKETS);
            assert!(v <= upper_edge(b) || b == BUCKETS - 1, "{v} above its edge");
            if b > 0 && b < BUCKETS - 1 {
                assert!(v > upper_edge(b - 1), "{v} below the previous edge");
            }
        }
        // Each bucket is at most 12.5% wide relative to its lower edge.
        for i in 9..200 {
            let lo = upper_edge(i - 1) + 1;
            let hi = upper_edge(i);
            assert!((hi - lo + 1) as f64 <= lo as f64 / 8.0 + 1.0, "bucket {i}");
        }
    }

    #[test]
    fn the_percentile_is_the_edge_of_its_bucket() {
        let mut counts = vec![0u64; BUCKETS];
        // 95 calls of 1 ms, 5 of 100 ms.
        counts[bucket(1_000_000)] += 95;
        counts[bucket(100_000_000)] += 5;
        let p95 = percentile(&counts, 0.95, 1).unwrap();
        assert!((1_000_000..=1_125_000).contains(&p95), "{p95}");
        let p99 = percentile(&counts, 0.99, 1).unwrap();
        assert!((100_000_000..=112_500_000).contains(&p99), "{p99}");
        assert_eq!(percentile(&counts, 0.95, 101), None);
        assert_eq!(percentile(&vec![0; BUCKETS], 0.95, 0), None);
    }
}
