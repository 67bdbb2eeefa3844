//! Consistent hashing: lookup and build times of the `scalekit-ring` engines
//! against the peer crates users pick today (hashring, jumphash, anchorhash,
//! maglev).
//!
//! Groups:
//! * `ring/lookup_n10`, `ring/lookup_n1000`: one lookup per iteration, cycling
//!   through the same 4096 pre-generated `u64` keys for every engine. Each lookup
//!   hashes the key the way the library does it from a `u64` (ours:
//!   `Placement::locate`, SipHash-1-3 of the 8 bytes; the peers: their `Hash`-based
//!   entry points) and returns the node, so hashing is part of every number.
//! * `ring/build_n1000`: building each engine over 1000 nodes from scratch.
//!
//! `scalekit-jump-back` is the free function `jump_back_hash` over a node list,
//! which is what Memento does when no node was removed.
//!
//! Nodes are `u32` ids `0..n`. The two rings have the same number of points: ours
//! uses its default 160 virtual nodes a node, hashring gets 160 entries a node,
//! `(node, replica)` tuples. Rendezvous is O(n) a lookup, so it is slow at n=1000 by
//! design. The peer maglev sizes its table from the node count (the next prime after
//! 100 n) and materialises every node's whole permutation at build (O(M n) memory,
//! about 800 MB at 1000 nodes); ours uses a fixed 65,537-entry table.
//!
//! Run: `cargo bench -p scalekit-benches --bench ring`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use anchorhash::AnchorHash;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode};
use hashring::HashRing;
use jumphash::JumpHasher;
use maglev::ConsistentHasher;
use scalekit_core::{mix64, Placement, StableHash};
use scalekit_ring::{
    jump_back_hash, Jump, Maglev, Memento, Rendezvous, Ring, DEFAULT_VIRTUAL_NODES,
};

/// How many distinct keys every engine cycles through (a power of two).
const KEY_COUNT: usize = 4096;
const KEY_MASK: usize = KEY_COUNT - 1;
/// Fixed seed of the key list, so every run and every engine sees the same keys.
const KEY_SEED: u64 = 0x5EED_0F4B_E7C4;
/// jumphash's SipHash-1-3 keys: fixed, so runs are comparable.
const JUMPHASH_K0: u64 = 0x0123_4567_89ab_cdef;
const JUMPHASH_K1: u64 = 0xfedc_ba98_7654_3210;

fn keys() -> Vec<u64> {
    (0..KEY_COUNT as u64)
        .map(|i| mix64(KEY_SEED.wrapping_add(i)))
        .collect()
}

// --- builders, shared by the lookup and build groups ---------------------------

/// The bulk build (one sort of all points), as a service builds its ring at start.
fn build_ring(n: u32) -> Ring<u32> {
    Ring::with_nodes(0..n).unwrap()
}

fn build_jump(n: u32) -> Jump<u32> {
    Jump::with_nodes(0..n).unwrap()
}

fn build_memento(n: u32) -> Memento<u32> {
    Memento::with_nodes(0..n).unwrap()
}

fn build_rendezvous(n: u32) -> Rendezvous<u32> {
    let mut hrw = Rendezvous::new();
    for node in 0..n {
        hrw.add(node).unwrap();
    }
    hrw
}

fn build_maglev(n: u32) -> Maglev<u32> {
    Maglev::with_nodes(0..n).unwrap()
}

/// hashring has no virtual nodes of its own: 160 `(node, replica)` entries a node,
/// all added in one `batch_add` (its bulk build: one sort), as ours.
fn build_hashring(n: u32) -> HashRing<(u32, u32)> {
    let mut ring = HashRing::new();
    ring.batch_add(
        (0..n)
            .flat_map(|node| (0..DEFAULT_VIRTUAL_NODES).map(move |r| (node, r)))
            .collect(),
    );
    ring
}

/// The node list jumphash's slots index into (jumphash returns a bucket number;
/// reading the node keeps the work equal to our engines, which return the node).
fn build_jumphash_nodes(n: u32) -> (JumpHasher, Vec<u32>) {
    (
        JumpHasher::new_with_keys(JUMPHASH_K0, JUMPHASH_K1),
        (0..n).collect(),
    )
}

fn build_anchorhash(n: u32) -> AnchorHash<u64, u32, std::collections::hash_map::RandomState> {
    let capacity = u16::try_from(n).expect("anchorhash capacity is a u16");
    anchorhash::Builder::default()
        .with_resources(0..n)
        .build(capacity)
}

fn build_peer_maglev(n: u32) -> maglev::Maglev<u32> {
    maglev::Maglev::new(0..n)
}

// --- lookups --------------------------------------------------------------------

/// Benchmarks one lookup per iteration, cycling through `keys`.
fn bench_lookup<F, R>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    keys: &[u64],
    mut lookup: F,
) where
    F: FnMut(&u64) -> R,
{
    group.bench_function(id, |b| {
        let mut i = 0usize;
        b.iter(|| {
            let key = black_box(&keys[i & KEY_MASK]);
            i = i.wrapping_add(1);
            lookup(key)
        });
    });
}

fn lookups(c: &mut Criterion, n: u32) {
    let keys = keys();
    let ring = build_ring(n);
    let jump = build_jump(n);
    let memento = build_memento(n);
    let jump_back_nodes: Vec<u32> = (0..n).collect();
    let rendezvous = build_rendezvous(n);
    let maglev_ours = build_maglev(n);
    let hashring = build_hashring(n);
    let (jumphash, jumphash_nodes) = build_jumphash_nodes(n);
    let anchor = build_anchorhash(n);
    let maglev_peer = build_peer_maglev(n);

    // Every engine owns every key somewhere: a cheap sanity check that the
    // benchmarked calls do real work.
    for k in &keys[..16] {
        assert!(ring.locate(k).is_some());
        assert!(hashring.get(k).is_some());
        assert!(anchor.get_resource(*k).is_some());
        assert!(maglev_peer.get(k).is_some());
    }
    assert_eq!(ring.point_count(), hashring.len());

    let mut group = c.benchmark_group(format!("ring/lookup_n{n}"));
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    bench_lookup(&mut group, "scalekit-ring", &keys, |k| {
        ring.locate(k).copied()
    });
    bench_lookup(&mut group, "scalekit-jump", &keys, |k| {
        jump.locate(k).copied()
    });
    bench_lookup(&mut group, "scalekit-jump-back", &keys, |k| {
        jump_back_nodes[jump_back_hash(k.stable_hash(), n) as usize]
    });
    bench_lookup(&mut group, "scalekit-memento", &keys, |k| {
        memento.locate(k).copied()
    });
    bench_lookup(&mut group, "scalekit-rendezvous", &keys, |k| {
        rendezvous.locate(k).copied()
    });
    bench_lookup(&mut group, "scalekit-maglev", &keys, |k| {
        maglev_ours.locate(k).copied()
    });
    bench_lookup(&mut group, "hashring", &keys, |k| {
        hashring.get(k).map(|&(node, _)| node)
    });
    bench_lookup(&mut group, "jumphash", &keys, |k| {
        jumphash_nodes[jumphash.slot(k, n) as usize]
    });
    bench_lookup(&mut group, "anchorhash", &keys, |k| {
        anchor.get_resource(*k).copied()
    });
    bench_lookup(&mut group, "maglev", &keys, |k| maglev_peer.get(k).copied());
    group.finish();
}

fn lookup_n10(c: &mut Criterion) {
    lookups(c, 10);
}

fn lookup_n1000(c: &mut Criterion) {
    lookups(c, 1000);
}

// --- builds ---------------------------------------------------------------------

fn build_n1000(c: &mut Criterion) {
    const N: u32 = 1000;
    let mut group = c.benchmark_group("ring/build_n1000");
    // The peer maglev takes about a second and 800 MB a build: few, flat samples.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));

    group.bench_function("scalekit-ring", |b| b.iter(|| build_ring(black_box(N))));
    group.bench_function("scalekit-jump", |b| b.iter(|| build_jump(black_box(N))));
    group.bench_function("scalekit-memento", |b| {
        b.iter(|| build_memento(black_box(N)))
    });
    group.bench_function("scalekit-rendezvous", |b| {
        b.iter(|| build_rendezvous(black_box(N)))
    });
    group.bench_function("scalekit-maglev", |b| b.iter(|| build_maglev(black_box(N))));
    group.bench_function("hashring", |b| b.iter(|| build_hashring(black_box(N))));
    group.bench_function("jumphash", |b| {
        b.iter(|| build_jumphash_nodes(black_box(N)))
    });
    group.bench_function("anchorhash", |b| b.iter(|| build_anchorhash(black_box(N))));
    group.bench_function("maglev", |b| b.iter(|| build_peer_maglev(black_box(N))));
    group.finish();
}

criterion_group!(benches, lookup_n10, lookup_n1000, build_n1000);
criterion_main!(benches);
