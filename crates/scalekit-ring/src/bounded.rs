//! Consistent hashing with bounded loads (Mirrokni, Thorup and Zadimoghaddam,
//! SODA 2018), over any engine.

use std::hash::Hash;

use ahash::AHashMap;
use scalekit_core::{hash_pair, Placement, StableHash};

use crate::error::{ConfigError, RingError};

/// How many rehashed probes to try before taking the least-loaded node.
const MAX_PROBES: u64 = 64;

/// Caps every node's load at `ceil((1 + epsilon) * average)`, over any engine.
///
/// Each [`assign`](BoundedLoad::assign) places one unit of load (a connection, a
/// session, a job): on the engine's choice if that node is under the cap, else on
/// the first node under the cap along a probe sequence of rehashes of the key
/// (`hash_pair(hash, 1)`, `hash_pair(hash, 2)`, ...), and after 64 probes on the
/// least-loaded node, which is always under the cap. The paper walks the ring
/// clockwise; rehashing does the same for engines that have no ring, and keeps each
/// key's overflow spread over the whole cluster instead of its neighbours.
///
/// The cap for an assignment is computed with that assignment counted:
/// `cap = ceil((1 + epsilon) * (total + 1) / nodes)`, and every assignment lands on
/// a node below it. So while load only grows, no node holds more than the cap (with
/// `epsilon = 0.25`, 1.25 times the average, rounded up); releases can leave a node
/// above the new, lower average until it drains, since placed load never moves. A
/// key leaves its engine's node only when that node is full. Loads are released with
/// [`release`](BoundedLoad::release).
///
/// ```
/// use scalekit_core::Placement;
/// use scalekit_ring::{BoundedLoad, Jump};
///
/// let jump = Jump::with_nodes(["a", "b", "c", "d"]).unwrap();
/// let mut lb = BoundedLoad::new(jump, 0.25).unwrap();
/// for conn in 0..1000u64 {
///     let node = *lb.assign(&conn).unwrap();
///     assert!(lb.load(&node) <= lb.cap_for(lb.total_load()));
/// }
/// assert!(["a", "b", "c", "d"].iter().all(|n| lb.load(n) <= 313)); // ceil(1.25 * 250)
/// ```
#[derive(Clone, Debug)]
pub struct BoundedLoad<P: Placement> {
    inner: P,
    epsilon: f64,
    loads: AHashMap<P::Node, u64>,
    total: u64,
}

impl<P> BoundedLoad<P>
where
    P: Placement,
    P::Node: Eq + Hash + Clone,
{
    /// Wraps `inner`, capping loads at `(1 + epsilon)` times the average.
    /// `epsilon` must be finite and above zero.
    pub fn new(inner: P, epsilon: f64) -> Result<Self, RingError> {
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(RingError::Config(ConfigError::new(
                "bounded load",
                "epsilon",
                epsilon,
                "a finite number above zero (0.25 is a common choice)",
            )));
        }
        Ok(Self {
            inner,
            epsilon,
            loads: AHashMap::new(),
            total: 0,
        })
    }

    /// The cap that applies when the cluster holds `total` units:
    /// `ceil((1 + epsilon) * total / nodes)`, at least 1.
    pub fn cap_for(&self, total: u64) -> u64 {
        let n = self.inner.len().max(1) as f64;
        (((1.0 + self.epsilon) * total as f64 / n).ceil() as u64).max(1)
    }

    /// Places one unit of load for `key` and returns the node that took it.
    pub fn assign<K: StableHash + ?Sized>(&mut self, key: &K) -> Option<&P::Node> {
        self.assign_hash(key.stable_hash())
    }

    /// Places one unit of load for a key hash and returns the node that took it,
    /// or `None` when there are no nodes.
    pub fn assign_hash(&mut self, hash: u64) -> Option<&P::Node> {
        let node = self.choose(hash)?;
        *self.loads.entry(node.clone()).or_insert(0) += 1;
        self.total += 1;
        self.loads.get_key_value(&node).map(|(k, _)| k)
    }

    /// Where `assign_hash(hash)` would place the next unit, without placing it.
    pub fn peek_hash(&self, hash: u64) -> Option<P::Node> {
        self.choose(hash)
    }

    fn choose(&self, hash: u64) -> Option<P::Node> {
        let cap = self.cap_for(self.total + 1);
        for attempt in 0..MAX_PROBES {
            let h = if attempt == 0 {
                hash
            } else {
                hash_pair(hash, attempt)
            };
            let node = self.inner.locate_hash(h)?;
            if self.load(node) < cap {
                return Some(node.clone());
            }
        }
        // Rare: take the least-loaded node (the first in engine order among equals).
        let mut best: Option<(P::Node, u64)> = None;
        let loads = &self.loads;
        self.inner.for_each_node(&mut |n| {
            let load = loads.get(n).copied().unwrap_or(0);
            if best.as_ref().is_none_or(|(_, l)| load < *l) {
                best = Some((n.clone(), load));
            }
        });
        best.map(|(n, _)| n)
    }

    /// Releases one unit of load from `node`. Returns `false` if it held none.
    pub fn release(&mut self, node: &P::Node) -> bool {
        match self.loads.get_mut(node) {
            Some(load) if *load > 0 => {
                *load -= 1;
                self.total -= 1;
                if *load == 0 {
                    self.loads.remove(node);
                }
                true
            }
            _ => false,
        }
    }

    /// The load a node holds now.
    pub fn load(&self, node: &P::Node) -> u64 {
        self.loads.get(node).copied().unwrap_or(0)
    }

    /// The load held by all nodes.
    pub fn total_load(&self) -> u64 {
        self.total
    }

    /// The wrapped engine.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Changes the wrapped engine's membership (or anything else) and forgets the
    /// load of nodes that are no longer members.
    pub fn update<R>(&mut self, change: impl FnOnce(&mut P) -> R) -> R {
        let result = change(&mut self.inner);
        let mut members: ahash::AHashSet<P::Node> =
            ahash::AHashSet::with_capacity(self.inner.len());
        self.inner.for_each_node(&mut |n| {
            members.insert(n.clone());
        });
        self.loads.retain(|n, _| members.contains(n));
        self.total = self.loads.values().sum();
        result
    }

    /// Unwraps the engine.
    pub fn into_inner(self) -> P {
        self.inner
    }
}
