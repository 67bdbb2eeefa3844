//! What every endpoint of a set shares: the settings, the clock and the
//! set-wide counters.

use crate::config::Config;
use crate::event::{Event, Listener};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};
use std::time::Duration;
use tokio::sync::Notify;

/// A duration in nanoseconds, saturating at `u64::MAX` (about 584 years)
/// rather than wrapping.
#[inline]
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// State every endpoint of a set shares: settings, clock, set-wide counters.
pub(crate) struct Shared<C> {
    pub(crate) config: Config,
    pub(crate) clock: C,
    pub(crate) inv_tau: f64,
    pub(crate) slow_start_min: f64,
    /// Whether calls are tallied per interval (an interval outlier test is on).
    pub(crate) tally_intervals: bool,
    pub(crate) ejected: AtomicU32,
    pub(crate) members: AtomicU32,
    pub(crate) ejections_total: AtomicU64,
    /// Outliers detected but left in rotation by an `enforcing` percentage.
    pub(crate) ejections_not_enforced: AtomicU64,
    pub(crate) primary_fallbacks: AtomicU64,
    /// Health or ejection changed since the serving set was last computed.
    pub(crate) serving_dirty: AtomicBool,
    pub(crate) rr: AtomicUsize,
    pub(crate) notify: Notify,
    pub(crate) listener: Option<Listener>,
}

impl<C> Shared<C> {
    /// A new set's shared state.
    pub(crate) fn new(
        config: Config,
        clock: C,
        slow_start_min: f64,
        listener: Option<Listener>,
    ) -> Self {
        Self {
            inv_tau: 1.0 / config.decay.as_nanos() as f64,
            slow_start_min,
            tally_intervals: config.outliers.success_rate.is_some()
                || config.outliers.failure_percentage.is_some(),
            config,
            clock,
            ejected: AtomicU32::new(0),
            members: AtomicU32::new(0),
            ejections_total: AtomicU64::new(0),
            ejections_not_enforced: AtomicU64::new(0),
            primary_fallbacks: AtomicU64::new(0),
            serving_dirty: AtomicBool::new(false),
            rr: AtomicUsize::new(0),
            notify: Notify::new(),
            listener,
        }
    }

    pub(crate) fn emit(&self, event: Event) {
        if let Some(listener) = &self.listener {
            listener(&event);
        }
    }
}

/// Whether an outlier found by a test with this `enforcing` percentage is
/// ejected (Envoy's `enforcing_*`): always at 100, never at 0, else by a draw.
#[inline]
pub(crate) fn enforced(percent: u32) -> bool {
    percent >= 100 || (percent > 0 && crate::rng::below_u64(100) < u64::from(percent))
}
