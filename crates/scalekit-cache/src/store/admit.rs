//! Second chances: candidates that lost the admission duel are remembered
//! (by fingerprint) for a while, and one that comes back soon skips the duel
//! while the window is beyond its smallest shares (see `Store::admit`). The
//! table is written and read only from half that share
//! (`Store::losers_kept`): a lookup is a cache miss on every new key (18% of
//! a one-thread cache-aside workload's time when always on), which a
//! frequency-biased workload, whose window stays near its smallest, does not
//! pay.
//!
//! Keys born popular (a drifting or shifting hot set) lose their first duel
//! against victims whose counts are stale; on their second appearance they
//! get in, as S3-FIFO and ARC admit on a ghost hit. A loop larger than the
//! cache keeps the window small (its hits are in main), so its candidates
//! still duel and the resident part of the loop stays.

/// Slots of the table per resident entry.
const REJECTED_SLOTS: f64 = 0.5;
/// The window's share (of the store's share) from which a returning loser is
/// admitted without the duel.
pub(super) const SECOND_CHANCE_WINDOW: f64 = 0.05;

/// Candidates that lost the duel: a direct-mapped table of (fingerprint,
/// stamp) pairs, the stamp being the store's count of new keys at the loss.
/// O(1), bounded, no allocation but on a change of scale.
#[derive(Debug, Default)]
pub(super) struct Rejected {
    slots: Vec<u64>,
}

impl Rejected {
    #[inline]
    fn slot(&self, hash: u64) -> (usize, u32) {
        // Another mix than the adaptation's ghosts, so collisions differ.
        let mixed = scalekit_core::mix64(hash ^ 0x5bd1_e995);
        // Multiply-shift maps the low half onto 0..len without a division.
        let slot = ((mixed & 0xffff_ffff) * self.slots.len() as u64) >> 32;
        (slot as usize, (mixed >> 32) as u32 | 1)
    }

    /// Remembers a key that lost the duel after `inserts` new keys.
    pub(super) fn remember(&mut self, hash: u64, inserts: u64) {
        if self.slots.is_empty() {
            return;
        }
        let (slot, print) = self.slot(hash);
        self.slots[slot] = u64::from(print) << 32 | (inserts & 0xffff_ffff);
    }

    /// Whether a key arriving after `inserts` new keys lost the duel within
    /// the last `horizon` new keys (and forgets it).
    pub(super) fn returned(&mut self, hash: u64, inserts: u64, horizon: u64) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let (slot, print) = self.slot(hash);
        let entry = self.slots[slot];
        if (entry >> 32) as u32 != print {
            return false;
        }
        self.slots[slot] = 0;
        let age = (inserts as u32).wrapping_sub(entry as u32);
        u64::from(age) < horizon
    }

    /// Sizes the table for `entries` resident entries (resized, and so
    /// forgotten, only on a real change of scale).
    pub(super) fn resize(&mut self, entries: usize) {
        let len = (entries as f64 * REJECTED_SLOTS) as usize;
        let current = self.slots.len();
        if len == 0 || len > current + current / 4 || len < current - current / 4 {
            self.slots = vec![0; len];
        }
    }
}
