//! The flag store, by concern (a module only imports modules listed before it):
//!
//! | module | what |
//! |---|---|
//! | `parse` | Unleash JSON: a full state or a delta body |
//! | `store` | the serving state, history, kill switches, pending metrics, hooks |
//! | `eval` | evaluation through the per-thread snapshot cache; pinned snapshots |
//! | `builder` | [`FlagsBuilder`] and [`Flags::new`] |

mod builder;
mod eval;
pub(crate) mod parse;
mod store;

pub use builder::FlagsBuilder;
pub use eval::FlagsSnapshot;
pub use store::Flags;
