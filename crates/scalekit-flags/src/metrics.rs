//! Usage metrics in Unleash's format: per toggle yes/no counts and variant counts.
//!
//! Each compiled toggle has its own counters (relaxed atomic adds, one per
//! evaluation), so counting costs a few nanoseconds and never takes a lock.
//! [`Flags::take_metrics`](crate::Flags::take_metrics) drains them into a
//! [`MetricsBucket`], which serializes to the `bucket` object of Unleash's
//! `POST /api/client/metrics` body.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) struct Counters {
    pub(crate) yes: AtomicU64,
    pub(crate) no: AtomicU64,
    pub(crate) variants: Box<[AtomicU64]>,
}

impl Counters {
    pub(crate) fn new(slots: usize) -> Self {
        Counters {
            yes: AtomicU64::new(0),
            no: AtomicU64::new(0),
            variants: (0..slots).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    #[inline]
    pub(crate) fn count(&self, enabled: bool) {
        if enabled { &self.yes } else { &self.no }.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn count_variant(&self, slot: u32) {
        if let Some(c) = self.variants.get(slot as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Moves the counts into `into`, leaving zeros.
    pub(crate) fn drain(&self, names: &[std::sync::Arc<str>], into: &mut ToggleMetrics) {
        into.yes += self.yes.swap(0, Ordering::Relaxed);
        into.no += self.no.swap(0, Ordering::Relaxed);
        for (c, name) in self.variants.iter().zip(names) {
            let n = c.swap(0, Ordering::Relaxed);
            if n > 0 {
                *into.variants.entry(name.to_string()).or_default() += n;
            }
        }
    }
}

/// Counts for one toggle.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ToggleMetrics {
    /// Evaluations that said on.
    pub yes: u64,
    /// Evaluations that said off.
    pub no: u64,
    /// Variant name -> times it was handed out (`disabled` included).
    pub variants: BTreeMap<String, u64>,
}

/// A metrics bucket as Unleash's client metrics API expects it.
///
/// ```
/// use scalekit_flags::{Context, Flags};
/// let flags = Flags::new();
/// flags.load_json(r#"{"version":2,"features":[{"name":"a","enabled":true,"strategies":[]}]}"#, "inline").unwrap();
/// flags.is_enabled("a", &Context::new());
/// let bucket = flags.take_metrics();
/// assert_eq!(bucket.toggles["a"].yes, 1);
/// let json = serde_json::to_value(&bucket).unwrap();
/// assert_eq!(json["toggles"]["a"]["yes"], 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MetricsBucket {
    /// Start of the period (RFC 3339).
    pub start: String,
    /// End of the period (RFC 3339).
    pub stop: String,
    /// Per-toggle counts; toggles with no evaluation are left out.
    pub toggles: BTreeMap<String, ToggleMetrics>,
}

pub(crate) fn now_rfc3339() -> String {
    chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
