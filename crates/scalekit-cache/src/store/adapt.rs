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

use super::recent::RecentKeys;

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
/// elsewhere" counts, stamped with the departures from the key's space: a
/// returning key is a ghost hit if it left within the last `delta`
/// departures, that is, if a space `delta` larger would still have held it.
#[derive(Debug, Default)]
pub(super) struct Ghost {
    keys: RecentKeys,
    /// Departures from the space so far.
    clock: u32,
}

impl Ghost {
    /// Counts a departure; remembers the key if it is gone from the cache.
    pub(super) fn depart(&mut self, hash: u64, dropped: bool) {
        self.clock = self.clock.wrapping_add(1);
        if dropped {
            self.keys.remember(hash, self.clock);
        }
    }

    /// Whether the key left within the last `delta` departures (and forgets it).
    fn take(&mut self, hash: u64, delta: u64) -> bool {
        self.keys.take(hash, self.clock, delta)
    }

    fn resize(&mut self, cap: usize) {
        self.keys.resize(cap.max(1));
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
