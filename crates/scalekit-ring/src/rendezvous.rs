//! Weighted rendezvous hashing (highest random weight; Thaler and Ravishankar,
//! 1998), with the logarithmic method for weights (Schindelhauer and Schomaker,
//! 2005; "Weighted distributed hash tables").

use std::num::NonZeroU32;

use scalekit_core::{hash_pair, Placement, StableHash};

use crate::error::RingError;

#[derive(Clone, Debug)]
struct Member<N> {
    node: N,
    seed: u64,
    weight: f64,
}

/// Weighted rendezvous hashing: every node scores the key, the highest wins.
///
/// Exactly minimal movement on any change, perfect balance in expectation, exact
/// weights, no state beyond the node list, and the ranking gives replicas for free.
/// A lookup scores every node, so it costs O(n): the right engine for tens of
/// nodes, or when weights must be exact; use [`Maglev`](crate::Maglev) or
/// [`Memento`](crate::Memento) for thousands.
///
/// With weights, node `i` scores `w_i / -ln(u_i)`, where `u_i` in (0, 1) is the
/// pinned hash of (key, node): node `i` wins a share `w_i / sum(w)` of the keys.
/// The logarithm is computed with basic IEEE operations in a fixed order (not the
/// platform's `ln`), so scores are identical on every platform.
///
/// ```
/// use scalekit_core::Placement;
/// use scalekit_ring::Rendezvous;
/// use std::num::NonZeroU32;
///
/// let mut hrw = Rendezvous::new();
/// hrw.add("small").unwrap();
/// hrw.add_weighted("large", NonZeroU32::new(3).unwrap()).unwrap();
///
/// let on_large = (0..10_000u64).filter(|k| *hrw.locate(k).unwrap() == "large").count();
/// assert!((7_200..7_800).contains(&on_large)); // about 3/4
///
/// // Replicas: the top-scoring nodes, best first.
/// let mut top = Vec::new();
/// hrw.replicas_into(scalekit_core::stable_hash(b"k"), 2, &mut top);
/// assert_eq!(top.len(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct Rendezvous<N> {
    members: Vec<Member<N>>,
    uniform: bool,
}

impl<N> Default for Rendezvous<N> {
    fn default() -> Self {
        Self {
            members: Vec::new(),
            uniform: true,
        }
    }
}

impl<N: StableHash + PartialEq> Rendezvous<N> {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node of weight 1.
    pub fn add(&mut self, node: N) -> Result<(), RingError> {
        self.add_weighted(node, NonZeroU32::MIN)
    }

    /// Adds a node that takes `weight` times the keys of a weight-1 node.
    pub fn add_weighted(&mut self, node: N, weight: NonZeroU32) -> Result<(), RingError> {
        if self.members.iter().any(|m| m.node == node) {
            return Err(RingError::DuplicateNode);
        }
        let seed = node.stable_hash();
        self.members.push(Member {
            node,
            seed,
            weight: f64::from(weight.get()),
        });
        self.refresh();
        Ok(())
    }

    /// Removes a node and returns it; only its keys move.
    pub fn remove(&mut self, node: &N) -> Result<N, RingError> {
        let i = self
            .members
            .iter()
            .position(|m| &m.node == node)
            .ok_or(RingError::UnknownNode)?;
        let member = self.members.remove(i);
        self.refresh();
        Ok(member.node)
    }

    fn refresh(&mut self) {
        // Order by seed so that equal scores (practically never) break ties the
        // same way whatever the insertion order.
        self.members.sort_by_key(|m| m.seed);
        let first = self.members.first().map(|m| m.weight);
        self.uniform = self.members.iter().all(|m| Some(m.weight) == first);
    }
}

impl<N> Rendezvous<N> {
    #[inline]
    fn score(&self, member: &Member<N>, hash: u64) -> f64 {
        let h = hash_pair(hash, member.seed);
        // u in (0, 1): the top 53 bits, offset by half a step.
        let u = ((h >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64);
        member.weight / -stable_ln(u)
    }

    #[inline]
    fn best(&self, hash: u64) -> Option<usize> {
        if self.members.is_empty() {
            return None;
        }
        let mut best = 0;
        if self.uniform {
            let mut top = 0u64;
            for (i, m) in self.members.iter().enumerate() {
                let h = hash_pair(hash, m.seed);
                if h > top || i == 0 {
                    top = h;
                    best = i;
                }
            }
        } else {
            let mut top = f64::NEG_INFINITY;
            for (i, m) in self.members.iter().enumerate() {
                let s = self.score(m, hash);
                if s >= top {
                    top = s;
                    best = i;
                }
            }
        }
        Some(best)
    }

    /// The `n` highest-scoring nodes for a key hash, best first. Replaces the
    /// contents of `out`; allocation-free when `out` has room.
    pub fn replicas_into<'a>(&'a self, hash: u64, n: usize, out: &mut Vec<&'a N>) {
        out.clear();
        let n = n.min(self.members.len());
        if n == 0 {
            return;
        }
        // Selection by repeated maximum under the previous one: O(n * nodes) with
        // no scratch space; n is a replication factor, so small.
        let key = |m: &Member<N>| -> (f64, u64) {
            if self.uniform {
                (0.0, hash_pair(hash, m.seed))
            } else {
                (self.score(m, hash), m.seed)
            }
        };
        let mut bound: Option<(f64, u64)> = None;
        for _ in 0..n {
            let mut best: Option<(usize, (f64, u64))> = None;
            for (i, m) in self.members.iter().enumerate() {
                let k = key(m);
                if bound.is_some_and(|b| !lt(k, b)) {
                    continue;
                }
                if best.is_none_or(|(_, bk)| lt(bk, k)) {
                    best = Some((i, k));
                }
            }
            match best {
                Some((i, k)) => {
                    out.push(&self.members[i].node);
                    bound = Some(k);
                }
                None => break,
            }
        }
    }

    /// The nodes and their weights, ordered by their stable hash.
    pub fn nodes(&self) -> impl Iterator<Item = (&N, u32)> + '_ {
        self.members.iter().map(|m| (&m.node, m.weight as u32))
    }
}

/// Total order on (score, tie-break) pairs; scores are never NaN.
fn lt(a: (f64, u64), b: (f64, u64)) -> bool {
    a.0 < b.0 || (a.0 == b.0 && a.1 < b.1)
}

impl<N> Placement for Rendezvous<N> {
    type Node = N;

    #[inline]
    fn locate_hash(&self, hash: u64) -> Option<&N> {
        self.best(hash).map(|i| &self.members[i].node)
    }

    fn len(&self) -> usize {
        self.members.len()
    }

    fn for_each_node(&self, visit: &mut dyn FnMut(&N)) {
        self.members.iter().for_each(|m| visit(&m.node))
    }
}

/// Natural logarithm of `x` in (0, 1], from `+ - * /` only, in a fixed order: the
/// same bits on every platform (the platform `ln` may differ in the last bit).
///
/// `x = m * 2^e` with `m` in [sqrt(1/2), sqrt(2)); `ln m = 2 atanh(s)`,
/// `s = (m - 1) / (m + 1)`, `|s| < 0.172`, summed to 12 odd terms (error below
/// 1e-17 relative), plus `e * ln 2`.
pub(crate) fn stable_ln(x: f64) -> f64 {
    const LN_2: f64 = std::f64::consts::LN_2;
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    // x is a normal number in (0, 1] here (the caller's u >= 2^-54).
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut sum = 0.0;
    let mut k = 23.0;
    while k > 0.0 {
        sum = sum * s2 + 1.0 / k;
        k -= 2.0;
    }
    2.0 * s * sum + (e as f64) * LN_2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_ln_matches_ln() {
        let mut x = 1.0f64;
        while x > 1e-16 {
            for f in [
                1.0,
                0.999,
                0.75,
                std::f64::consts::FRAC_1_SQRT_2,
                0.5001,
                0.3,
            ] {
                let v = x * f;
                let want = v.ln();
                let got = stable_ln(v);
                assert!(
                    (got - want).abs() <= 4.0 * f64::EPSILON * want.abs().max(1e-300),
                    "{v}: {got} vs {want}"
                );
            }
            x *= 0.37;
        }
        assert_eq!(stable_ln(1.0), 0.0);
    }

    #[test]
    fn uniform_and_weighted_paths_agree_on_equal_weights() {
        let mut hrw = Rendezvous::new();
        for n in 0..20u32 {
            hrw.add(n).unwrap();
        }
        for k in 0..5_000u64 {
            let uniform = hrw.best(k);
            hrw.uniform = false;
            let weighted = hrw.best(k);
            hrw.uniform = true;
            assert_eq!(uniform, weighted, "key {k}");
        }
    }

    #[test]
    fn replicas_are_the_ranking() {
        let mut hrw = Rendezvous::new();
        for n in 0..8u32 {
            hrw.add_weighted(n, NonZeroU32::new(n % 3 + 1).unwrap())
                .unwrap();
        }
        let mut out = Vec::new();
        for k in 0..500u64 {
            hrw.replicas_into(k, 8, &mut out);
            assert_eq!(out.len(), 8);
            assert_eq!(out[0], hrw.locate_hash(k).unwrap());
            let mut all: Vec<u32> = out.iter().map(|n| **n).collect();
            all.sort();
            assert_eq!(all, (0..8).collect::<Vec<_>>());
            // The second choice is the owner once the first leaves.
            let mut without = hrw.clone();
            without.remove(out[0]).unwrap();
            assert_eq!(without.locate_hash(k), Some(out[1]));
        }
    }
}
