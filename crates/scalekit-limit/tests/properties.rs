//! The admission bound and the no-false-rejection rule, for the local limiters:
//! for any sequence of request times, at most `rate * T + burst` requests are
//! admitted in any window of length T, and a request is never rejected while
//! the bucket has room (a token-bucket model written from the definition).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::num::NonZeroU32;
use std::time::Duration;

use proptest::prelude::*;
use scalekit_core::ManualClock;
use scalekit_limit::{DenyKind, KeyedRateLimiter, KeyedSlidingWindow, Quota, RateLimiter};

/// A token bucket in exact integer arithmetic: credit in nanoseconds of
/// interval, capped at `burst * interval`.
#[derive(Clone, Copy)]
struct Bucket {
    interval: u64,
    cap: u64,
    credit: u64,
    last: u64,
}

impl Bucket {
    fn new(q: Quota) -> Self {
        let interval = q.interval().as_nanos() as u64;
        let cap = interval * u64::from(q.burst());
        Self {
            interval,
            cap,
            credit: cap,
            last: 0,
        }
    }
    fn take(&mut self, now: u64, n: u32) -> bool {
        self.credit = (self.credit + (now - self.last)).min(self.cap);
        self.last = now;
        let need = self.interval * u64::from(n);
        if self.credit >= need {
            self.credit -= need;
            true
        } else {
            false
        }
    }
}

fn quota() -> impl Strategy<Value = Quota> {
    (1u32..50, 1u32..20, prop_oneof![Just(1u64), Just(60)]).prop_map(|(rate, burst, secs)| {
        let q = if secs == 1 {
            Quota::per_second(NonZeroU32::new(rate).unwrap())
        } else {
            Quota::per_minute(NonZeroU32::new(rate).unwrap())
        };
        q.allow_burst(NonZeroU32::new(burst).unwrap())
    })
}

/// Gaps between requests (ns) and their costs.
fn requests() -> impl Strategy<Value = Vec<(u64, u32)>> {
    prop::collection::vec(
        (
            prop_oneof![
                Just(0u64),
                0u64..1_000_000,
                0u64..200_000_000,
                0u64..5_000_000_000
            ],
            prop_oneof![4 => Just(1u32), 1 => 1u32..5],
        ),
        1..300,
    )
}

fn check_bound(q: Quota, admitted: &[(u64, u32)]) -> Result<(), TestCaseError> {
    // Every window [start, start + T] that begins at an admission: units admitted
    // in it are at most T / interval + burst.
    let interval = q.interval().as_nanos() as u64;
    for (i, &(start, _)) in admitted.iter().enumerate() {
        for span in [0u64, interval / 2, interval, 10 * interval, 1_000_000_000] {
            let units: u64 = admitted[i..]
                .iter()
                .take_while(|(t, _)| *t <= start + span)
                .map(|(_, n)| u64::from(*n))
                .sum();
            let bound = span / interval + u64::from(q.burst());
            prop_assert!(
                units <= bound,
                "{units} units in {span} ns from {start}, bound {bound}"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn direct_gcra_is_a_token_bucket_and_keeps_the_bound(q in quota(), reqs in requests()) {
        let clock = ManualClock::new();
        let limiter = RateLimiter::with_clock(q, clock.clone());
        let mut model = Bucket::new(q);
        let mut now = 0;
        let mut admitted = vec![];
        for (gap, n) in reqs {
            clock.advance(Duration::from_nanos(gap));
            now += gap;
            let got = limiter.check_n(n);
            let want = model.take(now, n);
            prop_assert_eq!(got.is_ok(), want, "at {} for {}: {:?}", now, n, got);
            match got {
                Ok(state) => {
                    admitted.push((now, n));
                    // The headers agree with the model: what is left, whole units.
                    prop_assert_eq!(u64::from(state.remaining()), model.credit / model.interval);
                }
                Err(d) if n <= q.burst() => {
                    prop_assert_eq!(d.kind(), DenyKind::RateLimited);
                    // Retrying exactly after retry_after succeeds (on a copy).
                    let wait = d.retry_after().unwrap().as_nanos() as u64;
                    let mut copy = model;
                    prop_assert!(copy.take(now + wait, n));
                    let mut early = model;
                    prop_assert!(wait == 0 || !early.take(now + wait - 1, n));
                }
                Err(d) => prop_assert_eq!(d.kind(), DenyKind::ExceedsBurst),
            }
        }
        check_bound(q, &admitted)?;
    }

    #[test]
    fn keyed_gcra_keeps_the_bound_per_key(q in quota(), reqs in prop::collection::vec((0u64..300_000_000, 0u8..4), 1..300)) {
        let clock = ManualClock::new();
        // A cap of 2 keys for 4: idle keys hand their slots over, and handing over
        // changes no decision (an idle key's bucket is full, like a new key's).
        let limiter = KeyedRateLimiter::<u8, _>::builder(q).max_keys(2).shards(1).clock(clock.clone()).build().unwrap();
        let mut models: Vec<Bucket> = (0..4).map(|_| Bucket::new(q)).collect();
        let mut admitted: Vec<Vec<(u64, u32)>> = vec![vec![]; 4];
        let mut now = 0;
        for (gap, key) in reqs {
            clock.advance(Duration::from_nanos(gap));
            now += gap;
            let got = limiter.check_key(&key);
            if matches!(got, Err(d) if d.kind() == DenyKind::KeysFull) {
                continue; // no slot now: the model is not asked either
            }
            let got = got.is_ok();
            prop_assert_eq!(got, models[key as usize].take(now, 1));
            if got { admitted[key as usize].push((now, 1)); }
        }
        for a in &admitted { check_bound(q, a)?; }
    }

    #[test]
    fn keyed_sliding_window_follows_its_rule_and_keeps_its_bound(
        limit in 1u32..20,
        window_ms in prop_oneof![Just(1_000u64), 1u64..5_000],
        reqs in prop::collection::vec((prop_oneof![0u64..300_000_000, 0u64..3_000_000_000], 0u8..4, prop_oneof![4 => Just(1u32), 1 => 1u32..25]), 1..300),
    ) {
        let clock = ManualClock::new();
        let w = window_ms * 1_000_000;
        // A cap of 2 keys for 4: idle keys (nothing counted in their window or
        // the one before) hand their slots over without changing a decision.
        let limiter = KeyedSlidingWindow::<u8, _>::builder(limit, Duration::from_millis(window_ms))
            .max_keys(2).shards(1).clock(clock.clone()).build().unwrap();
        let mut admitted: Vec<Vec<(u64, u64)>> = vec![vec![]; 4];
        let mut now = 0u64;
        let limit = u64::from(limit);
        for (gap, key, n) in reqs {
            clock.advance(Duration::from_nanos(gap));
            now += gap;
            let got = limiter.check_key_n(&key, n);
            if matches!(got, Err(d) if d.kind() == DenyKind::KeysFull) {
                continue;
            }
            let log = &mut admitted[key as usize];
            // The rule, from the admissions themselves.
            let (idx, e) = (now / w, now % w);
            let sum = |from: u64, to: u64| -> u64 {
                log.iter().filter(|(t, _)| *t >= from && *t < to).map(|(_, n)| *n).sum()
            };
            let previous = if idx == 0 { 0 } else { sum((idx - 1) * w, idx * w) };
            let current = sum(idx * w, now + 1);
            let n = u64::from(n);
            let estimate = (u128::from(previous) * u128::from(w - e)).div_ceil(u128::from(w)) as u64;
            let want = n <= limit && estimate + current + n <= limit;
            prop_assert_eq!(got.is_ok(), want, "at {} key {} n {}: prev {} cur {}: {:?}", now, key, n, previous, current, got);
            match got {
                Ok(state) => {
                    prop_assert_eq!(u64::from(state.remaining()), limit - estimate - current - n);
                    log.push((now, n));
                    // No fixed window admits more than the limit...
                    prop_assert!(current + n <= limit);
                    // ...and the span of one window ending now at most
                    // limit + previous * elapsed / window.
                    let span: u64 = log.iter().filter(|(t, _)| *t + w > now).map(|(_, n)| *n).sum();
                    prop_assert!(u128::from(span) * u128::from(w) <= u128::from(limit) * u128::from(w) + u128::from(previous) * u128::from(e),
                        "{} in the window to {}, limit {}, previous {}", span, now, limit, previous);
                }
                Err(d) if n > limit => prop_assert_eq!(d.kind(), DenyKind::ExceedsBurst),
                Err(d) => {
                    prop_assert_eq!(d.kind(), DenyKind::RateLimited);
                    // Waiting retry_after is enough (nothing else admitted for
                    // this key meanwhile), on a fresh limiter fed the same log.
                    let wait = d.retry_after().unwrap().as_nanos() as u64;
                    let later = now + wait;
                    let (idx2, e2) = (later / w, later % w);
                    let sum2 = |from: u64, to: u64| -> u64 {
                        log.iter().filter(|(t, _)| *t >= from && *t < to).map(|(_, n)| *n).sum()
                    };
                    let p2 = if idx2 == 0 { 0 } else { sum2((idx2 - 1) * w, idx2 * w) };
                    let c2 = sum2(idx2 * w, later + 1);
                    let est2 = (u128::from(p2) * u128::from(w - e2)).div_ceil(u128::from(w)) as u64;
                    prop_assert!(est2 + c2 + n <= limit, "retry after {} ns is not enough", wait);
                }
            }
        }
    }
}
