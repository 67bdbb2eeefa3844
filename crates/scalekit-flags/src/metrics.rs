//! Usage metrics in Unleash's format: per toggle yes/no counts and variant counts.
//!
//! Each compiled toggle has its own counters (relaxed atomic adds, one per
//! evaluation), so counting costs a few nanoseconds and never takes a lock.
//! [`Flags::take_metrics`](crate::Flags::take_metrics) drains them into a
//! [`MetricsBucket`], which serializes to the `bucket` object of Unleash's
//! `POST /api/client/metrics` body; the HTTP source
//! ([`HttpPoller`](crate::sources::HttpPoller), feature `http`) sends them.
//!
//! A bucket's `start` and `stop` are read from the store's [`Clock`](scalekit_core::Clock)
//! and written as wall time: the wall time when the store was built plus the
//! clock's time since then. With a [`ManualClock`](scalekit_core::ManualClock) a
//! test decides exactly how long a bucket lasts.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

impl MetricsBucket {
    /// Adds `later`'s counts to this bucket, which then ends where `later` ends
    /// (what an HTTP source does with a bucket it could not send).
    ///
    /// ```
    /// use scalekit_flags::{MetricsBucket, ToggleMetrics};
    /// let mut a = MetricsBucket { start: "t0".into(), stop: "t1".into(), ..Default::default() };
    /// a.toggles.insert("x".into(), ToggleMetrics { yes: 1, no: 2, ..Default::default() });
    /// let mut b = MetricsBucket { start: "t1".into(), stop: "t2".into(), ..Default::default() };
    /// b.toggles.insert("x".into(), ToggleMetrics { yes: 3, ..Default::default() });
    /// a.merge(b);
    /// assert_eq!((a.start.as_str(), a.stop.as_str()), ("t0", "t2"));
    /// assert_eq!((a.toggles["x"].yes, a.toggles["x"].no), (4, 2));
    /// ```
    pub fn merge(&mut self, later: MetricsBucket) {
        self.stop = later.stop;
        for (name, m) in later.toggles {
            let e = self.toggles.entry(name).or_default();
            e.yes += m.yes;
            e.no += m.no;
            for (v, n) in m.variants {
                *e.variants.entry(v).or_default() += n;
            }
        }
    }

    /// Whether it counts no evaluation.
    pub fn is_empty(&self) -> bool {
        self.toggles.is_empty()
    }
}

/// Turns readings of a monotonic clock into wall time: the wall time of the
/// clock's origin, taken once when the store is built.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WallAnchor {
    /// Unix time of the clock's zero, in nanoseconds (may be negative).
    origin_unix_nanos: i128,
}

impl WallAnchor {
    /// Anchors a clock that reads `clock_now` now.
    pub(crate) fn new(clock_now: u64) -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos() as i128;
        WallAnchor {
            origin_unix_nanos: wall - i128::from(clock_now),
        }
    }

    /// The clock reading `nanos` as RFC 3339 wall time, in milliseconds.
    pub(crate) fn rfc3339(&self, nanos: u64) -> String {
        let unix = self.origin_unix_nanos + i128::from(nanos);
        let unix = i64::try_from(unix).unwrap_or(if unix < 0 { 0 } else { i64::MAX });
        chrono::DateTime::from_timestamp_nanos(unix)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }
}
