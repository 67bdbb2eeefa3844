//! Many threads at once. Each thread owns its keys, so its own model of them
//! is exact even while the others run: every read must return the last value
//! the thread wrote (or nothing, once evicted), never another thread's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Barrier, Mutex};

use scalekit_cache::{Cache, RemovalCause};

const THREADS: u64 = 8;
const KEYS_PER_THREAD: u64 = 500;
const OPS: u64 = 40_000;

#[test]
fn owners_always_read_their_own_writes() {
    // Small enough that eviction runs constantly.
    let evicted = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&evicted);
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(1_024)
        .shards(4)
        .eviction_listener(move |k, v, cause| {
            if cause == RemovalCause::Size {
                sink.lock().unwrap().push((k, v));
            }
        })
        .build()
        .unwrap();
    let barrier = Barrier::new(THREADS as usize);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (cache, barrier) = (&cache, &barrier);
            s.spawn(move || {
                let mut model: HashMap<u64, u64> = HashMap::new();
                let mut x = t + 1;
                barrier.wait();
                for i in 0..OPS {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = t * KEYS_PER_THREAD + x % KEYS_PER_THREAD;
                    match x % 10 {
                        0..=5 => {
                            if let Some(v) = cache.get(&key) {
                                assert_eq!(Some(&v), model.get(&key), "thread {t} key {key}");
                            }
                        }
                        6..=8 => {
                            let v = (t << 48) | i;
                            cache.insert(key, v);
                            model.insert(key, v);
                        }
                        _ => {
                            let got = cache.remove(&key);
                            if let Some(v) = got {
                                assert_eq!(Some(v), model.remove(&key), "removed {key}");
                            } else {
                                model.remove(&key);
                            }
                        }
                    }
                }
            });
        }
    });
    assert!(cache.weighted_size() <= 1_024);
    assert!(!evicted.lock().unwrap().is_empty(), "the test should evict");
    let stats = cache.stats();
    assert!(stats.hits + stats.misses > 0);
}

#[test]
fn concurrent_invalidation_leaves_nothing_behind() {
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(10_000).build().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (cache, stop) = (&cache, &stop);
            s.spawn(move || {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 200_000 {
                    cache.insert(t * 1_000_000 + i % 5_000, i);
                    i += 1;
                }
            });
        }
        for _ in 0..20 {
            cache.invalidate_if(|k, _| k % 2 == 0);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    cache.invalidate_all();
    assert_eq!(cache.entry_count(), 0);
    assert_eq!(cache.weighted_size(), 0);
}

/// The shards' shared count of their total weight stays exact under
/// concurrent inserts, replaces with other weights, removes, invalidations
/// and maintenance: afterwards, an emptied cache takes exactly its capacity
/// before it evicts (a count drifted up would evict early, one drifted down
/// would let the cache overflow).
#[test]
fn the_shared_weight_count_stays_exact_under_churn() {
    let cache: Cache<u64, u32> = Cache::builder()
        .max_capacity(4_000)
        .shards(8)
        .weigher(|_, weight: &u32| *weight)
        .build()
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let cache = &cache;
            s.spawn(move || {
                let mut x = t + 1;
                for _ in 0..20_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = x % 3_000;
                    match x % 20 {
                        0..=13 => cache.insert(key, (x % 7) as u32 + 1),
                        14..=17 => cache.invalidate(&key),
                        18 => cache.invalidate_if(|k, _| k % 97 == x % 97),
                        _ => cache.run_pending_tasks(),
                    }
                }
            });
        }
    });
    assert!(cache.weighted_size() <= 4_000);
    cache.invalidate_all();
    let before = cache.stats().evicted_size;
    for key in 0..4_000 {
        cache.insert(key, 1);
    }
    assert_eq!(cache.weighted_size(), 4_000);
    assert_eq!(
        cache.stats().evicted_size,
        before,
        "nothing evicted below the capacity"
    );
    cache.insert(4_000, 1);
    assert_eq!(cache.weighted_size(), 4_000, "and nothing let past it");
}
