//! Lookups never allocate, and every engine is `Send + Sync`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scalekit_core::{stable_hash_u64, Placement};
use scalekit_ring::{BoundedLoad, Jump, Maglev, Memento, Rendezvous, Ring, Spread};
use scalekit_test_support::alloc::{allocations_during, assert_installed, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn assert_send_sync<T: Send + Sync>(_: &T) {}

#[test]
fn lookups_do_not_allocate() {
    assert_installed();
    let nodes: Vec<String> = (0..50).map(|i| format!("node-{i}")).collect();
    let ring = Ring::with_nodes(nodes.iter().cloned()).unwrap();
    let jump = Jump::with_nodes(nodes.iter().cloned()).unwrap();
    let mut memento = Memento::with_nodes(nodes.iter().cloned()).unwrap();
    memento.remove(&nodes[7]).unwrap();
    memento.remove(&nodes[21]).unwrap();
    let mut hrw = Rendezvous::new();
    for n in &nodes {
        hrw.add(n.clone()).unwrap();
    }
    let maglev = Maglev::with_nodes(nodes.iter().cloned()).unwrap();
    let bounded = BoundedLoad::new(Jump::with_nodes(nodes.iter().cloned()).unwrap(), 0.25).unwrap();

    assert_send_sync(&ring);
    assert_send_sync(&jump);
    assert_send_sync(&memento);
    assert_send_sync(&hrw);
    assert_send_sync(&maglev);
    assert_send_sync(&bounded);

    let mut replicas = Vec::with_capacity(8);
    let mut found = 0usize;
    let allocated = allocations_during(|| {
        for k in 0..10_000u64 {
            let h = stable_hash_u64(k);
            found += usize::from(ring.locate_hash(h).is_some());
            found += usize::from(jump.locate_hash(h).is_some());
            found += usize::from(memento.locate_hash(h).is_some());
            found += usize::from(hrw.locate_hash(h).is_some());
            found += usize::from(maglev.locate_hash(h).is_some());
            found += usize::from(ring.locate(&k).is_some());
            ring.replicas_into(h, 3, Spread::Nodes, &mut replicas);
            ring.replicas_into(h, 3, Spread::Labels, &mut replicas);
            hrw.replicas_into(h, 3, &mut replicas);
            found += usize::from(bounded.peek_hash(h).is_some());
        }
    });
    // peek_hash clones the node it returns (a String here): that is the caller's
    // value, not the lookup's. Count it out by using a Copy node type below.
    assert_eq!(found, 70_000);
    assert_eq!(
        allocated, 10_000,
        "only peek_hash's returned Strings may allocate"
    );

    let copy_bounded = BoundedLoad::new(Memento::with_nodes(0..50u32).unwrap(), 0.25).unwrap();
    let allocated = allocations_during(|| {
        for k in 0..10_000u64 {
            assert!(copy_bounded.peek_hash(stable_hash_u64(k)).is_some());
        }
    });
    assert_eq!(allocated, 0);
}
