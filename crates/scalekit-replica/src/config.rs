//! The settings of a replica set.

use std::time::Duration;

/// How the set chooses among the endpoints that may take a read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Balance {
    /// Power of two choices over peak-EWMA latency times (outstanding + 1),
    /// divided by the weight: Finagle's and Linkerd's default. The default.
    #[default]
    PeakEwma,
    /// Power of two choices over (outstanding + 1) divided by the weight.
    LeastLoaded,
    /// Each available endpoint in turn (a baseline; weights ignored).
    RoundRobin,
}

/// Whether reads may go to the primary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PrimaryReads {
    /// Only when no replica is available (the default).
    #[default]
    Fallback,
    /// Never: reads fail when no replica is available.
    Never,
    /// Always: the primary is one more candidate for every read.
    Always,
}

/// Passive outlier detection, after Envoy's: endpoints that fail are ejected
/// for a time that grows with each ejection, and never more than a share of
/// the set at once.
///
/// ```
/// use scalekit_replica::OutlierDetection;
/// use std::time::Duration;
///
/// let mut outliers = OutlierDetection::default();
/// outliers.consecutive_failures = Some(3);
/// outliers.base_ejection_time = Duration::from_secs(10);
/// assert_eq!(outliers.max_ejection_percent, 10);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct OutlierDetection {
    /// Eject after this many failures in a row (`None`: never for this
    /// reason). Default 5.
    pub consecutive_failures: Option<u32>,
    /// The success-rate test run by [`ReplicaSet::maintain`](crate::ReplicaSet::maintain)
    /// (`None`: off, the default).
    pub success_rate: Option<SuccessRate>,
    /// The first ejection lasts this long; the n-th lasts n times as long.
    /// Default 30 s.
    pub base_ejection_time: Duration,
    /// No ejection lasts longer than this (or the base time, if larger).
    /// Default 300 s.
    pub max_ejection_time: Duration,
    /// At most this percentage of the endpoints is ejected at once, and at
    /// least one may be (0 turns ejection off). Default 10.
    pub max_ejection_percent: u32,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self {
            consecutive_failures: Some(5),
            success_rate: None,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
        }
    }
}

/// Envoy's success-rate outlier test: among the endpoints with enough calls in
/// the interval, eject those whose success rate is below
/// `mean - stdev_factor * stdev`.
///
/// ```
/// use scalekit_replica::SuccessRate;
///
/// let test = SuccessRate::default();
/// assert_eq!((test.minimum_hosts, test.request_volume), (5, 100));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct SuccessRate {
    /// The test runs only when at least this many endpoints qualify. Default 5.
    pub minimum_hosts: usize,
    /// An endpoint qualifies with at least this many calls in the interval.
    /// Default 100.
    pub request_volume: u32,
    /// How many standard deviations below the mean is an outlier. Default 1.9.
    pub stdev_factor: f64,
}

impl Default for SuccessRate {
    fn default() -> Self {
        Self {
            minimum_hosts: 5,
            request_volume: 100,
            stdev_factor: 1.9,
        }
    }
}

/// Slow start: an endpoint added at run time, or back from an ejection, ramps
/// its weight up linearly over a window instead of taking its full share at
/// once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SlowStart {
    pub(crate) window: Duration,
    pub(crate) min_weight: f64,
}

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) balance: Balance,
    pub(crate) decay: Duration,
    pub(crate) default_rtt: Duration,
    pub(crate) local_zone: Option<std::sync::Arc<str>>,
    pub(crate) zone_spill_factor: f64,
    pub(crate) slow_start: Option<SlowStart>,
    pub(crate) outliers: OutlierDetection,
    pub(crate) max_lag: Option<Duration>,
    pub(crate) min_serving_replicas: usize,
    pub(crate) primary_reads: PrimaryReads,
    pub(crate) refusal_backoff: Duration,
    pub(crate) failure_penalty: Duration,
    pub(crate) failure_penalty_factor: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            balance: Balance::PeakEwma,
            decay: Duration::from_secs(10),
            default_rtt: Duration::from_millis(30),
            local_zone: None,
            zone_spill_factor: 2.0,
            slow_start: None,
            outliers: OutlierDetection::default(),
            max_lag: None,
            min_serving_replicas: 1,
            primary_reads: PrimaryReads::Fallback,
            refusal_backoff: Duration::from_secs(1),
            failure_penalty: Duration::ZERO,
            failure_penalty_factor: 5.0,
        }
    }
}
