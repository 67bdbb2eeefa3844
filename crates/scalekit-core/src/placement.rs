//! Placement: which node owns a key.
//!
//! The consistent-hashing engines of `scalekit-ring` implement [`Placement`]; the
//! shard router, the cache's remote tier and the L4 balancer accept any
//! `Placement`, so they work with every engine without depending on the ring crate.

use crate::hash::StableHash;

/// Maps a key to one of a set of nodes.
///
/// Keys are placed by their [stable hash](crate::hash), so every process that holds
/// the same membership places every key on the same node. Lookups take `&self` and
/// do not allocate; membership changes are the engines' own `&mut self` methods.
///
/// The trait is object safe except for [`locate`](Placement::locate), which is
/// there for convenience on concrete types.
///
/// ```
/// use scalekit_core::{Placement, StableHash};
///
/// /// The simplest placement: `hash mod n`. (Not consistent: almost every key moves
/// /// when a node is added. Real engines live in `scalekit-ring`.)
/// struct Modulo(Vec<&'static str>);
///
/// impl Placement for Modulo {
///     type Node = &'static str;
///     fn locate_hash(&self, hash: u64) -> Option<&Self::Node> {
///         let n = self.0.len() as u64;
///         (n > 0).then(|| &self.0[(hash % n) as usize])
///     }
///     fn len(&self) -> usize {
///         self.0.len()
///     }
///     fn for_each_node(&self, visit: &mut dyn FnMut(&Self::Node)) {
///         self.0.iter().for_each(visit)
///     }
/// }
///
/// fn owner<P: Placement<Node = &'static str>>(p: &P, user: u64) -> &'static str {
///     p.locate(&user).copied().unwrap_or("nowhere")
/// }
///
/// let p = Modulo(vec!["db-a", "db-b"]);
/// assert_eq!(owner(&p, 42), owner(&p, 42));
/// assert_eq!(owner(&Modulo(vec![]), 42), "nowhere");
/// ```
pub trait Placement {
    /// What a key is placed on: a node name, an address, a shard handle.
    type Node;

    /// The node that owns a key with this stable hash, or `None` when there are no
    /// nodes.
    ///
    /// `hash` must be a well-mixed 64-bit hash, such as
    /// [`StableHash::stable_hash`]: engines read its bits as random (the ring by
    /// position on the circle, Maglev by its top bits). Raw ids or counters are not
    /// hashes; pass them to [`locate`](Placement::locate).
    fn locate_hash(&self, hash: u64) -> Option<&Self::Node>;

    /// The node that owns `key`: `locate_hash(key.stable_hash())`.
    #[inline]
    fn locate<K: StableHash + ?Sized>(&self, key: &K) -> Option<&Self::Node>
    where
        Self: Sized,
    {
        self.locate_hash(key.stable_hash())
    }

    /// How many nodes take keys.
    fn len(&self) -> usize;

    /// Whether there are no nodes (every lookup returns `None`).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `visit` once for every node, in an order fixed by the engine.
    fn for_each_node(&self, visit: &mut dyn FnMut(&Self::Node));
}

impl<P: Placement + ?Sized> Placement for &P {
    type Node = P::Node;
    #[inline]
    fn locate_hash(&self, hash: u64) -> Option<&Self::Node> {
        (**self).locate_hash(hash)
    }
    fn len(&self) -> usize {
        (**self).len()
    }
    fn for_each_node(&self, visit: &mut dyn FnMut(&Self::Node)) {
        (**self).for_each_node(visit)
    }
}

impl<P: Placement + ?Sized> Placement for std::sync::Arc<P> {
    type Node = P::Node;
    #[inline]
    fn locate_hash(&self, hash: u64) -> Option<&Self::Node> {
        (**self).locate_hash(hash)
    }
    fn len(&self) -> usize {
        (**self).len()
    }
    fn for_each_node(&self, visit: &mut dyn FnMut(&Self::Node)) {
        (**self).for_each_node(visit)
    }
}

impl<P: Placement + ?Sized> Placement for Box<P> {
    type Node = P::Node;
    #[inline]
    fn locate_hash(&self, hash: u64) -> Option<&Self::Node> {
        (**self).locate_hash(hash)
    }
    fn len(&self) -> usize {
        (**self).len()
    }
    fn for_each_node(&self, visit: &mut dyn FnMut(&Self::Node)) {
        (**self).for_each_node(visit)
    }
}
