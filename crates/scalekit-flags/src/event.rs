//! What the store tells its hooks: state changes and source failures.

use crate::error::{FlagsError, Warning};
use std::sync::Arc;

/// A state change, given to the hooks registered with
/// [`FlagsBuilder::on_event`](crate::FlagsBuilder::on_event).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A new state is serving.
    Applied {
        /// Its version number.
        version: u64,
        /// Where it came from.
        origin: String,
        /// How many toggles it has.
        toggles: usize,
        /// What compiled to never-matching conditions.
        warnings: Vec<Warning>,
    },
    /// An update was refused; the previous state keeps serving.
    Rejected {
        /// Where it came from.
        origin: String,
        /// Why.
        error: Arc<FlagsError>,
    },
    /// A source could not fetch (network, HTTP status); the state is unchanged.
    SourceFailed {
        /// Which source.
        origin: String,
        /// Why.
        error: Arc<FlagsError>,
    },
    /// [`Flags::rollback`](crate::Flags::rollback) restored an earlier version.
    RolledBack {
        /// The version now serving.
        version: u64,
    },
    /// A kill switch was set.
    Killed {
        /// The toggle.
        toggle: String,
    },
    /// A kill switch was cleared.
    Revived {
        /// The toggle.
        toggle: String,
    },
}

/// What a successful update did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadReport {
    /// The new state's version number (1 for the first state).
    pub version: u64,
    /// Toggles in the new state.
    pub toggles: usize,
    /// Conditions that compiled to never-matching ones.
    pub warnings: Vec<Warning>,
}

/// A hook registered with [`FlagsBuilder::on_event`](crate::FlagsBuilder::on_event).
pub(crate) type Hook = Arc<dyn Fn(&Event) + Send + Sync>;
