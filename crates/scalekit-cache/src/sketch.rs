//! The TinyLFU frequency sketch: a count-min sketch of 4-bit counters with aging.
//!
//! Four counters per key, all in one 64-byte block (one cache line), each in a
//! different word of the block. Estimates are the minimum of the four. When the
//! number of increments reaches the sample size (ten times the capacity) every
//! counter is halved, so the sketch forgets old popularity: TinyLFU's "reset".
//!
//! Counters are atomics so that readers, which hold only a shared lock, can count
//! their hits, with relaxed loads and stores: increments are lossy under
//! contention (a lost race skips a count), which the sketch tolerates by design;
//! the halving runs under the shard's exclusive lock.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use scalekit_core::mix64;

const WORDS_PER_BLOCK: usize = 8;
const RESET_MASK: u64 = 0x7777_7777_7777_7777;
const ONE_MASK: u64 = 0x1111_1111_1111_1111;

#[derive(Debug)]
pub(crate) struct FrequencySketch {
    table: Box<[AtomicU64]>,
    block_mask: usize,
    /// Increments that changed a counter since the last halving.
    size: AtomicU64,
    sample_size: u64,
}

impl FrequencySketch {
    /// A sketch for about `entries` distinct resident keys.
    pub(crate) fn new(entries: u64) -> Self {
        // One word (16 counters) per entry, as Caffeine sizes it, in whole blocks.
        let words = entries
            .clamp(WORDS_PER_BLOCK as u64, 1 << 24)
            .next_power_of_two() as usize;
        let table = (0..words).map(|_| AtomicU64::new(0)).collect();
        Self {
            table,
            block_mask: words / WORDS_PER_BLOCK - 1,
            size: AtomicU64::new(0),
            sample_size: entries.max(1).saturating_mul(10),
        }
    }

    /// Entries the sketch was sized for (its words).
    pub(crate) fn sized_for(&self) -> u64 {
        self.table.len() as u64
    }

    #[inline]
    fn slots(&self, hash: u64) -> [(usize, u32); 4] {
        let h = mix64(hash);
        let block = (h as usize & self.block_mask) * WORDS_PER_BLOCK;
        let spread = h >> 32;
        // Counter i lives in word 2i or 2i+1 of the block, at nibble chosen by 4 bits.
        let mut out = [(0, 0); 4];
        for (i, slot) in out.iter_mut().enumerate() {
            let word = block + 2 * i + ((spread >> (16 + i)) & 1) as usize;
            let nibble = ((spread >> (4 * i)) & 15) as u32;
            *slot = (word, nibble * 4);
        }
        out
    }

    /// The estimated frequency of a key, 0 to 15.
    #[inline]
    pub(crate) fn frequency(&self, hash: u64) -> u8 {
        let mut min = 15;
        for (word, shift) in self.slots(hash) {
            let count = (self.table[word].load(Relaxed) >> shift) & 15;
            min = min.min(count);
        }
        min as u8
    }

    /// Counts one access of a key. Returns whether a halving is due.
    #[inline]
    pub(crate) fn increment(&self, hash: u64) -> bool {
        let mut added = false;
        let h = mix64(hash) >> 48;
        for (word, shift) in self.slots(hash) {
            let cell = &self.table[word];
            let current = cell.load(Relaxed);
            if (current >> shift) & 15 != 15 {
                // A plain store, not a read-modify-write: two readers counting
                // in the same word at once may lose one count, which a sketch
                // of estimates tolerates, and no lock prefix is paid.
                cell.store(current + (1 << shift), Relaxed);
                added = true;
            }
        }
        // The count of increments is sampled (one key in 16, by hash, counting
        // 16), so that concurrent readers rarely write the same line.
        if added && h & 15 == 0 {
            self.size.fetch_add(16, Relaxed) + 16 >= self.sample_size
        } else {
            false
        }
    }

    /// Adds `count` accesses of a key at once (saturating): a resident entry's
    /// own count, folded back when it leaves.
    pub(crate) fn add(&self, hash: u64, count: u8) {
        if count == 0 {
            return;
        }
        for (word, shift) in self.slots(hash) {
            let cell = &self.table[word];
            let current = cell.load(Relaxed);
            let counter = (current >> shift) & 15;
            let raised = (counter + u64::from(count)).min(15);
            cell.store((current & !(15 << shift)) | (raised << shift), Relaxed);
        }
    }

    /// Counts an access towards the aging sample without touching the
    /// counters (a resident entry counts its own accesses). Sampled by hash,
    /// as in `increment`.
    #[inline]
    pub(crate) fn count_sample(&self, hash: u64) {
        if (mix64(hash) >> 48) & 15 == 0 {
            self.size.fetch_add(16, Relaxed);
        }
    }

    /// Whether a halving is due.
    pub(crate) fn reset_due(&self) -> bool {
        self.size.load(Relaxed) >= self.sample_size
    }

    /// Halves every counter (call with exclusive access to the shard).
    pub(crate) fn halve(&self) {
        let mut odd = 0u64;
        for cell in self.table.iter() {
            let word = cell.load(Relaxed);
            odd += u64::from((word & ONE_MASK).count_ones());
            cell.store((word >> 1) & RESET_MASK, Relaxed);
        }
        let size = self.size.load(Relaxed);
        self.size.store(size.saturating_sub(odd / 4) / 2, Relaxed);
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        for cell in self.table.iter() {
            cell.store(0, Relaxed);
        }
        self.size.store(0, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_saturate_at_fifteen_and_halve() {
        let sketch = FrequencySketch::new(1024);
        for _ in 0..20 {
            sketch.increment(42);
        }
        assert_eq!(sketch.frequency(42), 15);
        sketch.halve();
        assert_eq!(sketch.frequency(42), 7);
    }

    #[test]
    fn estimates_never_undercount_without_contention() {
        let sketch = FrequencySketch::new(4096);
        for key in 0..1000u64 {
            for _ in 0..(key % 10) {
                sketch.increment(key);
            }
        }
        for key in 0..1000u64 {
            assert!(u64::from(sketch.frequency(key)) >= key % 10, "key {key}");
        }
    }

    #[test]
    fn reset_is_due_after_the_sample() {
        let sketch = FrequencySketch::new(10);
        let mut due = false;
        for key in 0..200u64 {
            due |= sketch.increment(key);
        }
        assert!(due && sketch.reset_due());
        sketch.halve();
        assert!(!sketch.reset_due());
    }
}
