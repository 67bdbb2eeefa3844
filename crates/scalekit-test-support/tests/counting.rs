//! The counting allocator counts what a closure allocates, per thread.

use scalekit_test_support::alloc::{allocations_during, assert_installed, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn counts_allocations_of_the_closure_only() {
    assert_installed();
    assert_eq!(allocations_during(|| std::hint::black_box(())), 0);
    let n = allocations_during(|| {
        let a: Vec<u64> = Vec::with_capacity(std::hint::black_box(4));
        let b = String::from(std::hint::black_box("x"));
        std::hint::black_box((a, b));
    });
    assert_eq!(n, 2);
}

#[test]
fn other_threads_do_not_count() {
    let n = allocations_during(|| {
        std::thread::scope(|s| {
            s.spawn(|| std::hint::black_box(vec![0u8; 64]));
        });
    });
    // Spawning a thread allocates on this thread (its handle), but the 64 bytes
    // the other thread allocates are not counted here.
    let spawn_only = allocations_during(|| {
        std::thread::scope(|s| {
            s.spawn(|| std::hint::black_box(()));
        });
    });
    assert_eq!(n, spawn_only);
}
