//! A global allocator that counts the allocations each thread makes.
//!
//! Install it in a test binary and measure a closure:
//!
//! ```ignore
//! use scalekit_test_support::alloc::{allocations_during, Counting};
//!
//! #[global_allocator]
//! static GLOBAL: Counting = Counting;
//!
//! #[test]
//! fn lookups_do_not_allocate() {
//!     let n = allocations_during(|| { /* the hot path */ });
//!     assert_eq!(n, 0);
//! }
//! ```
//!
//! Counts are per thread, so tests running in parallel do not disturb each other.
//! Without the allocator installed, [`allocations_during`] always returns 0: a test
//! that forgets it cannot fail, so [`assert_installed`] checks it first.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Forwards to the system allocator and counts every allocation and reallocation
/// made by the current thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counting;

// SAFETY: forwards every call to the system allocator unchanged; it only counts
// calls in a thread-local `Cell` that itself never allocates (const-initialised).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn count() {
    // `try_with`: the thread-local may be gone while a thread is being torn down.
    let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
}

/// Allocations made so far by the current thread.
pub fn allocations() -> u64 {
    ALLOCATIONS.try_with(Cell::get).unwrap_or(0)
}

/// How many allocations the current thread made while running `f`.
pub fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = allocations();
    f();
    allocations() - before
}

/// Panics unless [`Counting`] is this binary's global allocator: call it at the
/// top of an allocation test so that a missing `#[global_allocator]` fails the
/// test instead of making every count zero.
pub fn assert_installed() {
    let n = allocations_during(|| {
        let v: Vec<u8> = Vec::with_capacity(std::hint::black_box(16));
        std::hint::black_box(v);
    });
    assert!(
        n > 0,
        "scalekit_test_support::alloc::Counting is not the global allocator of this test binary"
    );
}
