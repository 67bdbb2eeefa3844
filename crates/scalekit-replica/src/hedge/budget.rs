//! The budget hedges and retries share.

use crate::error::ConfigError;
use parking_lot::Mutex;
use scalekit_core::{Clock, MonotonicClock};
use std::fmt;
use std::time::Duration;

const SLOTS: usize = 10;

/// A budget for extra calls (hedges and retries), as Finagle's and Linkerd's
/// retry budgets: over a sliding window, extra calls may reach
/// `ratio × calls + min_per_second × window`.
///
/// ```
/// use scalekit_core::ManualClock;
/// use scalekit_replica::Budget;
/// use std::time::Duration;
///
/// let budget = Budget::builder().ratio(0.1).min_per_second(0).clock(ManualClock::new()).build()?;
/// for _ in 0..100 {
///     budget.deposit();
/// }
/// let extra = (0..50).filter(|_| budget.try_withdraw()).count();
/// assert_eq!(extra, 10);
/// # Ok::<(), scalekit_replica::ConfigError>(())
/// ```
pub struct Budget<C = MonotonicClock> {
    ratio: f64,
    min_per_second: u32,
    window: Duration,
    slot_nanos: u64,
    pub(crate) clock: C,
    state: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    /// Per slot: its index in time, calls, extra calls.
    slots: [(u64, u64, u64); SLOTS],
}

impl Slots {
    fn totals(&mut self, tick: u64) -> (u64, u64) {
        let mut calls = 0;
        let mut extra = 0;
        for s in &mut self.slots {
            if tick.saturating_sub(s.0) >= SLOTS as u64 {
                *s = (0, 0, 0);
            } else {
                calls += s.1;
                extra += s.2;
            }
        }
        (calls, extra)
    }

    fn slot(&mut self, tick: u64) -> &mut (u64, u64, u64) {
        let s = &mut self.slots[(tick % SLOTS as u64) as usize];
        if s.0 != tick {
            *s = (tick, 0, 0);
        }
        s
    }
}

impl<C> fmt::Debug for Budget<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("ratio", &self.ratio)
            .field("min_per_second", &self.min_per_second)
            .field("window", &self.window)
            .finish()
    }
}

/// Builds a [`Budget`].
#[derive(Debug)]
pub struct BudgetBuilder<C = MonotonicClock> {
    ratio: f64,
    min_per_second: u32,
    window: Duration,
    clock: C,
}

impl<C: Clock> BudgetBuilder<C> {
    /// Extra calls allowed per call (default 0.1: 10% more load at most).
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// Extra calls allowed per second whatever the traffic (default 10), so a
    /// quiet client can still hedge and retry.
    pub fn min_per_second(mut self, n: u32) -> Self {
        self.min_per_second = n;
        self
    }

    /// The window calls are counted over (default 10 s).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The clock (default [`MonotonicClock`]); tests pass a `ManualClock`.
    pub fn clock<C2: Clock>(self, clock: C2) -> BudgetBuilder<C2> {
        BudgetBuilder {
            ratio: self.ratio,
            min_per_second: self.min_per_second,
            window: self.window,
            clock,
        }
    }

    /// The budget, or which setting is wrong.
    pub fn build(self) -> Result<Budget<C>, ConfigError> {
        if !(self.ratio.is_finite() && self.ratio >= 0.0) {
            return Err(ConfigError::new(
                "hedge budget",
                "ratio",
                self.ratio,
                "a finite number >= 0",
            ));
        }
        let slot_nanos = u64::try_from(self.window.as_nanos() / SLOTS as u128).unwrap_or(u64::MAX);
        if slot_nanos == 0 {
            return Err(ConfigError::new(
                "hedge budget",
                "window",
                format!("{:?}", self.window),
                "at least 10 ns",
            ));
        }
        Ok(Budget {
            ratio: self.ratio,
            min_per_second: self.min_per_second,
            window: self.window,
            slot_nanos,
            clock: self.clock,
            state: Mutex::new(Slots::default()),
        })
    }
}

impl Budget {
    /// A builder: 10% extra, 10 per second floor, 10 s window.
    pub fn builder() -> BudgetBuilder {
        BudgetBuilder {
            ratio: 0.1,
            min_per_second: 10,
            window: Duration::from_secs(10),
            clock: MonotonicClock,
        }
    }
}

impl<C: Clock> Budget<C> {
    fn tick(&self) -> u64 {
        self.clock.now_nanos() / self.slot_nanos + SLOTS as u64
    }

    /// Counts one original call (not a hedge or a retry).
    pub fn deposit(&self) {
        let tick = self.tick();
        self.state.lock().slot(tick).1 += 1;
    }

    /// Takes one extra call from the budget: true if it may be sent.
    pub fn try_withdraw(&self) -> bool {
        let tick = self.tick();
        let mut state = self.state.lock();
        let (calls, extra) = state.totals(tick);
        let allowed =
            self.ratio * calls as f64 + f64::from(self.min_per_second) * self.window.as_secs_f64();
        if (extra as f64) < allowed {
            state.slot(tick).2 += 1;
            true
        } else {
            false
        }
    }

    /// Calls and extra calls counted in the current window.
    pub fn usage(&self) -> (u64, u64) {
        let tick = self.tick();
        self.state.lock().totals(tick)
    }
}
