//! What the parts of compilation share: the options, the warnings gathered, the
//! segments by id and the metrics slots of the toggle being compiled.

use crate::custom::CustomStrategy;
use crate::error::Warning;
use crate::model::Constraint;
use ahash::AHashMap;
use std::sync::Arc;

/// What the compiler needs besides the state.
#[derive(Clone, Default)]
pub(crate) struct Options {
    pub(crate) strategies: AHashMap<String, Arc<dyn CustomStrategy>>,
    pub(crate) hostname: Option<String>,
}

/// The state of one compilation. The parts (constraints, variants, strategies) add
/// their methods to it in their own modules.
pub(super) struct Compiler<'a> {
    pub(super) opts: &'a Options,
    pub(super) warnings: Vec<Warning>,
    pub(super) segments: AHashMap<i64, &'a [Constraint]>,
    /// The next metrics slot of the toggle being compiled (0 is `disabled`).
    pub(super) slot: u32,
    /// The variant names of the toggle being compiled, by slot.
    pub(super) names: Vec<Arc<str>>,
    pub(super) hostname: Option<String>,
}

impl Compiler<'_> {
    pub(super) fn warn(&mut self, toggle: &str, message: String) {
        self.warnings.push(Warning {
            toggle: toggle.to_owned(),
            message,
        });
    }
}

/// The host name `applicationHostname` compares with: `HOSTNAME`, else the kernel's.
pub(super) fn local_hostname() -> Option<String> {
    if let Ok(h) = std::env::var("HOSTNAME") {
        if !h.is_empty() {
            return Some(h);
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}
