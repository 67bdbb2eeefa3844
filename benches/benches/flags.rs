//! Feature toggles: one evaluation of `scalekit-flags` against `unleash-yggdrasil`
//! (Unleash's own Rust engine, from crates.io) on the same state and contexts.
//!
//! Group `flags/eval`, one benchmark per scenario (`flags/eval/<scenario>`), ids
//! `scalekit` and `unleash-yggdrasil`:
//! * `no_strategy`: an enabled toggle with no strategies (`is_enabled`).
//! * `one_constraint`: `default` strategy with one `IN` constraint (`is_enabled`).
//! * `rollout_50`: `flexibleRollout` at 50 % with default stickiness (`is_enabled`).
//! * `four_variants`: four equal variants on a `default` strategy (`get_variant`).
//! * `dependent`: a child toggle whose parent is a 50 % rollout (`is_enabled`).
//! * `rollout_5_constraints`: `flexibleRollout` at 50 % with five constraints
//!   (IN, STR_STARTS_WITH, NUM_GT, SEMVER_GTE, NOT_IN) (`is_enabled`).
//!
//! The state has 200 other toggles beside the six measured, so lookups are by name in
//! a realistic map. Each iteration takes the next of 256 pre-built contexts (user id,
//! session id, country, plan, version, age), the same for both engines. Ours counts
//! metrics on every evaluation (its default); yggdrasil's `is_enabled` and
//! `get_variant` do not count (its SDKs call `count_toggle` separately), so ours does
//! strictly more work.
//!
//! Run: `cargo bench -p scalekit-benches --bench flags`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

#[path = "common/flags_fixture.rs"]
mod fixture;
use fixture::{engines, Engines, CONTEXTS, SCENARIOS};

fn eval(c: &mut Criterion) {
    let Engines {
        flags,
        engine,
        warnings,
        ours: ours_ctx,
        theirs: theirs_ctx,
    } = engines();
    assert!(warnings.is_none(), "yggdrasil warnings: {warnings:?}");

    // Same answers before timing anything (the random fallback is never reached: every
    // context has a user id).
    for (o, t) in ours_ctx.iter().zip(&theirs_ctx) {
        for name in [
            "no_strategy",
            "one_constraint",
            "rollout_50",
            "dependent",
            "rollout_5_constraints",
        ] {
            assert_eq!(
                flags.is_enabled(name, o),
                engine.is_enabled(name, t, &None),
                "{name}"
            );
        }
        assert_eq!(
            &*flags.variant("four_variants", o).name,
            engine.get_variant("four_variants", t, &None).name
        );
    }

    let mut group = c.benchmark_group("flags/eval");
    for name in SCENARIOS {
        let variant = name == "four_variants";
        let mut i = 0usize;
        group.bench_function(format!("{name}/scalekit"), |b| {
            b.iter(|| {
                i = (i + 1) % CONTEXTS;
                if variant {
                    black_box(flags.variant(black_box(name), &ours_ctx[i]).enabled)
                } else {
                    black_box(flags.is_enabled(black_box(name), &ours_ctx[i]))
                }
            })
        });
        let mut i = 0usize;
        group.bench_function(format!("{name}/unleash-yggdrasil"), |b| {
            b.iter(|| {
                i = (i + 1) % CONTEXTS;
                if variant {
                    black_box(
                        engine
                            .get_variant(black_box(name), &theirs_ctx[i], &None)
                            .enabled,
                    )
                } else {
                    black_box(engine.is_enabled(black_box(name), &theirs_ctx[i], &None))
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, eval);
criterion_main!(benches);
