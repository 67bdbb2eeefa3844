//! The guide to `scalekit-cache`: design, the tiered cache, measured hit
//! ratios and throughput, and how to choose sizes and times. Its examples
//! are doc tests.
#![doc = include_str!("../GUIDE.md")]
