//! The routing configuration: TOML (or any serde format) checked at load time,
//! then built into a [`Router`](crate::Router) with the placement engines you
//! pass in.
//!
//! * `raw`: the file's shape; `spec`: the checked configuration.
//! * `check`: each part's checks; `tables`: the whole file's; `collisions`:
//!   names two tables would share.
//! * `engines`: the engines a file may name; `build`: slot tables from them.
//! * `file`: [`RouterConfig`]'s public face: read, check, build.

mod build;
mod check;
mod collisions;
mod engines;
mod file;
mod raw;
mod spec;
mod tables;

pub use engines::{DynPlacement, Engines, CONTIGUOUS_ENGINE};
pub use spec::{RouterConfig, DEFAULT_SLOTS, MAX_SLOTS};
