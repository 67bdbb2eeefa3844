//! Maglev hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
//! Load Balancer", NSDI 2016).

use std::num::NonZeroU32;

use scalekit_core::{hash_pair, Placement, StableHash};

use crate::error::{ConfigError, RingError};

/// The default table size: the prime 65,537. Good for up to about 650 nodes at
/// 1% imbalance; take a larger size for more nodes or less movement.
pub const MAGLEV_DEFAULT_TABLE_SIZE: u32 = 65_537;

/// Table sizes offered: primes near 2^16, 2^18, 2^20 and 2^22. Any other prime
/// works too. The fraction of keys that move when 1 of 100 nodes leaves (the
/// minimum is 1%) is measured for each in the [guide](crate::_guide).
pub const MAGLEV_TABLE_SIZES: [u32; 4] = [65_537, 262_147, 1_048_583, 4_194_319];

const EMPTY: u32 = u32::MAX;

#[derive(Clone, Debug)]
struct Member<N> {
    node: N,
    hash: u64,
    weight: u32,
}

/// Maglev: a lookup table of prime size `M`, filled by the nodes in turn along
/// their own permutations of the table.
///
/// The fastest lookup of all engines (one hash, one multiply, one table read), and
/// near-perfect balance: every node holds `M / n` entries, give or take one. The
/// price is movement: when a node leaves, its entries move (the minimum) plus a
/// few others as the fill order shifts; the larger `M`, the closer to minimal.
/// Membership changes rebuild the table in O(M log M) time and O(M + n) memory
/// (peer crates materialise every node's whole permutation, O(M n), and size the
/// table from the node count, so every change moves almost every key).
///
/// Weights are honoured by turns: in each round a node of weight `w` fills `w`
/// entries for every `max_weight` turns (credit scheduling), so its share of the
/// table is `w / sum(w)`. The table does not depend on insertion order.
///
/// ```
/// use scalekit_core::Placement;
/// use scalekit_ring::Maglev;
///
/// let mut lb = Maglev::new();
/// for backend in ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"] {
///     lb.add(backend).unwrap();
/// }
/// let flow = scalekit_core::stable_hash(b"198.51.100.7:53211->203.0.113.1:443/tcp");
/// let backend = lb.locate_hash(flow).unwrap();
/// assert!(backend.starts_with("10.0.0."));
///
/// // Bigger tables move fewer keys on a change; sizes must be prime.
/// assert!(Maglev::<&str>::with_table_size(1_048_583).is_ok());
/// assert!(Maglev::<&str>::with_table_size(1_000_000).is_err());
/// ```
#[derive(Clone, Debug)]
pub struct Maglev<N> {
    table_size: u32,
    members: Vec<Member<N>>,
    table: Vec<u32>,
}

impl<N> Default for Maglev<N> {
    fn default() -> Self {
        Self {
            table_size: MAGLEV_DEFAULT_TABLE_SIZE,
            members: Vec::new(),
            table: Vec::new(),
        }
    }
}

impl<N: StableHash + PartialEq> Maglev<N> {
    /// An empty engine with the default table size, 65,537.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty engine with a table of `size` entries, which must be prime.
    pub fn with_table_size(size: u32) -> Result<Self, RingError> {
        if !is_prime(size) {
            return Err(RingError::Config(ConfigError::new(
                "maglev",
                "table_size",
                size,
                "a prime (one of MAGLEV_TABLE_SIZES, or another prime of at least 100 times the node count)",
            )));
        }
        Ok(Self {
            table_size: size,
            ..Self::default()
        })
    }

    /// An engine over `nodes` (weight 1 each), built once.
    pub fn with_nodes(nodes: impl IntoIterator<Item = N>) -> Result<Self, RingError> {
        let mut m = Self::new();
        m.extend(nodes.into_iter().map(|n| (n, NonZeroU32::MIN)))?;
        Ok(m)
    }

    /// Adds a node of weight 1 and rebuilds the table.
    pub fn add(&mut self, node: N) -> Result<(), RingError> {
        self.add_weighted(node, NonZeroU32::MIN)
    }

    /// Adds a node that takes `weight` times the entries of a weight-1 node, and
    /// rebuilds the table.
    pub fn add_weighted(&mut self, node: N, weight: NonZeroU32) -> Result<(), RingError> {
        self.extend(std::iter::once((node, weight)))
    }

    /// Adds many nodes and rebuilds the table once. On error nothing is added.
    pub fn extend(
        &mut self,
        nodes: impl IntoIterator<Item = (N, NonZeroU32)>,
    ) -> Result<(), RingError> {
        let before = self.members.len();
        for (node, weight) in nodes {
            if self.members.iter().any(|m| m.node == node) {
                self.members.truncate(before);
                return Err(RingError::DuplicateNode);
            }
            let hash = node.stable_hash();
            self.members.push(Member {
                node,
                hash,
                weight: weight.get(),
            });
        }
        if self.members.len() >= self.table_size as usize {
            let nodes = self.members.len();
            self.members.truncate(before);
            return Err(RingError::TableTooSmall {
                size: u64::from(self.table_size),
                nodes,
            });
        }
        self.rebuild();
        Ok(())
    }

    /// Removes a node, rebuilds the table, and returns the node.
    pub fn remove(&mut self, node: &N) -> Result<N, RingError> {
        let i = self
            .members
            .iter()
            .position(|m| &m.node == node)
            .ok_or(RingError::UnknownNode)?;
        let member = self.members.remove(i);
        self.rebuild();
        Ok(member.node)
    }
}

impl<N> Maglev<N> {
    /// The table size `M`.
    pub fn table_size(&self) -> u32 {
        self.table_size
    }

    /// Bytes used by the lookup table.
    pub fn memory_bytes(&self) -> usize {
        self.table.capacity() * 4
    }

    /// The nodes and their weights, ordered by their stable hash.
    pub fn nodes(&self) -> impl Iterator<Item = (&N, u32)> + '_ {
        self.members.iter().map(|m| (&m.node, m.weight))
    }

    /// The lookup table, entry by entry: entry `i` is the node that a hash
    /// landing on `i` goes to; empty without nodes. For a datapath that hashes
    /// on its own, such as an nftables map from `jhash ... mod M` to a backend
    /// (the storefront's stage 8 loads it into the kernel).
    ///
    /// ```
    /// use scalekit_ring::Maglev;
    /// let lb = Maglev::with_nodes(["a", "b", "c"]).unwrap();
    /// let entries: Vec<&&str> = lb.entries().collect();
    /// assert_eq!(entries.len(), 65_537);
    /// // Each node holds a third of the table, give or take one.
    /// let a = entries.iter().filter(|n| ***n == "a").count();
    /// assert!((21_845..=21_846).contains(&a));
    /// ```
    pub fn entries(&self) -> impl ExactSizeIterator<Item = &N> + '_ {
        // Every entry holds the index of a member (the table is rebuilt on
        // every change of the members).
        self.table
            .iter()
            .map(move |&i| &self.members[i as usize].node)
    }

    /// How many table entries each node holds, in [`nodes`](Self::nodes) order.
    pub fn entry_counts(&self) -> Vec<u32> {
        let mut counts = vec![0u32; self.members.len()];
        for &slot in &self.table {
            if let Some(c) = counts.get_mut(slot as usize) {
                *c += 1;
            }
        }
        counts
    }

    fn rebuild(&mut self) {
        // Fill order must not depend on insertion order.
        self.members.sort_by_key(|m| m.hash);
        let n = self.members.len();
        let size = self.table_size as usize;
        self.table.clear();
        if n == 0 {
            return;
        }
        self.table.resize(size, EMPTY);
        let m = u64::from(self.table_size);
        // Each node walks its permutation (offset + j * skip) mod M, kept as a
        // running position so no division happens in the loop.
        let mut position: Vec<u64> = Vec::with_capacity(n);
        let mut skip: Vec<u64> = Vec::with_capacity(n);
        for member in &self.members {
            let offset = hash_pair(member.hash, 0x6f66_6673_6574) % m;
            let step = hash_pair(member.hash, 0x736b_6970) % (m - 1) + 1;
            position.push(offset);
            skip.push(step);
        }
        let max_weight = self.members.iter().map(|m| m.weight).max().unwrap_or(1);
        let mut credit: Vec<u64> = vec![0; n];
        let mut filled = 0usize;
        'fill: loop {
            for i in 0..n {
                credit[i] += u64::from(self.members[i].weight);
                while credit[i] >= u64::from(max_weight) {
                    credit[i] -= u64::from(max_weight);
                    loop {
                        let c = position[i] as usize;
                        let next = position[i] + skip[i];
                        position[i] = if next >= m { next - m } else { next };
                        if self.table[c] == EMPTY {
                            self.table[c] = i as u32;
                            break;
                        }
                    }
                    filled += 1;
                    if filled == size {
                        break 'fill;
                    }
                }
            }
        }
    }
}

impl<N> Placement for Maglev<N> {
    type Node = N;

    #[inline]
    fn locate_hash(&self, hash: u64) -> Option<&N> {
        // Lemire's multiply-shift maps the hash onto 0..M without a division.
        let i = ((u128::from(hash) * u128::from(self.table_size)) >> 64) as usize;
        let slot = *self.table.get(i)?;
        self.members.get(slot as usize).map(|m| &m.node)
    }

    fn len(&self) -> usize {
        self.members.len()
    }

    fn for_each_node(&self, visit: &mut dyn FnMut(&N)) {
        self.members.iter().for_each(|m| visit(&m.node))
    }
}

/// Deterministic primality for u32 by trial division (at most 32,768 steps, done
/// once per configuration).
pub(crate) fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let n = u64::from(n);
    let mut d = 3u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes() {
        let small: Vec<u32> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(small, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        for size in MAGLEV_TABLE_SIZES {
            assert!(is_prime(size), "{size}");
        }
        assert!(is_prime(4_294_967_291)); // the largest u32 prime
        assert!(!is_prime(65_536));
    }

    #[test]
    fn every_entry_filled_and_balanced() {
        let m = Maglev::with_nodes(0..100u32).unwrap();
        let counts = m.entry_counts();
        assert_eq!(counts.iter().map(|&c| c as usize).sum::<usize>(), 65_537);
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(hi - lo <= 1, "{lo}..{hi}");
    }

    #[test]
    fn weights_share_the_table() {
        let mut m = Maglev::new();
        m.add_weighted("a", NonZeroU32::new(1).unwrap()).unwrap();
        m.add_weighted("b", NonZeroU32::new(3).unwrap()).unwrap();
        let counts: Vec<(&&str, u32)> = m.nodes().map(|(n, _)| n).zip(m.entry_counts()).collect();
        for (node, count) in counts {
            let share = f64::from(count) / 65_537.0;
            let want = if *node == "a" { 0.25 } else { 0.75 };
            assert!((share - want).abs() < 0.001, "{node}: {share}");
        }
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let a = Maglev::with_nodes(["x", "y", "z"]).unwrap();
        let b = Maglev::with_nodes(["z", "x", "y"]).unwrap();
        for k in 0..10_000u64 {
            assert_eq!(a.locate_hash(k), b.locate_hash(k));
        }
    }

    #[test]
    fn config_errors() {
        let err = Maglev::<u32>::with_table_size(100).unwrap_err();
        assert!(
            matches!(&err, RingError::Config(e) if e.field() == "table_size" && e.value() == "100")
        );
        assert_eq!(
            err.to_string(),
            "invalid maglev setting `table_size` = 100: expected a prime (one of MAGLEV_TABLE_SIZES, or another prime of at least 100 times the node count)"
        );
        let mut tiny = Maglev::with_table_size(5).unwrap();
        assert!(matches!(
            tiny.extend((0..5u32).map(|n| (n, NonZeroU32::MIN))),
            Err(RingError::TableTooSmall { .. })
        ));
        assert!(tiny.is_empty());
        tiny.add(1u32).unwrap();
        assert_eq!(tiny.add(1u32), Err(RingError::DuplicateNode));
        assert_eq!(tiny.len(), 1);
    }
}
