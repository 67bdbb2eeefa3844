//! The storefront's tools, clients of a running shop: the load generator
//! (`storefront loadgen`), the stage-by-stage comparison (`storefront evolve`),
//! its projection to real machines (`storefront project`) and the HTTP
//! benchmark (`storefront bench-http`).
//!
//! They speak to the shop over HTTP and read its figures through the contract
//! (`storefront-contract`): nothing here depends on the shop's web, storage or
//! cache code. What they need to know of the stages (which exist, their prose,
//! a stage file made ready for one run) comes through [`stages::StageCatalog`],
//! which the storefront binary provides.

pub mod loadgen;
pub mod projection;
pub mod stages;
