//! A per-thread xorshift generator, for XFetch's random draw.

/// A uniform draw's natural log, in (-inf, 0]: for XFetch's `ln(rand())`.
pub(crate) fn ln_uniform() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0) };
    }
    let bits = STATE
        .try_with(|state| {
            let mut x = state.get();
            if x == 0 {
                // A distinct seed per thread.
                static SEEDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
                let n = SEEDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                x = scalekit_core::mix64(n) | 1;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            state.set(x);
            x
        })
        .unwrap_or(0x5555_5555_5555_5555);
    // 53 random bits in (0, 1].
    let unit = ((bits >> 11) + 1) as f64 / (1u64 << 53) as f64;
    unit.ln()
}
