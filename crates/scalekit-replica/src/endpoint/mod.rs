//! The live state of one endpoint: what selection reads (atomics only) and
//! the rules that change it.
//!
//! * `shared`: what all endpoints of a set share (settings, clock, counters).
//! * `estimate`: the peak-EWMA latency estimate, slow start and the cost.
//! * `eject`: ejection, return and availability.

mod eject;
mod estimate;
mod shared;

pub(crate) use shared::{enforced, nanos, Shared};

use crate::member::{Member, Role};
use scalekit_core::RejectReason;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8};
use std::sync::Arc;

/// Ejection state: not ejected.
pub(crate) const NOT_EJECTED: u64 = 0;
/// Ejection state: an ejection is being decided.
pub(crate) const EJECTING: u64 = u64::MAX;

/// The live state of one endpoint. Everything the selector reads is an atomic:
/// selection takes no lock.
pub(crate) struct Endpoint<T, A, C> {
    pub(crate) name: Arc<str>,
    pub(crate) value: T,
    pub(crate) zone: Option<Arc<str>>,
    pub(crate) admission: Option<A>,
    pub(crate) shared: Arc<Shared<C>>,
    pub(crate) is_primary: AtomicBool,
    pub(crate) removed: AtomicBool,
    pub(crate) weight: AtomicU32,
    /// Peak-EWMA latency estimate in nanoseconds (f64 bits) and when it was set.
    pub(super) ewma: AtomicU64,
    pub(super) stamp: AtomicU64,
    /// Whether the estimate has seen a call (it is `default_rtt`, or the set's
    /// median when the endpoint joined, until then).
    pub(super) seen: AtomicBool,
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
    /// Active health checks passed and failed in a row (see the thresholds).
    pub(crate) check_passes: AtomicU32,
    pub(crate) check_failures: AtomicU32,
}

impl<T, A, C> Endpoint<T, A, C> {
    /// A new endpoint whose latency estimate starts at `initial` nanoseconds.
    pub(crate) fn new(
        member: Member<T, A>,
        shared: Arc<Shared<C>>,
        now: u64,
        warm: bool,
        initial: f64,
    ) -> Self {
        let (warm_from, warm_until) = match (warm, shared.config.slow_start) {
            (true, Some(s)) => (now, now.saturating_add(nanos(s.window)).max(1)),
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
            check_passes: AtomicU32::new(0),
            check_failures: AtomicU32::new(0),
        }
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
