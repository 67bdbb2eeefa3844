//! `TieredCache` logic against an in-memory fake tier (no Redis): read-through,
//! promotion, write policies, an L2 that errs or is slow, recovery, and the
//! race between a load and an invalidation. Time is tokio's paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use proptest::prelude::*;
use scalekit_cache::{async_trait, Cache, GuardedTier, Tier, TierError, TieredCache, WritePolicy};
use scalekit_core::{Admission, Outcome, RejectReason, Rejected};
use tokio::time::Instant;

const NORMAL: u8 = 0;
const ERRORS: u8 = 1;
const SLOW: u8 = 2;
/// Reads fail, writes work (faults a read must survive without going stale).
const READ_ERRORS: u8 = 3;
/// Reads hang, writes work.
const SLOW_READS: u8 = 4;

/// An in-memory tier whose behaviour the test switches at run time.
#[derive(Default)]
struct FakeTier {
    map: Mutex<HashMap<u32, (String, Duration)>>,
    mode: AtomicU8,
    gets: AtomicU32,
}

impl FakeTier {
    fn set_mode(&self, mode: u8) {
        self.mode.store(mode, SeqCst);
    }

    fn stored(&self, key: u32) -> Option<String> {
        self.map.lock().get(&key).map(|(v, _)| v.clone())
    }

    async fn fault(&self, read: bool) -> Result<(), TierError> {
        match self.mode.load(SeqCst) {
            ERRORS => Err(TierError::Unavailable("connection refused".into())),
            READ_ERRORS if read => Err(TierError::Backend("READONLY".into())),
            SLOW | SLOW_READS if read || self.mode.load(SeqCst) == SLOW => {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Shares one fake between the cache and the test.
struct Shared(Arc<FakeTier>);

#[async_trait]
impl Tier<u32, String> for Shared {
    async fn get(&self, key: &u32) -> Result<Option<String>, TierError> {
        self.0.gets.fetch_add(1, SeqCst);
        self.0.fault(true).await?;
        Ok(self.0.stored(*key))
    }
    async fn set(&self, key: &u32, value: &String, ttl: Duration) -> Result<(), TierError> {
        self.0.fault(false).await?;
        self.0.map.lock().insert(*key, (value.clone(), ttl));
        Ok(())
    }
    async fn delete(&self, key: &u32) -> Result<(), TierError> {
        self.0.fault(false).await?;
        self.0.map.lock().remove(key);
        Ok(())
    }
}

fn cache(policy: WritePolicy) -> (TieredCache<u32, String>, Arc<FakeTier>) {
    let fake = Arc::new(FakeTier::default());
    let cache = TieredCache::builder(Cache::new(1_000), Shared(Arc::clone(&fake)))
        .write_policy(policy)
        .l2_ttl(Duration::from_secs(300))
        .l2_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    (cache, fake)
}

/// A loader that counts its runs (when awaited, not when made).
async fn loader(loads: &AtomicU32, value: &str) -> String {
    loads.fetch_add(1, SeqCst);
    value.to_string()
}

#[tokio::test(start_paused = true)]
async fn read_through_fills_both_tiers_and_promotes_l2_hits() {
    let (cache, fake) = cache(WritePolicy::default());
    let loads = AtomicU32::new(0);
    assert_eq!(cache.get_with(1, loader(&loads, "one")).await, "one");
    assert_eq!(loads.load(SeqCst), 1);
    let stored = fake.map.lock().get(&1).cloned();
    assert_eq!(stored, Some(("one".to_string(), Duration::from_secs(300))));
    // An L1 hit: neither L2 nor the loader is asked.
    assert_eq!(cache.get_with(1, loader(&loads, "other")).await, "one");
    assert_eq!((loads.load(SeqCst), fake.gets.load(SeqCst)), (1, 1));
    // Gone from L1 only (as after eviction): L2 answers and L1 gets it back.
    cache.l1().invalidate(&1);
    assert_eq!(cache.get_with(1, loader(&loads, "other")).await, "one");
    assert_eq!(loads.load(SeqCst), 1);
    assert_eq!(cache.l1().get(&1).as_deref(), Some("one"));
    let stats = cache.stats();
    assert_eq!((stats.l2_hits, stats.l2_misses, stats.l2_errors), (1, 1, 0));
    // `get` does not load.
    assert_eq!(cache.get(&2).await, None);
    assert_eq!(loads.load(SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn an_erroring_l2_never_fails_a_read_and_is_used_again_when_back() {
    let (cache, fake) = cache(WritePolicy::default());
    let loads = AtomicU32::new(0);
    fake.set_mode(ERRORS);
    assert_eq!(cache.get_with(1, loader(&loads, "one")).await, "one");
    assert_eq!(cache.get(&2).await, None);
    let stats = cache.stats();
    // The failed get of key 1, its failed fill, and the failed get of key 2.
    assert_eq!(stats.l2_errors, 3);
    assert_eq!(stats.l2_misses, 2);
    // L1 keeps serving while L2 is down.
    assert_eq!(cache.get_with(1, loader(&loads, "other")).await, "one");
    assert_eq!(loads.load(SeqCst), 1);
    // A write reports that L2 was not updated, and still updates L1.
    let err = cache.invalidate(&1).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert_eq!(cache.l1().get(&1), None);
    // L2 is back: nothing to reset, it is used at once.
    fake.set_mode(NORMAL);
    fake.map
        .lock()
        .insert(3, ("three".into(), Duration::from_secs(1)));
    assert_eq!(cache.get_with(3, loader(&loads, "other")).await, "three");
    assert_eq!(cache.stats().l2_hits, 1);
    assert_eq!(loads.load(SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_l2_is_cut_off_at_the_time_limit() {
    let (cache, fake) = cache(WritePolicy::default());
    let loads = AtomicU32::new(0);
    fake.set_mode(SLOW);
    let started = Instant::now();
    assert_eq!(cache.get_with(1, loader(&loads, "one")).await, "one");
    // The get and the fill each waited the 50 ms limit, not the 10 s.
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert_eq!(cache.stats().l2_timeouts, 2);
    let started = Instant::now();
    assert_eq!(
        cache.get_many(&[1, 2]).await,
        vec![Some("one".to_string()), None]
    );
    assert_eq!(started.elapsed(), Duration::from_millis(50));
    let err = cache.insert(2, "two".into()).await.unwrap_err();
    assert!(
        matches!(
            err,
            TierError::Timeout {
                operation: "delete",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(cache.stats().l2_write_errors, 2);
}

#[tokio::test(start_paused = true)]
async fn write_policies() {
    let (cache, fake) = cache(WritePolicy::WriteThrough);
    fake.map
        .lock()
        .insert(1, ("old".into(), Duration::from_secs(1)));
    cache.l1().insert(1, "old".into());
    cache.insert(1, "new".into()).await.unwrap();
    assert_eq!(fake.stored(1).as_deref(), Some("new"));
    assert_eq!(cache.l1().get(&1).as_deref(), Some("new"));

    let (cache, fake) = self::cache(WritePolicy::InvalidateOnWrite);
    fake.map
        .lock()
        .insert(1, ("old".into(), Duration::from_secs(1)));
    cache.l1().insert(1, "old".into());
    cache.insert(1, "new".into()).await.unwrap();
    assert_eq!(fake.stored(1), None);
    assert_eq!(cache.l1().get(&1), None);
    let loads = AtomicU32::new(0);
    assert_eq!(cache.get_with(1, loader(&loads, "new")).await, "new");
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_ask_l2_and_the_loader_once() {
    let (cache, fake) = cache(WritePolicy::default());
    let loads = Arc::new(AtomicU32::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (cache, loads, barrier) = (cache.clone(), Arc::clone(&loads), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                cache
                    .get_with(7, async {
                        loads.fetch_add(1, SeqCst);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        "seven".to_string()
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), "seven");
    }
    assert_eq!(loads.load(SeqCst), 1);
    assert_eq!(fake.gets.load(SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_load_that_races_an_invalidation_is_served_once_and_kept_nowhere() {
    let (cache, fake) = cache(WritePolicy::default());
    let gate = Arc::new(tokio::sync::Notify::new());
    let reader = {
        let (cache, gate) = (cache.clone(), Arc::clone(&gate));
        tokio::spawn(async move {
            cache
                .get_with(1, async {
                    gate.notified().await; // the database read, before the write
                    "old".to_string()
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(1)).await; // the reader is in its loader
    cache.invalidate(&1).await.unwrap(); // the writer, after updating the database
    gate.notify_one();
    assert_eq!(reader.await.unwrap(), "old");
    assert_eq!(cache.l1().get(&1), None, "a stale load must not stay in L1");
    assert_eq!(fake.stored(1), None, "nor be written to L2");
    assert_eq!(cache.stats().stale_loads, 1);
}

#[tokio::test(start_paused = true)]
async fn loader_errors_are_returned_and_not_cached() {
    let (cache, _fake) = cache(WritePolicy::default());
    let err = cache
        .try_get_with(1, async { Err::<String, _>("db down") })
        .await
        .unwrap_err();
    assert_eq!(*err, "db down");
    assert_eq!(cache.l1().get(&1), None);
    let v = cache
        .try_get_with(1, async { Ok::<_, &str>("one".to_string()) })
        .await;
    assert_eq!(v.unwrap(), "one");
}

#[tokio::test(start_paused = true)]
async fn get_many_reads_l1_then_l2_in_one_call() {
    let (cache, fake) = cache(WritePolicy::default());
    cache.l1().insert(1, "one".into());
    fake.map
        .lock()
        .insert(2, ("two".into(), Duration::from_secs(1)));
    let got = cache.get_many(&[1, 2, 3]).await;
    assert_eq!(got, vec![Some("one".into()), Some("two".into()), None]);
    assert_eq!(cache.l1().get(&2).as_deref(), Some("two"));
    // The default `get_many` asked L2 for the two L1 misses only.
    assert_eq!(fake.gets.load(SeqCst), 2);
    let stats = cache.stats();
    assert_eq!((stats.l2_hits, stats.l2_misses), (1, 1));
}

/// Opens after three failures in a row; closes on the next success (enough
/// to show the wiring: the breaker itself lives in `scalekit-breaker`).
#[derive(Default)]
struct Breaker {
    failures: AtomicU32,
    cancelled: AtomicU32,
}

impl Admission for Breaker {
    type Permit = ();
    fn try_acquire(&self) -> Result<(), Rejected> {
        if self.failures.load(SeqCst) >= 3 {
            return Err(Rejected::new(RejectReason::CircuitOpen));
        }
        Ok(())
    }
    fn record(&self, _: (), outcome: Outcome, _: Duration) {
        match outcome {
            Outcome::Failure => {
                self.failures.fetch_add(1, SeqCst);
            }
            Outcome::Cancelled => {
                self.cancelled.fetch_add(1, SeqCst);
            }
            _ => self.failures.store(0, SeqCst),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_breaker_in_front_of_a_dead_l2_skips_the_wait() {
    let fake = Arc::new(FakeTier::default());
    let breaker = Arc::new(Breaker::default());
    let tier = GuardedTier::new(Shared(Arc::clone(&fake)), Arc::clone(&breaker));
    let cache = TieredCache::builder(Cache::new(100), tier)
        .l2_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    fake.set_mode(ERRORS);
    let loads = AtomicU32::new(0);
    // get + fill of key 0, get of key 1: three failures open the breaker.
    assert_eq!(cache.get_with(0, loader(&loads, "zero")).await, "zero");
    assert_eq!(cache.get_with(1, loader(&loads, "one")).await, "one");
    assert_eq!(fake.gets.load(SeqCst), 2);
    // Open: L2 is not asked, and the loader answers at once.
    fake.set_mode(SLOW);
    let started = Instant::now();
    for k in 2..10 {
        assert_eq!(cache.get_with(k, loader(&loads, "v")).await, "v");
    }
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(fake.gets.load(SeqCst), 2);
    let stats = cache.stats();
    // Key 1's fill, then a get and a fill for each of the eight keys.
    assert_eq!(stats.l2_rejected, 17, "{stats:?}");
    assert_eq!(loads.load(SeqCst), 10);

    // A call cut off by the tiered cache's own limit is reported cancelled.
    breaker.failures.store(0, SeqCst);
    assert_eq!(cache.get_with(20, loader(&loads, "v")).await, "v");
    assert_eq!(breaker.cancelled.load(SeqCst), 2);
}

#[derive(Debug, Clone)]
enum Op {
    Write(u32, u8),
    Invalidate(u32),
    Read(u32),
    Evict(u32),
    Mode(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..4u32, any::<u8>()).prop_map(|(k, v)| Op::Write(k, v)),
        1 => (0..4u32).prop_map(Op::Invalidate),
        3 => (0..4u32).prop_map(Op::Read),
        1 => (0..4u32).prop_map(Op::Evict),
        1 => prop_oneof![Just(NORMAL), Just(SLOW_READS), Just(READ_ERRORS)].prop_map(Op::Mode),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever L2 does on reads (answers, errs, hangs), and whatever L1
    /// evicts, every read succeeds and returns the source's current value,
    /// under either write policy.
    #[test]
    fn reads_always_succeed_and_are_never_stale(
        ops in proptest::collection::vec(op(), 1..60),
        write_through in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let policy = if write_through { WritePolicy::WriteThrough } else { WritePolicy::InvalidateOnWrite };
            let (cache, fake) = cache(policy);
            let mut db: HashMap<u32, String> = HashMap::new();
            for op in ops {
                match op {
                    Op::Write(k, v) => {
                        db.insert(k, v.to_string());
                        let _ = cache.insert(k, v.to_string()).await;
                    }
                    Op::Invalidate(k) => {
                        db.remove(&k);
                        let _ = cache.invalidate(&k).await;
                    }
                    Op::Read(k) => {
                        let source = db.get(&k).cloned().unwrap_or_default();
                        let got = cache.get_with(k, std::future::ready(source.clone())).await;
                        prop_assert_eq!(got, source);
                    }
                    Op::Evict(k) => cache.l1().invalidate(&k),
                    Op::Mode(m) => fake.set_mode(m),
                }
            }
            Ok(())
        })?;
    }
}
