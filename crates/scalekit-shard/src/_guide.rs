//! The guide: the routing model, every strategy, scatter-gather, resharding
//! and what was measured. Its examples are doc-tested with the crate.
#![doc = include_str!("../GUIDE.md")]
