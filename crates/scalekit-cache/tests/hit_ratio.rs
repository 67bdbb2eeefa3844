//! Hit ratios on the small real traces, pinned: a change to the policy that
//! moves any of them by more than 0.1 point fails here (update the figures
//! on purpose, with the full table in the crate's GUIDE.md).
//!
//! The traces live outside the repository (`../shared/data/traces`, or
//! `SCALEKIT_TRACES_DIR`); without them the test is skipped, except under CI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use scalekit_cache::Cache;

/// (trace, capacity, our hit ratio in percent) with one shard and a fixed hasher.
const PINNED: [(&str, u64, f64); 16] = [
    ("gli", 250, 16.44),
    ("gli", 500, 32.49),
    ("gli", 1000, 50.92),
    ("gli", 1500, 53.58),
    ("gli", 2000, 57.96),
    ("loop", 256, 24.67),
    ("loop", 512, 50.52),
    ("loop", 768, 71.61),
    ("loop", 1000, 97.46),
    ("ps", 300, 52.94),
    ("ps", 600, 58.92),
    ("ps", 1200, 70.37),
    ("sprite", 250, 54.68),
    ("sprite", 500, 78.59),
    ("sprite", 1000, 89.88),
    ("sprite", 2000, 93.35),
];

fn traces_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SCALEKIT_TRACES_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/traces"),
        PathBuf::from,
    );
    if dir.join("gli.trace.gz").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but the traces are missing at {} (set SCALEKIT_TRACES_DIR)",
        dir.display()
    );
    eprintln!(
        "skipped: no traces at {} (set SCALEKIT_TRACES_DIR)",
        dir.display()
    );
    None
}

fn load(dir: &std::path::Path, name: &str) -> Vec<u64> {
    let file = std::fs::File::open(dir.join(format!("{name}.trace.gz"))).unwrap();
    BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .map(|line| line.unwrap().trim().parse().unwrap())
        .collect()
}

fn hit_ratio(trace: &[u64], capacity: u64) -> f64 {
    let cache: Cache<u64, (), _> = Cache::builder()
        .max_capacity(capacity)
        .shards(1)
        .hasher(ahash::RandomState::with_seeds(1, 2, 3, 4))
        .build()
        .unwrap();
    let mut hits = 0u64;
    for &key in trace {
        if cache.get(&key).is_some() {
            hits += 1;
        } else {
            cache.insert(key, ());
        }
    }
    100.0 * hits as f64 / trace.len() as f64
}

#[test]
fn small_traces_keep_their_hit_ratios() {
    let Some(dir) = traces_dir() else { return };
    let mut failures = Vec::new();
    let mut current = ("", Vec::new());
    for (name, capacity, pinned) in PINNED {
        if current.0 != name {
            current = (name, load(&dir, name));
        }
        let ratio = hit_ratio(&current.1, capacity);
        if (ratio - pinned).abs() > 0.1 {
            failures.push(format!("{name}@{capacity}: {ratio:.2}, pinned {pinned:.2}"));
        }
    }
    assert!(
        failures.is_empty(),
        "hit ratios moved:\n{}",
        failures.join("\n")
    );
}
