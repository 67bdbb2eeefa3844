//! The classic ring: nodes hashed to many points on a circle, a key owned by the
//! first point at or after its hash.

use std::num::NonZeroU32;

use scalekit_core::{hash_pair, Placement, StableHash};

use crate::error::{ConfigError, RingError};

/// Points per unit of weight unless told otherwise.
pub const DEFAULT_VIRTUAL_NODES: u32 = 160;

/// Index entries with this bit set name the owner directly.
const DIRECT: u32 = 1 << 31;
/// At most 2^25 points (33.5 million: 160 points for each of 200,000 weight-1
/// nodes, about 400 MiB with the index); more is a configuration error, refused
/// before anything is allocated.
const MAX_POINTS: usize = 1 << 25;

/// How [`Ring::replicas_into`] makes the replicas of a key distinct.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Spread {
    /// Distinct nodes: the first `n` different nodes clockwise from the key.
    #[default]
    Nodes,
    /// Distinct labels first (zones, hosts, racks): clockwise, skip a node whose
    /// label is already taken; if there are fewer labels than `n`, fill up with
    /// further distinct nodes in ring order, as Cassandra's topology-aware
    /// placement does.
    Labels,
}

#[derive(Clone, Debug)]
struct Member<N> {
    node: N,
    hash: u64,
    weight: u32,
    label: Option<u64>,
}

/// A consistent-hash ring with virtual nodes, weights and labels.
///
/// Each node is hashed to `virtual_nodes * weight` points on a 64-bit circle; a key
/// belongs to the first point at or after its hash. Adding a node moves only the
/// keys that now land on its points; removing one moves only its own keys. With 160
/// points a node, the most loaded of 100 nodes holds about 1.2 times the average
/// (more points narrow it: see the [guide](crate::_guide)).
///
/// Placement does not depend on the order in which nodes were added: the same
/// membership places every key alike in every process.
///
/// Lookups are allocation-free and O(1) on average: a table indexed by the top
/// bits of the hash gives either the owner directly (for most keys) or where to
/// start a short scan of the sorted points.
///
/// ```
/// use scalekit_core::Placement;
/// use scalekit_ring::{Ring, Spread};
/// use std::num::NonZeroU32;
///
/// let mut ring = Ring::new();
/// ring.add_labeled("cache-a1", NonZeroU32::MIN, "zone-a").unwrap();
/// ring.add_labeled("cache-a2", NonZeroU32::MIN, "zone-a").unwrap();
/// ring.add_labeled("cache-b1", NonZeroU32::new(2).unwrap(), "zone-b").unwrap();
///
/// let owner = ring.locate("user:42").unwrap();
/// assert!(owner.starts_with("cache-"));
///
/// // Two copies in two different zones.
/// let mut copies = Vec::new();
/// ring.replicas_into(scalekit_core::stable_hash(b"user:42"), 2, Spread::Labels, &mut copies);
/// assert_eq!(copies.len(), 2);
/// assert!(copies.iter().any(|n| n.starts_with("cache-a")));
/// assert!(copies.iter().any(|n| n.starts_with("cache-b")));
/// ```
#[derive(Clone, Debug)]
pub struct Ring<N> {
    virtual_nodes: u32,
    members: Vec<Option<Member<N>>>,
    free: Vec<u32>,
    len: usize,
    /// Sorted by (point, member hash); parallel to `owners`.
    points: Vec<u64>,
    owners: Vec<u32>,
    index: Vec<u32>,
    shift: u32,
}

impl<N> Default for Ring<N> {
    fn default() -> Self {
        Self {
            virtual_nodes: DEFAULT_VIRTUAL_NODES,
            members: Vec::new(),
            free: Vec::new(),
            len: 0,
            points: Vec::new(),
            owners: Vec::new(),
            index: Vec::new(),
            shift: 64,
        }
    }
}

impl<N: StableHash + PartialEq> Ring<N> {
    /// An empty ring with [`DEFAULT_VIRTUAL_NODES`] points per unit of weight.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty ring with `virtual_nodes` points per unit of weight.
    ///
    /// ```
    /// use scalekit_ring::Ring;
    /// let ring = Ring::<String>::with_virtual_nodes(500).unwrap();
    /// assert_eq!(ring.virtual_nodes(), 500);
    /// assert!(Ring::<String>::with_virtual_nodes(0).is_err());
    /// ```
    pub fn with_virtual_nodes(virtual_nodes: u32) -> Result<Self, RingError> {
        if virtual_nodes == 0 {
            return Err(RingError::Config(ConfigError::new(
                "ring",
                "virtual_nodes",
                0,
                "at least 1 point per unit of weight (160 is the default)",
            )));
        }
        Ok(Self {
            virtual_nodes,
            ..Self::default()
        })
    }

    /// Points per unit of weight.
    pub fn virtual_nodes(&self) -> u32 {
        self.virtual_nodes
    }

    /// A ring of weight-1 nodes with the default points a node, built in one pass.
    ///
    /// ```
    /// use scalekit_core::Placement;
    /// use scalekit_ring::Ring;
    /// let ring = Ring::with_nodes((0..1000u32).map(|n| format!("node-{n}"))).unwrap();
    /// assert_eq!(ring.len(), 1000);
    /// ```
    pub fn with_nodes(nodes: impl IntoIterator<Item = N>) -> Result<Self, RingError> {
        let mut ring = Self::new();
        ring.extend(nodes.into_iter().map(|n| (n, NonZeroU32::MIN)))?;
        Ok(ring)
    }

    /// Adds many weighted nodes, merging their points in once: much faster than
    /// one [`add`](Self::add) at a time for large rings. On error nothing is added.
    pub fn extend(
        &mut self,
        nodes: impl IntoIterator<Item = (N, NonZeroU32)>,
    ) -> Result<(), RingError> {
        self.add_members(nodes.into_iter().map(|(n, w)| (n, w, None)))
    }

    /// The one way members join: validate every node (duplicates in O(1) by stable
    /// hash, the point limit before anything is allocated), claim slots, then
    /// sort the new points and merge them into the ring once. On error nothing is
    /// added.
    fn add_members(
        &mut self,
        nodes: impl IntoIterator<Item = (N, NonZeroU32, Option<u64>)>,
    ) -> Result<(), RingError> {
        let mut added: Vec<u32> = Vec::new();
        let mut total = self.points.len() as u64;
        let mut failure = None;
        let mut by_hash: ahash::AHashMap<u64, Vec<u32>> = ahash::AHashMap::new();
        for (slot, member) in self.members.iter().enumerate() {
            if let Some(m) = member {
                by_hash.entry(m.hash).or_default().push(slot as u32);
            }
        }
        for (node, weight, label) in nodes {
            let hash = node.stable_hash();
            let candidates = by_hash.get(&hash).map(Vec::as_slice).unwrap_or(&[]);
            if candidates.iter().any(|&slot| {
                self.members
                    .get(slot as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|m| m.node == node)
            }) {
                failure = Some(RingError::DuplicateNode);
                break;
            }
            total += u64::from(self.virtual_nodes) * u64::from(weight.get());
            if total > MAX_POINTS as u64 {
                failure = Some(RingError::TooLarge {
                    what: "points (virtual nodes times weight)",
                    limit: MAX_POINTS as u64,
                });
                break;
            }
            let slot = self.claim_slot(Member {
                hash,
                node,
                weight: weight.get(),
                label,
            });
            by_hash.entry(hash).or_default().push(slot);
            added.push(slot);
        }
        if let Some(error) = failure {
            for slot in added.into_iter().rev() {
                self.members[slot as usize] = None;
                self.free.push(slot);
            }
            return Err(error);
        }
        let mut fresh: Vec<(u64, u64, u32)> =
            Vec::with_capacity((total as usize).saturating_sub(self.points.len()));
        for &slot in &added {
            if let Some(Some(m)) = self.members.get(slot as usize) {
                let count = u64::from(self.virtual_nodes) * u64::from(m.weight);
                fresh.extend((0..count).map(|i| (hash_pair(m.hash, i), m.hash, slot)));
            }
        }
        fresh.sort_unstable();
        self.merge_points(fresh);
        self.len += added.len();
        self.rebuild_index();
        Ok(())
    }

    fn claim_slot(&mut self, member: Member<N>) -> u32 {
        match self.free.pop() {
            Some(slot) => {
                self.members[slot as usize] = Some(member);
                slot
            }
            None => {
                self.members.push(Some(member));
                (self.members.len() - 1) as u32
            }
        }
    }

    /// Adds a node of weight 1.
    pub fn add(&mut self, node: N) -> Result<(), RingError> {
        self.insert(node, NonZeroU32::MIN, None)
    }

    /// Adds a node with `weight` times the points of a weight-1 node (so about
    /// `weight` times the keys).
    pub fn add_weighted(&mut self, node: N, weight: NonZeroU32) -> Result<(), RingError> {
        self.insert(node, weight, None)
    }

    /// Adds a node with a weight and a label (its zone, host or rack), used by
    /// [`Spread::Labels`].
    pub fn add_labeled<L: StableHash + ?Sized>(
        &mut self,
        node: N,
        weight: NonZeroU32,
        label: &L,
    ) -> Result<(), RingError> {
        self.insert(node, weight, Some(label.stable_hash()))
    }

    fn insert(&mut self, node: N, weight: NonZeroU32, label: Option<u64>) -> Result<(), RingError> {
        self.add_members(std::iter::once((node, weight, label)))
    }

    /// Removes a node and returns it; only its keys move.
    pub fn remove(&mut self, node: &N) -> Result<N, RingError> {
        let slot = self.position(node).ok_or(RingError::UnknownNode)?;
        let member = self.members[slot].take().ok_or(RingError::UnknownNode)?;
        let slot = slot as u32;
        let mut keep = 0;
        for i in 0..self.points.len() {
            if self.owners[i] != slot {
                self.points[keep] = self.points[i];
                self.owners[keep] = self.owners[i];
                keep += 1;
            }
        }
        self.points.truncate(keep);
        self.owners.truncate(keep);
        self.free.push(slot);
        self.len -= 1;
        self.rebuild_index();
        Ok(member.node)
    }

    /// Whether `node` is a member.
    pub fn contains(&self, node: &N) -> bool {
        self.position(node).is_some()
    }

    fn position(&self, node: &N) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.as_ref().is_some_and(|m| &m.node == node))
    }
}

impl<N> Ring<N> {
    /// The nodes with their weights, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = (&N, u32)> + '_ {
        self.members.iter().flatten().map(|m| (&m.node, m.weight))
    }

    /// The number of points on the ring.
    pub fn point_count(&self) -> usize {
        self.points.len()
    }

    /// Bytes used by the lookup structures (points, owners, index).
    pub fn memory_bytes(&self) -> usize {
        self.points.capacity() * 8 + self.owners.capacity() * 4 + self.index.capacity() * 4
    }

    fn merge_points(&mut self, fresh: Vec<(u64, u64, u32)>) {
        let old_points = std::mem::take(&mut self.points);
        let old_owners = std::mem::take(&mut self.owners);
        let mut points = Vec::with_capacity(old_points.len() + fresh.len());
        let mut owners = Vec::with_capacity(old_points.len() + fresh.len());
        let mut i = 0;
        let mut fresh = fresh.into_iter().peekable();
        while i < old_points.len() || fresh.peek().is_some() {
            let take_old = match fresh.peek() {
                None => true,
                Some(&(p, h, _)) => {
                    i < old_points.len()
                        && (old_points[i], self.member_hash(old_owners[i])) <= (p, h)
                }
            };
            if take_old {
                points.push(old_points[i]);
                owners.push(old_owners[i]);
                i += 1;
            } else if let Some((p, _, s)) = fresh.next() {
                points.push(p);
                owners.push(s);
            }
        }
        self.points = points;
        self.owners = owners;
    }

    fn member_hash(&self, slot: u32) -> u64 {
        self.members
            .get(slot as usize)
            .and_then(Option::as_ref)
            .map_or(0, |m| m.hash)
    }

    fn rebuild_index(&mut self) {
        let n = self.points.len();
        if n == 0 {
            self.index.clear();
            self.shift = 64;
            return;
        }
        // About two index entries per point: three keys in four resolve from the
        // index alone.
        let bits = (n.next_power_of_two().trailing_zeros() + 1).clamp(1, 30);
        let buckets = 1usize << bits;
        self.shift = 64 - bits;
        self.index.clear();
        self.index.reserve_exact(buckets);
        let mut p = 0;
        for b in 0..buckets {
            let lo = (b as u64) << self.shift;
            let hi_exclusive = if b + 1 == buckets {
                None
            } else {
                Some(((b + 1) as u64) << self.shift)
            };
            while p < n && self.points[p] < lo {
                p += 1;
            }
            // With no point in [lo, hi), every key of the bucket belongs to the
            // next point (or the first, wrapping): the index names the owner.
            let inside = p < n && hi_exclusive.is_none_or(|hi| self.points[p] < hi);
            if inside {
                self.index.push(p as u32);
            } else {
                let owner = self.owners[if p < n { p } else { 0 }];
                self.index.push(DIRECT | owner);
            }
        }
    }

    #[inline]
    fn owner_slot(&self, hash: u64) -> Option<usize> {
        // An empty ring has shift 64: checked_shr gives None, not an overflow.
        let entry = *self.index.get(hash.checked_shr(self.shift)? as usize)?;
        if entry & DIRECT != 0 {
            return Some((entry & !DIRECT) as usize);
        }
        Some(self.owners[self.point_at_or_after(hash, entry as usize)] as usize)
    }

    /// The index of the first point at or after `hash`, starting the scan at
    /// `start` (a point index no greater than the answer), wrapping to 0.
    #[inline]
    fn point_at_or_after(&self, hash: u64, start: usize) -> usize {
        let mut i = start;
        while i < self.points.len() && self.points[i] < hash {
            i += 1;
        }
        if i == self.points.len() {
            0
        } else {
            i
        }
    }

    fn start_point(&self, hash: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let entry = *self.index.get(hash.checked_shr(self.shift)? as usize)?;
        let start = if entry & DIRECT != 0 {
            self.points.partition_point(|&p| p < hash)
        } else {
            entry as usize
        };
        Some(self.point_at_or_after(hash, start.min(self.points.len())))
    }

    /// Up to `n` distinct nodes for a key hash, the owner first, walking clockwise.
    /// Replaces the contents of `out`; allocation-free when `out` has room and
    /// `n <= 64`.
    pub fn replicas_into<'a>(&'a self, hash: u64, n: usize, spread: Spread, out: &mut Vec<&'a N>) {
        out.clear();
        let Some(start) = self.start_point(hash) else {
            return;
        };
        let want = n.min(self.len);
        if want == 0 {
            return;
        }
        let mut chosen = Chosen::new(want);
        let total = self.points.len();
        if spread == Spread::Labels {
            let mut labels = Chosen::new(want);
            for step in 0..total {
                if chosen.len() == want {
                    break;
                }
                let slot = self.owners[(start + step) % total];
                if chosen.contains(slot) {
                    continue;
                }
                let label = self.label_key(slot);
                if labels.contains_u64(label) {
                    continue;
                }
                labels.push_u64(label);
                chosen.push(slot);
            }
        }
        for step in 0..total {
            if chosen.len() == want {
                break;
            }
            let slot = self.owners[(start + step) % total];
            if !chosen.contains(slot) {
                chosen.push(slot);
            }
        }
        for slot in chosen.iter() {
            if let Some(Some(member)) = self.members.get(slot as usize) {
                out.push(&member.node);
            }
        }
    }

    fn label_key(&self, slot: u32) -> u64 {
        match self.members.get(slot as usize) {
            // An unlabeled node is its own label.
            Some(Some(m)) => m.label.unwrap_or(hash_pair(m.hash, 0x006c_6162_656c)),
            _ => 0,
        }
    }
}

impl<N: StableHash + PartialEq> Ring<N> {
    /// Up to `n` distinct nodes for `key`, the owner first (allocates the result;
    /// see [`replicas_into`](Self::replicas_into) for the allocation-free form).
    ///
    /// ```
    /// use scalekit_ring::Ring;
    /// let mut ring = Ring::new();
    /// for n in ["a", "b", "c"] { ring.add(n).unwrap(); }
    /// let copies = ring.replicas("key", 2);
    /// assert_eq!(copies.len(), 2);
    /// assert_ne!(copies[0], copies[1]);
    /// ```
    pub fn replicas<K: StableHash + ?Sized>(&self, key: &K, n: usize) -> Vec<&N> {
        let mut out = Vec::with_capacity(n.min(self.len));
        self.replicas_into(key.stable_hash(), n, Spread::Nodes, &mut out);
        out
    }
}

impl<N> Placement for Ring<N> {
    type Node = N;

    #[inline]
    fn locate_hash(&self, hash: u64) -> Option<&N> {
        let slot = self.owner_slot(hash)?;
        self.members.get(slot)?.as_ref().map(|m| &m.node)
    }

    fn len(&self) -> usize {
        self.len
    }

    fn for_each_node(&self, visit: &mut dyn FnMut(&N)) {
        self.members.iter().flatten().for_each(|m| visit(&m.node))
    }
}

/// A small set of u32/u64 values: on the stack up to 64, on the heap beyond.
struct Chosen {
    inline: [u64; 64],
    len: usize,
    spill: Vec<u64>,
}

impl Chosen {
    fn new(capacity: usize) -> Self {
        Self {
            inline: [0; 64],
            len: 0,
            spill: if capacity > 64 {
                Vec::with_capacity(capacity - 64)
            } else {
                Vec::new()
            },
        }
    }
    fn len(&self) -> usize {
        self.len
    }
    fn contains(&self, v: u32) -> bool {
        self.contains_u64(u64::from(v))
    }
    fn contains_u64(&self, v: u64) -> bool {
        self.inline[..self.len.min(64)].contains(&v) || self.spill.contains(&v)
    }
    fn push(&mut self, v: u32) {
        self.push_u64(u64::from(v));
    }
    fn push_u64(&mut self, v: u64) {
        if self.len < 64 {
            self.inline[self.len] = v;
        } else {
            self.spill.push(v);
        }
        self.len += 1;
    }
    fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.inline[..self.len.min(64)]
            .iter()
            .chain(self.spill.iter())
            .map(|&v| v as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The obvious ring: the first point at or after the hash, by linear search.
    fn model_owner<N: Clone>(ring: &Ring<N>, hash: u64) -> Option<u32> {
        let i = ring.points.iter().position(|&p| p >= hash).unwrap_or(0);
        ring.owners.get(i).copied()
    }

    #[test]
    fn index_agrees_with_linear_search() {
        let mut ring = Ring::with_virtual_nodes(7).unwrap();
        for n in 0..13u32 {
            ring.add(n).unwrap();
        }
        let mut h = 1u64;
        for _ in 0..100_000 {
            h = scalekit_core::mix64(h.wrapping_add(0x9e37));
            assert_eq!(ring.owner_slot(h).map(|s| s as u32), model_owner(&ring, h));
        }
        // Points themselves and their neighbours, and the ends of the circle.
        for &p in ring.points.clone().iter() {
            for probe in [p.wrapping_sub(1), p, p.wrapping_add(1)] {
                assert_eq!(
                    ring.owner_slot(probe).map(|s| s as u32),
                    model_owner(&ring, probe)
                );
            }
        }
        for probe in [0, 1, u64::MAX, u64::MAX - 1, 1 << 63] {
            assert_eq!(
                ring.owner_slot(probe).map(|s| s as u32),
                model_owner(&ring, probe)
            );
        }
    }

    #[test]
    fn single_point_ring_owns_everything() {
        let mut ring = Ring::with_virtual_nodes(1).unwrap();
        ring.add("only").unwrap();
        for h in [0, 1, u64::MAX, 12345] {
            assert_eq!(ring.locate_hash(h), Some(&"only"));
        }
    }

    #[test]
    fn errors_leave_the_ring_unchanged() {
        let mut ring = Ring::new();
        ring.add("a").unwrap();
        assert_eq!(ring.add("a"), Err(RingError::DuplicateNode));
        assert_eq!(ring.remove(&"b"), Err(RingError::UnknownNode));
        assert_eq!(ring.len(), 1);
        assert_eq!(ring.point_count(), DEFAULT_VIRTUAL_NODES as usize);
        assert_eq!(ring.remove(&"a"), Ok("a"));
        assert!(ring.is_empty());
        assert_eq!(ring.locate_hash(5), None);
        assert!(ring.replicas("k", 3).is_empty());
    }

    #[test]
    fn bulk_build_equals_one_at_a_time_and_rolls_back() {
        let bulk = Ring::with_nodes(0..50u32).unwrap();
        let mut single = Ring::new();
        for n in (0..50u32).rev() {
            single.add(n).unwrap();
        }
        for h in 0..20_000u64 {
            let h = scalekit_core::mix64(h);
            assert_eq!(bulk.locate_hash(h), single.locate_hash(h));
        }
        let mut ring = bulk.clone();
        let err = ring.extend([
            (100, NonZeroU32::MIN),
            (101, NonZeroU32::MIN),
            (7, NonZeroU32::MIN),
        ]);
        assert_eq!(err, Err(RingError::DuplicateNode));
        assert_eq!(ring.len(), 50);
        assert!(!ring.contains(&100));
        assert_eq!(ring.point_count(), bulk.point_count());
        // The freed slots are reused cleanly.
        ring.add(100).unwrap();
        assert_eq!(ring.len(), 51);
    }

    #[test]
    fn absurd_weights_are_refused_before_allocating() {
        let mut ring = Ring::new();
        ring.add("a").unwrap();
        let err = ring.add_weighted("b", NonZeroU32::new(1_000_000).unwrap());
        assert!(matches!(err, Err(RingError::TooLarge { .. })), "{err:?}");
        let err = ring.extend([("c", NonZeroU32::MAX)]);
        assert!(matches!(err, Err(RingError::TooLarge { .. })), "{err:?}");
        assert_eq!(ring.len(), 1);
        assert_eq!(ring.point_count(), DEFAULT_VIRTUAL_NODES as usize);
    }

    #[test]
    fn weights_scale_points() {
        let mut ring = Ring::with_virtual_nodes(10).unwrap();
        ring.add_weighted("big", NonZeroU32::new(3).unwrap())
            .unwrap();
        ring.add("small").unwrap();
        assert_eq!(ring.point_count(), 40);
    }

    #[test]
    fn labels_spread_then_fill() {
        let mut ring = Ring::with_virtual_nodes(50).unwrap();
        for (n, zone) in [("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b")] {
            ring.add_labeled(n, NonZeroU32::MIN, zone).unwrap();
        }
        let mut out = Vec::new();
        for k in 0..500u64 {
            ring.replicas_into(
                scalekit_core::stable_hash_u64(k),
                2,
                Spread::Labels,
                &mut out,
            );
            assert_eq!(out.len(), 2);
            assert!(out.iter().any(|n| n.starts_with('a')));
            assert!(out.contains(&&"b1"));
            // Three replicas over two zones: both zones, then a third distinct node.
            ring.replicas_into(
                scalekit_core::stable_hash_u64(k),
                3,
                Spread::Labels,
                &mut out,
            );
            assert_eq!(out.len(), 3);
            assert!(out.contains(&&"b1"));
            let mut sorted = out.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 3);
        }
    }
}
