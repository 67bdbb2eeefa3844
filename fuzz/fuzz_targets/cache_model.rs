//! Model-based fuzzing of scalekit-cache.
//!
//! The input is a capacity, an optional weigher, and a sequence of operations
//! (insert, insert with a deadline, get, remove, advance the manual clock,
//! invalidate by predicate, invalidate all, run pending tasks). A `BTreeMap`
//! model is kept in step through the eviction listener; after every operation:
//!
//! * every key readable in the cache has the model's value, and a key the
//!   model holds live is readable unless it is past its deadline;
//! * `entry_count` equals the model's size and the weighted size never
//!   exceeds the capacity;
//! * each removal the listener reports has a cause the operation allows, an
//!   expired entry was really past its deadline, and an entry evicted for
//!   size left while the total weight was over the capacity (the capacity is
//!   the whole cache's, on any number of shards).

#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use scalekit_cache::{Cache, RemovalCause};
use scalekit_core::ManualClock;

#[derive(Debug, Arbitrary)]
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

#[derive(Debug, Arbitrary)]
struct Input {
    capacity: u8,
    shards: u8,
    weighted: bool,
    ops: Vec<Op>,
}

const KEYS: u8 = 64;

fuzz_target!(|input: Input| {
    let capacity = u64::from(input.capacity % 32) + 1;
    let clock = ManualClock::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    let mut builder = Cache::builder()
        .max_capacity(capacity)
        .shards(usize::from(input.shards % 4) + 1)
        .clock(clock.clone())
        .eviction_listener(move |k: u8, v: u16, cause| sink.lock().unwrap().push((k, v, cause)));
    let weight = move |k: u8| if input.weighted { u64::from(k % 5) } else { 1 };
    if input.weighted {
        builder = builder.weigher(|k: &u8, _: &u16| u32::from(k % 5));
    }
    let cache: Cache<u8, u16, _, ManualClock> = builder.build().expect("valid settings");
    // key -> (value, deadline in seconds or u64::MAX)
    let mut model: BTreeMap<u8, (u16, u64)> = BTreeMap::new();

    for op in input.ops.into_iter().take(300) {
        let now = clock.now().as_secs();
        let mut allowed = vec![RemovalCause::Size, RemovalCause::Expired];
        match op {
            Op::Insert(k, v) => {
                let k = k % KEYS;
                cache.insert(k, v);
                model.insert(k, (v, u64::MAX));
                allowed.push(RemovalCause::Replaced);
            }
            Op::InsertTtl(k, v, s) => {
                let k = k % KEYS;
                let s = u64::from(s % 30) + 1;
                cache.insert_with_ttl(k, v, Duration::from_secs(s));
                model.insert(k, (v, now + s));
                allowed.push(RemovalCause::Replaced);
            }
            Op::Get(k) => {
                let k = k % KEYS;
                if let Some(v) = cache.get(&k) {
                    let live = model.get(&k).filter(|(_, d)| *d > now).map(|(v, _)| *v);
                    assert_eq!(Some(v), live, "get({k})");
                }
            }
            Op::Remove(k) => {
                let k = k % KEYS;
                assert_eq!(cache.remove(&k), model.remove(&k).map(|(v, _)| v), "remove({k})");
                allowed = vec![RemovalCause::Explicit];
            }
            Op::Advance(s) => clock.advance(Duration::from_secs(u64::from(s % 20))),
            Op::InvalidateIf(m) => {
                let m = m % 4 + 2;
                cache.invalidate_if(|k, _| k % m == 0);
                model.retain(|k, _| k % m != 0);
                allowed = vec![RemovalCause::Explicit];
            }
            Op::InvalidateAll => {
                cache.invalidate_all();
                model.clear();
                allowed = vec![RemovalCause::Explicit];
            }
            Op::Maintain => cache.run_pending_tasks(),
        }
        let now = clock.now().as_secs();
        for (k, v, cause) in log.lock().unwrap().drain(..) {
            assert!(allowed.contains(&cause), "{cause:?} not allowed here");
            match cause {
                RemovalCause::Size => {
                    let total: u64 = model.keys().map(|&k| weight(k)).sum();
                    assert!(total > capacity, "{k} evicted at {total} of {capacity}");
                    assert_eq!(model.remove(&k).map(|(v, _)| v), Some(v), "evicted {k}");
                }
                RemovalCause::Expired => {
                    let (mv, deadline) = model.remove(&k).expect("expired a key the model lacks");
                    assert_eq!(mv, v);
                    assert!(deadline <= now, "{k} expired early");
                }
                _ => {}
            }
        }
        for (k, (v, deadline)) in &model {
            if *deadline > now {
                assert!(cache.contains_key(k), "live key {k} missing");
                assert_eq!(cache.get(k), Some(*v));
            }
        }
        assert_eq!(cache.entry_count(), model.len() as u64);
        assert!(cache.weighted_size() <= capacity);
    }
});
