//! Fixtures shared by the benchmarks (`benches/`) and the measurement binaries
//! (`src/bin/`); results and commands are in `docs/benchmarks.md`.

pub mod cache_workload;
pub mod trace_families;
