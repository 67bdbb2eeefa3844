//! The builder: settings checked once, at `build()`.

use crate::config::{Balance, Config, OutlierDetection, PrimaryReads, SlowStart};
use crate::endpoint::{Endpoint, Shared};
use crate::error::{invalid, ConfigError};
use crate::event::{Event, Listener};
use crate::member::{AlwaysAdmit, Member, Role};
use crate::set::handle::{Inner, ReplicaSet};
use crate::set::snapshot::build_snapshot;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use scalekit_core::{Clock, MonotonicClock};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Builds a [`ReplicaSet`]; every setting has a default.
pub struct ReplicaSetBuilder<T, A = AlwaysAdmit, C = MonotonicClock> {
    config: Config,
    clock: C,
    members: Vec<Member<T, A>>,
    listener: Option<Listener>,
    slow_start_min: f64,
    error: Option<ConfigError>,
}

impl<T, A, C> fmt::Debug for ReplicaSetBuilder<T, A, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicaSetBuilder")
            .field("config", &self.config)
            .field("members", &self.members.len())
            .finish()
    }
}

impl<T, A, C: Clock> ReplicaSetBuilder<T, A, C> {
    fn fail(&mut self, err: ConfigError) {
        self.error.get_or_insert(err);
    }

    fn percent(&mut self, field: &'static str, value: u32) {
        if value > 100 {
            self.fail(invalid(field, value, "a percentage from 0 to 100"));
        }
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
            self.fail(invalid("decay", "0s", "a positive duration"));
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
            self.fail(invalid(
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
            self.fail(invalid("zone_spill_factor", factor, "a finite number >= 1"));
        }
        self.config.zone_spill_factor = factor;
        self
    }

    /// Ramp up endpoints added at run time, or back from ejection, over
    /// `window` (off by default).
    pub fn slow_start(mut self, window: Duration) -> Self {
        if window.is_zero() {
            self.fail(invalid("slow_start", "0s", "a positive duration"));
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
            self.fail(invalid(
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
            self.fail(invalid(
                "outlier_detection.max_ejection_percent",
                outliers.max_ejection_percent,
                "a percentage from 0 to 100",
            ));
        }
        if outliers.base_ejection_time.is_zero() {
            self.fail(invalid(
                "outlier_detection.base_ejection_time",
                "0s",
                "a positive duration",
            ));
        }
        if outliers.consecutive_failures == Some(0) {
            self.fail(invalid(
                "outlier_detection.consecutive_failures",
                0,
                "at least 1, or None",
            ));
        }
        if let Some(sr) = outliers.success_rate {
            if !(sr.stdev_factor.is_finite() && sr.stdev_factor >= 0.0) {
                self.fail(invalid(
                    "outlier_detection.success_rate.stdev_factor",
                    sr.stdev_factor,
                    "a finite number >= 0",
                ));
            }
            self.percent("outlier_detection.success_rate.enforcing", sr.enforcing);
        }
        if let Some(fp) = outliers.failure_percentage {
            self.percent(
                "outlier_detection.failure_percentage.threshold",
                fp.threshold,
            );
            self.percent(
                "outlier_detection.failure_percentage.enforcing",
                fp.enforcing,
            );
        }
        self.percent(
            "outlier_detection.enforcing_consecutive_failures",
            outliers.enforcing_consecutive_failures,
        );
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

    /// The clock (default [`MonotonicClock`]); tests pass a `ManualClock`
    /// (clones share time). The set's type follows: `ReplicaSet<T, A, C2>`.
    ///
    /// ```
    /// use scalekit_core::ManualClock;
    /// use scalekit_replica::{Member, ReplicaSet};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let set: ReplicaSet<u32, _, ManualClock> = ReplicaSet::builder()
    ///     .clock(clock.clone())
    ///     .member(Member::replica("a", 1))
    ///     .build()?;
    /// let call = set.select()?;
    /// clock.advance(Duration::from_millis(40));
    /// call.success(); // took 40 ms by the manual clock
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clock<C2: Clock>(self, clock: C2) -> ReplicaSetBuilder<T, A, C2> {
        ReplicaSetBuilder {
            config: self.config,
            clock,
            members: self.members,
            listener: self.listener,
            slow_start_min: self.slow_start_min,
            error: self.error,
        }
    }

    /// How many active health checks in a row must fail before a healthy
    /// endpoint is marked unhealthy (Envoy's `unhealthy_threshold`; default 1:
    /// the first failed check). See [`ReplicaSet::check_health`].
    ///
    /// ```
    /// use scalekit_replica::{Member, ReplicaSet};
    ///
    /// let set = ReplicaSet::builder()
    ///     .unhealthy_threshold(3)
    ///     .healthy_threshold(2)
    ///     .member(Member::replica("a", 1))
    ///     .build()?;
    /// set.report_check("a", false)?;
    /// set.report_check("a", false)?;
    /// assert!(set.stats().endpoints[0].healthy, "two failures are not three");
    /// set.report_check("a", false)?;
    /// assert!(!set.stats().endpoints[0].healthy);
    /// set.report_check("a", true)?;
    /// assert!(!set.stats().endpoints[0].healthy, "one pass is not two");
    /// set.report_check("a", true)?;
    /// assert!(set.stats().endpoints[0].healthy);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unhealthy_threshold(mut self, checks: u32) -> Self {
        if checks == 0 {
            self.fail(invalid("unhealthy_threshold", 0, "at least 1 check"));
        }
        self.config.unhealthy_threshold = checks;
        self
    }

    /// How many active health checks in a row must pass before an unhealthy
    /// endpoint is marked healthy again (Envoy's `healthy_threshold`; default
    /// 1). Endpoints start healthy, as members of a set that has not checked
    /// them yet.
    pub fn healthy_threshold(mut self, checks: u32) -> Self {
        if checks == 0 {
            self.fail(invalid("healthy_threshold", 0, "at least 1 check"));
        }
        self.config.healthy_threshold = checks;
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
    pub fn build(self) -> Result<ReplicaSet<T, A, C>, ConfigError> {
        if let Some(err) = self.error {
            return Err(err);
        }
        let mut seen = std::collections::HashSet::new();
        let mut primaries = 0;
        for m in &self.members {
            if !seen.insert(m.name.clone()) {
                return Err(invalid("member", &m.name, "unique endpoint names"));
            }
            if m.weight == 0 {
                return Err(invalid(
                    "member.weight",
                    format!("0 (endpoint `{}`)", m.name),
                    "a weight of at least 1",
                ));
            }
            primaries += usize::from(m.role == Role::Primary);
        }
        if primaries > 1 {
            return Err(invalid(
                "member",
                format!("{primaries} primaries"),
                "at most one primary",
            ));
        }
        let shared = Arc::new(Shared::new(
            self.config,
            self.clock,
            self.slow_start_min,
            self.listener,
        ));
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

impl<T> ReplicaSet<T> {
    /// A builder with every setting at its default.
    pub fn builder() -> ReplicaSetBuilder<T> {
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
            clock: MonotonicClock,
            members: Vec::new(),
            listener: None,
            slow_start_min: 0.1,
            error: None,
        }
    }
}
