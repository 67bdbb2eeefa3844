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
/// Three tests decide, each on its own: consecutive failures (as calls end),
/// and, run by [`ReplicaSet::maintain`](crate::ReplicaSet::maintain) over the
/// calls since its last run, the success rate against the set's spread
/// ([`SuccessRate`]) and the failure percentage against a fixed threshold
/// ([`FailurePercentage`]). Each has an `enforcing` percentage, as Envoy's
/// `enforcing_*` settings: the chance that a detected outlier is really
/// ejected (100: always; 0: only counted in
/// [`SetStats::ejections_not_enforced`](crate::SetStats::ejections_not_enforced),
/// to watch a test before turning it on).
///
/// The n-th ejection in a row lasts `min(n × base_ejection_time,
/// max_ejection_time)` plus a random jitter of up to
/// `max_ejection_time_jitter`; the multiplier stops growing once
/// `n × base` reaches `max + base` (Envoy's rule, so a recovered endpoint
/// earns its way back down in a bounded number of intervals), and each
/// `maintain` interval spent in rotation takes one off.
///
/// ```
/// use scalekit_replica::{FailurePercentage, OutlierDetection};
/// use std::time::Duration;
///
/// let mut outliers = OutlierDetection::default();
/// outliers.consecutive_failures = Some(3);
/// outliers.base_ejection_time = Duration::from_secs(10);
/// outliers.max_ejection_time_jitter = Duration::from_secs(2);
/// outliers.failure_percentage = Some(FailurePercentage::default());
/// assert_eq!(outliers.max_ejection_percent, 10);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct OutlierDetection {
    /// Eject after this many failures in a row (`None`: never for this
    /// reason). Default 5.
    pub consecutive_failures: Option<u32>,
    /// The chance, in percent, that `consecutive_failures` really ejects
    /// (Envoy's `enforcing_consecutive_5xx`). Default 100.
    pub enforcing_consecutive_failures: u32,
    /// The success-rate test run by [`ReplicaSet::maintain`](crate::ReplicaSet::maintain)
    /// (`None`: off, the default).
    pub success_rate: Option<SuccessRate>,
    /// The failure-percentage test run by
    /// [`ReplicaSet::maintain`](crate::ReplicaSet::maintain) (`None`: off, the
    /// default).
    pub failure_percentage: Option<FailurePercentage>,
    /// The first ejection lasts this long; the n-th lasts n times as long.
    /// Default 30 s.
    pub base_ejection_time: Duration,
    /// No ejection lasts longer than this (or the base time, if larger),
    /// jitter aside. Default 300 s.
    pub max_ejection_time: Duration,
    /// Each ejection lasts a random extra time from zero to this, so that
    /// endpoints ejected together do not all return at the same instant
    /// (Envoy's `max_ejection_time_jitter`). Default 0.
    pub max_ejection_time_jitter: Duration,
    /// At most this percentage of the endpoints is ejected at once, and at
    /// least one may be (0 turns ejection off). Default 10.
    pub max_ejection_percent: u32,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self {
            consecutive_failures: Some(5),
            enforcing_consecutive_failures: 100,
            success_rate: None,
            failure_percentage: None,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_time_jitter: Duration::ZERO,
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
/// assert_eq!((test.minimum_hosts, test.request_volume, test.enforcing), (5, 100, 100));
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
    /// The chance, in percent, that an outlier found is ejected (Envoy's
    /// `enforcing_success_rate`). Default 100.
    pub enforcing: u32,
}

impl Default for SuccessRate {
    fn default() -> Self {
        Self {
            minimum_hosts: 5,
            request_volume: 100,
            stdev_factor: 1.9,
            enforcing: 100,
        }
    }
}

/// Envoy's failure-percentage outlier test: among the endpoints with at least
/// `request_volume` calls in the interval, and when at least `minimum_hosts`
/// of them qualify, eject those whose share of failed calls is at least
/// `threshold` percent.
///
/// Unlike the success-rate test it needs no spread among the endpoints: when
/// most of a set fails together (a bad deploy), the success-rate test sees no
/// outlier, this one ejects up to the cap.
///
/// ```
/// use scalekit_replica::{Balance, FailurePercentage, Member, OutlierDetection, ReplicaSet};
///
/// let mut test = FailurePercentage::default();
/// assert_eq!((test.threshold, test.minimum_hosts, test.request_volume), (85, 5, 50));
/// test.minimum_hosts = 2;
/// test.request_volume = 10;
/// let mut outliers = OutlierDetection::default();
/// outliers.consecutive_failures = None;
/// outliers.failure_percentage = Some(test);
/// outliers.max_ejection_percent = 50;
/// let set = ReplicaSet::builder()
///     .balance(Balance::RoundRobin) // each in turn: "bad" gets half the calls
///     .outlier_detection(outliers)
///     .member(Member::replica("good", 1))
///     .member(Member::replica("bad", 2))
///     .build()?;
/// for _ in 0..200 {
///     let s = set.select()?;
///     if s.name() == "bad" { s.failure() } else { s.success() }
/// }
/// set.maintain();
/// let bad = set.stats().endpoints.into_iter().find(|e| &*e.name == "bad").unwrap();
/// assert!(bad.ejected);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailurePercentage {
    /// An endpoint failing at least this percentage of its calls is an
    /// outlier. Default 85.
    pub threshold: u32,
    /// The test runs only when at least this many endpoints qualify. Default 5.
    pub minimum_hosts: usize,
    /// An endpoint qualifies with at least this many calls in the interval.
    /// Default 50.
    pub request_volume: u32,
    /// The chance, in percent, that an outlier found is ejected (Envoy's
    /// `enforcing_failure_percentage`, whose default is 0 because Envoy
    /// configures the test whether used or not; here `None` turns it off, so
    /// the default is 100).
    pub enforcing: u32,
}

impl Default for FailurePercentage {
    fn default() -> Self {
        Self {
            threshold: 85,
            minimum_hosts: 5,
            request_volume: 50,
            enforcing: 100,
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
    pub(crate) unhealthy_threshold: u32,
    pub(crate) healthy_threshold: u32,
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
            unhealthy_threshold: 1,
            healthy_threshold: 1,
        }
    }
}
