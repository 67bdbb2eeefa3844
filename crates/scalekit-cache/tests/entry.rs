//! The entry API under concurrency: one initialiser per missing key, no
//! value put by another writer overwritten, no lost update in a compute;
//! and iteration while writers run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Barrier};

use scalekit_cache::{Cache, CompResult, Op};

#[test]
fn concurrent_computes_lose_no_update() {
    let cache: Cache<u32, u64> = Cache::new(1_000);
    let threads = 4;
    let rounds = 2_000;
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for i in 0..rounds {
                    cache
                        .entry(i % 3)
                        .and_upsert_with(|e| e.map_or(1, |e| e.into_value() + 1));
                }
            });
        }
        // A plain writer of other keys in the same shards meanwhile.
        scope.spawn(|| {
            for i in 0..rounds {
                cache.insert(100 + i % 50, 0);
            }
        });
    });
    let total: u64 = (0..3).map(|k| cache.get(&k).unwrap()).sum();
    assert_eq!(total, u64::from(threads * rounds));
}

#[test]
fn concurrent_or_insert_with_runs_one_initialiser() {
    let cache: Cache<u32, u32> = Cache::new(100);
    let runs = AtomicU32::new(0);
    let threads = 8;
    let barrier = Barrier::new(threads);
    let fresh = AtomicU32::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                barrier.wait();
                let entry = cache.entry(7).or_insert_with(|| {
                    runs.fetch_add(1, SeqCst);
                    70
                });
                assert_eq!(*entry.value(), 70);
                if entry.is_fresh() {
                    fresh.fetch_add(1, SeqCst);
                }
            });
        }
    });
    assert_eq!(runs.load(SeqCst), 1, "one initialiser for all");
    assert_eq!(fresh.load(SeqCst), 1, "only its caller's entry is fresh");
}

#[test]
fn an_insert_during_the_initialiser_is_not_overwritten() {
    let cache: Cache<u32, &str> = Cache::new(100);
    let started = Barrier::new(2);
    let inserted = Barrier::new(2);
    std::thread::scope(|scope| {
        let entry = scope.spawn(|| {
            cache.entry(1).or_insert_with(|| {
                started.wait();
                inserted.wait();
                "from the initialiser"
            })
        });
        started.wait();
        cache.insert(1, "from a writer");
        inserted.wait();
        let entry = entry.join().unwrap();
        assert!(!entry.is_fresh());
        assert_eq!(*entry.value(), "from a writer");
    });
    assert_eq!(cache.get(&1), Some("from a writer"));
}

#[test]
fn a_compute_sees_and_reports_old_and_new_values_and_tells_the_listener() {
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    let cache: Cache<&str, u32> = Cache::builder()
        .max_capacity(10)
        .eviction_listener(move |k, v, cause| sink.lock().unwrap().push((k, v, cause)))
        .build()
        .unwrap();
    assert_eq!(
        cache.entry("a").and_compute_with(|e| {
            assert!(e.is_none());
            Op::Nop
        }),
        CompResult::StillNone("a")
    );
    assert!(matches!(
        cache.entry("a").and_compute_with(|_| Op::Put(1)),
        CompResult::Inserted(e) if e.is_fresh() && !e.is_old_value_replaced()
    ));
    assert!(matches!(
        cache.entry("a").and_compute_with(|e| Op::Put(e.unwrap().value() + 1)),
        CompResult::ReplacedWith { old: 1, new } if *new.value() == 2
    ));
    assert!(matches!(
        cache.entry("a").and_compute_with(|_| Op::Nop),
        CompResult::Unchanged(e) if *e.value() == 2 && !e.is_fresh()
    ));
    assert!(matches!(
        cache.entry("a").and_compute_with(|_| Op::Remove),
        CompResult::Removed(e) if *e.value() == 2
    ));
    assert!(!cache.contains_key("a"));
    use scalekit_cache::RemovalCause::{Explicit, Replaced};
    assert_eq!(
        log.lock().unwrap().as_slice(),
        &[("a", 1, Replaced), ("a", 2, Explicit)]
    );
}

#[test]
fn a_failed_compute_changes_nothing() {
    let cache: Cache<u32, u32> = Cache::new(10);
    cache.insert(1, 1);
    let result = cache
        .entry(1)
        .and_try_compute_with(|_| Err::<Op<u32>, _>("no"));
    assert_eq!(result, Err("no"));
    assert_eq!(cache.get(&1), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_initialisers_are_coalesced_too() {
    let cache: Arc<Cache<u32, u32>> = Arc::new(Cache::new(100));
    let runs = Arc::new(AtomicU32::new(0));
    let (release, wait) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (cache, runs, mut wait) = (Arc::clone(&cache), Arc::clone(&runs), wait.clone());
            tokio::spawn(async move {
                cache
                    .entry(1)
                    .or_insert_with_async(async move {
                        runs.fetch_add(1, SeqCst);
                        let _ = wait.wait_for(|go| *go).await;
                        10
                    })
                    .await
            })
        })
        .collect();
    tokio::task::yield_now().await;
    release.send(true).unwrap();
    let mut fresh = 0;
    for task in tasks {
        let entry = task.await.unwrap();
        assert_eq!(*entry.value(), 10);
        fresh += usize::from(entry.is_fresh());
    }
    assert_eq!((runs.load(SeqCst), fresh), (1, 1));
}

#[test]
fn iteration_while_writers_run_sees_each_key_at_most_once() {
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(100_000)
        .shards(16)
        .build()
        .unwrap();
    for k in 0..1_000 {
        cache.insert(k, k);
    }
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for k in 1_000..5_000 {
                cache.insert(k, k);
                cache.remove(&(k - 1_000));
            }
        });
        for _ in 0..20 {
            let mut seen = HashSet::new();
            for (k, v) in &cache {
                assert_eq!(k, v);
                assert!(seen.insert(k), "{k} seen twice");
            }
        }
    });
    let mut all: Vec<u32> = cache.iter().map(|(k, _)| k).collect();
    all.sort_unstable();
    assert_eq!(all, (4_000..5_000).collect::<Vec<_>>());
}
