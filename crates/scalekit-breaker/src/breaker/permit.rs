//! The permit of an admitted call, and the part of the breaker it can reach
//! when it is dropped without being reported.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::events::{BreakerEvent, EventListener};
use super::state::{gen_of, probes_of, state_of, State, PROBE_MASK, PROBE_SHIFT};

/// The state word and the event listener: what a permit needs to report itself
/// `Cancelled` on drop. Aligned to its own cache lines, so that the reference
/// count beside it in the `Arc` (written when a probe permit is cloned off) never
/// shares a line with the word every admission reads.
#[repr(align(128))]
pub(crate) struct Shared {
    pub(crate) word: AtomicU64,
    pub(crate) events: Option<EventListener>,
}

impl Shared {
    pub(crate) fn new(word: u64, events: Option<EventListener>) -> Self {
        Self {
            word: AtomicU64::new(word),
            events,
        }
    }

    /// Tells the event listener, if there is one.
    #[inline]
    pub(crate) fn emit(&self, event: impl FnOnce() -> BreakerEvent) {
        if let Some(listener) = &self.events {
            listener(&event());
        }
    }

    /// A half-open probe of `generation` that ended without a verdict gives its
    /// slot back (nothing happens once the breaker has left that generation).
    pub(crate) fn give_back_probe(&self, generation: u64) {
        let mut cur = self.word.load(Ordering::Acquire);
        while state_of(cur) == State::HalfOpen
            && gen_of(cur) == generation
            && probes_of(cur) < PROBE_MASK
        {
            match self.word.compare_exchange_weak(
                cur,
                cur + (1 << PROBE_SHIFT),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }
}

/// What an admitted call holds until it reports back: the generation it was
/// admitted in. A result that comes back after the breaker changed state is
/// ignored.
///
/// Dropping a permit without reporting it counts as
/// [`Outcome::Cancelled`](scalekit_core::Outcome::Cancelled): a half-open probe
/// gives its slot back, and the event listener (if any) hears
/// [`BreakerEvent::Cancelled`]. (A permit taken while closed carries nothing to
/// report when no event listener is set: a cancelled call changes no count, and
/// the closed path stays free of shared writes.)
///
/// ```
/// use scalekit_breaker::{CircuitBreaker, State, Window};
/// use scalekit_core::{Admission, ManualClock, Outcome};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let breaker = CircuitBreaker::builder()
///     .window(Window::ConsecutiveFailures(1))
///     .wait_in_open(Duration::from_secs(1))
///     .half_open_probes(1)
///     .clock(clock.clone())
///     .build()?;
/// let p = breaker.try_acquire().unwrap();
/// breaker.record(p, Outcome::Failure, Duration::ZERO);
/// clock.advance(Duration::from_secs(1));
/// let probe = breaker.try_acquire().unwrap();
/// assert!(breaker.try_acquire().is_err(), "the only probe is out");
/// drop(probe); // the caller gave up without reporting
/// assert!(breaker.try_acquire().is_ok(), "its slot came back");
/// # Ok::<(), scalekit_breaker::ConfigError>(())
/// ```
pub struct BreakerPermit {
    generation: u64,
    /// Set for half-open probes, and for every permit when an event listener is
    /// set: the drop reports through it.
    owner: Option<Arc<Shared>>,
}

impl BreakerPermit {
    #[inline]
    pub(crate) fn new(generation: u64, owner: Option<Arc<Shared>>) -> Self {
        Self { generation, owner }
    }

    /// The generation (state period) the call was admitted in.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The permit has been reported: its drop does nothing more.
    #[inline]
    pub(crate) fn disarm(&mut self) {
        if self.owner.is_some() {
            self.release_owner();
        }
    }

    #[cold]
    fn release_owner(&mut self) {
        self.owner = None;
    }
}

impl BreakerPermit {
    /// Dropped unreported: report `Cancelled` through the owner.
    #[cold]
    fn report_cancelled(&mut self) {
        if let Some(shared) = self.owner.take() {
            shared.give_back_probe(self.generation);
            shared.emit(|| BreakerEvent::Cancelled);
        }
    }
}

impl Drop for BreakerPermit {
    #[inline]
    fn drop(&mut self) {
        if self.owner.is_some() {
            self.report_cancelled();
        }
    }
}

impl fmt::Debug for BreakerPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerPermit")
            .field("generation", &self.generation)
            .field("reports_on_drop", &self.owner.is_some())
            .finish()
    }
}
