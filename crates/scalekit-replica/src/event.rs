//! What the set tells its listener: membership changes, ejections and
//! returns, lag and health changes.

use crate::member::Role;
use std::sync::Arc;
use std::time::Duration;

/// The listener given to `ReplicaSetBuilder::on_event`.
pub(crate) type Listener = Arc<dyn Fn(&Event) + Send + Sync>;

/// Why an endpoint was ejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EjectReason {
    /// It failed the configured number of calls in a row.
    ConsecutiveFailures,
    /// Its success rate was an outlier in the last interval.
    SuccessRate,
    /// Its share of failed calls in the last interval reached the
    /// failure-percentage threshold.
    FailurePercentage,
}

/// A change in the set, told to the listener given to
/// [`ReplicaSetBuilder::on_event`](crate::ReplicaSetBuilder::on_event). Emitted on transitions only, never per call.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// An endpoint joined.
    Added {
        /// Its name.
        name: Arc<str>,
        /// Its role.
        role: Role,
    },
    /// An endpoint left.
    Removed {
        /// Its name.
        name: Arc<str>,
    },
    /// An endpoint became the primary (the previous one, if any, is now a replica).
    Promoted {
        /// The new primary.
        name: Arc<str>,
        /// The previous primary.
        previous: Option<Arc<str>>,
    },
    /// An endpoint was ejected.
    Ejected {
        /// Its name.
        name: Arc<str>,
        /// Why.
        reason: EjectReason,
        /// For how long.
        duration: Duration,
    },
    /// An ejected endpoint is back in rotation.
    Returned {
        /// Its name.
        name: Arc<str>,
    },
    /// A replica's replication lag took it out of (or back into) the reads.
    Lag {
        /// Its name.
        name: Arc<str>,
        /// Its lag as last reported.
        lag: Duration,
        /// Whether it now takes reads.
        serving: bool,
    },
    /// An active health check changed an endpoint's health.
    Health {
        /// Its name.
        name: Arc<str>,
        /// Whether it is now healthy.
        healthy: bool,
    },
}
