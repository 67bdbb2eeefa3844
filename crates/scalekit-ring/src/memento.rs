//! MementoHash (Coluzzi, Brocco, Antonucci and Leidi, 2023): a jump-style
//! consistent hash with arbitrary removal.

use ahash::AHashMap;
use scalekit_core::{hash_pair, Placement};

use crate::error::RingError;
use crate::jump::jump_back_hash;

/// What MementoHash remembers of a removed bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Removed {
    /// The bucket that replaces it, which is also the size of the working set
    /// right after it was removed.
    replacer: u32,
    /// The bucket removed before it (restored after it, in LIFO order).
    prev_removed: u32,
}

/// MementoHash: jump-hash speed and balance, any node may leave, exactly minimal
/// movement.
///
/// Buckets are `0..n` of [`jump_back_hash`](crate::jump_back_hash), a consistent
/// hash with jump hash's guarantees in constant time (MementoHash works over any
/// such function; the paper uses jump hash). Removing a bucket other than the last records it
/// in a small table (the "memento"); a key that lands on a removed bucket
/// is rehashed into the working set as it was when that bucket left. Only the keys
/// of a removed node move; an added node takes the most recently freed bucket, so
/// only the keys that now land on it move. With no removals, a lookup is one
/// `jump_back_hash`; each removal costs one map entry, and lookups slow down only
/// with the share of removed buckets.
///
/// Placement depends on the order of membership changes (which bucket a node
/// holds): processes that must agree apply the same changes in the same order, or
/// share the [`buckets`](Memento::buckets) layout.
///
/// ```
/// use scalekit_core::Placement;
/// use scalekit_ring::Memento;
///
/// let mut m = Memento::with_nodes(["db-0", "db-1", "db-2", "db-3"]).unwrap();
/// let keys: Vec<u64> = (0..1000).collect();
/// let before: Vec<&str> = keys.iter().map(|k| *m.locate(k).unwrap()).collect();
///
/// m.remove(&"db-1").unwrap(); // any node, not only the last
/// for (k, was) in keys.iter().zip(&before) {
///     let now = *m.locate(k).unwrap();
///     if *was != "db-1" {
///         assert_eq!(now, *was); // keys of other nodes stay put
///     }
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Memento<N> {
    /// The b-array: bucket -> node, `None` for removed buckets.
    buckets: Vec<Option<N>>,
    removed: AHashMap<u32, Removed>,
    last_removed: u32,
}

impl<N> Default for Memento<N> {
    fn default() -> Self {
        Self {
            buckets: Vec::new(),
            removed: AHashMap::new(),
            last_removed: 0,
        }
    }
}

impl<N: PartialEq> Memento<N> {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// An engine over `nodes`, in order (node `i` takes bucket `i`).
    pub fn with_nodes(nodes: impl IntoIterator<Item = N>) -> Result<Self, RingError> {
        let mut m = Self::new();
        for node in nodes {
            m.add(node)?;
        }
        Ok(m)
    }

    /// Adds a node. It takes the most recently freed bucket, or a new last bucket
    /// when none is free. Returns the bucket.
    pub fn add(&mut self, node: N) -> Result<u32, RingError> {
        if self.position(&node).is_some() {
            return Err(RingError::DuplicateNode);
        }
        let bucket = self.last_removed;
        if self.removed.is_empty() {
            if self.buckets.len() >= u32::MAX as usize {
                return Err(RingError::TooLarge {
                    what: "nodes",
                    limit: u64::from(u32::MAX),
                });
            }
            debug_assert_eq!(bucket as usize, self.buckets.len());
            self.buckets.push(Some(node));
            self.last_removed = bucket + 1;
        } else {
            let entry = self.removed.remove(&bucket).ok_or(RingError::UnknownNode)?;
            self.last_removed = entry.prev_removed;
            self.buckets[bucket as usize] = Some(node);
        }
        Ok(bucket)
    }

    /// Removes a node (any node) and returns it. Only its keys move.
    pub fn remove(&mut self, node: &N) -> Result<N, RingError> {
        let bucket = self.position(node).ok_or(RingError::UnknownNode)?;
        let size = self.buckets.len();
        if self.removed.is_empty() && bucket + 1 == size {
            // The base hash's own case: shrink the b-array.
            let node = self.buckets.pop().flatten().ok_or(RingError::UnknownNode)?;
            self.last_removed = bucket as u32;
            return Ok(node);
        }
        let working = (size - self.removed.len()) as u32;
        let node = self.buckets[bucket].take().ok_or(RingError::UnknownNode)?;
        self.removed.insert(
            bucket as u32,
            Removed {
                replacer: working - 1,
                prev_removed: self.last_removed,
            },
        );
        self.last_removed = bucket as u32;
        Ok(node)
    }

    fn position(&self, node: &N) -> Option<usize> {
        self.buckets
            .iter()
            .position(|b| b.as_ref().is_some_and(|b| b == node))
    }
}

impl<N> Memento<N> {
    /// The b-array: bucket `i` holds `Some(node)` or `None` if removed. Its length
    /// is the base hash's bucket count.
    pub fn buckets(&self) -> &[Option<N>] {
        &self.buckets
    }

    /// How many buckets are removed and remembered.
    pub fn removed_count(&self) -> usize {
        self.removed.len()
    }

    /// The bucket that owns a key hash, or `None` when there are no nodes.
    #[inline]
    pub fn bucket(&self, hash: u64) -> Option<u32> {
        let size = self.buckets.len();
        if size == self.removed.len() {
            return None;
        }
        let mut b = jump_back_hash(hash, size as u32);
        if self.removed.is_empty() {
            return Some(b);
        }
        let mut replacer = self.removed.get(&b).map(|r| r.replacer);
        while let Some(working) = replacer {
            // The bucket was removed when `working` buckets remained: rehash into
            // 0..working, then follow replacements of buckets removed later.
            let h = hash_pair(hash, u64::from(b));
            b = ((u128::from(h) * u128::from(working)) >> 64) as u32;
            let mut r = self.removed.get(&b).map(|r| r.replacer);
            while let Some(next) = r {
                if next < working {
                    break;
                }
                b = next;
                r = self.removed.get(&b).map(|r| r.replacer);
            }
            replacer = r;
        }
        Some(b)
    }
}

impl<N> Placement for Memento<N> {
    type Node = N;

    #[inline]
    fn locate_hash(&self, hash: u64) -> Option<&N> {
        let b = self.bucket(hash)?;
        self.buckets.get(b as usize)?.as_ref()
    }

    fn len(&self) -> usize {
        self.buckets.len() - self.removed.len()
    }

    fn for_each_node(&self, visit: &mut dyn FnMut(&N)) {
        self.buckets.iter().flatten().for_each(visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_removals_it_is_jump_back_hash() {
        let m = Memento::with_nodes(0..100u32).unwrap();
        for k in 0..10_000u64 {
            assert_eq!(m.bucket(k), Some(jump_back_hash(k, 100)));
        }
    }

    #[test]
    fn remove_everything_then_restore_in_reverse() {
        let mut m = Memento::with_nodes(0..10u32).unwrap();
        let before: Vec<u32> = (0..1000u64).map(|k| *m.locate_hash(k).unwrap()).collect();
        let order = [3u32, 7, 0, 9, 1, 5, 2, 8, 4, 6];
        for n in order {
            m.remove(&n).unwrap();
            for k in 0..1000u64 {
                if let Some(owner) = m.locate_hash(k) {
                    assert_ne!(*owner, n);
                }
            }
        }
        assert!(m.is_empty());
        assert_eq!(m.locate_hash(1), None);
        // Restoring in reverse order gives back the original placement.
        for n in order.iter().rev() {
            m.add(*n).unwrap();
        }
        let after: Vec<u32> = (0..1000u64).map(|k| *m.locate_hash(k).unwrap()).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn errors() {
        let mut m = Memento::with_nodes(["a", "b"]).unwrap();
        assert_eq!(m.add("a"), Err(RingError::DuplicateNode));
        assert_eq!(m.remove(&"z"), Err(RingError::UnknownNode));
        assert_eq!(m.len(), 2);
    }
}
