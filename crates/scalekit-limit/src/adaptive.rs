//! Adaptive concurrency limits (AIMD, Gradient2, Vegas, after Netflix's
//! concurrency-limits) with priority partitions and load shedding.

use std::fmt;
use std::time::Duration;

use parking_lot::Mutex;
use scalekit_core::{Admission, KeyedAdmission, Outcome, RejectReason, Rejected};

use crate::ConfigError;

/// What one finished call tells a [`LimitAlgorithm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sample {
    /// How long the call took.
    pub rtt: Duration,
    /// Calls in flight when it started (itself included).
    pub in_flight: u32,
    /// Whether it failed in a way that signals overload (a timeout, a 503).
    pub dropped: bool,
}

impl Sample {
    /// A sample.
    pub fn new(rtt: Duration, in_flight: u32, dropped: bool) -> Self {
        Self {
            rtt,
            in_flight,
            dropped,
        }
    }
}

/// An algorithm that moves a concurrency limit from call samples.
pub trait LimitAlgorithm: Send + fmt::Debug {
    /// The limit to start with.
    fn initial_limit(&self) -> u32;
    /// Learns from one finished call; returns the new limit.
    fn update(&mut self, sample: Sample) -> u32;
}

/// Keeps the limit in `[min, max]`, as a fraction: small steps (Gradient2's
/// smoothing) accumulate instead of being truncated away.
fn clamp(v: f64, min: u32, max: u32) -> f64 {
    if v.is_nan() {
        return f64::from(min);
    }
    v.clamp(f64::from(min), f64::from(max))
}

/// Additive increase, multiplicative decrease: +1 after a success while the
/// limit is in use, `* backoff` after a drop. The loss-based classic.
#[derive(Clone, Debug)]
pub struct Aimd {
    limit: f64,
    min: u32,
    max: u32,
    backoff: f64,
}

impl Aimd {
    /// Starts at `initial`, stays in `[min, max]`, backs off by 0.9.
    pub fn new(initial: u32, min: u32, max: u32) -> Self {
        Self {
            limit: f64::from(initial.clamp(min.max(1), max.max(1))),
            min: min.max(1),
            max: max.max(1),
            backoff: 0.9,
        }
    }

    /// The factor a drop multiplies the limit by, in `[0.5, 1)`.
    pub fn backoff(mut self, ratio: f64) -> Result<Self, ConfigError> {
        if !(0.5..1.0).contains(&ratio) {
            return Err(ConfigError::Factor {
                field: "backoff",
                value: ratio,
                expected: "give a ratio in [0.5, 1)",
            });
        }
        self.backoff = ratio;
        Ok(self)
    }
}

impl LimitAlgorithm for Aimd {
    fn initial_limit(&self) -> u32 {
        self.limit as u32
    }

    fn update(&mut self, s: Sample) -> u32 {
        if s.dropped {
            self.limit *= self.backoff;
        } else if f64::from(s.in_flight) * 2.0 >= self.limit {
            // Only grow while the limit is actually being used.
            self.limit += 1.0;
        }
        self.limit = clamp(self.limit, self.min, self.max);
        self.limit as u32
    }
}

/// TCP Vegas applied to concurrency: estimates the queue from the ratio of the
/// fastest RTT seen (no load) to the current one, grows while the queue is
/// short (below `alpha = 3 log10 L`), shrinks when it is long (above
/// `beta = 6 log10 L`).
#[derive(Clone, Debug)]
pub struct Vegas {
    limit: f64,
    min: u32,
    max: u32,
    rtt_noload: Option<Duration>,
}

impl Vegas {
    /// Starts at `initial`, stays in `[min, max]`.
    pub fn new(initial: u32, min: u32, max: u32) -> Self {
        Self {
            limit: f64::from(initial.clamp(min.max(1), max.max(1))),
            min: min.max(1),
            max: max.max(1),
            rtt_noload: None,
        }
    }
}

impl LimitAlgorithm for Vegas {
    fn initial_limit(&self) -> u32 {
        self.limit as u32
    }

    fn update(&mut self, s: Sample) -> u32 {
        let rtt = s.rtt.max(Duration::from_nanos(1));
        let noload = match self.rtt_noload {
            Some(r) if r <= rtt => r,
            _ => {
                self.rtt_noload = Some(rtt);
                rtt
            }
        };
        let log = self.limit.log10().max(1.0);
        if s.dropped {
            self.limit -= log;
        } else if f64::from(s.in_flight) * 2.0 >= self.limit {
            let queue = (self.limit * (1.0 - noload.as_secs_f64() / rtt.as_secs_f64())).ceil();
            let (alpha, beta) = (3.0 * log, 6.0 * log);
            if queue <= log {
                self.limit += beta;
            } else if queue < alpha {
                self.limit += log;
            } else if queue > beta {
                self.limit -= log;
            }
        }
        self.limit = clamp(self.limit, self.min, self.max);
        self.limit as u32
    }
}

/// Netflix's Gradient2: compares a short-term RTT (this sample) with a long-term
/// exponential average; the ratio (`tolerance * long / short`, kept in
/// `[0.5, 1]`) scales the limit, plus a small queue allowance, smoothed.
#[derive(Clone, Debug)]
pub struct Gradient2 {
    limit: f64,
    min: u32,
    max: u32,
    long_rtt: Option<f64>,
    long_window: f64,
    tolerance: f64,
    smoothing: f64,
    queue: f64,
}

impl Gradient2 {
    /// Starts at `initial`, stays in `[min, max]`; long window 600 samples,
    /// tolerance 1.5, smoothing 0.2, queue allowance 4.
    pub fn new(initial: u32, min: u32, max: u32) -> Self {
        Self {
            limit: f64::from(initial.clamp(min.max(1), max.max(1))),
            min: min.max(1),
            max: max.max(1),
            long_rtt: None,
            long_window: 600.0,
            tolerance: 1.5,
            smoothing: 0.2,
            queue: 4.0,
        }
    }
}

impl LimitAlgorithm for Gradient2 {
    fn initial_limit(&self) -> u32 {
        self.limit as u32
    }

    fn update(&mut self, s: Sample) -> u32 {
        let short = s.rtt.as_secs_f64().max(1e-9);
        let long = match self.long_rtt {
            None => short,
            Some(l) => {
                let mut l = l + (short - l) / self.long_window;
                // Let the long average recover quickly after a load drop.
                if l / short > 2.0 {
                    l *= 0.95;
                }
                l
            }
        };
        self.long_rtt = Some(long);
        // App-limited: not enough in flight to judge.
        if f64::from(s.in_flight) < self.limit / 2.0 && !s.dropped {
            return self.limit as u32;
        }
        let gradient = (self.tolerance * long / short).clamp(0.5, 1.0);
        let gradient = if s.dropped { 0.5 } else { gradient };
        let target = self.limit * gradient + self.queue;
        self.limit = self.limit * (1.0 - self.smoothing) + target * self.smoothing;
        self.limit = clamp(self.limit, self.min, self.max);
        self.limit as u32
    }
}

#[derive(Debug)]
struct Partition {
    name: String,
    share: f64,
    in_flight: u32,
    rejected: u64,
}

#[derive(Debug)]
struct Inner<A> {
    algorithm: A,
    limit: u32,
    in_flight: u32,
    partitions: Vec<Partition>,
}

impl<A> Inner<A> {
    fn guarantee(&self, p: &Partition) -> u32 {
        (f64::from(self.limit) * p.share).ceil() as u32
    }

    /// Whether a call in partition `i` may start. A partition within its
    /// guaranteed share always may; beyond it, it may borrow free capacity that
    /// is not still owed to higher-priority partitions (earlier in the list).
    /// Under overload the lowest priority therefore loses its borrowing first.
    fn admits(&self, i: usize) -> bool {
        if self.partitions.is_empty() {
            return self.in_flight < self.limit;
        }
        let Some(p) = self.partitions.get(i) else {
            return false;
        };
        if p.in_flight < self.guarantee(p) {
            return true;
        }
        let owed: u32 = self
            .partitions
            .iter()
            .take(i)
            .map(|h| self.guarantee(h).saturating_sub(h.in_flight))
            .sum();
        self.in_flight.saturating_add(owed) < self.limit
    }
}

/// The permit of an [`AdaptiveLimiter`]: which partition and how much was in
/// flight when the call started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptivePermit {
    partition: usize,
    in_flight: u32,
}

/// A concurrency limit that adapts to the callee (AIMD, Gradient2, Vegas), with
/// optional priority partitions.
///
/// Partitions share the limit by percentage in priority order (first = highest):
/// `checkout` keeps 80%, `browse` 20%. Each is always admitted within its share;
/// beyond it a partition borrows idle capacity not owed to the partitions above
/// it, so when the limit shrinks under load the lowest priority is shed first.
/// Ask with [`KeyedAdmission::try_acquire_key`] by partition name or index;
/// unkeyed [`Admission::try_acquire`] uses the last (lowest) partition.
///
/// ```
/// use scalekit_limit::{AdaptiveLimiter, Aimd};
/// use scalekit_core::{Admission, KeyedAdmission, Outcome};
/// use std::time::Duration;
///
/// let limiter = AdaptiveLimiter::builder(Aimd::new(10, 1, 100))
///     .partition("checkout", 0.8)
///     .partition("browse", 0.2)
///     .build()?;
/// // Browsing can borrow what checkout is not using...
/// let browsing: Vec<_> = (0..10).filter_map(|_| limiter.try_acquire_key("browse").ok()).collect();
/// assert_eq!(browsing.len(), 2 + 0, "20% of 10, nothing borrowable: 8 owed to checkout");
/// // ...and checkout always gets its 80%.
/// let checkout: Vec<_> = (0..8).filter_map(|_| limiter.try_acquire_key("checkout").ok()).collect();
/// assert_eq!(checkout.len(), 8);
/// for p in browsing.into_iter().chain(checkout) {
///     limiter.record(p, Outcome::Success, Duration::from_millis(10));
/// }
/// # Ok::<(), scalekit_limit::ConfigError>(())
/// ```
pub struct AdaptiveLimiter<A> {
    inner: Mutex<Inner<A>>,
}

impl<A: fmt::Debug> fmt::Debug for AdaptiveLimiter<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimiter")
            .field("inner", &*self.inner.lock())
            .finish()
    }
}

/// Builds an [`AdaptiveLimiter`].
#[derive(Debug)]
pub struct AdaptiveBuilder<A> {
    algorithm: A,
    partitions: Vec<(String, f64)>,
}

impl<A: LimitAlgorithm> AdaptiveBuilder<A> {
    /// Adds a partition with `share` of the limit (in `(0, 1]`), below the ones
    /// added before it in priority.
    pub fn partition(mut self, name: impl Into<String>, share: f64) -> Self {
        self.partitions.push((name.into(), share));
        self
    }

    /// Checks the shares (each in `(0, 1]`, summing to at most 1) and builds.
    pub fn build(self) -> Result<AdaptiveLimiter<A>, ConfigError> {
        let mut total = 0.0;
        for (_, share) in &self.partitions {
            if !(*share > 0.0 && *share <= 1.0) {
                return Err(ConfigError::Factor {
                    field: "partition share",
                    value: *share,
                    expected: "give a share in (0, 1]",
                });
            }
            total += share;
        }
        if total > 1.0 + 1e-9 {
            return Err(ConfigError::Factor {
                field: "partition shares (sum)",
                value: total,
                expected: "shares must add up to at most 1",
            });
        }
        let limit = self.algorithm.initial_limit().max(1);
        Ok(AdaptiveLimiter {
            inner: Mutex::new(Inner {
                algorithm: self.algorithm,
                limit,
                in_flight: 0,
                partitions: self
                    .partitions
                    .into_iter()
                    .map(|(name, share)| Partition {
                        name,
                        share,
                        in_flight: 0,
                        rejected: 0,
                    })
                    .collect(),
            }),
        })
    }
}

impl<A: LimitAlgorithm> AdaptiveLimiter<A> {
    /// A builder around `algorithm`.
    pub fn builder(algorithm: A) -> AdaptiveBuilder<A> {
        AdaptiveBuilder {
            algorithm,
            partitions: Vec::new(),
        }
    }

    /// The current limit.
    pub fn limit(&self) -> u32 {
        self.inner.lock().limit
    }

    /// Calls in flight.
    pub fn in_flight(&self) -> u32 {
        self.inner.lock().in_flight
    }

    /// Calls in flight and calls rejected, per partition, in priority order.
    pub fn partition_stats(&self) -> Vec<(String, u32, u64)> {
        self.inner
            .lock()
            .partitions
            .iter()
            .map(|p| (p.name.clone(), p.in_flight, p.rejected))
            .collect()
    }

    fn acquire_in(&self, i: usize) -> Result<AdaptivePermit, Rejected> {
        let mut inner = self.inner.lock();
        if !inner.admits(i) {
            if let Some(p) = inner.partitions.get_mut(i) {
                p.rejected += 1;
            }
            return Err(Rejected::new(RejectReason::ConcurrencyLimited));
        }
        inner.in_flight += 1;
        if let Some(p) = inner.partitions.get_mut(i) {
            p.in_flight += 1;
        }
        Ok(AdaptivePermit {
            partition: i,
            in_flight: inner.in_flight,
        })
    }
}

impl<A: LimitAlgorithm> Admission for AdaptiveLimiter<A> {
    type Permit = AdaptivePermit;

    fn try_acquire(&self) -> Result<AdaptivePermit, Rejected> {
        let last = self.inner.lock().partitions.len().saturating_sub(1);
        self.acquire_in(last)
    }

    fn record(&self, permit: AdaptivePermit, outcome: Outcome, latency: Duration) {
        let mut inner = self.inner.lock();
        inner.in_flight = inner.in_flight.saturating_sub(1);
        if let Some(p) = inner.partitions.get_mut(permit.partition) {
            p.in_flight = p.in_flight.saturating_sub(1);
        }
        let dropped = match outcome {
            Outcome::Success => false,
            Outcome::Failure => true,
            _ => return, // says nothing about the callee's capacity
        };
        let limit = inner
            .algorithm
            .update(Sample::new(latency, permit.in_flight, dropped));
        inner.limit = limit.max(1);
    }
}

impl<A: LimitAlgorithm> KeyedAdmission<usize> for AdaptiveLimiter<A> {
    /// By partition index (0 = highest priority).
    fn try_acquire_key(&self, partition: &usize) -> Result<AdaptivePermit, Rejected> {
        self.acquire_in(*partition)
    }
}

impl<A: LimitAlgorithm> KeyedAdmission<str> for AdaptiveLimiter<A> {
    /// By partition name; an unknown name is rejected.
    fn try_acquire_key(&self, name: &str) -> Result<AdaptivePermit, Rejected> {
        let i = self
            .inner
            .lock()
            .partitions
            .iter()
            .position(|p| p.name == name)
            .unwrap_or(usize::MAX);
        self.acquire_in(i)
    }
}
