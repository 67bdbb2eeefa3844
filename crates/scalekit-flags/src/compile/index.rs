//! Toggle name -> index, the first step of every evaluation.

use crate::compile::text::StrList;
use crate::context::{bytes_eq, short_key};

/// Toggle name -> index: open addressing with linear probing over a power-of-two
/// table at most half full.
///
/// A name's key is its length and four words of it (see [`key`]); for a name of
/// at most 32 bytes that key *is* the name, so a lookup reads the name once,
/// hashes the key with one or two multiplications and compares the key with the
/// probed slots, without touching the names themselves. Longer names also hash
/// their middle and compare the names.
pub(crate) struct NameIndex {
    /// Random per index, so that which names collide cannot be known in advance.
    seed: [u64; 4],
    slots: Box<[Slot]>,
    mask: usize,
    /// The names, by toggle index, in one buffer (compared only for names over 32
    /// bytes).
    names: StrList,
}

/// One slot: a name's key and its toggle index (`EMPTY` when free).
#[derive(Clone, Copy)]
struct Slot {
    key: [u64; 4],
    len: u32,
    idx: u32,
}

pub(super) const EMPTY: u32 = u32::MAX;

/// Names up to this long are told apart by their key alone.
const EXACT: usize = 32;

/// A name's key: with its length, four words that determine a name of at most 32
/// bytes. From 16 bytes: the first 16 and the last 16 (overlapping when shorter
/// than 32); below that the [`short_key`] and two zeros.
#[inline(always)]
fn key(b: &[u8]) -> [u64; 4] {
    let n = b.len();
    if n >= 16 {
        [word(b, 0), word(b, 8), word(b, n - 16), word(b, n - 8)]
    } else {
        let (a, z) = short_key(b);
        [a, z, 0, 0]
    }
}

/// Whether two keys are equal, word by word in registers (an array comparison
/// compiles to vector loads of a key just stored word by word, which stalls on
/// store forwarding).
#[inline(always)]
fn same(a: &[u64; 4], b: &[u64; 4]) -> bool {
    ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3])) == 0
}

/// The 128-bit product of `a` and `b`, its halves xor-ed: the mixing step of
/// foldhash and ahash's fallback.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The eight bytes of `b` from `i` (zero when out of range).
#[inline(always)]
fn word(b: &[u8], i: usize) -> u64 {
    b.get(i..)
        .and_then(<[u8]>::first_chunk::<8>)
        .map_or(0, |w| u64::from_le_bytes(*w))
}

impl NameIndex {
    pub(super) fn new(names: &[&str]) -> Self {
        let cap = (names.len() * 2).next_power_of_two().max(8);
        let rs = ahash::RandomState::new();
        NameIndex {
            seed: [
                rs.hash_one(1u64),
                rs.hash_one(2u64),
                rs.hash_one(3u64),
                rs.hash_one(4u64),
            ],
            slots: vec![
                Slot {
                    key: [0; 4],
                    len: 0,
                    idx: EMPTY,
                };
                cap
            ]
            .into_boxed_slice(),
            mask: cap - 1,
            names: StrList::new(names),
        }
    }

    #[inline(always)]
    fn hash(&self, b: &[u8], k: &[u64; 4]) -> u64 {
        let s = &self.seed;
        let h = fold(k[0] ^ s[0], k[1] ^ s[1] ^ b.len() as u64);
        if b.len() < 16 {
            h
        } else if b.len() <= EXACT {
            fold(h ^ k[2] ^ s[2], k[3] ^ s[3])
        } else {
            self.hash_long(b, h)
        }
    }

    /// Hashes a name longer than [`EXACT`] bytes, 16 bytes at a time (and the last
    /// 16, which may overlap the others).
    #[inline(never)]
    fn hash_long(&self, b: &[u8], mut h: u64) -> u64 {
        let s = &self.seed;
        for c in b.chunks_exact(16) {
            h = fold(h ^ word(c, 0) ^ s[2], word(c, 8) ^ s[3]);
        }
        let n = b.len();
        fold(
            h ^ word(b, n.saturating_sub(16)) ^ s[3],
            word(b, n.saturating_sub(8)) ^ s[2],
        )
    }

    /// Whether the name of toggle `idx` is `b` (for names longer than [`EXACT`]
    /// bytes, whose key matched).
    #[inline(never)]
    fn name_is(&self, idx: u32, b: &[u8]) -> bool {
        self.names
            .spans
            .get(idx as usize)
            .and_then(|&(a, l)| self.names.text.as_bytes().get(a as usize..(a + l) as usize))
            .is_some_and(|x| bytes_eq(x, b))
    }

    /// Inserts; `false` when the name is already there.
    pub(super) fn insert(&mut self, name: &str, idx: u32) -> bool {
        let b = name.as_bytes();
        let k = key(b);
        let Ok(len) = u32::try_from(b.len()) else {
            return false;
        };
        let mut i = self.hash(b, &k) as usize;
        loop {
            let s = &mut self.slots[i & self.mask];
            if s.idx == EMPTY {
                *s = Slot { key: k, len, idx };
                return true;
            }
            if same(&s.key, &k) && s.len == len {
                let other = s.idx;
                if b.len() <= EXACT || self.name_is(other, b) {
                    return false;
                }
            }
            i = i.wrapping_add(1);
        }
    }

    #[inline]
    pub(crate) fn get(&self, name: &str) -> Option<usize> {
        let b = name.as_bytes();
        let k = key(b);
        let mut i = self.hash(b, &k) as usize;
        loop {
            let s = self.slots.get(i & self.mask)?;
            if s.idx == EMPTY {
                return None;
            }
            if same(&s.key, &k)
                && s.len as usize == b.len()
                && (b.len() <= EXACT || self.name_is(s.idx, b))
            {
                return Some(s.idx as usize);
            }
            i = i.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn finds_every_name_and_nothing_else(
            names in proptest::collection::btree_set("[a-c.]{0,50}", 0..60),
            probe in "[a-c.]{0,50}",
        ) {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut index = NameIndex::new(&names);
            for (i, n) in names.iter().enumerate() {
                proptest::prop_assert!(index.insert(n, i as u32));
            }
            for (i, n) in names.iter().enumerate() {
                proptest::prop_assert_eq!(index.get(n), Some(i));
                proptest::prop_assert!(!index.insert(n, 99));
            }
            proptest::prop_assert_eq!(
                index.get(&probe),
                names.iter().position(|n| *n == probe)
            );
        }
    }
}
