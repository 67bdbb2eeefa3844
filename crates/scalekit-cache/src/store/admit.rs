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

use super::recent::RecentKeys;

/// Slots of the table per resident entry.
const REJECTED_SLOTS: f64 = 0.5;
/// The window's share (of the store's share) from which a returning loser is
/// admitted without the duel.
pub(super) const SECOND_CHANCE_WINDOW: f64 = 0.05;

/// Candidates that lost the duel, stamped with the store's count of new keys
/// at the loss.
#[derive(Debug)]
pub(super) struct Rejected {
    keys: RecentKeys,
}

impl Default for Rejected {
    fn default() -> Self {
        // Another salt than the adaptation's ghosts, so collisions differ.
        Rejected {
            keys: RecentKeys::with_salt(0x5bd1_e995),
        }
    }
}

impl Rejected {
    /// Remembers a key that lost the duel after `inserts` new keys.
    pub(super) fn remember(&mut self, hash: u64, inserts: u64) {
        self.keys.remember(hash, inserts as u32);
    }

    /// Whether a key arriving after `inserts` new keys lost the duel within
    /// the last `horizon` new keys (and forgets it).
    pub(super) fn returned(&mut self, hash: u64, inserts: u64, horizon: u64) -> bool {
        self.keys.take(hash, inserts as u32, horizon)
    }

    /// Sizes the table for `entries` resident entries.
    pub(super) fn resize(&mut self, entries: usize) {
        self.keys.resize((entries as f64 * REJECTED_SLOTS) as usize);
    }
}
