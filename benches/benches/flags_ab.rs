//! Interleaved A/B check of the `flags/eval` ratios (a supplement to the criterion
//! bench `flags`, for shared, noisy machines).
//!
//! Criterion measures one function after the other, so on a machine shared with
//! other work the load can change between ours and theirs and move the ratio by
//! ±30%. This runs the same state, contexts and calls as `benches/flags.rs`, but
//! alternates: 15 rounds of 200,000 evaluations of ours, then of
//! `unleash-yggdrasil`, and prints the median and range of the per-round ratios.
//!
//! Run: `cargo bench -p scalekit-benches --bench flags_ab`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

#[path = "common/flags_fixture.rs"]
mod fixture;
use fixture::{engines, Engines, SCENARIOS};

/// Runs the interleaved rounds and prints one line per scenario.
fn main() {
    let Engines {
        flags,
        engine,
        ours: oc,
        theirs: tc,
        ..
    } = engines();
    for name in SCENARIOS {
        let variant = name == "four_variants";
        let mut ratios = Vec::new();
        for _ in 0..15 {
            let n = 200_000;
            let t = std::time::Instant::now();
            for k in 0..n {
                if variant {
                    black_box(flags.variant(black_box(name), &oc[k & 255]).enabled);
                } else {
                    black_box(flags.is_enabled(black_box(name), &oc[k & 255]));
                }
            }
            let a = t.elapsed().as_nanos() as f64 / n as f64;
            let t = std::time::Instant::now();
            for k in 0..n {
                if variant {
                    black_box(
                        engine
                            .get_variant(black_box(name), &tc[k & 255], &None)
                            .enabled,
                    );
                } else {
                    black_box(engine.is_enabled(black_box(name), &tc[k & 255], &None));
                }
            }
            let b = t.elapsed().as_nanos() as f64 / n as f64;
            ratios.push((a / b, a, b));
        }
        ratios.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap());
        let m = ratios[ratios.len() / 2];
        println!(
            "{name}: median ratio {:.2} (ours {:.1} ns, theirs {:.1} ns), range {:.2}-{:.2}",
            m.0,
            m.1,
            m.2,
            ratios[0].0,
            ratios[ratios.len() - 1].0
        );
    }
}
