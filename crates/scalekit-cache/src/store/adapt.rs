//! The window's adaptation: marginal-utility estimates of the window and main
//! spaces, and the decision to move the boundary between them.
//!
//! Hits that land within `delta` entries of each space's eviction point
//! (counted by readers, see `Store::record_hit`) say what a space `delta`
//! smaller would lose; misses on keys a space dropped in its last `delta`
//! departures (ghosts) say what a space `delta` larger would gain. The
//! boundary moves towards the space whose margin earns more, when the
//! difference is beyond counting noise.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

/// The adaptation's probe distance, as a share of the entries: it weighs the
/// hits the last `delta` entries of each space earn.
const DELTA_SHARE: f64 = 0.05;
/// Inserts of new keys between adaptation decisions, as a share of the capacity.
const ADAPT_PERIOD: f64 = 0.1;
/// How many standard deviations of counting noise a difference must exceed
/// before the boundary moves.
const NOISE_Z: f64 = 2.0;
/// Events (tail and ghost hits) to count before any decision.
const MIN_EVIDENCE: f64 = 32.0;
/// Periods to keep counting for a clear difference before starting afresh.
const ADAPT_PATIENCE: u64 = 8;

/// Recently dropped keys, for the adaptation's "what if the boundary were
/// elsewhere" counts. A direct-mapped table of (fingerprint, stamp) pairs,
/// where the stamp counts the departures from the key's space: a returning key
/// is a ghost hit if it left within the last `delta` departures, that is, if a
/// space `delta` larger would still have held it. O(1), no allocation.
#[derive(Debug, Default)]
pub(super) struct Ghost {
    slots: Vec<u64>,
    /// Departures from the space so far.
    clock: u32,
}

impl Ghost {
    #[inline]
    fn slot(&self, hash: u64) -> (usize, u32) {
        let mixed = scalekit_core::mix64(hash);
        // Multiply-shift maps the low half onto 0..len without a division.
        let slot = ((mixed & 0xffff_ffff) * self.slots.len() as u64) >> 32;
        (slot as usize, (mixed >> 32) as u32 | 1)
    }

    /// Counts a departure; remembers the key if it is gone from the cache.
    pub(super) fn depart(&mut self, hash: u64, dropped: bool) {
        self.clock = self.clock.wrapping_add(1);
        if dropped && !self.slots.is_empty() {
            let (slot, print) = self.slot(hash);
            self.slots[slot] = u64::from(print) << 32 | u64::from(self.clock);
        }
    }

    /// Whether the key left within the last `delta` departures (and forgets it).
    fn take(&mut self, hash: u64, delta: u64) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let (slot, print) = self.slot(hash);
        let entry = self.slots[slot];
        if (entry >> 32) as u32 != print {
            return false;
        }
        self.slots[slot] = 0;
        u64::from(self.clock.wrapping_sub(entry as u32)) < delta
    }

    fn resize(&mut self, cap: usize) {
        let len = cap.max(1);
        // Resized (and so forgotten) only on a real change of scale.
        let current = self.slots.len();
        if len > current + current / 4 || len < current - current / 4 {
            self.slots = vec![0; len];
        }
    }
}

/// What the adaptation decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Move {
    /// Keep counting.
    Wait,
    /// Grow the window by this much.
    Grow(u64),
    /// Shrink the window by this much.
    Shrink(u64),
    /// No clear difference for too long: start counting afresh.
    Stay,
}

/// Marginal-utility estimates of the window and main spaces.
#[derive(Debug)]
pub(super) struct Adaptation {
    pub(super) delta: u64,
    pub(super) window_ghost: Ghost,
    pub(super) main_ghost: Ghost,
    window_ghost_hits: u64,
    main_ghost_hits: u64,
    requests_at_start: u64,
    period: u64,
    /// Hits within `delta` of the eviction point: window, main (atomics:
    /// readers count them under the shared lock).
    pub(super) tail_hits: CachePadded<[AtomicU64; 2]>,
}

impl Adaptation {
    pub(super) fn new(capacity: u64) -> Self {
        Self {
            delta: 1,
            window_ghost: Ghost::default(),
            main_ghost: Ghost::default(),
            window_ghost_hits: 0,
            main_ghost_hits: 0,
            requests_at_start: 0,
            period: ((capacity as f64 * ADAPT_PERIOD) as u64).max(64),
            tail_hits: CachePadded::new([AtomicU64::new(0), AtomicU64::new(0)]),
        }
    }

    /// A new key arrived: was it dropped lately by either space?
    pub(super) fn on_new_key(&mut self, hash: u64) {
        if self.window_ghost.take(hash, self.delta) {
            self.window_ghost_hits += 1;
        }
        if self.main_ghost.take(hash, self.delta) {
            self.main_ghost_hits += 1;
        }
    }

    /// Decides whether the boundary moves, after `requests` new keys in all,
    /// in a shard holding `entries` that is `full` or not.
    pub(super) fn decide(&mut self, requests: u64, full: bool, entries: usize) -> Move {
        if !full {
            self.requests_at_start = requests;
            self.resize(entries);
            return Move::Wait;
        }
        let elapsed = requests.wrapping_sub(self.requests_at_start);
        if elapsed < self.period {
            return Move::Wait;
        }
        let up = (self.window_ghost_hits + self.tail_hits[0].load(Relaxed)) as f64;
        let down = (self.main_ghost_hits + self.tail_hits[1].load(Relaxed)) as f64;
        // Move only on a difference beyond counting noise (Poisson: about the
        // square root of the counts); otherwise keep counting, a while.
        let noise = NOISE_Z * (up + down).sqrt();
        let enough = up + down >= MIN_EVIDENCE;
        let decision = if enough && up - down > noise {
            Move::Grow(self.delta)
        } else if enough && down - up > noise {
            Move::Shrink(self.delta)
        } else if elapsed < self.period * ADAPT_PATIENCE {
            return Move::Wait;
        } else {
            Move::Stay
        };
        self.tail_hits[0].store(0, Relaxed);
        self.tail_hits[1].store(0, Relaxed);
        self.window_ghost_hits = 0;
        self.main_ghost_hits = 0;
        self.requests_at_start = requests;
        self.resize(entries);
        decision
    }

    fn resize(&mut self, entries: usize) {
        let delta = ((entries as f64 * DELTA_SHARE) as u64).max(1);
        if delta != self.delta {
            self.delta = delta;
            self.window_ghost.resize(delta as usize);
            self.main_ghost.resize(delta as usize);
        }
    }
}
