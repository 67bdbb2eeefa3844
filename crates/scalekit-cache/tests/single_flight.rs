//! Single flight under contention: one load for many callers, and no caller
//! stranded when the leading load fails, panics or is cancelled.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use scalekit_cache::Cache;

#[test]
fn many_threads_one_load() {
    for round in 0..20 {
        let cache: Cache<u32, u32> = Cache::new(100);
        let loads = AtomicU32::new(0);
        let barrier = Barrier::new(16);
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    barrier.wait();
                    let v = cache.get_with(round, || {
                        loads.fetch_add(1, SeqCst);
                        std::thread::sleep(Duration::from_millis(2));
                        round * 10
                    });
                    assert_eq!(v, round * 10);
                });
            }
        });
        assert_eq!(loads.load(SeqCst), 1, "round {round}");
        let stats = cache.stats();
        assert_eq!((stats.load_successes, stats.load_failures), (1, 0));
    }
}

#[test]
fn an_error_reaches_the_waiters_and_is_not_cached() {
    let cache: Cache<u32, u32> = Cache::new(100);
    let loads = AtomicU32::new(0);
    let barrier = Barrier::new(8);
    let errors = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                barrier.wait();
                let result = cache.try_get_with(1, || {
                    loads.fetch_add(1, SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    Err::<u32, String>("unavailable".into())
                });
                assert_eq!(result.unwrap_err().as_str(), "unavailable");
                errors.fetch_add(1, SeqCst);
            });
        }
    });
    assert_eq!(errors.load(SeqCst), 8);
    // Waiters that arrived during the first load shared its error; a caller
    // arriving after it retired loads again, so loads <= 8 and the error is
    // never cached.
    assert!(loads.load(SeqCst) < 8, "loads: {}", loads.load(SeqCst));
    assert_eq!(cache.try_get_with(1, || Ok::<_, String>(5)), Ok(5));
    assert!(cache.stats().load_failures >= 1);
}

#[test]
fn a_panicking_leader_hands_the_load_to_a_waiter() {
    let cache: Cache<u32, u32> = Cache::new(100);
    let leader_started = Barrier::new(2);
    std::thread::scope(|s| {
        let leader = s.spawn(|| {
            cache.get_with(1, || {
                leader_started.wait();
                std::thread::sleep(Duration::from_millis(30));
                panic!("loader bug");
            })
        });
        leader_started.wait();
        // The leader is inside its loader: this caller waits on its flight,
        // which is abandoned by the panic; the caller then loads itself.
        assert_eq!(cache.get_with(1, || 7), 7);
        assert!(leader.join().is_err());
    });
    assert_eq!(cache.get(&1), Some(7));
    let stats = cache.stats();
    assert_eq!((stats.load_successes, stats.load_failures), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_callers_share_one_load() {
    let cache: Arc<Cache<u32, u32>> = Arc::new(Cache::new(100));
    let loads = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let cache = Arc::clone(&cache);
        let loads = Arc::clone(&loads);
        tasks.push(tokio::spawn(async move {
            cache
                .get_with_async(3, async {
                    loads.fetch_add(1, SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    30
                })
                .await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 30);
    }
    assert_eq!(loads.load(SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_leader_hands_the_load_to_a_waiter() {
    let cache: Arc<Cache<u32, u32>> = Arc::new(Cache::new(100));
    let leader = {
        let cache = Arc::clone(&cache);
        tokio::spawn(async move {
            cache
                .get_with_async(1, async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    1
                })
                .await
        })
    };
    tokio::task::yield_now().await;
    let waiter = {
        let cache = Arc::clone(&cache);
        tokio::spawn(async move { cache.get_with_async(1, async { 2 }).await })
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "the waiter waits for the leader");
    leader.abort();
    let value = tokio::time::timeout(Duration::from_secs(1), waiter).await;
    assert_eq!(value.expect("the waiter is not stranded").unwrap(), 2);
    assert_eq!(cache.get(&1), Some(2));
    assert_eq!(cache.stats().load_failures, 1);
}

#[test]
fn a_loader_may_use_the_cache_for_other_keys() {
    let cache: Cache<u32, u32> = Cache::new(100);
    let v = cache.get_with(1, || cache.get_with(2, || 20) + 1);
    assert_eq!((v, cache.get(&2)), (21, Some(20)));
}
