//! The capacity is the whole cache's: an entry heavier than a shard's share
//! is kept, a full cache makes room for it across shards, and only an entry
//! heavier than the whole capacity is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use scalekit_cache::{Cache, RemovalCause};

const MIB: u64 = 1 << 20;

/// A byte-weighted cache of 64 MiB on 256 shards, as the default gives on 16
/// cores: a share of 256 KiB per shard. Values are weights, not bytes, so
/// the test allocates nothing big.
type Log = Arc<Mutex<Vec<(u32, RemovalCause)>>>;

fn cache() -> (Cache<u32, u32>, Log) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    let cache = Cache::builder()
        .max_capacity(64 * MIB)
        .shards(256)
        .weigher(|_: &u32, weight: &u32| *weight)
        .eviction_listener(move |k, _, cause| sink.lock().unwrap().push((k, cause)))
        .build()
        .unwrap();
    (cache, log)
}

#[test]
fn a_value_heavier_than_a_shard_share_is_kept() {
    let (cache, log) = cache();
    cache.insert(1, MIB as u32);
    assert_eq!(cache.get(&1), Some(MIB as u32), "1 MiB in a 64 MiB cache");
    cache.insert(2, (64 * MIB) as u32);
    assert_eq!(
        log.lock().unwrap().as_slice(),
        &[(1, RemovalCause::Size)],
        "the whole capacity's worth pushes the other out"
    );
    assert_eq!(
        cache.get(&2),
        Some((64 * MIB) as u32),
        "the whole capacity fits"
    );
    cache.insert(3, (64 * MIB + 1) as u32);
    assert_eq!(cache.get(&3), None, "heavier than the whole capacity");
    assert_eq!(log.lock().unwrap().last(), Some(&(3, RemovalCause::Size)));
    assert!(cache.weighted_size() <= 64 * MIB);
}

#[test]
fn a_full_cache_makes_room_for_a_heavy_value_across_shards() {
    let (cache, log) = cache();
    // Fill it with 16,384 entries of 4 KiB: 64 MiB.
    for k in 0..16_384u32 {
        cache.insert(k, 4096);
    }
    let full = cache.weighted_size();
    assert_eq!(full, 64 * MIB, "nothing was evicted while it filled up");
    assert!(log.lock().unwrap().is_empty());
    cache.insert(1_000_000, MIB as u32);
    assert_eq!(
        cache.get(&1_000_000),
        Some(MIB as u32),
        "a heavy value is admitted to its shard's window like any other"
    );
    let size = cache.weighted_size();
    assert!(size <= 64 * MIB, "within the capacity: {size}");
    assert!(
        size > 64 * MIB - 4096,
        "no more shed than one entry beyond what it needed: {size}"
    );
    let evicted = log.lock().unwrap().len();
    assert!(
        (256..=257).contains(&evicted),
        "the other shards shed about 256 entries of 4 KiB: {evicted}"
    );
}

#[test]
fn an_unweighted_cache_holds_its_capacity_on_any_number_of_shards() {
    for shards in [1, 2, 16, 256] {
        let cache: Cache<u32, u32> = Cache::builder()
            .max_capacity(1_000)
            .shards(shards)
            .build()
            .unwrap();
        for k in 0..1_000 {
            cache.insert(k, k);
        }
        assert_eq!(cache.entry_count(), 1_000, "{shards} shards");
        assert_eq!(cache.stats().evicted_size, 0, "{shards} shards");
        for k in 1_000..3_000 {
            cache.insert(k, k);
        }
        assert_eq!(cache.entry_count(), 1_000, "{shards} shards");
    }
}
