//! Hot keys: a space-saving top-k sketch (Metwally, Agrawal and El Abbadi, 2005).

use ahash::AHashMap;

use crate::query::OwnedKey;

/// A key the sketch counts among the most routed, with its count and how much of
/// that count may belong to keys it replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotKey {
    /// The shard key.
    pub key: OwnedKey,
    /// Routed this many times at most (and at least `count - error`).
    pub count: u64,
    /// The overestimate bound: the count of the key this one replaced.
    pub error: u64,
}

/// Space-saving: `capacity` counters; a new key takes over the smallest counter
/// and inherits its count as its error. Every key routed more than
/// `total / capacity` times is guaranteed to be in the sketch, and each count
/// overestimates by at most `error`.
///
/// ```
/// use scalekit_shard::{OwnedKey, SpaceSaving};
/// let mut s = SpaceSaving::new(2);
/// for k in [1, 1, 1, 2, 3, 1] {
///     s.offer(OwnedKey::Int(k));
/// }
/// let top = s.top(1);
/// assert_eq!(top[0].key, OwnedKey::Int(1));
/// assert_eq!(top[0].count, 4);
/// ```
#[derive(Clone, Debug)]
pub struct SpaceSaving {
    capacity: usize,
    slots: Vec<HotKey>,
    index: AHashMap<OwnedKey, usize>,
    total: u64,
}

impl SpaceSaving {
    /// A sketch with `capacity` counters (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            slots: Vec::with_capacity(capacity),
            index: AHashMap::with_capacity(capacity),
            total: 0,
        }
    }

    /// Counts one occurrence of `key`.
    pub fn offer(&mut self, key: OwnedKey) {
        self.total += 1;
        if let Some(&i) = self.index.get(&key) {
            self.slots[i].count += 1;
            return;
        }
        if self.slots.len() < self.capacity {
            self.index.insert(key.clone(), self.slots.len());
            self.slots.push(HotKey {
                key,
                count: 1,
                error: 0,
            });
            return;
        }
        // Replace the smallest counter (linear: capacities are small).
        let Some((i, min)) = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, h)| h.count)
            .map(|(i, h)| (i, h.count))
        else {
            return;
        };
        self.index.remove(&self.slots[i].key);
        self.index.insert(key.clone(), i);
        self.slots[i] = HotKey {
            key,
            count: min + 1,
            error: min,
        };
    }

    /// The `n` keys with the highest counts, highest first.
    pub fn top(&self, n: usize) -> Vec<HotKey> {
        let mut v = self.slots.clone();
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        v.truncate(n);
        v
    }

    /// How many keys were offered.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The space-saving guarantees: every key more frequent than total/k is
        /// present, and each reported count c satisfies true <= c <= true + error.
        #[test]
        fn space_saving_bounds(stream in proptest::collection::vec(0i64..40, 0..600), k in 1usize..12) {
            let mut s = SpaceSaving::new(k);
            let mut truth = std::collections::HashMap::new();
            for &x in &stream {
                s.offer(OwnedKey::Int(x));
                *truth.entry(x).or_insert(0u64) += 1;
            }
            let top = s.top(k);
            for h in &top {
                let OwnedKey::Int(x) = h.key else { unreachable!() };
                let t = truth[&x];
                prop_assert!(t <= h.count && h.count <= t + h.error, "{x}: true {t}, {h:?}");
            }
            for (x, &t) in &truth {
                if t > stream.len() as u64 / k as u64 {
                    prop_assert!(top.iter().any(|h| h.key == OwnedKey::Int(*x)), "{x} ({t}) missing");
                }
            }
        }
    }
}
