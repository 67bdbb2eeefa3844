//! Evaluation allocates nothing on the common paths (with or without an
//! impression listener), and the store is `Send + Sync`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scalekit_flags::{Context, Flags};
use scalekit_test_support::alloc::{allocations_during, assert_installed, Counting};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[global_allocator]
static GLOBAL: Counting = Counting;

const STATE: &str = r#"{"version":2,"features":[
  {"name":"plain","enabled":true,"strategies":[]},
  {"name":"rollout","enabled":true,"strategies":[{"name":"flexibleRollout","parameters":{"rollout":"50","stickiness":"default","groupId":"g"}}]},
  {"name":"random","enabled":true,"strategies":[{"name":"gradualRolloutRandom","parameters":{"percentage":"50"}}]},
  {"name":"constraints","enabled":true,"strategies":[{"name":"default","segments":[1],"constraints":[
     {"contextName":"country","operator":"IN","values":["NO","SE"]},
     {"contextName":"plan","operator":"STR_STARTS_WITH","values":["PRO"],"caseInsensitive":true},
     {"contextName":"age","operator":"NUM_GTE","value":"18"},
     {"contextName":"version","operator":"SEMVER_GTE","value":"2.0.0-beta.1"},
     {"contextName":"currentTime","operator":"DATE_AFTER","value":"2020-01-01T00:00:00Z"},
     {"contextName":"remoteAddress","operator":"IN_CIDR","values":["10.0.0.0/8"]},
     {"contextName":"email","operator":"REGEX","value":"^[a-z]+@example\\.com$"}]}]},
  {"name":"variants","enabled":true,"strategies":[{"name":"default"}],"variants":[
     {"name":"a","weight":1,"payload":{"type":"string","value":"A"},"overrides":[{"contextName":"userId","values":["vip"]}]},
     {"name":"b","weight":1}]},
  {"name":"child","enabled":true,"strategies":[],"dependencies":[{"feature":"variants","variants":["a","b"]}]},
  {"name":"users","enabled":true,"strategies":[{"name":"userWithId","parameters":{"userIds":"1,2,3"}},{"name":"remoteAddress","parameters":{"IPs":"10.0.0.0/8"}}]}
],"segments":[{"id":1,"constraints":[{"contextName":"environment","operator":"NOT_IN","values":["test"]}]}]}"#;

fn context() -> Context {
    Context::new()
        .user_id("42")
        .remote_address("10.1.2.3")
        .current_time("2024-06-01T12:00:00Z")
        .property("country", "NO")
        .property("plan", "Pro-Plus")
        .property("age", "30")
        .property("version", "2.1.0")
        .property("email", "ada@example.com")
}

const NAMES: [&str; 8] = [
    "plain",
    "rollout",
    "random",
    "constraints",
    "variants",
    "child",
    "users",
    "missing",
];

/// Evaluates every toggle of `STATE` 100 times in each of the three ways and
/// returns the allocations made.
fn allocations_of_evaluations(flags: &Flags, ctx: &Context) -> u64 {
    // Warm the thread's snapshot cache and lazily initialised statics.
    for n in NAMES {
        flags.is_enabled(n, ctx);
        flags.variant(n, ctx);
    }
    allocations_during(|| {
        for _ in 0..100 {
            for name in NAMES {
                std::hint::black_box(flags.is_enabled(name, ctx));
                std::hint::black_box(flags.variant(name, ctx));
                std::hint::black_box(flags.evaluate(name, ctx));
            }
        }
    })
}

#[test]
fn evaluation_does_not_allocate() {
    assert_installed();
    let flags = Flags::new();
    flags.load_json(STATE, "test").unwrap();
    let ctx = context();
    assert!(flags.is_enabled("constraints", &ctx));
    let n = allocations_of_evaluations(&flags, &ctx);
    assert_eq!(n, 0, "evaluation allocated {n} times");
}

#[test]
fn impressions_do_not_allocate_either() {
    assert_installed();
    let seen = Arc::new(AtomicU64::new(0));
    let count = seen.clone();
    let flags = Flags::builder()
        .on_impression(move |e| {
            count.fetch_add(u64::from(e.enabled) + 1, Ordering::Relaxed);
        })
        .build();
    // Every toggle asks for impressions.
    let state = STATE.replace(
        "\"enabled\":true",
        "\"enabled\":true,\"impressionData\":true",
    );
    flags.load_json(&state, "test").unwrap();
    let ctx = context();
    let n = allocations_of_evaluations(&flags, &ctx);
    assert_eq!(
        n, 0,
        "evaluation with an impression listener allocated {n} times"
    );
    assert!(seen.load(Ordering::Relaxed) > 0, "the listener was called");
}

#[test]
fn the_store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Flags>();
    assert_send_sync::<scalekit_flags::FlagsSnapshot>();
}
