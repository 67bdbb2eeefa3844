//! Members of a replica set and the per-endpoint state the selector reads.

use crate::set::Shared;
use scalekit_core::{Admission, Outcome, RejectReason, Rejected};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What an endpoint does in the set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Takes the writes (and reads that must see them).
    Primary,
    /// Takes reads.
    Replica,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        })
    }
}

/// A replication position: how far an endpoint has applied the primary's
/// history. Positions only grow, so a read that carries the position of a
/// write goes to an endpoint whose applied position is at least as large.
///
/// A PostgreSQL WAL position (LSN `16/B374D848`) is one 64-bit number (see the
/// `postgres` feature's `pg::parse_lsn`); a MySQL GTID executed on one source is
/// its transaction number; a version column is its value.
///
/// ```
/// use scalekit_replica::Position;
///
/// let write = Position::new(0x16_B374_D848);
/// assert!(Position::new(0x16_B374_D850) >= write);
/// assert_eq!(write.get(), 0x16_B374_D848);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(u64);

impl Position {
    /// The position `value`.
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The position as a number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// The admission policy of an endpoint that has none: admits every call.
///
/// ```
/// use scalekit_core::Admission;
/// use scalekit_replica::AlwaysAdmit;
///
/// assert!(AlwaysAdmit.try_acquire().is_ok());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct AlwaysAdmit;

impl Admission for AlwaysAdmit {
    type Permit = ();
    #[inline]
    fn try_acquire(&self) -> Result<(), Rejected> {
        Ok(())
    }
    #[inline]
    fn record(&self, _permit: (), _outcome: Outcome, _latency: Duration) {}
}

/// An endpoint to add to a [`ReplicaSet`](crate::ReplicaSet): a name, the
/// value calls use (a connection pool, an address, a client), a role, and
/// optionally a zone, a weight and an admission policy.
///
/// ```
/// use scalekit_replica::{Member, Role};
///
/// let m: Member<&str> = Member::replica("db-2", "postgres://db-2/app").zone("eu-west-1b").weight(2);
/// assert_eq!(m.role(), Role::Replica);
/// ```
pub struct Member<T, A = AlwaysAdmit> {
    pub(crate) name: Arc<str>,
    pub(crate) value: T,
    pub(crate) role: Role,
    pub(crate) zone: Option<Arc<str>>,
    pub(crate) weight: u32,
    pub(crate) admission: Option<A>,
}

impl<T, A> Member<T, A> {
    /// The primary: writes go here.
    pub fn primary(name: impl Into<Arc<str>>, value: T) -> Self {
        Self::new(name, value, Role::Primary)
    }

    /// A replica: reads go here.
    pub fn replica(name: impl Into<Arc<str>>, value: T) -> Self {
        Self::new(name, value, Role::Replica)
    }

    fn new(name: impl Into<Arc<str>>, value: T, role: Role) -> Self {
        Self {
            name: name.into(),
            value,
            role,
            zone: None,
            weight: 1,
            admission: None,
        }
    }

    /// The zone (data centre, availability zone) the endpoint is in; reads
    /// prefer the set's local zone.
    pub fn zone(mut self, zone: impl Into<Arc<str>>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// The endpoint's relative capacity (default 1; zero is refused when the
    /// member is added).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// A policy asked before each call to this endpoint and told its outcome:
    /// a circuit breaker, a concurrency limit.
    pub fn admission(mut self, admission: A) -> Self {
        self.admission = Some(admission);
        self
    }

    /// The member's role.
    pub fn role(&self) -> Role {
        self.role
    }
}

impl<T: fmt::Debug, A> fmt::Debug for Member<T, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("name", &self.name)
            .field("value", &self.value)
            .field("role", &self.role)
            .field("zone", &self.zone)
            .field("weight", &self.weight)
            .field("admission", &self.admission.is_some())
            .finish()
    }
}

/// Ejection state: not ejected.
pub(crate) const NOT_EJECTED: u64 = 0;
/// Ejection state: an ejection is being decided.
pub(crate) const EJECTING: u64 = u64::MAX;

/// The live state of one endpoint. Everything the selector reads is an atomic:
/// selection takes no lock.
pub(crate) struct Endpoint<T, A> {
    pub(crate) name: Arc<str>,
    pub(crate) value: T,
    pub(crate) zone: Option<Arc<str>>,
    pub(crate) admission: Option<A>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) is_primary: AtomicBool,
    pub(crate) removed: AtomicBool,
    pub(crate) weight: AtomicU32,
    /// Peak-EWMA latency estimate in nanoseconds (f64 bits) and when it was set.
    ewma: AtomicU64,
    stamp: AtomicU64,
    /// Whether the estimate has seen a call (it is `default_rtt`, or the set's
    /// median when the endpoint joined, until then).
    seen: AtomicBool,
    pub(crate) outstanding: AtomicU32,
    pub(crate) consecutive_failures: AtomicU32,
    /// `NOT_EJECTED`, `EJECTING`, or the clock reading at which it returns.
    pub(crate) ejected_until: AtomicU64,
    pub(crate) ejections: AtomicU32,
    /// Ejection generation: bumped by each ejection. A call stamped with an
    /// older one started before the latest ejection, and its outcome does not
    /// count toward the next.
    pub(crate) epoch: AtomicU32,
    /// Whether the current ejection holds one of the set's capped slots (an
    /// ejected primary does not).
    pub(crate) holds_slot: AtomicBool,
    /// `epoch + 1` if the endpoint was in rotation at the last `maintain`, else
    /// 0: an ejection is forgiven after a full interval in rotation.
    pub(crate) clean_since: AtomicU64,
    /// Slow start: the reading at which the endpoint reaches full weight (0: warm).
    pub(crate) warm_from: AtomicU64,
    pub(crate) warm_until: AtomicU64,
    /// After an admission refusal, skipped until this reading.
    pub(crate) refused_until: AtomicU64,
    /// The reason of the refusal behind `refused_until` (see `reason_code`).
    pub(crate) refused_reason: AtomicU8,
    pub(crate) healthy: AtomicBool,
    pub(crate) lag_nanos: AtomicU64,
    pub(crate) lag_ok: AtomicBool,
    pub(crate) applied: AtomicU64,
    /// This interval's calls: total in the high 32 bits, successes in the low.
    pub(crate) interval: AtomicU64,
}

impl<T, A> Endpoint<T, A> {
    /// A new endpoint whose latency estimate starts at `initial` nanoseconds.
    pub(crate) fn new(
        member: Member<T, A>,
        shared: Arc<Shared>,
        now: u64,
        warm: bool,
        initial: f64,
    ) -> Self {
        let (warm_from, warm_until) = match (warm, shared.config.slow_start) {
            (true, Some(s)) => (now, now.saturating_add(crate::set::nanos(s.window)).max(1)),
            _ => (0, 0),
        };
        Self {
            name: member.name,
            value: member.value,
            zone: member.zone,
            admission: member.admission,
            shared,
            is_primary: AtomicBool::new(member.role == Role::Primary),
            removed: AtomicBool::new(false),
            weight: AtomicU32::new(member.weight.max(1)),
            ewma: AtomicU64::new(initial.to_bits()),
            stamp: AtomicU64::new(now),
            seen: AtomicBool::new(false),
            outstanding: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(NOT_EJECTED),
            ejections: AtomicU32::new(0),
            epoch: AtomicU32::new(0),
            holds_slot: AtomicBool::new(false),
            clean_since: AtomicU64::new(0),
            warm_from: AtomicU64::new(warm_from),
            warm_until: AtomicU64::new(warm_until),
            refused_until: AtomicU64::new(0),
            refused_reason: AtomicU8::new(0),
            healthy: AtomicBool::new(true),
            lag_nanos: AtomicU64::new(0),
            lag_ok: AtomicBool::new(true),
            applied: AtomicU64::new(0),
            interval: AtomicU64::new(0),
        }
    }

    /// The latency estimate decayed to `now` (toward zero, as Finagle and tower
    /// do, so an endpoint that was slow once is probed again in time).
    #[inline]
    pub(crate) fn ewma_at(&self, now: u64) -> f64 {
        let est = f64::from_bits(self.ewma.load(Ordering::Relaxed));
        let stamp = self.stamp.load(Ordering::Relaxed);
        let elapsed = now.saturating_sub(stamp);
        if elapsed == 0 {
            est
        } else {
            est * (-(elapsed as f64) * self.shared.inv_tau).exp()
        }
    }

    /// Folds one observed latency into the estimate: a higher one replaces it
    /// (the peak), a lower one is averaged in with a weight that grows with the
    /// time since the last observation (tower's and Finagle's rule).
    ///
    /// With `lower_bound` (a call cancelled after `rtt`: it would have taken at
    /// least that long), the estimate is only raised, when `rtt` exceeds the
    /// estimate as selection sees it now (decayed).
    #[inline]
    pub(crate) fn observe(&self, now: u64, rtt: u64, lower_bound: bool) {
        let est = f64::from_bits(self.ewma.load(Ordering::Relaxed));
        let elapsed = now.saturating_sub(self.stamp.load(Ordering::Relaxed));
        let w = if elapsed == 0 {
            1.0
        } else {
            (-(elapsed as f64) * self.shared.inv_tau).exp()
        };
        let rtt = rtt as f64;
        let next = if lower_bound {
            if rtt <= est * w {
                return;
            }
            rtt
        } else if rtt > est {
            rtt
        } else {
            est * w + rtt * (1.0 - w)
        };
        self.store(now, next);
    }

    /// Folds in a failed call that took `rtt`: the estimate becomes at least
    /// `failure_penalty_factor` times what it is now (decayed), and at least
    /// `failure_penalty`, as a peak. A refused connection fails in
    /// microseconds; counted as it is, it would make a dead endpoint the
    /// cheapest of all.
    #[cold]
    pub(crate) fn observe_failure(&self, now: u64, rtt: u64) {
        let config = &self.shared.config;
        let current = self.ewma_at(now);
        let penalised = (current * config.failure_penalty_factor)
            .max(crate::set::nanos(config.failure_penalty) as f64);
        if penalised > rtt as f64 && penalised > current {
            self.store(now, penalised);
        } else {
            self.observe(now, rtt, false);
        }
    }

    /// Whether the estimate has seen a call, and the estimate decayed to `now`.
    pub(crate) fn estimate_seen(&self, now: u64) -> Option<f64> {
        self.seen.load(Ordering::Relaxed).then(|| self.ewma_at(now))
    }

    #[inline]
    fn store(&self, now: u64, estimate: f64) {
        // Two racing observations may lose one of them: the estimate is a
        // heuristic and a lost sample changes nothing that the next one does not.
        self.ewma.store(estimate.to_bits(), Ordering::Relaxed);
        self.stamp.store(now, Ordering::Relaxed);
        if !self.seen.load(Ordering::Relaxed) {
            self.seen.store(true, Ordering::Relaxed);
        }
    }

    /// Weight after slow start.
    #[inline]
    pub(crate) fn effective_weight(&self, now: u64) -> f64 {
        let w = self.weight.load(Ordering::Relaxed) as f64;
        let until = self.warm_until.load(Ordering::Relaxed);
        if until == 0 || now >= until {
            return w;
        }
        let from = self.warm_from.load(Ordering::Relaxed);
        let span = until.saturating_sub(from).max(1) as f64;
        let progress = now.saturating_sub(from) as f64 / span;
        let min = self.shared.slow_start_min;
        w * progress.max(min)
    }
}

/// A refusal reason as a byte, to keep it in an atomic.
pub(crate) fn reason_code(reason: RejectReason) -> u8 {
    match reason {
        RejectReason::RateLimited => 0,
        RejectReason::ConcurrencyLimited => 1,
        RejectReason::CircuitOpen => 2,
        _ => 3,
    }
}

/// The reason a byte from [`reason_code`] stands for.
pub(crate) fn reason_from_code(code: u8) -> RejectReason {
    match code {
        0 => RejectReason::RateLimited,
        1 => RejectReason::ConcurrencyLimited,
        2 => RejectReason::CircuitOpen,
        _ => RejectReason::Overloaded,
    }
}
