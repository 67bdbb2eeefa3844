//! Toggle name -> index, the first step of every evaluation.

use crate::compile::text::StrList;
use crate::context::bytes_eq;

/// Toggle name -> index: open addressing with linear probing over a power-of-two
/// table at most half full. Each slot holds the index and the name's hash, so a
/// probe compares names only when the hashes agree.
pub(crate) struct NameIndex {
    hasher: ahash::RandomState,
    slots: Box<[(u64, u32)]>,
    mask: usize,
    /// The names, by toggle index, in one buffer (compared without touching the
    /// toggles themselves).
    names: StrList,
}

pub(super) const EMPTY: u32 = u32::MAX;

impl NameIndex {
    pub(super) fn new(names: &[&str]) -> Self {
        let cap = (names.len() * 2).next_power_of_two().max(8);
        NameIndex {
            hasher: ahash::RandomState::new(),
            slots: vec![(0, EMPTY); cap].into_boxed_slice(),
            mask: cap - 1,
            names: StrList::new(names),
        }
    }

    /// Inserts; `false` when the name is already there.
    pub(super) fn insert(&mut self, name: &str, idx: u32, names: &[&str]) -> bool {
        let h = self.hasher.hash_one(name);
        let mut i = h as usize & self.mask;
        loop {
            let (sh, si) = self.slots[i];
            if si == EMPTY {
                self.slots[i] = (h, idx);
                return true;
            }
            if sh == h && names[si as usize] == name {
                return false;
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline]
    pub(crate) fn get(&self, name: &str) -> Option<usize> {
        let h = self.hasher.hash_one(name);
        let mut i = h as usize & self.mask;
        loop {
            let (sh, si) = self.slots[i];
            if si == EMPTY {
                return None;
            }
            if sh == h {
                let (a, l) = self
                    .names
                    .spans
                    .get(si as usize)
                    .copied()
                    .unwrap_or((0, u32::MAX));
                if l as usize == name.len()
                    && self
                        .names
                        .text
                        .as_bytes()
                        .get(a as usize..(a + l) as usize)
                        .is_some_and(|x| bytes_eq(x, name.as_bytes()))
                {
                    return Some(si as usize);
                }
            }
            i = (i + 1) & self.mask;
        }
    }
}
