//! A per-thread wyrand generator: two random picks per selection without a
//! shared counter (a shared one would put every thread on one cache line).

use scalekit_core::{mix64, Clock, MonotonicClock};
use std::cell::Cell;

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let here = 0u8;
    let addr = std::ptr::addr_of!(here) as usize as u64;
    mix64(addr ^ MonotonicClock.now_nanos().rotate_left(32))
}

#[inline]
pub(crate) fn next_u64() -> u64 {
    STATE.with(|c| {
        let s = c.get().wrapping_add(0xa076_1d64_78bd_642f);
        c.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

/// A uniform index below `n` (`n > 0`).
#[inline]
pub(crate) fn below(n: usize) -> usize {
    ((u128::from(next_u64()) * n as u128) >> 64) as usize
}

/// A uniform number below `n` (`n > 0`).
#[inline]
pub(crate) fn below_u64(n: u64) -> u64 {
    ((u128::from(next_u64()) * u128::from(n)) >> 64) as u64
}
