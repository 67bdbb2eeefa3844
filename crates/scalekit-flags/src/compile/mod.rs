//! Compilation of the model into the evaluation form, and evaluation itself.
//!
//! Everything that can be decided when a state is loaded is decided then: context
//! field names become an enum, list values become sets, numbers, dates, versions,
//! networks and regexes are parsed, segments are inlined into their strategies,
//! parents are resolved to indices, and each variant gets a metrics slot. Evaluation
//! then only reads the context and this form, and allocates nothing.
//!
//! By concern, each module compiling its part and evaluating it (a module only
//! imports modules listed before it):
//!
//! | module | what |
//! |---|---|
//! | `text` | string lists and sets, numbers, ASCII lowering |
//! | `index` | toggle name -> index |
//! | `compiler` | what the parts share while compiling: options, warnings, slots |
//! | `stickiness` | stickiness, the rollout test, the random fallback |
//! | `constraint` | constraint operators |
//! | `variants` | variants and the weighted pick |
//! | `strategy` | activation strategies, with their constraints and segments |
//! | `state` | the compiled state and the compilation of a model |
//! | `eval` | evaluation of a toggle: parents, strategies, variant, reason |

mod compiler;
mod constraint;
mod eval;
mod index;
mod state;
mod stickiness;
mod strategy;
mod text;
mod variants;

pub(crate) use compiler::Options;
pub(crate) use state::{compile, Compiled};
