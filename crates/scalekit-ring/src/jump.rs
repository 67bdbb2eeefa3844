//! Jump consistent hash (Lamping and Veach, 2014).

use scalekit_core::Placement;

use crate::RingError;

const TWO_POW_31: f64 = 2_147_483_648.0;
/// The fast path multiplies by a reciprocal instead of dividing; its result is
/// within 3 ulp of the exact quotient. When it lies this close (relative) to an
/// integer, the exact division decides, so the answer is always Guava's.
const NEAR_INTEGER: f64 = 1.0 / (1u64 << 49) as f64;

/// Jump consistent hash: the bucket in `0..buckets` for a 64-bit key.
///
/// Bit-for-bit equal to Guava's `Hashing.consistentHash(long, int)` for every key
/// and every `buckets` in `1..=i32::MAX`, and extended naturally up to `u32::MAX`.
/// `buckets == 0` is treated as 1 (the answer is 0). When `buckets` grows from `n`
/// to `n + 1`, exactly the keys that now land on bucket `n` move.
///
/// Guava's inner step is `next = (int) ((candidate + 1) / nextDouble())`. Here the
/// division by a value that does not depend on the candidate is replaced by a
/// multiplication with its reciprocal, computed off the critical path, and the rare
/// step whose result lies within rounding error of an integer is redone with the
/// exact division: about twice as fast, with identical answers.
///
/// ```
/// use scalekit_ring::jump_hash;
///
/// let first: Vec<u32> = (0..10).map(|k| jump_hash(k, 100)).collect();
/// assert_eq!(first, [0, 55, 62, 8, 45, 59, 86, 97, 82, 59]);
/// assert_eq!(jump_hash(256, 1024), 520);
/// ```
#[inline]
pub fn jump_hash(key: u64, buckets: u32) -> u32 {
    let limit = f64::from(buckets);
    let mut state = key;
    let mut candidate: u32 = 0;
    loop {
        state = state
            .wrapping_mul(2_862_933_555_777_941_757)
            .wrapping_add(1);
        // (state >>> 33) < 2^31, so y is in 1..=2^31 and exact as f64.
        let y = f64::from((state >> 33) as u32 + 1);
        let reciprocal = TWO_POW_31 / y;
        // candidate < buckets <= u32::MAX, so candidate + 1 cannot overflow.
        let numerator = f64::from(candidate + 1);
        let mut next = numerator * reciprocal;
        let whole = next as u64 as f64;
        let fraction = next - whole;
        let tolerance = next * NEAR_INTEGER;
        if fraction < tolerance || fraction > 1.0 - tolerance {
            // Guava's exact step: (c + 1) / (y / 2^31) == ((c + 1) * 2^31) / y, both
            // a single correctly rounded division of the same real number.
            next = (numerator * TWO_POW_31) / y;
        }
        if next >= limit {
            return candidate;
        }
        candidate = next as u32;
    }
}

/// The reference step, exactly as Guava writes it, for tests.
#[cfg(test)]
pub(crate) fn guava_consistent_hash(input: u64, buckets: u32) -> u32 {
    let mut state = input;
    let mut candidate: i64 = 0;
    loop {
        state = state
            .wrapping_mul(2_862_933_555_777_941_757)
            .wrapping_add(1);
        let next_double = f64::from((state >> 33) as i32 + 1) / TWO_POW_31;
        let next = ((candidate + 1) as f64 / next_double) as i32;
        if next >= 0 && i64::from(next) < i64::from(buckets) {
            candidate = i64::from(next);
        } else {
            return candidate as u32;
        }
    }
}

/// Jump hash over a list of nodes.
///
/// The fastest engine with exactly minimal movement and perfect balance, and no
/// memory beyond the node list, but nodes can only be added at the end and removed
/// from the end: bucket `i` is the `i`-th node. Use it for shards that only grow
/// (or shrink from the top); use [`Memento`](crate::Memento) when any node may
/// leave.
///
/// ```
/// use scalekit_core::Placement;
/// use scalekit_ring::Jump;
///
/// let mut shards = Jump::new();
/// for s in ["shard-0", "shard-1", "shard-2"] {
///     shards.add(s).unwrap();
/// }
/// let before = *shards.locate("order:981").unwrap();
/// shards.add("shard-3").unwrap();
/// let after = *shards.locate("order:981").unwrap();
/// // A key either stays or moves to the new shard.
/// assert!(after == before || after == "shard-3");
///
/// // Only the last node can leave.
/// assert!(shards.remove(&"shard-0").is_err());
/// assert_eq!(shards.remove(&"shard-3"), Ok("shard-3"));
/// ```
#[derive(Clone, Debug)]
pub struct Jump<N> {
    nodes: Vec<N>,
}

impl<N> Default for Jump<N> {
    fn default() -> Self {
        Self { nodes: Vec::new() }
    }
}

impl<N: PartialEq> Jump<N> {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// An engine over `nodes`, in order (bucket `i` is `nodes[i]`).
    pub fn with_nodes(nodes: impl IntoIterator<Item = N>) -> Result<Self, RingError> {
        let mut jump = Self::new();
        for node in nodes {
            jump.add(node)?;
        }
        Ok(jump)
    }

    /// Adds a node as the new last bucket.
    pub fn add(&mut self, node: N) -> Result<(), RingError> {
        if self.nodes.contains(&node) {
            return Err(RingError::DuplicateNode);
        }
        if self.nodes.len() >= u32::MAX as usize {
            return Err(RingError::TooLarge {
                what: "nodes",
                limit: u64::from(u32::MAX),
            });
        }
        self.nodes.push(node);
        Ok(())
    }

    /// Removes `node`, which must be the last one.
    pub fn remove(&mut self, node: &N) -> Result<N, RingError> {
        match self.nodes.last() {
            Some(last) if last == node => self.nodes.pop().ok_or(RingError::UnknownNode),
            _ if self.nodes.contains(node) => Err(RingError::NotLastNode),
            _ => Err(RingError::UnknownNode),
        }
    }

    /// Removes and returns the last node.
    pub fn pop(&mut self) -> Option<N> {
        self.nodes.pop()
    }

    /// The nodes, in bucket order.
    pub fn nodes(&self) -> &[N] {
        &self.nodes
    }
}

impl<N> Placement for Jump<N> {
    type Node = N;

    #[inline]
    fn locate_hash(&self, hash: u64) -> Option<&N> {
        if self.nodes.is_empty() {
            return None;
        }
        let bucket = jump_hash(hash, self.nodes.len() as u32);
        self.nodes.get(bucket as usize)
    }

    fn len(&self) -> usize {
        self.nodes.len()
    }

    fn for_each_node(&self, visit: &mut dyn FnMut(&N)) {
        self.nodes.iter().for_each(visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values_from_guava() {
        let got: Vec<u32> = (0..10).map(|i| jump_hash(i, 100)).collect();
        assert_eq!(got, [0, 55, 62, 8, 45, 59, 86, 97, 82, 59]);
        assert_eq!(jump_hash(256, 1024), 520);
        assert_eq!(jump_hash(42, 57), 43);
        assert_eq!(guava_consistent_hash(256, 1024), 520);
        assert_eq!(guava_consistent_hash(42, 57), 43);
    }

    #[test]
    fn degenerate_bucket_counts() {
        assert_eq!(jump_hash(12345, 0), 0);
        assert_eq!(jump_hash(12345, 1), 0);
        assert!(jump_hash(u64::MAX, u32::MAX) < u32::MAX);
    }

    #[test]
    fn equals_guava_on_many_keys_and_sizes() {
        let mut key = 0x1234_5678_9abc_def0_u64;
        for _ in 0..200_000 {
            key = scalekit_core::mix64(key.wrapping_add(1));
            for buckets in [1, 2, 3, 10, 100, 1000, 65_536, 1 << 20, i32::MAX as u32] {
                assert_eq!(jump_hash(key, buckets), guava_consistent_hash(key, buckets));
            }
        }
    }

    proptest! {
        #[test]
        fn equals_guava(key in any::<u64>(), buckets in 1..=i32::MAX as u32) {
            prop_assert_eq!(jump_hash(key, buckets), guava_consistent_hash(key, buckets));
        }

        #[test]
        fn in_range_and_minimal_on_growth(key in any::<u64>(), buckets in 1..100_000u32) {
            let a = jump_hash(key, buckets);
            let b = jump_hash(key, buckets + 1);
            prop_assert!(a < buckets);
            prop_assert!(b == a || b == buckets);
        }
    }
}
