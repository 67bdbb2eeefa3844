//! The guide: the selection model, health, replication lag and
//! read-your-writes, hedging, the tower service, measurements and how the
//! crate compares with tower, Finagle, Envoy, ProxySQL and MaxScale. Its
//! examples are doc-tested with the crate.
#![doc = include_str!("../GUIDE.md")]
