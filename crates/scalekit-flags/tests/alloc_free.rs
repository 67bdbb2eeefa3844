//! Evaluation allocates nothing on the common paths, and the store is `Send + Sync`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A counting global allocator is the one way to observe allocations; it lives in
// this test binary only and forwards every call to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use scalekit_flags::{Context, Flags};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

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

#[test]
fn evaluation_does_not_allocate() {
    let flags = Flags::new();
    flags.load_json(STATE, "test").unwrap();
    let ctx = Context::new()
        .user_id("42")
        .remote_address("10.1.2.3")
        .current_time("2024-06-01T12:00:00Z")
        .property("country", "NO")
        .property("plan", "Pro-Plus")
        .property("age", "30")
        .property("version", "2.1.0")
        .property("email", "ada@example.com");
    let names = [
        "plain",
        "rollout",
        "random",
        "constraints",
        "variants",
        "child",
        "users",
        "missing",
    ];
    assert!(flags.is_enabled("constraints", &ctx));
    // Warm the thread's snapshot cache and lazily initialised statics.
    for n in names {
        flags.is_enabled(n, &ctx);
        flags.variant(n, &ctx);
    }
    let n = allocations_during(|| {
        for _ in 0..100 {
            for name in names {
                std::hint::black_box(flags.is_enabled(name, &ctx));
                std::hint::black_box(flags.variant(name, &ctx));
                std::hint::black_box(flags.evaluate(name, &ctx));
            }
        }
    });
    assert_eq!(n, 0, "evaluation allocated {n} times");
}

#[test]
fn the_store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Flags>();
    assert_send_sync::<scalekit_flags::FlagsSnapshot>();
}
