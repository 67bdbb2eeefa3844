//! Model-based fuzzing of the scalekit-ring engines.
//!
//! The input picks an engine and a sequence of membership changes and lookups. After
//! every operation the engine is compared with a model kept here:
//!
//! * membership: `len`, `is_empty`, `for_each_node` equal the model; adding a member
//!   or removing a non-member returns the documented error and changes nothing;
//! * lookups: `Some(member)` iff the model is non-empty, the same answer twice and
//!   from a clone;
//! * reference answers computed independently here: the naive sorted-point ring
//!   (Ring), argmax of `hash_pair(key, node)` (uniform Rendezvous), Guava's jump
//!   hash (Jump), an engine rebuilt from scratch (Maglev and weighted Rendezvous in
//!   another insertion order, Memento from its b-array when nothing is removed);
//! * minimal disruption on a fixed sample of key hashes (Ring, Memento, Rendezvous,
//!   Jump): a removal moves only the removed node's keys, an add moves keys only to
//!   the new node(s); for Memento and Jump an add exactly undoes the most recent
//!   removal still outstanding (LIFO), with the new node in the old one's place;
//! * BoundedLoad over Memento, Jump or Ring: loads equal a model map, the chosen
//!   node's load never exceeds `cap_for(total_load())`, a key goes to its
//!   consistent-hash node when that node is under the cap, releasing an idle node
//!   returns false.
//!
//! One file (over 800 lines) on purpose: one model per ring engine and one
//! driver in one target, so that every engine is fuzzed against its model in the
//! same run; cargo-fuzz builds each target from a single source.

#![no_main]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::num::NonZeroU32;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use scalekit_core::{hash_pair, mix64, Placement, StableHash};
use scalekit_ring::{BoundedLoad, Jump, Maglev, Memento, Rendezvous, Ring, RingError, Spread};

type Node = u16;

/// Node ids are taken modulo this, so adds and removes hit members often.
const NODE_RANGE: u8 = 40;
const MAX_WEIGHT: u8 = 4;
const MAX_VNODES: u8 = 8;
const MAX_OPS: usize = 256;
const MAX_BATCH: usize = 6;
/// Maglev table sizes: tiny ones reach `TableTooSmall`, 65 537 is the default.
const MAGLEV_SIZES: [u32; 7] = [2, 3, 5, 7, 13, 251, 65_537];
const EPSILONS: [f64; 5] = [1e-9, 0.01, 0.25, 1.0, 10.0];

fn node(raw: u8) -> Node {
    Node::from(raw % NODE_RANGE)
}

fn weight(raw: u8) -> u32 {
    u32::from(raw % MAX_WEIGHT) + 1
}

fn vnodes(raw: u8) -> u32 {
    u32::from(raw % MAX_VNODES) + 1
}

#[derive(Arbitrary, Debug)]
enum EngineChoice {
    Ring { vnodes: u8 },
    Memento,
    Rendezvous,
    Maglev { table: u8 },
    Jump,
    Bounded { inner: BoundedInner, epsilon: u8 },
}

#[derive(Arbitrary, Debug)]
enum BoundedInner {
    Memento,
    Jump,
    Ring { vnodes: u8 },
}

#[derive(Arbitrary, Debug)]
enum Op {
    Add(u8),
    AddWeighted(u8, u8),
    /// Ring and Maglev: `extend` (all or nothing); others: one add after another.
    AddMany(Vec<u8>),
    Remove(u8),
    /// A raw key hash (so 0, `u64::MAX` and friends are reachable).
    Lookup(u64),
    /// A hash at or next to virtual point `vnode` of `node` (member or not).
    LookupNear {
        node: u8,
        vnode: u8,
        delta: i8,
    },
    /// BoundedLoad: assign; other engines: a lookup.
    Assign(u64),
    /// BoundedLoad: release; other engines: a removal.
    Release(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    engine: EngineChoice,
    seed: u64,
    ops: Vec<Op>,
}

/// The membership model: nodes with their weights, in insertion order.
#[derive(Clone, Debug, Default)]
struct Model {
    members: Vec<(Node, u32)>,
}

impl Model {
    fn contains(&self, n: Node) -> bool {
        self.members.iter().any(|&(m, _)| m == n)
    }
    fn len(&self) -> usize {
        self.members.len()
    }
    fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
    fn remove(&mut self, n: Node) {
        self.members.retain(|&(m, _)| m != n);
    }
    fn uniform(&self) -> bool {
        self.members.windows(2).all(|w| w[0].1 == w[1].1)
    }
    fn sorted_ids(&self) -> Vec<Node> {
        let mut ids: Vec<Node> = self.members.iter().map(|&(n, _)| n).collect();
        ids.sort_unstable();
        ids
    }
    /// The error an all-or-nothing add of `batch` must give, ignoring size limits.
    fn duplicate_in(&self, batch: &[(Node, u32)]) -> bool {
        batch
            .iter()
            .enumerate()
            .any(|(i, &(n, _))| self.contains(n) || batch[..i].iter().any(|&(m, _)| m == n))
    }
}

/// Guava's `Hashing.consistentHash`, written out as Guava does (the reference for
/// `jump_hash`).
fn guava_jump(input: u64, buckets: u32) -> u32 {
    let mut state = input;
    let mut candidate: i64 = 0;
    loop {
        state = state
            .wrapping_mul(2_862_933_555_777_941_757)
            .wrapping_add(1);
        // Java int arithmetic: `(int)(state >>> 33) + 1` wraps for 0x7fffffff.
        let next_double = f64::from(((state >> 33) as i32).wrapping_add(1)) / 2_147_483_648.0;
        let next = ((candidate + 1) as f64 / next_double) as i32;
        if next >= 0 && i64::from(next) < i64::from(buckets) {
            candidate = i64::from(next);
        } else {
            return candidate as u32;
        }
    }
}

/// What the fuzz target needs from an engine, beyond `Placement`.
trait Engine: Placement<Node = Node> + Clone + Debug {
    fn add_node(&mut self, n: Node, w: u32) -> Result<(), RingError>;
    fn remove_node(&mut self, n: Node) -> Result<Node, RingError>;
    /// Whether the engine has an all-or-nothing bulk add.
    fn has_bulk(&self) -> bool {
        false
    }
    /// All-or-nothing bulk add (only called when `has_bulk`).
    fn add_many(&mut self, _batch: &[(Node, u32)]) -> Result<(), RingError> {
        unreachable!("no bulk add")
    }
    /// Whether `add_node` honours the weight (otherwise weights are 1).
    fn weighted(&self) -> bool {
        false
    }
    /// What adding `batch` (all or nothing) must return.
    fn expect_add(&self, model: &Model, batch: &[(Node, u32)]) -> Result<(), RingError> {
        if model.duplicate_in(batch) {
            Err(RingError::DuplicateNode)
        } else {
            Ok(())
        }
    }
    fn expect_remove(&self, model: &Model, n: Node) -> Result<Node, RingError> {
        if model.contains(n) {
            Ok(n)
        } else {
            Err(RingError::UnknownNode)
        }
    }
    /// Removals move only the removed node's keys; adds move keys only to new nodes.
    fn minimal(&self) -> bool;
    /// An add exactly undoes the most recent outstanding removal.
    fn lifo(&self) -> bool {
        false
    }
    /// Engine-specific checks against the model (reference answers, structure).
    fn check_model(&self, model: &Model, keys: &[u64]);
}

// ---------------------------------------------------------------------------- Ring

/// The naive ring: every point of every member, sorted by (point, node hash).
fn naive_points(model: &Model, virtual_nodes: u32) -> Vec<(u64, u64, Node)> {
    let mut points = Vec::new();
    for &(n, w) in &model.members {
        let h = n.stable_hash();
        for i in 0..u64::from(virtual_nodes) * u64::from(w) {
            points.push((hash_pair(h, i), h, n));
        }
    }
    points.sort_unstable_by_key(|&(p, h, _)| (p, h));
    points
}

/// Index of the first point at or after `hash`, wrapping to 0 (linear scan).
fn naive_start(points: &[(u64, u64, Node)], hash: u64) -> usize {
    points.iter().position(|&(p, _, _)| p >= hash).unwrap_or(0)
}

/// The first `n` distinct nodes clockwise from `hash`.
fn naive_replicas(points: &[(u64, u64, Node)], hash: u64, n: usize) -> Vec<Node> {
    let mut out = Vec::new();
    if points.is_empty() {
        return out;
    }
    let start = naive_start(points, hash);
    for step in 0..points.len() {
        if out.len() == n {
            break;
        }
        let owner = points[(start + step) % points.len()].2;
        if !out.contains(&owner) {
            out.push(owner);
        }
    }
    out
}

/// `add_node` for engines with weights: weight 0 or 1 goes through `add`, others
/// through `add_weighted`, so both entry points are exercised.
macro_rules! weighted_add {
    () => {
        fn add_node(&mut self, n: Node, w: u32) -> Result<(), RingError> {
            match NonZeroU32::new(w) {
                Some(w) if w != NonZeroU32::MIN => self.add_weighted(n, w),
                _ => self.add(n),
            }
        }
    };
}

/// `add_many` through the all-or-nothing `extend`.
macro_rules! bulk_add {
    () => {
        fn has_bulk(&self) -> bool {
            true
        }
        fn add_many(&mut self, batch: &[(Node, u32)]) -> Result<(), RingError> {
            self.extend(
                batch
                    .iter()
                    .map(|&(n, w)| (n, NonZeroU32::new(w).unwrap_or(NonZeroU32::MIN))),
            )
        }
    };
}

impl Engine for Ring<Node> {
    weighted_add!();
    fn remove_node(&mut self, n: Node) -> Result<Node, RingError> {
        self.remove(&n)
    }
    bulk_add!();
    fn weighted(&self) -> bool {
        true
    }
    fn minimal(&self) -> bool {
        true
    }
    fn check_model(&self, model: &Model, keys: &[u64]) {
        let points = naive_points(model, self.virtual_nodes());
        assert_eq!(self.point_count(), points.len(), "ring point count");
        let mut weights: Vec<(Node, u32)> = self.nodes().map(|(n, w)| (*n, w)).collect();
        weights.sort_unstable();
        let mut want = model.members.clone();
        want.sort_unstable();
        assert_eq!(weights, want, "ring nodes and weights");
        for &(n, _) in &model.members {
            assert!(self.contains(&n), "ring lost member {n}");
        }
        let mut out = Vec::new();
        for &h in keys {
            let expected = (!points.is_empty()).then(|| points[naive_start(&points, h)].2);
            assert_eq!(
                self.locate_hash(h).copied(),
                expected,
                "ring owner of hash {h:#018x}"
            );
            for n in [1, 3, model.len() + 1] {
                let want = naive_replicas(&points, h, n);
                self.replicas_into(h, n, Spread::Nodes, &mut out);
                let got: Vec<Node> = out.iter().map(|n| **n).collect();
                assert_eq!(got, want, "ring replicas({n}) of hash {h:#018x}");
                // Unlabeled nodes are their own labels: Labels spreads like Nodes.
                self.replicas_into(h, n, Spread::Labels, &mut out);
                let got: Vec<Node> = out.iter().map(|n| **n).collect();
                assert_eq!(got, want, "ring label replicas({n}) of hash {h:#018x}");
            }
        }
    }
}

// ---------------------------------------------------------------------- Rendezvous

impl Engine for Rendezvous<Node> {
    weighted_add!();
    fn remove_node(&mut self, n: Node) -> Result<Node, RingError> {
        self.remove(&n)
    }
    fn weighted(&self) -> bool {
        true
    }
    fn minimal(&self) -> bool {
        true
    }
    fn check_model(&self, model: &Model, keys: &[u64]) {
        let mut weights: Vec<(Node, u32)> = self.nodes().map(|(n, w)| (*n, w)).collect();
        weights.sort_unstable();
        let mut want = model.members.clone();
        want.sort_unstable();
        assert_eq!(weights, want, "rendezvous nodes and weights");
        // The same membership added in another order places every key alike.
        let mut fresh = Rendezvous::new();
        for &(n, w) in model.members.iter().rev() {
            fresh.add_node(n, w).expect("fresh rendezvous");
        }
        let mut out = Vec::new();
        for &h in keys {
            let got = self.locate_hash(h).copied();
            assert_eq!(got, fresh.locate_hash(h).copied(), "rendezvous order");
            let n = 3.min(model.len());
            self.replicas_into(h, 3, &mut out);
            let replicas: Vec<Node> = out.iter().map(|n| **n).collect();
            assert_eq!(replicas.len(), n, "rendezvous replica count");
            assert_eq!(replicas.first().copied(), got, "rendezvous replica 0");
            let mut distinct = replicas.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), n, "rendezvous replicas distinct");
            if model.uniform() {
                // Uniform weights: the highest hash_pair(key, node) wins.
                let mut ranked: Vec<(u64, Node)> = model
                    .members
                    .iter()
                    .map(|&(m, _)| (hash_pair(h, m.stable_hash()), m))
                    .collect();
                ranked.sort_unstable_by(|a, b| b.cmp(a));
                assert_eq!(got, ranked.first().map(|r| r.1), "rendezvous argmax");
                let want: Vec<Node> = ranked.iter().take(3).map(|r| r.1).collect();
                assert_eq!(replicas, want, "rendezvous ranking");
            }
        }
    }
}

// -------------------------------------------------------------------------- Maglev

impl Engine for Maglev<Node> {
    weighted_add!();
    fn remove_node(&mut self, n: Node) -> Result<Node, RingError> {
        self.remove(&n)
    }
    bulk_add!();
    fn weighted(&self) -> bool {
        true
    }
    fn expect_add(&self, model: &Model, batch: &[(Node, u32)]) -> Result<(), RingError> {
        if model.duplicate_in(batch) {
            return Err(RingError::DuplicateNode);
        }
        let nodes = model.len() + batch.len();
        if !batch.is_empty() && nodes >= self.table_size() as usize {
            return Err(RingError::TableTooSmall {
                size: u64::from(self.table_size()),
                nodes,
            });
        }
        Ok(())
    }
    fn minimal(&self) -> bool {
        false
    }
    fn check_model(&self, model: &Model, keys: &[u64]) {
        let mut weights: Vec<(Node, u32)> = self.nodes().map(|(n, w)| (*n, w)).collect();
        weights.sort_unstable();
        let mut want = model.members.clone();
        want.sort_unstable();
        assert_eq!(weights, want, "maglev nodes and weights");
        let counts = self.entry_counts();
        assert_eq!(counts.len(), model.len(), "maglev entry_counts length");
        if !model.is_empty() {
            let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
            assert_eq!(total, u64::from(self.table_size()), "maglev table not full");
            if model.uniform() {
                let lo = counts.iter().min().copied().unwrap_or(0);
                let hi = counts.iter().max().copied().unwrap_or(0);
                assert!(lo >= 1 && hi - lo <= 1, "maglev balance {lo}..{hi}");
            }
        }
        // Rebuilt from scratch, in another insertion order, one node at a time.
        let mut fresh = Maglev::with_table_size(self.table_size()).expect("prime size");
        for &(n, w) in model.members.iter().rev() {
            fresh.add_node(n, w).expect("fresh maglev");
        }
        for &h in keys {
            assert_eq!(
                self.locate_hash(h).copied(),
                fresh.locate_hash(h).copied(),
                "maglev differs from a fresh build, hash {h:#018x}"
            );
        }
    }
}

// ------------------------------------------------------------------------- Memento

impl Engine for Memento<Node> {
    fn add_node(&mut self, n: Node, _w: u32) -> Result<(), RingError> {
        let before = self.buckets().len();
        let removed = self.removed_count();
        let bucket = self.add(n)?;
        // The new node takes a freed bucket, or a new last one when none is free.
        if removed == 0 {
            assert_eq!(bucket as usize, before, "memento new bucket");
        } else {
            assert_eq!(self.removed_count(), removed - 1, "memento restore");
        }
        assert_eq!(
            self.buckets().get(bucket as usize),
            Some(&Some(n)),
            "memento bucket of the added node"
        );
        Ok(())
    }
    fn remove_node(&mut self, n: Node) -> Result<Node, RingError> {
        self.remove(&n)
    }
    fn minimal(&self) -> bool {
        true
    }
    fn lifo(&self) -> bool {
        true
    }
    fn check_model(&self, model: &Model, keys: &[u64]) {
        let buckets = self.buckets();
        assert_eq!(
            buckets.len() - self.removed_count(),
            model.len(),
            "memento working set"
        );
        let mut held: Vec<Node> = buckets.iter().flatten().copied().collect();
        held.sort_unstable();
        assert_eq!(held, model.sorted_ids(), "memento b-array");
        assert_eq!(
            buckets.iter().filter(|b| b.is_none()).count(),
            self.removed_count(),
            "memento holes"
        );
        // With nothing removed, placement depends only on the b-array: the same as
        // a Memento built afresh from it (whatever removals and restores led here).
        let fresh = (self.removed_count() == 0).then(|| {
            Memento::with_nodes(buckets.iter().flatten().copied()).expect("fresh memento")
        });
        for &h in keys {
            let b = self.bucket(h);
            match b {
                None => assert!(model.is_empty(), "memento bucket None"),
                Some(b) => {
                    let owner = buckets.get(b as usize).copied().flatten();
                    assert!(owner.is_some(), "memento bucket {b} is removed");
                    assert_eq!(self.locate_hash(h).copied(), owner, "memento bucket/locate");
                }
            }
            if let Some(fresh) = &fresh {
                assert_eq!(b, fresh.bucket(h), "memento differs from a fresh build");
            }
        }
    }
}

// ---------------------------------------------------------------------------- Jump

impl Engine for Jump<Node> {
    fn add_node(&mut self, n: Node, _w: u32) -> Result<(), RingError> {
        self.add(n)
    }
    fn remove_node(&mut self, n: Node) -> Result<Node, RingError> {
        self.remove(&n)
    }
    fn expect_remove(&self, model: &Model, n: Node) -> Result<Node, RingError> {
        match model.members.last() {
            Some(&(last, _)) if last == n => Ok(n),
            _ if model.contains(n) => Err(RingError::NotLastNode),
            _ => Err(RingError::UnknownNode),
        }
    }
    fn minimal(&self) -> bool {
        true
    }
    fn lifo(&self) -> bool {
        true
    }
    fn check_model(&self, model: &Model, keys: &[u64]) {
        let order: Vec<Node> = model.members.iter().map(|&(n, _)| n).collect();
        assert_eq!(self.nodes(), &order[..], "jump bucket order");
        for &h in keys {
            let want =
                (!order.is_empty()).then(|| order[guava_jump(h, order.len() as u32) as usize]);
            assert_eq!(
                self.locate_hash(h).copied(),
                want,
                "jump owner of {h:#018x}"
            );
        }
    }
}

// ---------------------------------------------------------------- generic checking

fn sample_keys(seed: u64) -> Vec<u64> {
    let mut keys: Vec<u64> = (0..60u64)
        .map(|i| mix64(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .collect();
    keys.extend([0, 1, u64::MAX, u64::MAX - 1]);
    keys
}

fn owners<E: Engine>(e: &E, keys: &[u64]) -> Vec<Option<Node>> {
    keys.iter().map(|&h| e.locate_hash(h).copied()).collect()
}

fn check_all<E: Engine>(e: &E, model: &Model, keys: &[u64]) {
    assert_eq!(e.len(), model.len(), "len");
    assert_eq!(e.is_empty(), model.is_empty(), "is_empty");
    let mut visited = Vec::new();
    e.for_each_node(&mut |n| visited.push(*n));
    visited.sort_unstable();
    assert_eq!(visited, model.sorted_ids(), "for_each_node");
    let copy = e.clone();
    for &h in keys {
        let first = e.locate_hash(h).copied();
        assert_eq!(first, e.locate_hash(h).copied(), "determinism");
        assert_eq!(first, copy.locate_hash(h).copied(), "clone");
        match first {
            None => assert!(model.is_empty(), "None with members, hash {h:#018x}"),
            Some(n) => assert!(model.contains(n), "non-member {n} for hash {h:#018x}"),
        }
    }
    e.check_model(model, keys);
}

struct Run<'a, E> {
    engine: E,
    model: Model,
    keys: &'a [u64],
    /// Outstanding removals, for the LIFO check: the removed membership's tag and
    /// the owners (as tags) before the removal.
    undo: Vec<(u64, Vec<Option<u64>>)>,
    /// A node's current membership tag: a node removed and added again is a new
    /// membership (it may hold another bucket), so snapshots name memberships.
    tags: BTreeMap<Node, u64>,
    next_tag: u64,
}

impl<E: Engine> Run<'_, E> {
    fn tagged(&self, owners: &[Option<Node>]) -> Vec<Option<u64>> {
        owners
            .iter()
            .map(|o| o.map(|n| self.tags.get(&n).copied().expect("member has a tag")))
            .collect()
    }

    fn add(&mut self, batch: &[(Node, u32)], bulk: bool) {
        let batch: Vec<(Node, u32)> = batch
            .iter()
            .map(|&(n, w)| (n, if self.engine.weighted() { w } else { 1 }))
            .collect();
        let before = owners(&self.engine, self.keys);
        let expected = self.engine.expect_add(&self.model, &batch);
        let got = if bulk {
            self.engine.add_many(&batch)
        } else {
            assert_eq!(batch.len(), 1);
            self.engine.add_node(batch[0].0, batch[0].1)
        };
        assert_eq!(got, expected, "add {batch:?} to {:?}", self.model.members);
        let after = owners(&self.engine, self.keys);
        if got.is_err() {
            assert_eq!(before, after, "failed add {batch:?} moved keys");
        } else {
            self.model.members.extend(batch.iter().copied());
            for &(n, _) in &batch {
                self.tags.insert(n, self.next_tag);
                self.next_tag += 1;
            }
            if self.engine.minimal() {
                for (i, (b, a)) in before.iter().zip(&after).enumerate() {
                    let moved_to_new = a.is_some_and(|a| batch.iter().any(|&(n, _)| n == a));
                    assert!(
                        b.is_none() || b == a || moved_to_new,
                        "add {batch:?}: key {:#018x} moved {b:?} -> {a:?}",
                        self.keys[i]
                    );
                }
            }
            if self.engine.lifo() {
                if let Some((gone, snapshot)) = self.undo.pop() {
                    let node = batch[0].0;
                    let new = self.tags[&node];
                    let want: Vec<Option<u64>> = snapshot
                        .iter()
                        .map(|&o| if o == Some(gone) { Some(new) } else { o })
                        .collect();
                    assert_eq!(
                        self.tagged(&after),
                        want,
                        "add {node} (membership #{new}) does not undo removal of membership #{gone}"
                    );
                    // Older snapshots saw `gone` where `new` now stands.
                    for (_, older) in &mut self.undo {
                        for o in older.iter_mut() {
                            if *o == Some(gone) {
                                *o = Some(new);
                            }
                        }
                    }
                }
            }
        }
        check_all(&self.engine, &self.model, self.keys);
    }

    fn remove(&mut self, n: Node) {
        let before = owners(&self.engine, self.keys);
        let expected = self.engine.expect_remove(&self.model, n);
        let got = self.engine.remove_node(n);
        assert_eq!(got, expected, "remove {n} from {:?}", self.model.members);
        let after = owners(&self.engine, self.keys);
        if got.is_err() {
            assert_eq!(before, after, "failed remove {n} moved keys");
        } else {
            self.model.remove(n);
            if self.engine.minimal() {
                for (i, (b, a)) in before.iter().zip(&after).enumerate() {
                    if *b == Some(n) {
                        assert_ne!(*a, Some(n), "removed {n} still owns a key");
                    } else {
                        assert_eq!(b, a, "remove {n}: key {:#018x} moved", self.keys[i]);
                    }
                }
            }
            let tagged = self.tagged(&before);
            let gone = self.tags.remove(&n).expect("member has a tag");
            if self.engine.lifo() {
                self.undo.push((gone, tagged));
            }
        }
        check_all(&self.engine, &self.model, self.keys);
    }

    fn lookup(&self, h: u64) {
        check_all(&self.engine, &self.model, &[h]);
    }
}

fn near(raw_node: u8, vnode: u8, delta: i8) -> u64 {
    let point = hash_pair(
        node(raw_node).stable_hash(),
        u64::from(vnode % (MAX_VNODES * MAX_WEIGHT)),
    );
    point.wrapping_add(delta as i64 as u64)
}

fn run<E: Engine>(engine: E, ops: &[Op], seed: u64) {
    let keys = sample_keys(seed);
    let mut run = Run {
        engine,
        model: Model::default(),
        keys: &keys,
        undo: Vec::new(),
        tags: BTreeMap::new(),
        next_tag: 0,
    };
    check_all(&run.engine, &run.model, &keys);
    let bulk = run.engine.has_bulk();
    for op in ops.iter().take(MAX_OPS) {
        match op {
            Op::Add(n) => run.add(&[(node(*n), 1)], false),
            Op::AddWeighted(n, w) => run.add(&[(node(*n), weight(*w))], false),
            Op::AddMany(raw) => {
                let batch: Vec<(Node, u32)> = raw
                    .iter()
                    .take(MAX_BATCH)
                    .map(|&r| (node(r), weight(r / NODE_RANGE)))
                    .collect();
                if bulk {
                    run.add(&batch, true);
                } else {
                    for b in batch {
                        run.add(&[b], false);
                    }
                }
            }
            Op::Remove(n) | Op::Release(n) => run.remove(node(*n)),
            Op::Lookup(h) | Op::Assign(h) => run.lookup(*h),
            Op::LookupNear { node, vnode, delta } => run.lookup(near(*node, *vnode, *delta)),
        }
    }
}

// -------------------------------------------------------------------- BoundedLoad

fn run_bounded<E: Engine>(inner: E, epsilon: f64, ops: &[Op]) {
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            BoundedLoad::new(inner.clone(), bad),
            Err(RingError::Config(ref e)) if e.field() == "epsilon"
        ));
    }
    let mut bl = BoundedLoad::new(inner, epsilon).expect("valid epsilon");
    let mut model = Model::default();
    let mut loads: BTreeMap<Node, u64> = BTreeMap::new();

    let add = |bl: &mut BoundedLoad<E>, model: &mut Model, n: Node| {
        let expected = bl.inner().expect_add(model, &[(n, 1)]);
        let got = bl.update(|p| p.add_node(n, 1));
        assert_eq!(got, expected, "bounded add {n}");
        if got.is_ok() {
            model.members.push((n, 1));
        }
    };

    for op in ops.iter().take(MAX_OPS) {
        match op {
            Op::Add(n) | Op::AddWeighted(n, _) => add(&mut bl, &mut model, node(*n)),
            Op::AddMany(raw) => {
                for &r in raw.iter().take(MAX_BATCH) {
                    add(&mut bl, &mut model, node(r));
                }
            }
            Op::Remove(n) => {
                let n = node(*n);
                let expected = bl.inner().expect_remove(&model, n);
                let got = bl.update(|p| p.remove_node(n));
                assert_eq!(got, expected, "bounded remove {n}");
                if got.is_ok() {
                    model.remove(n);
                    loads.remove(&n);
                }
            }
            Op::Lookup(h) => {
                let h = *h;
                let peek = bl.peek_hash(h);
                assert_eq!(peek, bl.peek_hash(h), "peek determinism");
                match peek {
                    None => assert!(model.is_empty()),
                    Some(n) => assert!(model.contains(n)),
                }
            }
            Op::LookupNear { .. } | Op::Assign(_) => {
                let h = match op {
                    Op::LookupNear { node, vnode, delta } => near(*node, *vnode, *delta),
                    Op::Assign(h) => *h,
                    _ => unreachable!(),
                };
                let peek = bl.peek_hash(h);
                let first = bl.inner().locate_hash(h).copied();
                let cap = bl.cap_for(bl.total_load() + 1);
                let got = bl.assign_hash(h).copied();
                assert_eq!(got, peek, "assign differs from peek");
                match got {
                    None => assert!(model.is_empty(), "bounded assign None with members"),
                    Some(n) => {
                        assert!(model.contains(n), "bounded assign to non-member {n}");
                        if let Some(f) = first {
                            let load_before = loads.get(&f).copied().unwrap_or(0);
                            if load_before < cap {
                                assert_eq!(n, f, "key left its node while under the cap");
                            }
                        }
                        *loads.entry(n).or_insert(0) += 1;
                        let total = bl.total_load();
                        assert!(
                            bl.load(&n) <= bl.cap_for(total),
                            "load {} of {n} over cap {} (total {total}, {} nodes)",
                            bl.load(&n),
                            bl.cap_for(total),
                            model.len()
                        );
                    }
                }
            }
            Op::Release(n) => {
                let n = node(*n);
                let had = loads.get(&n).copied().unwrap_or(0);
                assert_eq!(bl.release(&n), had > 0, "release {n} with load {had}");
                if had > 1 {
                    loads.insert(n, had - 1);
                } else {
                    loads.remove(&n);
                }
            }
        }
        assert_eq!(bl.inner().len(), model.len(), "bounded inner len");
        assert_eq!(bl.total_load(), loads.values().sum::<u64>(), "total load");
        for n in 0..Node::from(NODE_RANGE) {
            assert_eq!(
                bl.load(&n),
                loads.get(&n).copied().unwrap_or(0),
                "load of {n}"
            );
        }
        for n in loads.keys() {
            assert!(model.contains(*n), "load kept for non-member {n}");
        }
    }
}

fuzz_target!(|input: Input| {
    let Input { engine, seed, ops } = input;
    assert!(matches!(
        Ring::<Node>::with_virtual_nodes(0).err(),
        Some(RingError::Config(ref e)) if e.field() == "virtual_nodes"
    ));
    match engine {
        EngineChoice::Ring { vnodes: v } => {
            let ring = Ring::with_virtual_nodes(vnodes(v)).expect("vnodes >= 1");
            run(ring, &ops, seed);
        }
        EngineChoice::Memento => run(Memento::new(), &ops, seed),
        EngineChoice::Rendezvous => run(Rendezvous::new(), &ops, seed),
        EngineChoice::Maglev { table } => {
            let size = MAGLEV_SIZES[usize::from(table) % MAGLEV_SIZES.len()];
            run(Maglev::with_table_size(size).expect("prime"), &ops, seed);
        }
        EngineChoice::Jump => run(Jump::new(), &ops, seed),
        EngineChoice::Bounded { inner, epsilon } => {
            let epsilon = EPSILONS[usize::from(epsilon) % EPSILONS.len()];
            match inner {
                BoundedInner::Memento => run_bounded(Memento::new(), epsilon, &ops),
                BoundedInner::Jump => run_bounded(Jump::new(), epsilon, &ops),
                BoundedInner::Ring { vnodes: v } => run_bounded(
                    Ring::with_virtual_nodes(vnodes(v)).expect("vnodes >= 1"),
                    epsilon,
                    &ops,
                ),
            }
        }
    }
});
