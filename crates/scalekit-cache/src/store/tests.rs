//! The store's structure under random operations, and the adaptation on
//! workloads with a known best window.

use super::*;
use proptest::prelude::*;

fn drop_all(_: u64, _: u64, _: RemovalCause) {}

/// Inserts and sheds down to the capacity, as a one-shard cache does.
fn put(store: &mut Store<u64, u64>, key: u64, weight: u32, deadline: u64, now: u64) {
    store.insert(mix(key), key, key, weight, deadline, &mut drop_all);
    store.evict_to(store.max_weight, now, &mut drop_all);
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u64, u32, Option<u64>),
    Get(u64),
    Remove(u64),
    Maintain(u64),
    Retain(u64),
    Shed(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..64u64, 0..40u32, proptest::option::of(1..50u64))
            .prop_map(|(k, w, t)| Op::Insert(k, w % 4 + (w / 39) * 20, t)),
        5 => (0..64u64).prop_map(Op::Get),
        1 => (0..64u64).prop_map(Op::Remove),
        1 => (0..20u64).prop_map(Op::Maintain),
        1 => (2..4u64).prop_map(Op::Retain),
        1 => (0..30u64).prop_map(Op::Shed),
    ]
}

proptest! {
    /// Queues, weights, the table and the wheel stay consistent whatever happens.
    #[test]
    fn structure_stays_consistent(ops in proptest::collection::vec(op(), 1..300)) {
        // A share of 16 in a cache of 40: weights of 20 are heavy.
        let mut store: Store<u64, u64> = Store::new(16, 40, 16, 7, 0);
        let mut now = 0;
        for op in ops {
            match op {
                Op::Insert(k, w, ttl) => {
                    let deadline = ttl.map_or(NEVER, |t| now + t);
                    put(&mut store, k, w, deadline, now);
                }
                Op::Get(k) => {
                    if let Some(idx) = store.find(mix(k), &k) {
                        store.record_read(store.node(idx), mix(k));
                    }
                }
                Op::Remove(k) => {
                    store.remove(mix(k), &k);
                }
                Op::Maintain(dt) => {
                    now += dt << 30;
                    store.maintain(now, dt % 2 == 0, &mut drop_all);
                }
                Op::Retain(m) => store.retain(|k, _| k % m != 0, RemovalCause::Explicit, &mut drop_all),
                Op::Shed(target) => {
                    store.evict_to(target, now, &mut drop_all);
                    prop_assert!(store.weight() <= target);
                }
            }
            store.check();
            prop_assert!(store.weight() <= 40);
        }
    }
}

fn mix(k: u64) -> u64 {
    scalekit_core::mix64(k)
}

#[test]
fn a_heavy_entry_does_not_push_its_shard_out() {
    // A shard with a share of 10 in a cache of 100.
    let mut store: Store<u64, u64> = Store::new(10, 100, 16, 1, 0);
    for k in 0..10 {
        store.insert(mix(k), k, k, 1, NEVER, &mut drop_all);
    }
    store.insert(mix(99), 99, 99, 50, NEVER, &mut drop_all);
    assert_eq!((store.weight(), store.room()), (60, 60));
    store.evict_to(store.room(), 0, &mut drop_all);
    assert_eq!(
        store.len(),
        11,
        "nothing to shed: the heavy entry is borrowed room"
    );
    // Heavier than the whole cache: never kept.
    let (idx, new) = store.insert(mix(7), 7, 7, 101, NEVER, &mut drop_all);
    assert_eq!((idx, new), (None, false), "the old value is gone too");
    assert_eq!(store.len(), 10);
    store.check();
}

fn replay(store: &mut Store<u64, ()>, keys: impl Iterator<Item = u64>) -> f64 {
    let (mut hits, mut requests) = (0u64, 0u64);
    for key in keys {
        requests += 1;
        let hash = mix(key);
        if let Some(idx) = store.find(hash, &key) {
            hits += 1;
            store.record_read(store.node(idx), hash);
        } else {
            store.insert(hash, key, (), 1, NEVER, &mut |_, _, _| {});
            store.evict_to(store.share(), 0, &mut |_, _, _| {});
            store.maintain(0, false, &mut |_, _, _| {});
        }
    }
    hits as f64 / requests as f64
}

#[test]
fn a_loop_shrinks_the_window() {
    // A loop a little larger than the cache: LRU would hit nothing.
    let mut store: Store<u64, ()> = Store::new(1_000, 1_000, 1_000, 1, 0);
    store.set_window(300);
    let ratio = replay(&mut store, (0..200).flat_map(|_| 0..1_050u64));
    assert!(store.window_max() < 50, "window {}", store.window_max());
    assert!(ratio > 0.85, "hit ratio {ratio}");
}

#[test]
fn a_shifting_working_set_grows_the_window() {
    // Each key is used a few times in a burst and then never again:
    // recency is everything, frequency history only gets in the way.
    let mut store: Store<u64, ()> = Store::new(1_000, 1_000, 1_000, 1, 0);
    let keys = (0..400_000u64).map(|i| {
        let base = i / 8;
        base + (mix(i) % 600)
    });
    replay(&mut store, keys);
    assert!(store.window_max() > 300, "window {}", store.window_max());
}
