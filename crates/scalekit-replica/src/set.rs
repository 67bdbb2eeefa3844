//! The replica set: membership, selection and the feedback that drives it.

use crate::config::{Balance, Config, OutlierDetection, PrimaryReads, SlowStart};
use crate::endpoint::{
    reason_code, reason_from_code, AlwaysAdmit, Endpoint, Member, Position, Role, EJECTING,
    NOT_EJECTED,
};
use crate::error::{ConfigError, MembershipError, SelectError};
use crate::rng;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use scalekit_core::{Admission, Clock, MonotonicClock, Outcome, RejectReason, Rejected};
use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

type Listener = Arc<dyn Fn(&Event) + Send + Sync>;

/// A duration in nanoseconds, saturating at `u64::MAX` (about 584 years)
/// rather than wrapping.
#[inline]
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Why an endpoint was ejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EjectReason {
    /// It failed the configured number of calls in a row.
    ConsecutiveFailures,
    /// Its success rate was an outlier in the last interval.
    SuccessRate,
}

/// A change in the set, told to the listener given to
/// [`ReplicaSetBuilder::on_event`]. Emitted on transitions only, never per call.
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

/// State every endpoint of a set shares: settings, clock, set-wide counters.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) inv_tau: f64,
    pub(crate) slow_start_min: f64,
    pub(crate) ejected: AtomicU32,
    pub(crate) members: AtomicU32,
    pub(crate) ejections_total: AtomicU64,
    pub(crate) primary_fallbacks: AtomicU64,
    /// Health or ejection changed since the serving set was last computed.
    pub(crate) serving_dirty: AtomicBool,
    pub(crate) rr: AtomicUsize,
    pub(crate) notify: Notify,
    listener: Option<Listener>,
}

impl Shared {
    pub(crate) fn emit(&self, event: Event) {
        if let Some(listener) = &self.listener {
            listener(&event);
        }
    }
}

struct Snapshot<T, A> {
    all: Vec<Arc<Endpoint<T, A>>>,
    primary: Option<Arc<Endpoint<T, A>>>,
    /// Read candidates in the local zone (all of them when no zone is set).
    local: Vec<Arc<Endpoint<T, A>>>,
    /// Read candidates in other zones.
    remote: Vec<Arc<Endpoint<T, A>>>,
    /// Cumulative weights of `local` and `remote`, to draw candidates in
    /// proportion to weight (empty when all weights are equal: uniform draw).
    local_cum: Vec<u64>,
    remote_cum: Vec<u64>,
}

/// Cumulative weights of `list`, or nothing when they are all equal.
fn cumulative<T, A>(list: &[Arc<Endpoint<T, A>>]) -> Vec<u64> {
    let weights: Vec<u64> = list
        .iter()
        .map(|e| u64::from(e.weight.load(Ordering::Relaxed).max(1)))
        .collect();
    if weights.windows(2).all(|w| w[0] == w[1]) {
        return Vec::new();
    }
    let mut total = 0u64;
    weights
        .into_iter()
        .map(|w| {
            total = total.saturating_add(w);
            total
        })
        .collect()
}

/// An index into a list of `n` drawn in proportion to weight (`cum` its
/// cumulative weights, empty for equal weights), other than `not` if given.
#[inline]
fn draw(n: usize, cum: &[u64], not: Option<usize>) -> usize {
    if cum.len() != n || n == 0 {
        return match not {
            None => rng::below(n),
            Some(i) => {
                let j = rng::below(n - 1);
                if j >= i {
                    j + 1
                } else {
                    j
                }
            }
        };
    }
    let total = cum[n - 1];
    let r = match not {
        None => rng::below_u64(total),
        Some(i) => {
            // Draw from the weights without `i`'s, then skip over its range.
            let start = if i == 0 { 0 } else { cum[i - 1] };
            let w = cum[i] - start;
            let r = rng::below_u64(total - w);
            if r >= start {
                r + w
            } else {
                r
            }
        }
    };
    cum.partition_point(|&c| c <= r).min(n - 1)
}

struct Inner<T, A> {
    shared: Arc<Shared>,
    snap: ArcSwap<Snapshot<T, A>>,
    control: Mutex<()>,
}

/// A primary and its replicas (or a pool of equal instances), and the choice of
/// the best one for each call.
///
/// Cloning is cheap and clones share everything. [`select`](Self::select)
/// takes no lock: the endpoint list is an `arc-swap` snapshot replaced whole on
/// membership changes, and each endpoint's state is a handful of atomics.
///
/// ```
/// use scalekit_replica::{Member, ReplicaSet, Role};
///
/// let set = ReplicaSet::builder()
///     .member(Member::primary("db-1", "postgres://db-1/app"))
///     .member(Member::replica("db-2", "postgres://db-2/app"))
///     .member(Member::replica("db-3", "postgres://db-3/app"))
///     .build()?;
///
/// let read = set.select()?;            // a replica, by peak-EWMA and two choices
/// assert_eq!(read.role(), Role::Replica);
/// read.success();                      // its latency feeds the estimate
///
/// let write = set.select_primary()?;
/// assert_eq!(*write, "postgres://db-1/app");
/// write.success();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ReplicaSet<T, A = AlwaysAdmit> {
    inner: Arc<Inner<T, A>>,
}

impl<T, A> Clone for ReplicaSet<T, A> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T, A> fmt::Debug for ReplicaSet<T, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snap = self.inner.snap.load();
        let names: Vec<&str> = snap.all.iter().map(|e| &*e.name).collect();
        f.debug_struct("ReplicaSet")
            .field("endpoints", &names)
            .field("primary", &snap.primary.as_ref().map(|p| &*p.name))
            .finish()
    }
}

/// Builds a [`ReplicaSet`]; every setting has a default.
pub struct ReplicaSetBuilder<T, A = AlwaysAdmit> {
    config: Config,
    clock: Arc<dyn Clock>,
    members: Vec<Member<T, A>>,
    listener: Option<Listener>,
    slow_start_min: f64,
    error: Option<ConfigError>,
}

impl<T, A> fmt::Debug for ReplicaSetBuilder<T, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicaSetBuilder")
            .field("config", &self.config)
            .field("members", &self.members.len())
            .finish()
    }
}

impl<T, A> ReplicaSetBuilder<T, A> {
    fn fail(&mut self, err: ConfigError) {
        self.error.get_or_insert(err);
    }

    /// The choice among available endpoints (default [`Balance::PeakEwma`]).
    pub fn balance(mut self, balance: Balance) -> Self {
        self.config.balance = balance;
        self
    }

    /// The peak-EWMA decay time: how fast old latencies are forgotten, and how
    /// fast an idle endpoint's estimate falls back toward zero (default 10 s,
    /// as in Finagle and Linkerd).
    pub fn decay(mut self, decay: Duration) -> Self {
        if decay.is_zero() {
            self.fail(ConfigError::new("decay", "0s", "a positive duration"));
        }
        self.config.decay = decay;
        self
    }

    /// The latency estimate of the endpoints the set is built with, before
    /// they answer (default 30 ms, as tower's and Linkerd's). An endpoint
    /// added later starts at the median estimate of the members that have
    /// answered, so that it neither starves (a 30 ms start among sub-millisecond
    /// peers loses every comparison for about 40 s) nor floods; with none, at
    /// this.
    pub fn default_rtt(mut self, rtt: Duration) -> Self {
        self.config.default_rtt = rtt;
        self
    }

    /// The least latency a failed call counts for in the endpoint's estimate
    /// (default zero: only [`failure_penalty_factor`](Self::failure_penalty_factor)
    /// applies). Set it near your call timeout when you know the scale of
    /// your latencies: a failure then costs the endpoint as much as a timeout.
    ///
    /// ```
    /// use scalekit_replica::{Member, ReplicaSet};
    /// use std::time::Duration;
    ///
    /// let set = ReplicaSet::builder()
    ///     .failure_penalty(Duration::from_secs(1))
    ///     .member(Member::replica("a", 1))
    ///     .build()?;
    /// set.select()?.failure();   // counts as a call of at least 1 s
    /// // (decaying from there as time passes)
    /// assert!(set.stats().endpoints[0].latency_estimate > Duration::from_millis(900));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn failure_penalty(mut self, penalty: Duration) -> Self {
        self.config.failure_penalty = penalty;
        self
    }

    /// How many times its current estimate a failed call costs an endpoint
    /// (default 5; at least 1, and 1 with a zero
    /// [`failure_penalty`](Self::failure_penalty) counts failures at their
    /// latency as before).
    ///
    /// A refused connection fails in microseconds; counted at that latency it
    /// would make a dead endpoint the cheapest of all (a black hole). Counted
    /// as five times the estimate (as a peak, whatever its own latency), one
    /// failure makes the endpoint lose every comparison with an equal peer
    /// until its estimate has decayed back, `decay × ln 5`, about 16 s at the
    /// default decay; each further failure multiplies again. The rule is
    /// relative, so it needs no knowledge of the service's latencies, and
    /// one stray failure of a healthy endpoint costs it a quarter of a minute
    /// of traffic, not more: persistent failures are outlier ejection's job.
    ///
    /// ```
    /// use scalekit_replica::{Member, ReplicaSet};
    /// use std::time::Duration;
    ///
    /// let set = ReplicaSet::builder()
    ///     .default_rtt(Duration::from_millis(10))
    ///     .failure_penalty_factor(10.0)
    ///     .member(Member::replica("a", 1))
    ///     .build()?;
    /// set.select()?.failure();
    /// assert!(set.stats().endpoints[0].latency_estimate >= Duration::from_millis(99));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn failure_penalty_factor(mut self, factor: f64) -> Self {
        if !(factor.is_finite() && factor >= 1.0) {
            self.fail(ConfigError::new(
                "failure_penalty_factor",
                factor,
                "a finite number >= 1",
            ));
        }
        self.config.failure_penalty_factor = factor;
        self
    }

    /// The zone reads prefer; other zones take reads when no local endpoint is
    /// available, or when a local one costs `zone_spill_factor` times more than
    /// a remote one.
    pub fn local_zone(mut self, zone: impl Into<Arc<str>>) -> Self {
        self.config.local_zone = Some(zone.into());
        self
    }

    /// How much more a local endpoint must cost than a remote one before a read
    /// spills to the remote one (default 2; at least 1).
    pub fn zone_spill_factor(mut self, factor: f64) -> Self {
        if !(factor.is_finite() && factor >= 1.0) {
            self.fail(ConfigError::new(
                "zone_spill_factor",
                factor,
                "a finite number >= 1",
            ));
        }
        self.config.zone_spill_factor = factor;
        self
    }

    /// Ramp up endpoints added at run time, or back from ejection, over
    /// `window` (off by default).
    pub fn slow_start(mut self, window: Duration) -> Self {
        if window.is_zero() {
            self.fail(ConfigError::new("slow_start", "0s", "a positive duration"));
        }
        self.config.slow_start = Some(SlowStart {
            window,
            min_weight: self.slow_start_min,
        });
        self
    }

    /// The share of its weight a starting endpoint has at once (default 0.1).
    pub fn slow_start_min_weight(mut self, share: f64) -> Self {
        if !(share > 0.0 && share <= 1.0) {
            self.fail(ConfigError::new(
                "slow_start_min_weight",
                share,
                "a number in (0, 1]",
            ));
        }
        self.slow_start_min = share;
        if let Some(s) = &mut self.config.slow_start {
            s.min_weight = share;
        }
        self
    }

    /// Passive outlier detection (default: [`OutlierDetection::default`]).
    pub fn outlier_detection(mut self, outliers: OutlierDetection) -> Self {
        if outliers.max_ejection_percent > 100 {
            self.fail(ConfigError::new(
                "outlier_detection.max_ejection_percent",
                outliers.max_ejection_percent,
                "a percentage from 0 to 100",
            ));
        }
        if outliers.base_ejection_time.is_zero() {
            self.fail(ConfigError::new(
                "outlier_detection.base_ejection_time",
                "0s",
                "a positive duration",
            ));
        }
        if outliers.consecutive_failures == Some(0) {
            self.fail(ConfigError::new(
                "outlier_detection.consecutive_failures",
                0,
                "at least 1, or None",
            ));
        }
        if let Some(sr) = outliers.success_rate {
            if !(sr.stdev_factor.is_finite() && sr.stdev_factor >= 0.0) {
                self.fail(ConfigError::new(
                    "outlier_detection.success_rate.stdev_factor",
                    sr.stdev_factor,
                    "a finite number >= 0",
                ));
            }
        }
        self.config.outliers = outliers;
        self
    }

    /// Replicas lagging more than this take no reads (off by default), except
    /// that the `min_serving_replicas` least-lagged ones among the available
    /// (healthy, not ejected) replicas always do.
    pub fn max_lag(mut self, lag: Duration) -> Self {
        self.config.max_lag = Some(lag);
        self
    }

    /// How many replicas keep taking reads however much they lag (default 1),
    /// so one lag spike does not send every read to the primary.
    pub fn min_serving_replicas(mut self, n: usize) -> Self {
        self.config.min_serving_replicas = n;
        self
    }

    /// Whether reads may go to the primary (default [`PrimaryReads::Fallback`]).
    pub fn primary_reads(mut self, reads: PrimaryReads) -> Self {
        self.config.primary_reads = reads;
        self
    }

    /// How long an endpoint whose admission policy refused a call is skipped
    /// when the refusal gives no retry time (default 1 s).
    pub fn refusal_backoff(mut self, backoff: Duration) -> Self {
        self.config.refusal_backoff = backoff;
        self
    }

    /// The clock (default [`MonotonicClock`]); tests pass a `ManualClock`.
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Called on every [`Event`]: ejections, returns, lag and health changes,
    /// membership changes. Keep it quick; it runs on the thread that caused it,
    /// sometimes while the set's control lock is held: it must not change the
    /// set's membership, weights or lag itself (hand the event to another task).
    pub fn on_event(mut self, listener: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// An endpoint present from the start (no slow start for it).
    pub fn member(mut self, member: Member<T, A>) -> Self {
        self.members.push(member);
        self
    }

    /// Builds the set, or says which setting is wrong.
    pub fn build(self) -> Result<ReplicaSet<T, A>, ConfigError> {
        if let Some(err) = self.error {
            return Err(err);
        }
        let mut seen = std::collections::HashSet::new();
        let mut primaries = 0;
        for m in &self.members {
            if !seen.insert(m.name.clone()) {
                return Err(ConfigError::new("member", &m.name, "unique endpoint names"));
            }
            if m.weight == 0 {
                return Err(ConfigError::new(
                    "member.weight",
                    format!("0 (endpoint `{}`)", m.name),
                    "a weight of at least 1",
                ));
            }
            primaries += usize::from(m.role == Role::Primary);
        }
        if primaries > 1 {
            return Err(ConfigError::new(
                "member",
                format!("{primaries} primaries"),
                "at most one primary",
            ));
        }
        let shared = Arc::new(Shared {
            inv_tau: 1.0 / self.config.decay.as_nanos() as f64,
            slow_start_min: self.slow_start_min,
            config: self.config,
            clock: self.clock,
            ejected: AtomicU32::new(0),
            members: AtomicU32::new(0),
            ejections_total: AtomicU64::new(0),
            primary_fallbacks: AtomicU64::new(0),
            serving_dirty: AtomicBool::new(false),
            rr: AtomicUsize::new(0),
            notify: Notify::new(),
            listener: self.listener,
        });
        let now = shared.clock.now_nanos();
        let initial = shared.config.default_rtt.as_nanos() as f64;
        let all: Vec<_> = self
            .members
            .into_iter()
            .map(|m| Arc::new(Endpoint::new(m, Arc::clone(&shared), now, false, initial)))
            .collect();
        let snap = build_snapshot(&shared, all);
        Ok(ReplicaSet {
            inner: Arc::new(Inner {
                shared,
                snap: ArcSwap::from_pointee(snap),
                control: Mutex::new(()),
            }),
        })
    }
}

/// The median latency estimate (decayed to `now`) of the endpoints that have
/// seen a call, if any has: where an endpoint joining at run time starts.
fn median_estimate<T, A>(all: &[Arc<Endpoint<T, A>>], now: u64) -> Option<f64> {
    let mut seen: Vec<f64> = all.iter().filter_map(|e| e.estimate_seen(now)).collect();
    if seen.is_empty() {
        return None;
    }
    seen.sort_by(f64::total_cmp);
    let mid = seen.len() / 2;
    Some(if seen.len() % 2 == 1 {
        seen[mid]
    } else {
        (seen[mid - 1] + seen[mid]) / 2.0
    })
}

fn build_snapshot<T, A>(shared: &Shared, all: Vec<Arc<Endpoint<T, A>>>) -> Snapshot<T, A> {
    let primary = all
        .iter()
        .find(|e| e.is_primary.load(Ordering::Relaxed))
        .cloned();
    let mut local = Vec::new();
    let mut remote = Vec::new();
    for e in &all {
        let is_primary = e.is_primary.load(Ordering::Relaxed);
        if is_primary && shared.config.primary_reads != PrimaryReads::Always {
            continue;
        }
        let is_local = match (&shared.config.local_zone, &e.zone) {
            (None, _) => true,
            (Some(z), Some(ez)) => z == ez,
            (Some(_), None) => false,
        };
        if is_local {
            local.push(Arc::clone(e));
        } else {
            remote.push(Arc::clone(e));
        }
    }
    shared.members.store(all.len() as u32, Ordering::Relaxed);
    Snapshot {
        local_cum: cumulative(&local),
        remote_cum: cumulative(&remote),
        all,
        primary,
        local,
        remote,
    }
}

impl<T> ReplicaSet<T, AlwaysAdmit> {
    /// A builder with every setting at its default.
    pub fn builder() -> ReplicaSetBuilder<T, AlwaysAdmit> {
        Self::builder_with_admission()
    }
}

impl<T, A> ReplicaSet<T, A> {
    /// A builder for a set whose endpoints may carry an admission policy of
    /// type `A` (a circuit breaker, a concurrency limit).
    ///
    /// ```
    /// use scalekit_breaker::CircuitBreaker;
    /// use scalekit_replica::{Member, ReplicaSet};
    ///
    /// let set = ReplicaSet::builder_with_admission()
    ///     .member(Member::replica("a", 1).admission(CircuitBreaker::builder().build()?))
    ///     .member(Member::replica("b", 2).admission(CircuitBreaker::builder().build()?))
    ///     .build()?;
    /// set.select()?.success();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder_with_admission() -> ReplicaSetBuilder<T, A> {
        ReplicaSetBuilder {
            config: Config::default(),
            clock: Arc::new(MonotonicClock),
            members: Vec::new(),
            listener: None,
            slow_start_min: 0.1,
            error: None,
        }
    }

    fn now(&self) -> u64 {
        self.inner.shared.clock.now_nanos()
    }

    fn find(snap: &Snapshot<T, A>, name: &str) -> Result<Arc<Endpoint<T, A>>, MembershipError> {
        snap.all
            .iter()
            .find(|e| &*e.name == name)
            .cloned()
            .ok_or_else(|| MembershipError::Unknown(name.to_owned()))
    }

    /// Adds an endpoint at run time without stopping traffic. With slow start
    /// configured it ramps up over the window. A primary added to a set that
    /// has one takes its place (the old one becomes a replica).
    ///
    /// ```
    /// use scalekit_replica::{Member, ReplicaSet};
    ///
    /// let set = ReplicaSet::builder().member(Member::replica("a", 1)).build()?;
    /// set.add(Member::replica("b", 2))?;
    /// assert_eq!(set.stats().endpoints.len(), 2);
    /// assert!(set.add(Member::replica("b", 3)).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add(&self, member: Member<T, A>) -> Result<(), MembershipError> {
        if member.weight == 0 {
            return Err(MembershipError::ZeroWeight(member.name.to_string()));
        }
        let _guard = self.inner.control.lock();
        let shared = &self.inner.shared;
        let snap = self.inner.snap.load();
        if snap.all.iter().any(|e| e.name == member.name) {
            return Err(MembershipError::Duplicate(member.name.to_string()));
        }
        let role = member.role;
        let now = self.now();
        let initial =
            median_estimate(&snap.all, now).unwrap_or(shared.config.default_rtt.as_nanos() as f64);
        let ep = Arc::new(Endpoint::new(
            member,
            Arc::clone(shared),
            now,
            true,
            initial,
        ));
        let name = Arc::clone(&ep.name);
        let previous = if role == Role::Primary {
            snap.primary.as_ref().map(|p| {
                p.is_primary.store(false, Ordering::Relaxed);
                Arc::clone(&p.name)
            })
        } else {
            None
        };
        let mut all = snap.all.clone();
        all.push(ep);
        self.inner.snap.store(Arc::new(build_snapshot(shared, all)));
        drop(snap);
        shared.emit(Event::Added {
            name: Arc::clone(&name),
            role,
        });
        if role == Role::Primary {
            shared.emit(Event::Promoted { name, previous });
        }
        self.recompute_serving();
        Ok(())
    }

    /// Removes an endpoint. Calls already running on it finish normally.
    pub fn remove(&self, name: &str) -> Result<(), MembershipError> {
        let _guard = self.inner.control.lock();
        let shared = &self.inner.shared;
        let snap = self.inner.snap.load();
        let ep = Self::find(&snap, name)?;
        ep.removed.store(true, Ordering::Relaxed);
        let until = ep.ejected_until.load(Ordering::Acquire);
        if until != NOT_EJECTED
            && until != EJECTING
            && ep
                .ejected_until
                .compare_exchange(until, NOT_EJECTED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            && ep.holds_slot.swap(false, Ordering::AcqRel)
        {
            shared.ejected.fetch_sub(1, Ordering::AcqRel);
        }
        let all = snap
            .all
            .iter()
            .filter(|e| !Arc::ptr_eq(e, &ep))
            .cloned()
            .collect();
        self.inner.snap.store(Arc::new(build_snapshot(shared, all)));
        drop(snap);
        shared.emit(Event::Removed {
            name: Arc::clone(&ep.name),
        });
        self.recompute_serving();
        Ok(())
    }

    /// Changes an endpoint's weight; takes effect on the next selection.
    pub fn set_weight(&self, name: &str, weight: u32) -> Result<(), MembershipError> {
        if weight == 0 {
            return Err(MembershipError::ZeroWeight(name.to_owned()));
        }
        let _guard = self.inner.control.lock();
        let shared = &self.inner.shared;
        let snap = self.inner.snap.load();
        let ep = Self::find(&snap, name)?;
        if ep.weight.swap(weight, Ordering::Relaxed) != weight {
            // The draw's cumulative weights live in the snapshot.
            self.inner
                .snap
                .store(Arc::new(build_snapshot(shared, snap.all.clone())));
        }
        Ok(())
    }

    /// Fails over: `name` becomes the primary and the previous primary, if
    /// any, a replica. Writes selected after this go to the new primary.
    ///
    /// ```
    /// use scalekit_replica::{Member, ReplicaSet};
    ///
    /// let set = ReplicaSet::builder()
    ///     .member(Member::primary("a", 1))
    ///     .member(Member::replica("b", 2))
    ///     .build()?;
    /// set.promote("b")?;
    /// assert_eq!(*set.select_primary()?, 2);
    /// assert_eq!(*set.select()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn promote(&self, name: &str) -> Result<(), MembershipError> {
        let _guard = self.inner.control.lock();
        let shared = &self.inner.shared;
        let snap = self.inner.snap.load();
        let ep = Self::find(&snap, name)?;
        let previous = snap
            .primary
            .as_ref()
            .filter(|p| !Arc::ptr_eq(p, &ep))
            .map(|p| {
                p.is_primary.store(false, Ordering::Relaxed);
                Arc::clone(&p.name)
            });
        ep.is_primary.store(true, Ordering::Relaxed);
        ep.lag_ok.store(true, Ordering::Relaxed);
        ep.lag_nanos.store(0, Ordering::Relaxed);
        self.inner
            .snap
            .store(Arc::new(build_snapshot(shared, snap.all.clone())));
        drop(snap);
        shared.emit(Event::Promoted {
            name: Arc::clone(&ep.name),
            previous,
        });
        self.recompute_serving();
        Ok(())
    }

    /// Records a replica's replication lag. Replicas over
    /// [`max_lag`](ReplicaSetBuilder::max_lag) stop taking reads, except the
    /// least-lagged [`min_serving_replicas`](ReplicaSetBuilder::min_serving_replicas).
    ///
    /// ```
    /// use scalekit_replica::{Member, ReplicaSet};
    /// use std::time::Duration;
    ///
    /// let set = ReplicaSet::builder()
    ///     .max_lag(Duration::from_secs(1))
    ///     .member(Member::replica("a", 1))
    ///     .member(Member::replica("b", 2))
    ///     .build()?;
    /// set.report_lag("a", Duration::from_secs(5))?;
    /// for _ in 0..100 {
    ///     assert_eq!(*set.select()?, 2);
    /// }
    /// // b lags too: the least-lagged replica keeps serving.
    /// set.report_lag("b", Duration::from_secs(9))?;
    /// assert_eq!(*set.select()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn report_lag(&self, name: &str, lag: Duration) -> Result<(), MembershipError> {
        let _guard = self.inner.control.lock();
        let ep = Self::find(&self.inner.snap.load(), name)?;
        ep.lag_nanos.store(nanos(lag), Ordering::Relaxed);
        self.recompute_serving();
        Ok(())
    }

    /// Records how far an endpoint has applied the primary's history, and
    /// wakes reads waiting for that position.
    pub fn report_applied(&self, name: &str, position: Position) -> Result<(), MembershipError> {
        let ep = Self::find(&self.inner.snap.load(), name)?;
        ep.applied.fetch_max(position.get(), Ordering::AcqRel);
        self.inner.shared.notify.notify_waiters();
        Ok(())
    }

    /// Marks an endpoint healthy or not (what an active health check found).
    pub fn set_healthy(&self, name: &str, healthy: bool) -> Result<(), MembershipError> {
        let ep = Self::find(&self.inner.snap.load(), name)?;
        if ep.healthy.swap(healthy, Ordering::AcqRel) != healthy {
            self.inner.shared.emit(Event::Health {
                name: Arc::clone(&ep.name),
                healthy,
            });
            self.recompute_serving();
        }
        Ok(())
    }

    fn recompute_serving(&self) {
        let snap = self.inner.snap.load();
        recompute_serving(&self.inner.shared, &snap, self.now());
    }

    /// Recomputes the serving set if health or ejection changed since.
    #[inline]
    fn refresh_serving(&self, snap: &Snapshot<T, A>, now: u64) {
        let shared = &*self.inner.shared;
        if shared.serving_dirty.load(Ordering::Relaxed) {
            refresh_serving_cold(shared, snap, now);
        }
    }

    /// Periodic upkeep; call it every few seconds (Envoy's default interval is
    /// 10 s). It returns ejected endpoints whose time is up (selection also does
    /// that as it meets them), lowers the ejection multiplier of endpoints that
    /// have been in rotation since the previous call (a full interval without
    /// an ejection), and runs the success-rate outlier test over the calls since
    /// the last call.
    ///
    /// ```no_run
    /// # async fn run(set: scalekit_replica::ReplicaSet<String>) {
    /// let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    /// loop {
    ///     tick.tick().await;
    ///     set.maintain();
    /// }
    /// # }
    /// ```
    pub fn maintain(&self) {
        let shared = &self.inner.shared;
        let snap = self.inner.snap.load();
        let now = self.now();
        for e in &snap.all {
            e.try_return(now);
            if e.ejected_until.load(Ordering::Acquire) == NOT_EJECTED {
                // Forgive one ejection only once the endpoint has been in
                // rotation for a full interval (since the last `maintain`)
                // without being ejected again, as Envoy does.
                let mark = u64::from(e.epoch.load(Ordering::Acquire)) + 1;
                if e.clean_since.swap(mark, Ordering::AcqRel) == mark {
                    let _ = e
                        .ejections
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
                }
            } else {
                e.clean_since.store(0, Ordering::Release);
            }
        }
        self.refresh_serving(&snap, now);
        let Some(sr) = shared.config.outliers.success_rate else {
            return;
        };
        let mut rates = Vec::with_capacity(snap.all.len());
        for e in &snap.all {
            let counts = e.interval.swap(0, Ordering::AcqRel);
            let total = (counts >> 32) as u32;
            let ok = counts as u32;
            if total >= sr.request_volume.max(1)
                && e.ejected_until.load(Ordering::Acquire) == NOT_EJECTED
            {
                rates.push((e, f64::from(ok) / f64::from(total)));
            }
        }
        if rates.len() < sr.minimum_hosts.max(1) {
            return;
        }
        let n = rates.len() as f64;
        let mean = rates.iter().map(|(_, r)| r).sum::<f64>() / n;
        let var = rates
            .iter()
            .map(|(_, r)| (r - mean) * (r - mean))
            .sum::<f64>()
            / n;
        let threshold = mean - sr.stdev_factor * var.sqrt();
        for (e, rate) in rates {
            if rate < threshold {
                e.try_eject(now, EjectReason::SuccessRate);
            }
        }
    }

    /// A snapshot of the set for dashboards: plain atomic reads, no lock.
    pub fn stats(&self) -> SetStats {
        let shared = &self.inner.shared;
        let snap = self.inner.snap.load();
        let now = self.now();
        // Return endpoints whose ejection is over (as selection would on
        // meeting them), so that the serving set reported is the one the next
        // selection uses.
        for e in &snap.all {
            e.try_return(now);
        }
        self.refresh_serving(&snap, now);
        SetStats {
            endpoints: snap
                .all
                .iter()
                .map(|e| {
                    let until = e.ejected_until.load(Ordering::Acquire);
                    EndpointStats {
                        name: Arc::clone(&e.name),
                        role: if e.is_primary.load(Ordering::Relaxed) {
                            Role::Primary
                        } else {
                            Role::Replica
                        },
                        zone: e.zone.clone(),
                        weight: e.weight.load(Ordering::Relaxed),
                        outstanding: e.outstanding.load(Ordering::Relaxed),
                        latency_estimate: Duration::from_nanos(e.ewma_at(now) as u64),
                        ejected: until != NOT_EJECTED && now < until,
                        ejections: e.ejections.load(Ordering::Relaxed),
                        healthy: e.healthy.load(Ordering::Relaxed),
                        lag: Duration::from_nanos(e.lag_nanos.load(Ordering::Relaxed)),
                        serving_reads: e.lag_ok.load(Ordering::Relaxed),
                        applied: Position::new(e.applied.load(Ordering::Relaxed)),
                    }
                })
                .collect(),
            ejected_now: shared.ejected.load(Ordering::Relaxed),
            ejections_total: shared.ejections_total.load(Ordering::Relaxed),
            primary_fallbacks: shared.primary_fallbacks.load(Ordering::Relaxed),
        }
    }

    /// The endpoint values with their names and roles (a copy of the current
    /// membership), for health checks and tooling.
    pub fn endpoints(&self) -> Vec<(Arc<str>, Role)> {
        self.inner
            .snap
            .load()
            .all
            .iter()
            .map(|e| {
                let role = if e.is_primary.load(Ordering::Relaxed) {
                    Role::Primary
                } else {
                    Role::Replica
                };
                (Arc::clone(&e.name), role)
            })
            .collect()
    }

    pub(crate) fn for_each_value(&self) -> Vec<(Arc<str>, EndpointRef<T, A>)> {
        self.inner
            .snap
            .load()
            .all
            .iter()
            .map(|e| (Arc::clone(&e.name), EndpointRef(Arc::clone(e))))
            .collect()
    }
}

/// A reference to an endpoint held while a health check runs.
pub(crate) struct EndpointRef<T, A>(Arc<Endpoint<T, A>>);

impl<T, A> Deref for EndpointRef<T, A> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0.value
    }
}

/// A set's statistics, from [`ReplicaSet::stats`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SetStats {
    /// One entry per endpoint.
    pub endpoints: Vec<EndpointStats>,
    /// Endpoints ejected now.
    pub ejected_now: u32,
    /// Ejections since the set was built.
    pub ejections_total: u64,
    /// Reads sent to the primary because no replica could take them.
    pub primary_fallbacks: u64,
}

/// One endpoint's statistics.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// Its name.
    pub name: Arc<str>,
    /// Its role.
    pub role: Role,
    /// Its zone.
    pub zone: Option<Arc<str>>,
    /// Its configured weight.
    pub weight: u32,
    /// Calls in flight.
    pub outstanding: u32,
    /// The peak-EWMA latency estimate now.
    pub latency_estimate: Duration,
    /// Whether it is ejected now.
    pub ejected: bool,
    /// The ejection multiplier (ejections not yet forgiven).
    pub ejections: u32,
    /// The last active health check's verdict (true until one says otherwise).
    pub healthy: bool,
    /// Its last reported replication lag.
    pub lag: Duration,
    /// Whether its lag lets it take reads.
    pub serving_reads: bool,
    /// The replication position it last reported.
    pub applied: Position,
}

impl<T, A> Endpoint<T, A> {
    /// Returns the endpoint from ejection if its time is up. True if it is
    /// (now) not ejected.
    #[inline]
    pub(crate) fn try_return(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Acquire);
        if until == NOT_EJECTED {
            return true;
        }
        if until == EJECTING || now < until {
            return false;
        }
        self.return_cold(until, now)
    }

    #[cold]
    fn return_cold(&self, until: u64, now: u64) -> bool {
        if self
            .ejected_until
            .compare_exchange(until, NOT_EJECTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let shared = &self.shared;
            if self.holds_slot.swap(false, Ordering::AcqRel) {
                let _ = shared
                    .ejected
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            }
            // A fresh start: failures from before the ejection do not count.
            self.consecutive_failures.store(0, Ordering::Relaxed);
            shared.serving_dirty.store(true, Ordering::Release);
            if let Some(s) = shared.config.slow_start {
                self.warm_from.store(now, Ordering::Relaxed);
                self.warm_until.store(
                    now.saturating_add(nanos(s.window)).max(1),
                    Ordering::Relaxed,
                );
            }
            shared.emit(Event::Returned {
                name: Arc::clone(&self.name),
            });
        }
        self.ejected_until.load(Ordering::Acquire) == NOT_EJECTED
    }

    /// Ejects the endpoint unless it is ejected already, removed, or the set
    /// has reached its ejection cap.
    #[cold]
    pub(crate) fn try_eject(&self, now: u64, reason: EjectReason) -> bool {
        if self.removed.load(Ordering::Relaxed) {
            return false;
        }
        if self
            .ejected_until
            .compare_exchange(NOT_EJECTED, EJECTING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        let shared = &self.shared;
        let od = &shared.config.outliers;
        let members = shared.members.load(Ordering::Relaxed);
        let cap = if od.max_ejection_percent == 0 {
            0
        } else {
            (u64::from(members) * u64::from(od.max_ejection_percent) / 100).max(1) as u32
        };
        // The cap is on replicas: an ejected primary (taken out of the reads
        // under `PrimaryReads::Always`) does not use up a slot.
        let takes_slot = !self.is_primary.load(Ordering::Relaxed);
        if takes_slot
            && shared
                .ejected
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < cap).then_some(n + 1)
                })
                .is_err()
        {
            self.ejected_until.store(NOT_EJECTED, Ordering::Release);
            return false;
        }
        self.holds_slot.store(takes_slot, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        shared.serving_dirty.store(true, Ordering::Release);
        let k = self
            .ejections
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        let longest = od.max_ejection_time.max(od.base_ejection_time);
        let duration = od.base_ejection_time.saturating_mul(k).min(longest);
        let until = now.saturating_add(nanos(duration)).clamp(1, EJECTING - 1);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.ejected_until.store(until, Ordering::Release);
        shared.ejections_total.fetch_add(1, Ordering::Relaxed);
        shared.emit(Event::Ejected {
            name: Arc::clone(&self.name),
            reason,
            duration,
        });
        true
    }

    /// Whether the endpoint may take a read now.
    #[inline]
    fn available(&self, now: u64, min_applied: u64, skip: impl Skip<T, A>) -> bool {
        // `try_return` before the lag test: an ejected replica left out of the
        // serving set comes back (and the set is recomputed) when its time is up.
        !skip.skips(self)
            && self.healthy.load(Ordering::Relaxed)
            && self.try_return(now)
            && self.lag_ok.load(Ordering::Relaxed)
            && self.refused_until.load(Ordering::Relaxed) <= now
            && (min_applied == 0
                || self.applied.load(Ordering::Acquire) >= min_applied
                || self.is_primary.load(Ordering::Relaxed))
    }

    /// The cost of one more call. Candidates are drawn in proportion to
    /// weight, so the weight enters the cost only through the load, as calls
    /// in flight per unit of weight: with no calls in flight equal endpoints
    /// cost the same whatever their weights (the draw alone gives each its
    /// share), and under load an endpoint of weight 4 carries four times the
    /// calls of one of weight 1 at equal cost. Slow start divides the cost.
    #[inline]
    fn cost(&self, now: u64, balance: Balance) -> f64 {
        let w = f64::from(self.weight.load(Ordering::Relaxed).max(1));
        let load = f64::from(self.outstanding.load(Ordering::Relaxed)) / w + 1.0;
        let ramp = self.effective_weight(now) / w;
        match balance {
            Balance::LeastLoaded => load / ramp,
            _ => self.ewma_at(now) * load / ramp,
        }
    }
}

impl<T, A: Admission> ReplicaSet<T, A> {
    /// Chooses an endpoint for a read: two random available candidates from the
    /// local zone, the cheaper one by peak-EWMA latency times (outstanding + 1)
    /// over weight; another zone when no local one is available or a remote one
    /// is much cheaper; the primary when no replica is available (unless
    /// [`PrimaryReads::Never`]). Takes no lock.
    ///
    /// Report the call's outcome on the returned [`Selected`]; dropping it
    /// unreported counts the call as cancelled.
    ///
    /// ```
    /// use scalekit_replica::{Member, ReplicaSet};
    ///
    /// let set = ReplicaSet::builder()
    ///     .member(Member::replica("a", "10.0.0.1:5432"))
    ///     .member(Member::replica("b", "10.0.0.2:5432"))
    ///     .build()?;
    /// let endpoint = set.select()?;
    /// println!("reading from {} at {}", endpoint.name(), *endpoint);
    /// endpoint.success();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn select(&self) -> Result<Selected<T, A>, SelectError> {
        self.select_read(0, NoSkip, true)
    }

    /// Chooses an endpoint for a read that must see a write at `token`: a
    /// replica that has applied it, else the primary at once. See
    /// [`select_at_within`](Self::select_at_within) to wait for a replica.
    ///
    /// ```
    /// use scalekit_replica::{Member, Position, ReplicaSet, Role};
    ///
    /// let set = ReplicaSet::builder()
    ///     .member(Member::primary("p", 0))
    ///     .member(Member::replica("r", 1))
    ///     .build()?;
    /// let token = Position::new(100);                      // returned by the write
    /// assert_eq!(set.select_at(token)?.role(), Role::Primary);
    /// set.report_applied("r", Position::new(120))?;        // the replica caught up
    /// assert_eq!(set.select_at(token)?.role(), Role::Replica);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn select_at(&self, token: Position) -> Result<Selected<T, A>, SelectError> {
        match self.select_read(token.get(), NoSkip, false) {
            Ok(s) => Ok(s),
            Err(_) => self.primary_for_read(),
        }
    }

    /// Like [`select_at`](Self::select_at), but waits up to `max_wait` for a
    /// replica to apply `token` (woken by
    /// [`report_applied`](Self::report_applied)) before falling back to the
    /// primary.
    pub async fn select_at_within(
        &self,
        token: Position,
        max_wait: Duration,
    ) -> Result<Selected<T, A>, SelectError> {
        // A wait too long to represent (`Duration::MAX`) has no deadline.
        let deadline = tokio::time::Instant::now().checked_add(max_wait);
        loop {
            let notified = self.inner.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Ok(s) = self.select_read(token.get(), NoSkip, false) {
                return Ok(s);
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        break;
                    }
                }
                None => notified.await,
            }
        }
        self.primary_for_read()
    }

    /// Like [`select`](Self::select), but never returns an endpoint named in
    /// `exclude`: the ones a request already tried, to retry it elsewhere.
    /// The primary is left out too if named. When every endpoint that could
    /// take the read is excluded, the error is
    /// [`SelectError::Unavailable`]`(None)`; refusals of excluded endpoints
    /// are not reported.
    ///
    /// `exclude` is any slice of names (`&[&str]`, `&[String]`,
    /// `&[Arc<str>]`); it is scanned for each candidate, allocates nothing,
    /// and suits the few endpoints one request tries.
    ///
    /// ```
    /// use scalekit_replica::{Member, ReplicaSet, SelectError};
    ///
    /// let set = ReplicaSet::builder()
    ///     .member(Member::replica("a", "10.0.0.1:80"))
    ///     .member(Member::replica("b", "10.0.0.2:80"))
    ///     .member(Member::replica("c", "10.0.0.3:80"))
    ///     .build()?;
    /// let mut tried: Vec<String> = Vec::new();
    /// loop {
    ///     let endpoint = match set.select_excluding(&tried) {
    ///         Ok(endpoint) => endpoint,
    ///         Err(SelectError::Unavailable(None)) => break, // all tried
    ///         Err(e) => return Err(e.into()),
    ///     };
    ///     assert!(!tried.iter().any(|t| t == endpoint.name()));
    ///     tried.push(endpoint.name().to_owned());
    ///     endpoint.failure(); // say the call failed: try another
    /// }
    /// assert_eq!(tried.len(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn select_excluding<S: AsRef<str>>(
        &self,
        exclude: &[S],
    ) -> Result<Selected<T, A>, SelectError> {
        self.select_read(0, Names(exclude), true)
    }

    /// Like [`select_at`](Self::select_at), but never returns an endpoint
    /// named in `exclude` (see [`select_excluding`](Self::select_excluding)):
    /// a replica not excluded that has applied `token`, else the primary if it
    /// is not excluded, else [`SelectError::Unavailable`].
    ///
    /// ```
    /// use scalekit_replica::{Member, Position, ReplicaSet, SelectError};
    ///
    /// let set = ReplicaSet::builder()
    ///     .member(Member::primary("p", 0))
    ///     .member(Member::replica("r1", 1))
    ///     .member(Member::replica("r2", 2))
    ///     .build()?;
    /// set.report_applied("r1", Position::new(10))?;
    /// set.report_applied("r2", Position::new(10))?;
    /// let token = Position::new(10);
    /// assert_eq!(set.select_at_excluding(token, &["r1"])?.name(), "r2");
    /// assert_eq!(set.select_at_excluding(token, &["r1", "r2"])?.name(), "p");
    /// assert!(matches!(
    ///     set.select_at_excluding(token, &["r1", "r2", "p"]),
    ///     Err(SelectError::Unavailable(None))
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn select_at_excluding<S: AsRef<str>>(
        &self,
        token: Position,
        exclude: &[S],
    ) -> Result<Selected<T, A>, SelectError> {
        match self.select_read(token.get(), Names(exclude), false) {
            Ok(s) => Ok(s),
            Err(e) => {
                let primary_excluded = self
                    .inner
                    .snap
                    .load()
                    .primary
                    .as_ref()
                    .is_some_and(|p| Skip::<T, A>::skips(Names(exclude), p));
                if primary_excluded {
                    Err(e)
                } else {
                    self.primary_for_read()
                }
            }
        }
    }

    /// The primary, for a write. Its admission policy is asked; ejection,
    /// health and lag are not (there is no other place for a write).
    pub fn select_primary(&self) -> Result<Selected<T, A>, SelectError> {
        let snap = self.inner.snap.load();
        let Some(p) = &snap.primary else {
            return Err(SelectError::NoEndpoint);
        };
        let now = self.now();
        acquire(p, now, false).map_err(|r| SelectError::Unavailable(Some(r)))
    }

    fn primary_for_read(&self) -> Result<Selected<T, A>, SelectError> {
        let s = self.select_primary()?;
        self.inner
            .shared
            .primary_fallbacks
            .fetch_add(1, Ordering::Relaxed);
        Ok(s)
    }

    /// A read on another endpoint than `other` (for hedges and retries).
    pub(crate) fn select_other(
        &self,
        other: &Selected<T, A>,
    ) -> Result<Selected<T, A>, SelectError> {
        self.select_read(0, Other(&other.ep), false)
    }

    #[inline]
    fn select_read(
        &self,
        min_applied: u64,
        skip: impl Skip<T, A>,
        fallback: bool,
    ) -> Result<Selected<T, A>, SelectError> {
        let snap = self.inner.snap.load();
        let shared = &*self.inner.shared;
        let now = shared.clock.now_nanos();
        self.refresh_serving(&snap, now);
        let mut refused = None;
        for _ in 0..3 {
            let Some(ep) = pick(shared, &snap, now, min_applied, skip) else {
                break;
            };
            match acquire(ep, now, true) {
                Ok(s) => return Ok(s),
                Err(r) => refused = Some(r),
            }
        }
        if fallback && shared.config.primary_reads != PrimaryReads::Never {
            if let Some(p) = &snap.primary {
                if !skip.skips(p) {
                    if let Ok(s) = acquire(p, now, false) {
                        shared.primary_fallbacks.fetch_add(1, Ordering::Relaxed);
                        return Ok(s);
                    }
                }
            }
        }
        if snap.local.is_empty() && snap.remote.is_empty() && snap.primary.is_none() {
            return Err(SelectError::NoEndpoint);
        }
        Err(SelectError::Unavailable(
            refused.or_else(|| skipped_refusal(&snap, now, min_applied, skip)),
        ))
    }
}

#[inline]
fn acquire<T, A: Admission>(
    ep: &Arc<Endpoint<T, A>>,
    now: u64,
    counts: bool,
) -> Result<Selected<T, A>, Rejected> {
    let permit = match &ep.admission {
        None => None,
        Some(a) => match a.try_acquire() {
            Ok(p) => Some(p),
            Err(r) => {
                // A concurrency limit frees up as calls finish: no backoff (the
                // outstanding count in the cost already steers calls away).
                // Other refusals (an open breaker, a rate limit, load shedding)
                // skip the endpoint for their retry time.
                if r.reason() != RejectReason::ConcurrencyLimited {
                    let backoff = r
                        .retry_after_hint()
                        .unwrap_or(ep.shared.config.refusal_backoff);
                    let until = now.saturating_add(nanos(backoff));
                    ep.refused_reason
                        .store(reason_code(r.reason()), Ordering::Relaxed);
                    ep.refused_until
                        .store(until.max(now.saturating_add(1)), Ordering::Relaxed);
                }
                return Err(r);
            }
        },
    };
    ep.outstanding.fetch_add(1, Ordering::Relaxed);
    Ok(Selected {
        ep: Arc::clone(ep),
        permit,
        start: now,
        epoch: ep.epoch.load(Ordering::Acquire),
        counts,
        finished: false,
    })
}

#[inline]
fn pick<'s, T, A>(
    shared: &Shared,
    snap: &'s Snapshot<T, A>,
    now: u64,
    min_applied: u64,
    skip: impl Skip<T, A>,
) -> Option<&'s Arc<Endpoint<T, A>>> {
    let balance = shared.config.balance;
    if balance == Balance::RoundRobin {
        return round_robin(shared, &snap.local, now, min_applied, skip)
            .or_else(|| round_robin(shared, &snap.remote, now, min_applied, skip));
    }
    match p2c(
        &snap.local,
        &snap.local_cum,
        now,
        min_applied,
        skip,
        balance,
    ) {
        Some((ep, cost)) => {
            if !snap.remote.is_empty() {
                let r = &snap.remote[draw(snap.remote.len(), &snap.remote_cum, None)];
                if r.available(now, min_applied, skip)
                    && r.cost(now, balance) * shared.config.zone_spill_factor < cost
                {
                    return Some(r);
                }
            }
            Some(ep)
        }
        None => p2c(
            &snap.remote,
            &snap.remote_cum,
            now,
            min_applied,
            skip,
            balance,
        )
        .map(|(ep, _)| ep),
    }
}

#[inline]
fn p2c<'s, T, A>(
    list: &'s [Arc<Endpoint<T, A>>],
    cum: &[u64],
    now: u64,
    min_applied: u64,
    skip: impl Skip<T, A>,
    balance: Balance,
) -> Option<(&'s Arc<Endpoint<T, A>>, f64)> {
    let n = list.len();
    match n {
        0 => return None,
        1 => {
            let e = &list[0];
            return e
                .available(now, min_applied, skip)
                .then(|| (e, e.cost(now, balance)));
        }
        _ => {}
    }
    for _ in 0..2 {
        // Two distinct candidates, each drawn in proportion to its weight.
        let i = draw(n, cum, None);
        let j = draw(n, cum, Some(i));
        let (a, b) = (&list[i], &list[j]);
        match (
            a.available(now, min_applied, skip),
            b.available(now, min_applied, skip),
        ) {
            (true, true) => {
                let (ca, cb) = (a.cost(now, balance), b.cost(now, balance));
                return Some(if cb < ca { (b, cb) } else { (a, ca) });
            }
            (true, false) => return Some((a, a.cost(now, balance))),
            (false, true) => return Some((b, b.cost(now, balance))),
            (false, false) => {}
        }
    }
    // Most candidates are out: look at all of them, the cheapest wins.
    let mut best: Option<(&Arc<Endpoint<T, A>>, f64)> = None;
    for e in list {
        if e.available(now, min_applied, skip) {
            let c = e.cost(now, balance);
            if best.is_none_or(|(_, bc)| c < bc) {
                best = Some((e, c));
            }
        }
    }
    best
}

fn round_robin<'s, T, A>(
    shared: &Shared,
    list: &'s [Arc<Endpoint<T, A>>],
    now: u64,
    min_applied: u64,
    skip: impl Skip<T, A>,
) -> Option<&'s Arc<Endpoint<T, A>>> {
    let n = list.len();
    if n == 0 {
        return None;
    }
    let start = shared.rr.fetch_add(1, Ordering::Relaxed);
    (0..n)
        .map(|k| &list[(start + k) % n])
        .find(|e| e.available(now, min_applied, skip))
}

/// Endpoints a selection leaves out besides the unavailable ones. Each kind is
/// its own type, so that `select` (which leaves out nothing) pays nothing.
trait Skip<T, A>: Copy {
    fn skips(self, ep: &Endpoint<T, A>) -> bool;
}

/// Leaves out nothing.
#[derive(Clone, Copy)]
struct NoSkip;

impl<T, A> Skip<T, A> for NoSkip {
    #[inline(always)]
    fn skips(self, _: &Endpoint<T, A>) -> bool {
        false
    }
}

/// Leaves out one endpoint (a hedge's first attempt).
struct Other<'a, T, A>(&'a Arc<Endpoint<T, A>>);

impl<T, A> Clone for Other<'_, T, A> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T, A> Copy for Other<'_, T, A> {}

impl<T, A> Skip<T, A> for Other<'_, T, A> {
    #[inline]
    fn skips(self, ep: &Endpoint<T, A>) -> bool {
        std::ptr::eq(Arc::as_ptr(self.0), ep)
    }
}

/// Leaves out the endpoints of these names (a linear scan: meant for the few
/// a request has tried).
struct Names<'a, S>(&'a [S]);

impl<S> Clone for Names<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S> Copy for Names<'_, S> {}

impl<T, A, S: AsRef<str>> Skip<T, A> for Names<'_, S> {
    #[inline]
    fn skips(self, ep: &Endpoint<T, A>) -> bool {
        self.0.iter().any(|n| n.as_ref() == &*ep.name)
    }
}

/// The endpoint chosen for one call. Dereferences to the endpoint's value.
///
/// Tell it how the call went ([`success`](Self::success),
/// [`failure`](Self::failure), [`finish`](Self::finish)); the latency since
/// selection feeds the endpoint's estimate, failures count toward ejection, and
/// the endpoint's admission policy hears the outcome. Dropped unreported, the
/// call counts as cancelled: its elapsed time raises the estimate if it is
/// above it (the call took at least that long) and changes nothing else.
pub struct Selected<T, A: Admission = AlwaysAdmit> {
    ep: Arc<Endpoint<T, A>>,
    permit: Option<A::Permit>,
    start: u64,
    /// The endpoint's ejection generation when the call started.
    epoch: u32,
    /// Whether the outcome counts toward ejection: not for calls made through
    /// `select_primary` (writes, and reads that fell back to the primary),
    /// which ignore ejection, so that a failing primary cannot use up the
    /// ejection cap meant for replicas.
    counts: bool,
    finished: bool,
}

impl<T: fmt::Debug, A: Admission> fmt::Debug for Selected<T, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selected")
            .field("name", &self.ep.name)
            .field("value", &self.ep.value)
            .finish()
    }
}

impl<T, A: Admission> Deref for Selected<T, A> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.ep.value
    }
}

impl<T, A: Admission> Selected<T, A> {
    /// The endpoint's value.
    #[inline]
    pub fn value(&self) -> &T {
        &self.ep.value
    }

    /// The endpoint's name.
    pub fn name(&self) -> &str {
        &self.ep.name
    }

    /// The endpoint's role.
    pub fn role(&self) -> Role {
        if self.ep.is_primary.load(Ordering::Relaxed) {
            Role::Primary
        } else {
            Role::Replica
        }
    }

    /// The endpoint's zone.
    pub fn zone(&self) -> Option<&str> {
        self.ep.zone.as_deref()
    }

    /// The call succeeded.
    #[inline]
    pub fn success(self) {
        self.finish(Outcome::Success);
    }

    /// The call failed (counts toward ejection).
    #[inline]
    pub fn failure(self) {
        self.finish(Outcome::Failure);
    }

    /// The call ended with `outcome`; its latency is the time since selection.
    #[inline]
    pub fn finish(mut self, outcome: Outcome) {
        let now = self.ep.shared.clock.now_nanos();
        self.record(outcome, now);
    }

    /// The call ended with `outcome` after `latency` (measured by the caller).
    pub fn finish_with_latency(mut self, outcome: Outcome, latency: Duration) {
        let now = self.start.saturating_add(nanos(latency));
        self.record(outcome, now);
    }

    #[inline]
    fn record(&mut self, outcome: Outcome, now: u64) {
        self.finished = true;
        let ep = &*self.ep;
        let rtt = now.saturating_sub(self.start);
        ep.outstanding.fetch_sub(1, Ordering::Relaxed);
        if let (Some(a), Some(p)) = (&ep.admission, self.permit.take()) {
            a.record(p, outcome, Duration::from_nanos(rtt));
        }
        // Outcomes of calls that ignore ejection, or that started before the
        // endpoint's latest ejection (stragglers), do not count toward the next.
        let counts = self.counts && ep.epoch.load(Ordering::Relaxed) == self.epoch;
        let tally = counts && ep.shared.config.outliers.success_rate.is_some();
        match outcome {
            Outcome::Success => {
                ep.observe(now, rtt, false);
                if counts && ep.consecutive_failures.load(Ordering::Relaxed) != 0 {
                    ep.consecutive_failures.store(0, Ordering::Relaxed);
                }
                if tally {
                    ep.interval.fetch_add((1 << 32) | 1, Ordering::Relaxed);
                }
            }
            Outcome::Failure => {
                ep.observe_failure(now, rtt);
                if tally {
                    ep.interval.fetch_add(1 << 32, Ordering::Relaxed);
                }
                if !counts {
                    return;
                }
                let n = ep
                    .consecutive_failures
                    .fetch_add(1, Ordering::AcqRel)
                    .saturating_add(1);
                if let Some(limit) = ep.shared.config.outliers.consecutive_failures {
                    if n >= limit {
                        ep.try_eject(now, EjectReason::ConsecutiveFailures);
                    }
                }
            }
            Outcome::Cancelled => ep.observe(now, rtt, true),
            _ => ep.observe(now, rtt, false),
        }
    }
}

impl<T, A: Admission> Drop for Selected<T, A> {
    fn drop(&mut self) {
        if !self.finished {
            let now = self.ep.shared.clock.now_nanos();
            self.record(Outcome::Cancelled, now);
        }
    }
}

#[cold]
fn refresh_serving_cold<T, A>(shared: &Shared, snap: &Snapshot<T, A>, now: u64) {
    if shared.serving_dirty.swap(false, Ordering::AcqRel) {
        recompute_serving(shared, snap, now);
    }
}

/// Which replicas take reads given their lag: those within `max_lag`, and the
/// `min_serving_replicas` least-lagged among those that can take reads at all
/// (healthy, not ejected), so that a down or ejected replica does not hold a
/// place in the minimum serving set. Run on lag reports, health reports and
/// membership changes, and, without a lock, by the next selection after an
/// ejection or a return: racing runs read the same atomics and converge.
fn recompute_serving<T, A>(shared: &Shared, snap: &Snapshot<T, A>, now: u64) {
    let mut replicas: Vec<&Arc<Endpoint<T, A>>> = snap
        .all
        .iter()
        .filter(|e| !e.is_primary.load(Ordering::Relaxed))
        .collect();
    // Replicas that can take reads first, each group by lag.
    replicas.sort_by_key(|e| (!e.can_serve(now), e.lag_nanos.load(Ordering::Relaxed)));
    let max = shared.config.max_lag.map(nanos);
    for (rank, e) in replicas.iter().enumerate() {
        let lag = e.lag_nanos.load(Ordering::Relaxed);
        let serving = match max {
            None => true,
            Some(max) => {
                lag <= max || (rank < shared.config.min_serving_replicas && e.can_serve(now))
            }
        };
        if e.lag_ok.swap(serving, Ordering::AcqRel) != serving {
            shared.emit(Event::Lag {
                name: Arc::clone(&e.name),
                lag: Duration::from_nanos(lag),
                serving,
            });
        }
    }
    if let Some(p) = &snap.primary {
        p.lag_ok.store(true, Ordering::Relaxed);
    }
}

impl<T, A> Endpoint<T, A> {
    /// Whether the endpoint could take a read apart from its lag: healthy, not
    /// removed, not ejected (or due to return).
    fn can_serve(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Acquire);
        self.healthy.load(Ordering::Relaxed)
            && !self.removed.load(Ordering::Relaxed)
            && (until == NOT_EJECTED || (until != EJECTING && now >= until))
    }
}

/// When no endpoint was available and none refused this time: the refusal of
/// the endpoint that is skipped after an earlier admission refusal and may be
/// tried again first (its reason, and the time left as the retry hint), if any
/// endpoint is out only for that reason.
#[cold]
fn skipped_refusal<T, A>(
    snap: &Snapshot<T, A>,
    now: u64,
    min_applied: u64,
    skip: impl Skip<T, A>,
) -> Option<Rejected> {
    snap.local
        .iter()
        .chain(&snap.remote)
        .filter(|e| {
            !skip.skips(e)
                && e.healthy.load(Ordering::Relaxed)
                && e.try_return(now)
                && e.lag_ok.load(Ordering::Relaxed)
                && (min_applied == 0
                    || e.applied.load(Ordering::Acquire) >= min_applied
                    || e.is_primary.load(Ordering::Relaxed))
        })
        .map(|e| {
            (
                e.refused_until.load(Ordering::Relaxed),
                e.refused_reason.load(Ordering::Relaxed),
            )
        })
        .filter(|&(until, _)| until > now)
        .min_by_key(|&(until, _)| until)
        .map(|(until, code)| {
            Rejected::new(reason_from_code(code)).retry_after(Duration::from_nanos(until - now))
        })
}
