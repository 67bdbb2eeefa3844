//! Measuring an engine: balance and movement over a sample of keys.
//!
//! The figures in the guide (`GUIDE.md`) and the tour come from these functions, and so
//! can yours: run them on your own node names and key shapes before choosing an
//! engine.

use std::hash::Hash;

use ahash::AHashMap;
use scalekit_core::{stable_hash_u64, Placement};

/// The hashes of the keys `0..count` (each `u64` key's stable hash).
pub fn sample_hashes(count: u64) -> impl Iterator<Item = u64> {
    (0..count).map(stable_hash_u64)
}

/// How evenly keys spread over the nodes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Balance {
    /// Keys placed.
    pub keys: u64,
    /// Nodes that could take keys.
    pub nodes: usize,
    /// The most keys on one node.
    pub max: u64,
    /// The fewest keys on one node (0 if a node got none).
    pub min: u64,
    /// `max / average`: 1.0 is perfect.
    pub peak_to_average: f64,
}

/// Places every hash and reports how evenly they spread.
///
/// ```
/// use scalekit_ring::analysis::{balance, sample_hashes};
/// use scalekit_ring::Jump;
///
/// let jump = Jump::with_nodes(0..10u32).unwrap();
/// let b = balance(&jump, sample_hashes(100_000));
/// assert!(b.peak_to_average < 1.03);
/// ```
pub fn balance<P>(placement: &P, hashes: impl IntoIterator<Item = u64>) -> Balance
where
    P: Placement,
    P::Node: Eq + Hash,
{
    let mut counts: AHashMap<&P::Node, u64> = AHashMap::with_capacity(placement.len());
    let mut keys = 0u64;
    for h in hashes {
        if let Some(node) = placement.locate_hash(h) {
            *counts.entry(node).or_insert(0) += 1;
            keys += 1;
        }
    }
    let nodes = placement.len();
    let max = counts.values().copied().max().unwrap_or(0);
    let min = if counts.len() < nodes {
        0
    } else {
        counts.values().copied().min().unwrap_or(0)
    };
    let average = keys as f64 / nodes.max(1) as f64;
    Balance {
        keys,
        nodes,
        max,
        min,
        peak_to_average: if average > 0.0 {
            max as f64 / average
        } else {
            0.0
        },
    }
}

/// How many keys changed owner between two placements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Movement {
    /// Keys compared.
    pub keys: u64,
    /// Keys whose owner changed.
    pub moved: u64,
}

impl Movement {
    /// `moved / keys`.
    pub fn fraction(&self) -> f64 {
        if self.keys == 0 {
            0.0
        } else {
            self.moved as f64 / self.keys as f64
        }
    }
}

/// Compares the owners of every hash under two placements.
///
/// ```
/// use scalekit_core::Placement;
/// use scalekit_ring::analysis::{movement, sample_hashes};
/// use scalekit_ring::Ring;
///
/// let mut before = Ring::new();
/// for n in 0..10u32 { before.add(n).unwrap(); }
/// let mut after = before.clone();
/// after.remove(&3).unwrap();
/// let m = movement(&before, &after, sample_hashes(100_000));
/// assert!(m.fraction() < 0.15); // about 1/10: only node 3's keys
/// ```
pub fn movement<A, B, N>(before: &A, after: &B, hashes: impl IntoIterator<Item = u64>) -> Movement
where
    A: Placement<Node = N>,
    B: Placement<Node = N>,
    N: PartialEq,
{
    let mut keys = 0;
    let mut moved = 0;
    for h in hashes {
        keys += 1;
        if before.locate_hash(h) != after.locate_hash(h) {
            moved += 1;
        }
    }
    Movement { keys, moved }
}
