//! The cache against a `HashMap` model, with a manual clock for expiry.
//!
//! The eviction listener tells the model what the cache dropped and why; the
//! cache must then hold exactly what the model holds, never exceed its
//! capacity, and report only the causes that the operation could produce.
//!
//! The model also keeps the total weight, so it catches over-eviction: every
//! entry evicted for size must leave while the total (as the model counts
//! it, at that point of the listener's log) is over the capacity, on any
//! number of shards. That holds in one thread with no slack: the capacity is
//! the whole cache's, not a shard's share of it, and an entry is refused only
//! when heavier than the whole capacity.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use scalekit_cache::{Cache, CompResult, Op as Compute, RemovalCause};
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
    /// `entry(k).or_insert(v)`.
    OrInsert(u8, u16),
    /// `entry(k).and_compute_with`: 0 increments (or inserts 1), 1 removes, 2 leaves it.
    Compute(u8, u8),
    /// `iter()`, compared with the model's live entries.
    Iter,
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
        3 => (0..40u8, any::<u16>()).prop_map(|(k, v)| Op::OrInsert(k, v)),
        3 => (0..40u8, 0..3u8).prop_map(|(k, a)| Op::Compute(k, a)),
        1 => Just(Op::Iter),
    ]
}

type Log = Arc<Mutex<Vec<(u8, u16, RemovalCause)>>>;

/// Model entry: value and deadline (seconds on the manual clock).
type Model = HashMap<u8, (u16, u64)>;

/// The weight of a value when the cache is weighted: 0 to 7, so that with a
/// capacity of 12 on two shards (a share of 6) a weight of 7 is heavier than
/// a shard's share.
fn weight_of(weighted: bool, value: u16) -> u64 {
    if weighted {
        u64::from(value % 8)
    } else {
        1
    }
}

struct Run {
    clock: ManualClock,
    cache: Cache<u8, u16, fixed::Hasher, ManualClock>,
    log: Log,
    model: Model,
    capacity: u64,
    ttl: u64,
    weighted: bool,
}

/// A fixed-seed hasher, so that a failing case replays the same shards.
mod fixed {
    use std::hash::{BuildHasherDefault, DefaultHasher};
    pub(crate) type Hasher = BuildHasherDefault<DefaultHasher>;
}

impl Run {
    fn new(capacity: u64, ttl: u64, weighted: bool, shards: usize) -> Self {
        let clock = ManualClock::new();
        let log: Log = Arc::default();
        let sink = Arc::clone(&log);
        let mut builder = Cache::builder()
            .max_capacity(capacity)
            .time_to_live(Duration::from_secs(ttl))
            .clock(clock.clone())
            .hasher(fixed::Hasher::default())
            .shards(shards)
            .eviction_listener(move |k, v, cause| sink.lock().unwrap().push((k, v, cause)));
        if weighted {
            builder = builder.weigher(|_: &u8, v: &u16| u32::from(v % 8));
        }
        Self {
            cache: builder.build().unwrap(),
            clock,
            log,
            model: HashMap::new(),
            capacity,
            ttl,
            weighted,
        }
    }

    fn now(&self) -> u64 {
        self.clock.now().as_secs()
    }

    fn live(&self, k: u8) -> Option<u16> {
        let t = self.now();
        self.model.get(&k).filter(|(_, d)| *d > t).map(|(v, _)| *v)
    }

    /// The model's total weight, expired entries not yet removed included
    /// (the cache holds them too).
    fn weight(&self) -> u64 {
        self.model
            .values()
            .map(|(v, _)| weight_of(self.weighted, *v))
            .sum()
    }

    /// Applies `op` to the cache and the model, then checks what the cache
    /// reported and holds.
    fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        let allowed = self.apply(op)?;
        self.settle_log(allowed)?;
        self.check_state()
    }

    /// `entry(k).and_compute_with`, checked against the model: 0 increments
    /// (or inserts 1), 1 removes, 2 leaves the entry.
    fn compute(&mut self, k: u8, action: u8) -> Result<(), TestCaseError> {
        let (t, ttl) = (self.now(), self.ttl);
        let live = self.live(k);
        let mut seen = None;
        let result = self.cache.entry(k).and_compute_with(|entry| {
            seen = Some(entry.as_ref().map(|e| *e.value()));
            match (action, entry) {
                (0, Some(e)) => Compute::Put(e.value().wrapping_add(1)),
                (0, None) => Compute::Put(1),
                (1, _) => Compute::Remove,
                _ => Compute::Nop,
            }
        });
        prop_assert_eq!(seen, Some(live), "compute({}) saw the live value", k);
        match (action, live) {
            (0, Some(old)) => {
                let new = old.wrapping_add(1);
                prop_assert!(
                    matches!(&result, CompResult::ReplacedWith { old: o, new: e } if *o == old && *e.value() == new && e.is_old_value_replaced()),
                    "compute({}, {}) gave {:?}",
                    k,
                    action,
                    result
                );
                self.model.insert(k, (new, t + ttl));
            }
            (0, None) => {
                prop_assert!(
                    matches!(&result, CompResult::Inserted(e) if *e.value() == 1 && e.is_fresh()),
                    "compute({}, {}) gave {:?}",
                    k,
                    action,
                    result
                );
                self.model.insert(k, (1, t + ttl));
            }
            (1, Some(old)) => {
                prop_assert!(
                    matches!(&result, CompResult::Removed(e) if *e.value() == old),
                    "compute({}, {}) gave {:?}",
                    k,
                    action,
                    result
                );
                self.model.remove(&k);
            }
            (_, None) => prop_assert!(
                matches!(&result, CompResult::StillNone(key) if *key == k),
                "compute({}, {}) gave {:?}",
                k,
                action,
                result
            ),
            (_, Some(old)) => {
                prop_assert!(
                    matches!(&result, CompResult::Unchanged(e) if *e.value() == old),
                    "compute({}, {}) gave {:?}",
                    k,
                    action,
                    result
                )
            }
        }
        Ok(())
    }

    /// Applies `op`; returns the removal causes it may produce.
    fn apply(&mut self, op: Op) -> Result<&'static [RemovalCause], TestCaseError> {
        const WRITE: &[RemovalCause] = &[
            RemovalCause::Size,
            RemovalCause::Expired,
            RemovalCause::Replaced,
        ];
        let t = self.now();
        let ttl = self.ttl;
        let mut allowed: &[RemovalCause] = &[RemovalCause::Size, RemovalCause::Expired];
        match op {
            Op::Insert(k, v) => {
                self.cache.insert(k, v);
                self.model.insert(k, (v, t + ttl));
                allowed = WRITE;
            }
            Op::InsertTtl(k, v, s) => {
                self.cache
                    .insert_with_ttl(k, v, Duration::from_secs(u64::from(s)));
                self.model.insert(k, (v, t + u64::from(s)));
                allowed = WRITE;
            }
            Op::Get(k) => {
                let live = self.live(k);
                let got = self.cache.get(&k);
                if got.is_some() {
                    prop_assert_eq!(got, live, "get({}) at {}s", k, t);
                }
            }
            Op::Remove(k) => {
                let got = self.cache.remove(&k);
                let had = self.model.remove(&k).map(|(v, _)| v);
                prop_assert_eq!(got, had, "remove({})", k);
                allowed = &[RemovalCause::Explicit];
            }
            Op::Advance(s) => self.clock.advance(Duration::from_secs(u64::from(s))),
            Op::InvalidateIf(m) => {
                self.cache.invalidate_if(|k, _| k % m == 0);
                self.model.retain(|k, _| k % m != 0);
                allowed = &[RemovalCause::Explicit];
            }
            Op::InvalidateAll => {
                self.cache.invalidate_all();
                self.model.clear();
                allowed = &[RemovalCause::Explicit];
            }
            Op::Maintain => self.cache.run_pending_tasks(),
            Op::OrInsert(k, v) => {
                let live = self.live(k);
                let entry = self.cache.entry(k).or_insert(v);
                match live {
                    Some(present) => {
                        prop_assert!(!entry.is_fresh(), "or_insert({}) found it", k);
                        prop_assert_eq!(*entry.value(), present);
                    }
                    None => {
                        prop_assert!(entry.is_fresh(), "or_insert({}) inserted it", k);
                        prop_assert_eq!(*entry.value(), v);
                        self.model.insert(k, (v, t + ttl));
                    }
                }
                allowed = WRITE;
            }
            Op::Compute(k, action) => {
                self.compute(k, action)?;
                allowed = &[
                    RemovalCause::Size,
                    RemovalCause::Expired,
                    RemovalCause::Replaced,
                    RemovalCause::Explicit,
                ];
            }
            Op::Iter => {
                let mut got: Vec<(u8, u16)> = self.cache.iter().collect();
                got.sort_unstable();
                let mut expected: Vec<(u8, u16)> = (0..40u8)
                    .filter_map(|k| self.live(k).map(|v| (k, v)))
                    .collect();
                expected.sort_unstable();
                prop_assert_eq!(got, expected, "iter at {}s", t);
            }
        }
        Ok(allowed)
    }

    /// Checks each removal the listener heard against `allowed` and the
    /// model, and takes it out of the model.
    fn settle_log(&mut self, allowed: &[RemovalCause]) -> Result<(), TestCaseError> {
        let log: Vec<_> = self.log.lock().unwrap().drain(..).collect();
        for (k, v, cause) in log {
            prop_assert!(allowed.contains(&cause), "{:?} after {:?}", cause, allowed);
            match cause {
                RemovalCause::Size => {
                    // Evicted (or refused) for size: only while the cache is
                    // over its capacity, counting what it holds at this point.
                    let total = self.weight();
                    prop_assert!(
                        total > self.capacity,
                        "{} evicted while the cache held {} of {}",
                        k,
                        total,
                        self.capacity
                    );
                    prop_assert_eq!(
                        self.model.remove(&k).map(|(v, _)| v),
                        Some(v),
                        "size-evicted {}",
                        k
                    );
                }
                RemovalCause::Expired => {
                    let (mv, deadline) = self
                        .model
                        .remove(&k)
                        .expect("expired a key the model lacks");
                    prop_assert_eq!(mv, v);
                    let t = self.now();
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
        Ok(())
    }

    /// The cache holds what the model holds, within the capacity.
    fn check_state(&self) -> Result<(), TestCaseError> {
        // Exactly the model's live entries are readable (expired ones are not).
        let t = self.now();
        for k in 0..40u8 {
            prop_assert_eq!(
                self.cache.contains_key(&k),
                self.live(k).is_some(),
                "contains({}) at {}s",
                k,
                t
            );
        }
        prop_assert!(self.cache.weighted_size() <= self.capacity, "over capacity");
        prop_assert_eq!(self.cache.weighted_size(), self.weight(), "weight");
        prop_assert_eq!(
            self.cache.entry_count(),
            self.model.len() as u64,
            "entry count"
        );
        Ok(())
    }
}

fn run(
    ops: Vec<Op>,
    capacity: u64,
    ttl: u64,
    weighted: bool,
    shards: usize,
) -> Result<(), TestCaseError> {
    let mut run = Run::new(capacity, ttl, weighted, shards);
    for op in ops {
        run.step(op)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cache_matches_the_model(ops in proptest::collection::vec(op(), 1..120), shards in 1..=4usize) {
        run(ops, 8, 30, false, shards)?;
    }

    #[test]
    fn weighted_cache_matches_the_model(ops in proptest::collection::vec(op(), 1..120), shards in 1..=4usize) {
        run(ops, 12, 30, true, shards)?;
    }
}

/// What shard-local capacities get wrong: 64 keys in a cache of 64 on eight
/// shards (a share of 8 each) never spread exactly 8 to a shard, yet all of
/// them fit.
#[test]
fn a_full_shard_does_not_evict_while_the_cache_has_room() {
    let mut run = Run::new(64, 30, false, 8);
    for k in 0..64u8 {
        run.step(Op::Insert(k, 1)).unwrap();
    }
    assert_eq!(run.cache.entry_count(), 64, "64 entries fit in 64");
    assert_eq!(run.cache.stats().evicted_size, 0);
    run.step(Op::Insert(64, 1)).unwrap();
    assert_eq!(run.cache.entry_count(), 64, "the 65th makes one leave");
}

#[test]
fn stats_count_hits_misses_and_causes() {
    let cache: Cache<u32, u32> = Cache::builder().max_capacity(4).shards(1).build().unwrap();
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
