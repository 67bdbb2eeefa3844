//! Sliding windows of call outcomes: count-based (lock-free) and time-based.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use parking_lot::Mutex;

/// What a window holds after a record: calls, failures and slow calls in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

const PRESENT: u8 = 1;
const FAILED: u8 = 2;
const SLOW: u8 = 4;

/// The bias each packed counter starts from, so that a counter that briefly runs
/// behind (a thread subtracted an outcome whose addition another thread has not
/// published yet) never borrows from its neighbour.
const BIAS: u64 = 1 << 30;
const INITIAL: u64 = BIAS | (BIAS << 32);

/// The largest count window: counters stay below 2^31 above their bias.
pub(crate) const MAX_COUNT_WINDOW: u32 = 1 << 24;

/// The last `size` outcomes, in a ring of one byte per call.
///
/// The ring has a power-of-two number of slots, at least `size`: call `i` writes
/// slot `i mod slots`, and the call leaving the window is call `i - size`, read
/// from its own slot. A record is one `fetch_add` on the head and two loads; only
/// when the outcome entering differs from the one leaving does it store the slot
/// and `fetch_add` both counters, packed into one `u64`. A success into a full,
/// clean window (the healthy steady state) is two loads and no write. No lock, no
/// clock, no division, O(1).
#[derive(Debug)]
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    mask: u64,
    size: u64,
    head: AtomicU64,
    /// Failures (low half) and slow calls (high half), each biased by [`BIAS`].
    counts: AtomicU64,
}

fn delta(old: u8, new: u8) -> u64 {
    let bit = |v: u8, b: u8| i64::from(v & b != 0);
    let failures = bit(new, FAILED) - bit(old, FAILED);
    let slow = bit(new, SLOW) - bit(old, SLOW);
    // Two's complement: adding this to the packed word adds `failures` to the low
    // half and `slow` to the high half (neither half ever crosses zero: BIAS).
    (failures as u64).wrapping_add((slow as u64).wrapping_shl(32))
}

impl CountWindow {
    pub(crate) fn new(size: u32) -> Self {
        let size = size.max(1);
        let slots = size.next_power_of_two();
        Self {
            slots: (0..slots).map(|_| AtomicU8::new(0)).collect(),
            mask: u64::from(slots - 1),
            size: u64::from(size),
            head: AtomicU64::new(0),
            counts: AtomicU64::new(INITIAL),
        }
    }

    fn decode(&self, head: u64, counts: u64) -> Tally {
        let low = counts & 0xFFFF_FFFF;
        let high = counts >> 32;
        Tally {
            calls: head.min(self.size),
            failures: low.saturating_sub(BIAS),
            slow: high.saturating_sub(BIAS),
        }
    }

    fn slot(&self, i: u64) -> Option<&AtomicU8> {
        self.slots.get((i & self.mask) as usize)
    }

    /// Records one outcome. Returns the tally when it changed (or when the window
    /// just reached `watch` calls), `None` when nothing a threshold looks at moved.
    #[inline]
    pub(crate) fn record(&self, failed: bool, slow: bool, watch: u64) -> Option<Tally> {
        // A success into a full window that holds only successes changes nothing
        // a threshold looks at, and needs no position: the window's last `size`
        // calls are successes before and after. Two loads, no write. (The first
        // failure or slow call takes the next position; while the window holds
        // one, every call is positioned, so it leaves after exactly `size` more.)
        if !failed
            && !slow
            && self.counts.load(Ordering::Acquire) == INITIAL
            && self.head.load(Ordering::Acquire) >= self.size
        {
            return None;
        }
        let new = PRESENT | if failed { FAILED } else { 0 } | if slow { SLOW } else { 0 };
        let i = self.head.fetch_add(1, Ordering::AcqRel);
        let leaving = match i.checked_sub(self.size) {
            Some(j) => self.slot(j).map_or(0, |s| s.load(Ordering::Acquire)),
            None => 0,
        };
        let slot = self.slot(i)?;
        if slot.load(Ordering::Relaxed) != new {
            slot.store(new, Ordering::Release);
        }
        let d = delta(leaving, new);
        if d == 0 {
            return (i + 1 == watch).then(|| self.tally());
        }
        let counts = self.counts.fetch_add(d, Ordering::AcqRel).wrapping_add(d);
        Some(self.decode(i + 1, counts))
    }

    pub(crate) fn tally(&self) -> Tally {
        self.decode(
            self.head.load(Ordering::Acquire),
            self.counts.load(Ordering::Acquire),
        )
    }

    /// Empties the window. Called only while no call of the current generation
    /// can record (under the breaker's transition lock, before publishing).
    pub(crate) fn reset(&self) {
        for s in self.slots.iter() {
            s.store(0, Ordering::Relaxed);
        }
        self.head.store(0, Ordering::Relaxed);
        self.counts.store(INITIAL, Ordering::Release);
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    calls: u64,
    failures: u64,
    slow: u64,
}

#[derive(Debug)]
struct TimeInner {
    buckets: Vec<Bucket>,
    /// The second the newest bucket belongs to.
    last_sec: u64,
    total: Bucket,
}

/// The outcomes of the last `seconds` seconds, in one bucket per second.
///
/// A record advances over the seconds that passed since the last one (at most
/// `seconds` buckets, each cleared once per second of time: amortised O(1)) and
/// adds to the current bucket, under a short lock.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    inner: Mutex<TimeInner>,
}

const NANOS_PER_SEC: u64 = 1_000_000_000;

impl TimeWindow {
    pub(crate) fn new(seconds: u32) -> Self {
        Self {
            inner: Mutex::new(TimeInner {
                buckets: vec![Bucket::default(); seconds.max(1) as usize],
                last_sec: 0,
                total: Bucket::default(),
            }),
        }
    }

    fn advance(inner: &mut TimeInner, now_sec: u64) {
        if now_sec <= inner.last_sec {
            return;
        }
        let n = inner.buckets.len() as u64;
        let steps = (now_sec - inner.last_sec).min(n);
        for k in 1..=steps {
            let idx = ((inner.last_sec + k) % n) as usize;
            if let Some(b) = inner.buckets.get_mut(idx) {
                inner.total.calls -= b.calls;
                inner.total.failures -= b.failures;
                inner.total.slow -= b.slow;
                *b = Bucket::default();
            }
        }
        inner.last_sec = now_sec;
    }

    pub(crate) fn record(&self, now_nanos: u64, failed: bool, slow: bool) -> Tally {
        let now_sec = now_nanos / NANOS_PER_SEC;
        let mut inner = self.inner.lock();
        Self::advance(&mut inner, now_sec);
        let n = inner.buckets.len() as u64;
        let idx = (inner.last_sec % n) as usize;
        let (f, s) = (u64::from(failed), u64::from(slow));
        if let Some(b) = inner.buckets.get_mut(idx) {
            b.calls += 1;
            b.failures += f;
            b.slow += s;
        }
        inner.total.calls += 1;
        inner.total.failures += f;
        inner.total.slow += s;
        Tally {
            calls: inner.total.calls,
            failures: inner.total.failures,
            slow: inner.total.slow,
        }
    }

    pub(crate) fn tally(&self, now_nanos: u64) -> Tally {
        let mut inner = self.inner.lock();
        Self::advance(&mut inner, now_nanos / NANOS_PER_SEC);
        Tally {
            calls: inner.total.calls,
            failures: inner.total.failures,
            slow: inner.total.slow,
        }
    }

    pub(crate) fn reset(&self) {
        let mut inner = self.inner.lock();
        for b in inner.buckets.iter_mut() {
            *b = Bucket::default();
        }
        inner.total = Bucket::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_window_keeps_the_last_n_outcomes() {
        let w = CountWindow::new(4);
        assert_eq!(w.record(true, false, 0).unwrap().failures, 1);
        w.record(true, true, 0);
        assert_eq!(w.record(false, false, 0), None, "nothing moved");
        let t = w.record(false, true, 0).unwrap();
        assert_eq!((t.calls, t.failures, t.slow), (4, 2, 2));
        // The fifth record pushes out the first (a failure).
        let t = w.record(false, false, 0).unwrap();
        assert_eq!((t.calls, t.failures, t.slow), (4, 1, 2));
        let t = w.record(false, false, 0).unwrap();
        assert_eq!((t.calls, t.failures, t.slow), (4, 0, 1));
        // Reaching the watched count reports even when nothing moved.
        assert!(w.record(false, false, 7).is_some());
        w.reset();
        assert_eq!(w.tally(), Tally::default());
    }

    #[test]
    fn count_window_matches_a_model() {
        for size in [1u32, 2, 5, 7, 8, 100] {
            count_window_model(size);
        }
    }

    fn count_window_model(size: u32) {
        let w = CountWindow::new(size);
        let mut model: std::collections::VecDeque<(bool, bool)> = Default::default();
        let mut x = 12345u64;
        for _ in 0..1000 {
            x = scalekit_core::mix64(x);
            let (f, s) = (x & 1 == 1, x & 2 == 2);
            w.record(f, s, 0);
            let t = w.tally();
            model.push_back((f, s));
            if model.len() > size as usize {
                model.pop_front();
            }
            let failures = model.iter().filter(|m| m.0).count() as u64;
            let slow = model.iter().filter(|m| m.1).count() as u64;
            assert_eq!(
                (t.calls, t.failures, t.slow),
                (model.len() as u64, failures, slow)
            );
        }
    }

    #[test]
    fn time_window_forgets_old_seconds() {
        let w = TimeWindow::new(3);
        let s = NANOS_PER_SEC;
        w.record(0, true, false);
        w.record(s, false, true);
        w.record(2 * s + 5, true, false);
        assert_eq!(
            w.tally(2 * s + 9),
            Tally {
                calls: 3,
                failures: 2,
                slow: 1
            }
        );
        // Second 0 leaves the window at second 3.
        assert_eq!(
            w.tally(3 * s),
            Tally {
                calls: 2,
                failures: 1,
                slow: 1
            }
        );
        // A long idle gap empties it.
        assert_eq!(w.tally(100 * s), Tally::default());
        assert_eq!(w.record(100 * s, false, false).calls, 1);
    }
}
