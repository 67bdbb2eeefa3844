//! The cache against a `HashMap` model, with a manual clock for expiry.
//!
//! The eviction listener tells the model what the cache dropped and why; the
//! cache must then hold exactly what the model holds, never exceed its
//! capacity, and report only the causes that the operation could produce.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use scalekit_cache::{Cache, RemovalCause};
use scalekit_core::ManualClock;

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, u16),
    InsertTtl(u8, u16, u8),
    Get(u8),
    Remove(u8),
    Advance(u8),
    InvalidateIf(u8),
    InvalidateAll,
    Maintain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..40u8, any::<u16>()).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => (0..40u8, any::<u16>(), 1..20u8).prop_map(|(k, v, t)| Op::InsertTtl(k, v, t)),
        8 => (0..40u8).prop_map(Op::Get),
        2 => (0..40u8).prop_map(Op::Remove),
        2 => (0..15u8).prop_map(Op::Advance),
        1 => (2..5u8).prop_map(Op::InvalidateIf),
        1 => Just(Op::InvalidateAll),
        1 => Just(Op::Maintain),
    ]
}

type Log = Arc<Mutex<Vec<(u8, u16, RemovalCause)>>>;

/// Model entry: value and deadline (seconds on the manual clock).
type Model = HashMap<u8, (u16, u64)>;

fn run(ops: Vec<Op>, capacity: u64, ttl: u64, weighted: bool) -> Result<(), TestCaseError> {
    let clock = ManualClock::new();
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    let mut builder = Cache::builder()
        .max_capacity(capacity)
        .time_to_live(Duration::from_secs(ttl))
        .clock(Arc::new(clock.clone()))
        .shards(2)
        .eviction_listener(move |k, v, cause| sink.lock().unwrap().push((k, v, cause)));
    if weighted {
        builder = builder.weigher(|k: &u8, _: &u16| u32::from(k % 4));
    }
    let cache: Cache<u8, u16> = builder.build();
    let mut model: Model = HashMap::new();
    let now = |clock: &ManualClock| clock.now().as_secs();

    for op in ops {
        let t = now(&clock);
        let mut allowed: &[RemovalCause] = &[RemovalCause::Size, RemovalCause::Expired];
        match op {
            Op::Insert(k, v) => {
                cache.insert(k, v);
                model.insert(k, (v, t + ttl));
                allowed = &[
                    RemovalCause::Size,
                    RemovalCause::Expired,
                    RemovalCause::Replaced,
                ];
            }
            Op::InsertTtl(k, v, s) => {
                cache.insert_with_ttl(k, v, Duration::from_secs(u64::from(s)));
                model.insert(k, (v, t + u64::from(s)));
                allowed = &[
                    RemovalCause::Size,
                    RemovalCause::Expired,
                    RemovalCause::Replaced,
                ];
            }
            Op::Get(k) => {
                let live = model.get(&k).filter(|(_, d)| *d > t).map(|(v, _)| *v);
                let got = cache.get(&k);
                if got.is_some() {
                    prop_assert_eq!(got, live, "get({}) at {}s", k, t);
                }
            }
            Op::Remove(k) => {
                let got = cache.remove(&k);
                let had = model.remove(&k).map(|(v, _)| v);
                prop_assert_eq!(got, had, "remove({})", k);
                allowed = &[RemovalCause::Explicit];
            }
            Op::Advance(s) => clock.advance(Duration::from_secs(u64::from(s))),
            Op::InvalidateIf(m) => {
                cache.invalidate_if(|k, _| k % m == 0);
                model.retain(|k, _| k % m != 0);
                allowed = &[RemovalCause::Explicit];
            }
            Op::InvalidateAll => {
                cache.invalidate_all();
                model.clear();
                allowed = &[RemovalCause::Explicit];
            }
            Op::Maintain => cache.run_pending_tasks(),
        }
        for (k, v, cause) in log.lock().unwrap().drain(..) {
            prop_assert!(allowed.contains(&cause), "{:?} after {:?}", cause, allowed);
            match cause {
                RemovalCause::Size => {
                    prop_assert_eq!(
                        model.remove(&k).map(|(v, _)| v),
                        Some(v),
                        "size-evicted {}",
                        k
                    );
                }
                RemovalCause::Expired => {
                    let (mv, deadline) = model.remove(&k).expect("expired a key the model lacks");
                    prop_assert_eq!(mv, v);
                    prop_assert!(
                        deadline <= t,
                        "{} expired at {}s, deadline {}s",
                        k,
                        t,
                        deadline
                    );
                }
                RemovalCause::Replaced | RemovalCause::Explicit => {}
                other => prop_assert!(false, "unexpected cause {:?}", other),
            }
        }
        // Exactly the model's live entries are readable (expired ones are not).
        let t = now(&clock);
        for k in 0..40u8 {
            let live = model.get(&k).filter(|(_, d)| *d > t).map(|(v, _)| *v);
            prop_assert_eq!(
                cache.contains_key(&k),
                live.is_some(),
                "contains({}) at {}s",
                k,
                t
            );
        }
        prop_assert!(cache.weighted_size() <= capacity, "over capacity");
        let held = model.len() as u64;
        prop_assert_eq!(cache.entry_count(), held, "entry count");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cache_matches_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops, 8, 30, false)?;
    }

    #[test]
    fn weighted_cache_matches_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops, 12, 30, true)?;
    }
}

#[test]
fn stats_count_hits_misses_and_causes() {
    let cache: Cache<u32, u32> = Cache::builder().max_capacity(4).shards(1).build();
    for i in 0..10 {
        cache.insert(i, i);
    }
    assert_eq!(cache.stats().evicted_size, 6);
    assert_eq!(cache.entry_count(), 4);
    let present = (0..10).find(|k| cache.contains_key(k)).unwrap();
    cache.insert(present, 100);
    assert_eq!(cache.get(&present), Some(100));
    assert_eq!(cache.remove(&present), Some(100));
    let _ = cache.get(&1000);
    let stats = cache.stats();
    assert_eq!(
        (
            stats.replaced,
            stats.removed_explicit,
            stats.hits,
            stats.misses
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(cache.entry_count(), 3);
}
