//! The guide: how each engine places keys, and the measured lookup times,
//! memory, balance and movement.
#![doc = include_str!("../GUIDE.md")]
