//! Jump consistent hash (Lamping and Veach, 2014).

use scalekit_core::Placement;

use crate::error::RingError;

const TWO_POW_31: f64 = 2_147_483_648.0;
/// How close (absolute) to an integer a fast-path step may come before the exact
/// division decides. The fast step's error is below `3 * 2^-53 * q`, under `2^-19`
/// for every `q < 2^33`, the only range where the decision matters.
const NEAR_INTEGER: f64 = 1.0 / (1u64 << 17) as f64;
const LCG_MULTIPLIER: u64 = 2_862_933_555_777_941_757;
/// Guava computes `(int) (state >>> 33) + 1` in Java `int`: for `0x7fff_ffff` the
/// sum wraps to `-2^31`, the quotient turns negative and the loop ends, keeping the
/// current candidate. We do the same.
const JAVA_INT_OVERFLOW: u64 = 0x7fff_ffff;

/// Jump consistent hash: the bucket in `0..buckets` for a 64-bit key.
///
/// Bit-for-bit equal to Guava's `Hashing.consistentHash(long, int)` for every key
/// and every `buckets` in `1..=i32::MAX`, and extended naturally up to `u32::MAX`.
/// `buckets == 0` is treated as 1 (the answer is 0). When `buckets` grows from `n`
/// to `n + 1`, exactly the keys that now land on bucket `n` move. It takes about
/// `ln(buckets) + 1` steps; [`jump_back_hash`] gives the same guarantees in a
/// constant number of steps, with different answers.
///
/// Guava's step is `next = (int) ((candidate + 1) / nextDouble())`. Here the
/// division, which does not depend on the candidate, becomes a multiplication by
/// its reciprocal, computed off the critical path. Up to 2^18 buckets the
/// reciprocal is nudged up by a few ulp, which provably gives Guava's floor at every
/// step with no check (see the source); above, each product is checked for
/// closeness to an integer, and such a step (about one in 60,000) finishes the loop
/// with Guava's exact division. Either way the answer is always Guava's.
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
    if buckets <= ROUNDED_UP_LIMIT {
        rounded_up(key, buckets)
    } else {
        checked(key, buckets)
    }
}

/// Up to this many buckets, [`rounded_up`] is exact.
const ROUNDED_UP_LIMIT: u32 = 1 << 18;
/// `1 + 2^-50`: nudges the reciprocal up by 4 to 8 ulp.
const NUDGE: f64 = 1.0 + 1.0 / (1u64 << 50) as f64;

/// Guava's loop with no check on the critical path, exact for `buckets <= 2^18`.
///
/// With `Q = (c + 1) * 2^31 / y` the exact quotient, the step computes
/// `q = (c + 1) * RN(RN(2^31 / y) * (1 + 2^-50))`, so `Q < q < Q (1 + 1.4 * 2^-50)`:
/// always above `Q`, by less than `2^-31` while `Q < 2^18`. A non-integer `Q` is at
/// least `1 / y >= 2^-31` below the next integer, so `floor(q) = floor(Q)`, and an
/// integer `Q` gives `floor(q) = Q`. Guava's `trunc(RN(Q))` is `floor(Q)` there too
/// (the rounding moves `Q` by under `2^-35`). Every step that continues has `Q`
/// below `buckets <= 2^18`, and a step with `Q >= 2^18` exits in both.
#[inline]
fn rounded_up(key: u64, buckets: u32) -> u32 {
    let limit = f64::from(buckets);
    let mut state = key;
    let mut candidate: i64 = 0;
    loop {
        state = state.wrapping_mul(LCG_MULTIPLIER).wrapping_add(1);
        let raw = state >> 33;
        let reciprocal = (TWO_POW_31 / (raw + 1) as f64) * NUDGE;
        // Java's int overflow ends Guava's loop: an infinite step does the same.
        let reciprocal = if raw == JAVA_INT_OVERFLOW {
            f64::INFINITY
        } else {
            reciprocal
        };
        let next = (candidate + 1) as f64 * reciprocal;
        if next >= limit {
            return candidate as u32;
        }
        candidate = next as i64;
    }
}

/// Guava's loop for any bucket count: the reciprocal's product, checked for
/// closeness to an integer, and the exact division when it is close.
#[inline]
fn checked(key: u64, buckets: u32) -> u32 {
    let limit = f64::from(buckets);
    // The first step divides 1 by y / 2^31: its reciprocal is Guava's value
    // exactly, so it needs no rounding check.
    let mut state = key.wrapping_mul(LCG_MULTIPLIER).wrapping_add(1);
    if state >> 33 == JAVA_INT_OVERFLOW {
        return 0;
    }
    let first = TWO_POW_31 / ((state >> 33) + 1) as f64;
    if first >= limit {
        return 0;
    }
    let mut candidate = first as i64;
    loop {
        let before = state;
        state = state.wrapping_mul(LCG_MULTIPLIER).wrapping_add(1);
        if state >> 33 == JAVA_INT_OVERFLOW {
            return candidate as u32;
        }
        // (state >>> 33) < 2^31 - 1 here, so the divisor is in 1..2^31 and exact.
        let reciprocal = TWO_POW_31 / ((state >> 33) + 1) as f64;
        let next = (candidate + 1) as f64 * reciprocal;
        if next >= limit {
            if next - limit < NEAR_INTEGER {
                return guava_from(before, candidate, buckets);
            }
            return candidate as u32;
        }
        let whole = next as i64;
        let fraction = next - whole as f64;
        if (fraction - 0.5).abs() > 0.5 - NEAR_INTEGER {
            return guava_from(before, candidate, buckets);
        }
        candidate = whole;
    }
}

/// Guava's loop, exactly, from a state and candidate: the rare slow path.
#[cold]
#[inline(never)]
fn guava_from(mut state: u64, mut candidate: i64, buckets: u32) -> u32 {
    loop {
        state = state.wrapping_mul(LCG_MULTIPLIER).wrapping_add(1);
        if state >> 33 == JAVA_INT_OVERFLOW {
            return candidate as u32;
        }
        let divisor = ((state >> 33) + 1) as f64;
        // Guava: (c + 1) / (y / 2^31), the same real number as ((c + 1) * 2^31) / y,
        // and both are one correctly rounded division of it.
        let next = ((candidate + 1) as f64 * TWO_POW_31) / divisor;
        if next >= f64::from(buckets) {
            return candidate as u32;
        }
        candidate = next as i64;
    }
}

/// Jump-back consistent hash: the bucket in `0..buckets` for a 64-bit key, in a
/// constant expected number of steps (a handful of multiplications).
///
/// The same guarantees as [`jump_hash`], different answers. It follows the
/// structure of Ertl's JumpBackHash (2024): a key's bucket for `n` buckets is its
/// largest "jump point" below `n`, where every `i >= 1` is a jump point with
/// probability `1 / (i + 1)`, independently; so each bucket gets `1 / n` of the
/// keys, and growing to `n + 1` buckets moves exactly the keys whose jump point is
/// `n`. Within each power-of-two block `[2^k, 2^(k+1))` the product of those
/// probabilities makes "the block has a jump point" a fair coin (bit `k` of the
/// mixed key) and its largest jump point uniform over the block; the next one
/// below a point `c` exists with probability `(c - 2^k) / c` and is uniform below
/// `c`. So the search starts in the block of `n - 1` and only walks back through
/// points of that block that are `>= n`.
///
/// Pinned: the input is first mixed, `h = mix64(hash ^ 0x6a756d706261636b)`, so
/// any 64-bit key works, sequential ids included; the block coins are the bits of
/// `h`; the random stream is `mix64(h ^ (k << 57 | 0x0123_4567) + i *
/// 0x9e3779b97f4a7c15)` for draw `i` of block `k`; and a uniform value below `r` is
/// `(draw * r) >> 64`. (hash4j's JumpBackHash uses another generator, so values
/// differ from it.)
///
/// ```
/// use scalekit_ring::jump_back_hash;
///
/// let b = jump_back_hash(0xdead_beef, 1000);
/// assert!(b < 1000);
/// // Growing by one bucket: the key stays, or moves to the new bucket.
/// let c = jump_back_hash(0xdead_beef, 1001);
/// assert!(c == b || c == 1000);
/// ```
#[inline]
pub fn jump_back_hash(hash: u64, buckets: u32) -> u32 {
    if buckets <= 1 {
        return 0;
    }
    // Mixed first, so that sequential ids and other structured inputs spread too.
    let hash = scalekit_core::mix64(hash ^ 0x6a75_6d70_6261_636b);
    let n = u64::from(buckets);
    let k = 63 - (n - 1).leading_zeros();
    if hash & (1u64 << k) != 0 {
        let low = 1u64 << k;
        let seed = block_seed(hash, k);
        let mut point = low + below(draw(seed, 0), low);
        let mut i = 1;
        loop {
            if point < n {
                return point as u32;
            }
            // Another jump point in [low, point) exists with probability
            // (point - low) / point.
            if below(draw(seed, i), point) >= point - low {
                break;
            }
            point = low + below(draw(seed, i + 1), point - low);
            i += 2;
        }
    }
    // The largest jump point of the highest lower block that has one.
    let lower = hash & ((1u64 << k) - 1);
    if lower == 0 {
        return 0;
    }
    let k = 63 - lower.leading_zeros();
    let low = 1u64 << k;
    (low + below(draw(block_seed(hash, k), 0), low)) as u32
}

#[inline]
fn block_seed(hash: u64, block: u32) -> u64 {
    hash ^ ((u64::from(block) << 57) | 0x0123_4567)
}

#[inline]
fn draw(seed: u64, i: u64) -> u64 {
    scalekit_core::mix64(seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
}

/// A value below `range` from 64 random bits (Lemire's multiply-shift).
#[inline]
fn below(random: u64, range: u64) -> u64 {
    ((u128::from(random) * u128::from(range)) >> 64) as u64
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
        // Java int arithmetic: wraps.
        let next_double = f64::from(((state >> 33) as i32).wrapping_add(1)) / TWO_POW_31;
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
    fn java_int_overflow_ends_the_loop_as_in_guava() {
        // The first LCG state is 0xFFFF_FFFF_0000_0001: (int)(state >>> 33) + 1
        // overflows in Java and Guava returns the current candidate, 0. (Values
        // from Guava 33's Hashing.consistentHash.)
        let key = 7_377_762_239_723_339_776;
        for buckets in [2, 10, 100, 1000] {
            assert_eq!(jump_hash(key, buckets), 0);
            assert_eq!(guava_consistent_hash(key, buckets), 0);
        }
        // The same event at a later step: find keys whose second state overflows.
        let mut checked = 0;
        for first in 0..2_000u64 {
            // Choose the second state, step the LCG back to the key.
            let second = (0x7fff_ffffu64 << 33) | (first * 0x9e37 + 5) & ((1 << 33) - 1);
            let key = lcg_back(lcg_back(second));
            for buckets in [3, 100, 1 << 20] {
                assert_eq!(jump_hash(key, buckets), guava_consistent_hash(key, buckets));
                checked += 1;
            }
        }
        assert_eq!(checked, 6_000);
    }

    /// The inverse of one LCG step (the multiplier is odd, so it is invertible mod 2^64).
    fn lcg_back(state: u64) -> u64 {
        let mut inverse: u64 = LCG_MULTIPLIER; // Newton's iteration for the inverse
        for _ in 0..6 {
            inverse = inverse.wrapping_mul(2u64.wrapping_sub(LCG_MULTIPLIER.wrapping_mul(inverse)));
        }
        assert_eq!(inverse.wrapping_mul(LCG_MULTIPLIER), 1);
        state.wrapping_sub(1).wrapping_mul(inverse)
    }

    /// Keys whose second step has an exact integer quotient: the case where a
    /// rounded reciprocal could land just below the integer and floor one lower.
    #[test]
    fn integer_quotients_match_guava() {
        let mut hits = 0;
        let mut x = 12_345u64;
        for odd in [3u64, 5, 7, 9, 15, 21, 255] {
            for shift in 0..31u32 {
                let y2 = odd << shift;
                if y2 > 1 << 31 {
                    break;
                }
                for _ in 0..200 {
                    x = scalekit_core::mix64(x + 1);
                    let state2 = ((y2 - 1) << 33) | (x & ((1 << 33) - 1));
                    let state1 = lcg_back(state2);
                    let key = lcg_back(state1);
                    let b1 = (TWO_POW_31 / ((state1 >> 33) + 1) as f64) as u64;
                    if ((b1 + 1) << 31) % y2 != 0 {
                        continue;
                    }
                    hits += 1;
                    let q2 = ((b1 + 1) << 31) / y2;
                    for n in [q2, q2 + 1, 1000, 1 << 18, (1 << 18) + 1, 1 << 24] {
                        if n == 0 || n > i32::MAX as u64 {
                            continue;
                        }
                        let n = n as u32;
                        let want = guava_consistent_hash(key, n);
                        assert_eq!(jump_hash(key, n), want, "key {key}, {n} buckets");
                        assert_eq!(checked(key, n), want, "key {key}, {n} buckets");
                        if n <= ROUNDED_UP_LIMIT {
                            assert_eq!(rounded_up(key, n), want, "key {key}, {n} buckets");
                        }
                    }
                }
            }
        }
        assert!(hits > 1_000, "only {hits} integer quotients generated");
    }

    #[test]
    fn both_paths_equal_guava_around_the_switch() {
        let mut key = 7u64;
        for _ in 0..20_000 {
            key = scalekit_core::mix64(key.wrapping_add(1));
            for n in [ROUNDED_UP_LIMIT - 1, ROUNDED_UP_LIMIT, ROUNDED_UP_LIMIT + 1] {
                let want = guava_consistent_hash(key, n);
                assert_eq!(checked(key, n), want);
                if n <= ROUNDED_UP_LIMIT {
                    assert_eq!(rounded_up(key, n), want);
                }
            }
        }
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
            for buckets in [
                1,
                2,
                3,
                10,
                100,
                1000,
                65_536,
                1 << 18,
                (1 << 18) + 1,
                1 << 20,
                i32::MAX as u32,
            ] {
                assert_eq!(jump_hash(key, buckets), guava_consistent_hash(key, buckets));
            }
        }
    }

    #[test]
    fn jump_back_is_consistent_and_uniform() {
        for n in 1..260u32 {
            for k in 0..2_000u64 {
                let h = scalekit_core::stable_hash_u64(k);
                let a = jump_back_hash(h, n);
                let b = jump_back_hash(h, n + 1);
                assert!(a < n);
                assert!(b == a || b == n, "n={n} key={k}: {a} -> {b}");
            }
        }
        // Pinned values: placement must not change between versions.
        let pinned: Vec<u32> = (0..8u64)
            .map(|k| jump_back_hash(scalekit_core::stable_hash_u64(k), 1000))
            .collect();
        assert_eq!(pinned, PINNED_JUMP_BACK);
        // Structured keys spread too: multiples of 1024 over 1000 buckets.
        let mut seen = std::collections::HashSet::new();
        for k in 0..10_000u64 {
            seen.insert(jump_back_hash(k * 1024, 1000));
        }
        assert!(seen.len() > 990, "{} buckets used", seen.len());
    }

    const PINNED_JUMP_BACK: [u32; 8] = [670, 25, 462, 318, 140, 759, 568, 949];

    proptest! {
        #[test]
        fn jump_back_grows_minimally(key in any::<u64>(), buckets in 1..u32::MAX) {
            let a = jump_back_hash(key, buckets);
            let b = jump_back_hash(key, buckets + 1);
            prop_assert!(a < buckets);
            prop_assert!(b == a || b == buckets);
        }

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
