//! Keys seen lately, by fingerprint: the table behind the adaptation's ghosts
//! (`adapt.rs`) and the duel's losers (`admit.rs`).

/// A direct-mapped table of (fingerprint, stamp) pairs: a key is remembered
/// with the stamp of a clock its owner keeps (departures, new keys), and taken
/// back if it was remembered within some distance of that clock. A collision
/// overwrites (the table forgets, it never confuses two keys but by a 32-bit
/// fingerprint). O(1), bounded, no allocation but on a change of scale.
#[derive(Debug, Default)]
pub(super) struct RecentKeys {
    slots: Vec<u64>,
    /// Mixed into the hash, so that two tables over the same keys collide on
    /// different keys.
    salt: u64,
}

impl RecentKeys {
    /// An empty table (sized by `resize`) hashing with `salt`.
    pub(super) fn with_salt(salt: u64) -> Self {
        RecentKeys {
            slots: Vec::new(),
            salt,
        }
    }

    #[inline]
    fn slot(&self, hash: u64) -> (usize, u32) {
        let mixed = scalekit_core::mix64(hash ^ self.salt);
        // Multiply-shift maps the low half onto 0..len without a division.
        let slot = ((mixed & 0xffff_ffff) * self.slots.len() as u64) >> 32;
        (slot as usize, (mixed >> 32) as u32 | 1)
    }

    /// Remembers a key at clock `stamp`.
    pub(super) fn remember(&mut self, hash: u64, stamp: u32) {
        if self.slots.is_empty() {
            return;
        }
        let (slot, print) = self.slot(hash);
        self.slots[slot] = u64::from(print) << 32 | u64::from(stamp);
    }

    /// Whether the key was remembered within `within` ticks before clock
    /// `now` (and forgets it).
    pub(super) fn take(&mut self, hash: u64, now: u32, within: u64) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let (slot, print) = self.slot(hash);
        let entry = self.slots[slot];
        if (entry >> 32) as u32 != print {
            return false;
        }
        self.slots[slot] = 0;
        u64::from(now.wrapping_sub(entry as u32)) < within
    }

    /// Makes the table `len` slots long: resized (and so forgotten) only on a
    /// real change of scale, beyond a quarter either way.
    pub(super) fn resize(&mut self, len: usize) {
        let current = self.slots.len();
        if len > current + current / 4 || len < current - current / 4 {
            self.slots = vec![0; len];
        }
    }
}
