//! Stickiness and bucketing: which context value keeps a user in their bucket, the
//! rollout test, and the random fallback when there is none.

use crate::context::{Context, Field};
use crate::hash::Prefix;

#[derive(Clone)]
pub(super) enum Stickiness {
    Default,
    Random,
    Field(Field),
}

pub(super) fn stickiness(s: Option<&str>) -> Stickiness {
    match s.map(str::trim) {
        None | Some("") | Some("default") => Stickiness::Default,
        Some("random") => Stickiness::Random,
        Some(f) => Stickiness::Field(Field::parse(f)),
    }
}

thread_local! {
    static RNG: std::cell::Cell<u64> = std::cell::Cell::new({
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(&h as *const _ as usize);
        h.finish() | 1
    });
}

/// A uniform number in `1..=n` (n >= 1) from a per-thread xorshift generator.
#[inline]
pub(super) fn random_in(n: u32) -> u32 {
    let x = RNG.with(|c| {
        let mut x = c.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.set(x);
        x
    });
    (((x >> 32) * u64::from(n)) >> 32) as u32 + 1
}

#[inline]
pub(super) fn rollout_hit(pct: f64, stick: &Stickiness, group: &Prefix, ctx: &Context) -> bool {
    if pct <= 0.0 {
        return false;
    }
    let id = match stick {
        Stickiness::Default => match ctx.builtin(0).or(ctx.builtin(1)) {
            Some(id) => id,
            None => return f64::from(random_in(100)) <= pct,
        },
        Stickiness::Random => return f64::from(random_in(100)) <= pct,
        Stickiness::Field(f) => match ctx.field(f) {
            Some(id) => id,
            None => return false,
        },
    };
    f64::from(group.normalized(id, 100)) <= pct
}
