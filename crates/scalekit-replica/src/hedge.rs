//! Hedged requests within a budget (The Tail at Scale).
//!
//! A hedged call goes to one endpoint; if it has not answered after a delay, a
//! second copy goes to another endpoint, the first answer wins and the other
//! call is cancelled (its future dropped). Hedges and retries draw on one
//! [`Budget`]: at most a share of the calls (10% by default) plus a small
//! floor per second, so that in an outage, when every call is slow, hedging
//! adds a tenth to the load instead of doubling it.

use crate::error::{HedgeError, SelectError};
use crate::set::{ReplicaSet, Selected};
use parking_lot::Mutex;
use scalekit_core::{Admission, Clock, MonotonicClock};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
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
pub struct Budget {
    ratio: f64,
    min_per_second: u32,
    window: Duration,
    slot_nanos: u64,
    clock: Arc<dyn Clock>,
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

impl fmt::Debug for Budget {
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
pub struct BudgetBuilder {
    ratio: f64,
    min_per_second: u32,
    window: Duration,
    clock: Arc<dyn Clock>,
}

impl BudgetBuilder {
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

    /// The clock (default [`MonotonicClock`]).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The budget, or which setting is wrong.
    pub fn build(self) -> Result<Budget, crate::ConfigError> {
        if !(self.ratio.is_finite() && self.ratio >= 0.0) {
            return Err(crate::ConfigError::new(
                "budget.ratio",
                self.ratio,
                "a finite number >= 0",
            ));
        }
        let slot_nanos = u64::try_from(self.window.as_nanos() / SLOTS as u128).unwrap_or(u64::MAX);
        if slot_nanos == 0 {
            return Err(crate::ConfigError::new(
                "budget.window",
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
            clock: Arc::new(MonotonicClock),
        }
    }

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

/// When to hedge and what to draw on.
///
/// ```
/// use scalekit_replica::{Budget, Hedge};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let hedge = Hedge::new(Duration::from_millis(50), Arc::new(Budget::builder().build()?));
/// assert_eq!(hedge.delay(), Duration::from_millis(50));
/// # Ok::<(), scalekit_replica::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Hedge {
    delay: Duration,
    budget: Arc<Budget>,
}

impl Hedge {
    /// Hedge after `delay` (pick about the 95th to 99th percentile latency),
    /// drawing on `budget` (share it with the retries of the same calls).
    pub fn new(delay: Duration, budget: Arc<Budget>) -> Self {
        Self { delay, budget }
    }

    /// The delay before the second call.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The budget hedges draw on.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }
}

impl<T: Clone, A: Admission> ReplicaSet<T, A> {
    /// Sends `call` to a read endpoint; if it has not answered after the
    /// hedge's delay and the budget allows, sends a copy to another endpoint;
    /// the first success wins and the other call is dropped (cancelled). A call
    /// that fails before the delay is retried once on another endpoint, from
    /// the same budget. Outcomes are reported to the set as they happen.
    ///
    /// ```
    /// use scalekit_replica::{Budget, Hedge, Member, ReplicaSet};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let set = ReplicaSet::builder()
    ///     .member(Member::replica("slow", 2000u64))
    ///     .member(Member::replica("fast", 5u64))
    ///     .build()?;
    /// let hedge = Hedge::new(Duration::from_millis(50), Arc::new(Budget::builder().build()?));
    /// let answered_by = set
    ///     .hedged(&hedge, |ms: u64| async move {
    ///         tokio::time::sleep(Duration::from_millis(ms)).await;
    ///         Ok::<u64, std::io::Error>(ms)
    ///     })
    ///     .await?;
    /// assert_eq!(answered_by, 5); // whichever was tried first, "fast" answers first
    /// # Ok(()) }
    /// ```
    pub async fn hedged<F, Fut, R, E>(&self, hedge: &Hedge, mut call: F) -> Result<R, HedgeError<E>>
    where
        F: FnMut(T) -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        let budget = &hedge.budget;
        budget.deposit();
        let first = self.select().map_err(HedgeError::Select)?;
        let f1 = call(first.value().clone());
        tokio::pin!(f1);
        let sleep = tokio::time::sleep(hedge.delay);
        tokio::pin!(sleep);
        let early = tokio::select! {
            biased;
            r = &mut f1 => Some(r),
            _ = &mut sleep => None,
        };
        match early {
            Some(Ok(v)) => {
                first.success();
                return Ok(v);
            }
            Some(Err(e)) => {
                // A failure before the hedge delay: one retry elsewhere, from the budget.
                let second = if budget.try_withdraw() {
                    self.select_other(&first).ok()
                } else {
                    None
                };
                first.failure();
                let Some(second) = second else {
                    return Err(HedgeError::Call(e));
                };
                let r = call(second.value().clone()).await;
                return finish(second, r);
            }
            None => {}
        }
        let second = if budget.try_withdraw() {
            self.select_other(&first).ok()
        } else {
            None
        };
        let Some(second) = second else {
            let r = f1.await;
            return finish(first, r);
        };
        let f2 = call(second.value().clone());
        tokio::pin!(f2);
        let mut first = Some(first);
        let mut second = Some(second);
        let mut last_err = None;
        loop {
            tokio::select! {
                r = &mut f1, if first.is_some() => {
                    let s = first.take();
                    match (r, s) {
                        (Ok(v), Some(s)) => { s.success(); return Ok(v); } // `second` drops: cancelled
                        (Err(e), Some(s)) => { s.failure(); last_err = Some(e); }
                        (r, None) => return r.map_err(HedgeError::Call),
                    }
                }
                r = &mut f2, if second.is_some() => {
                    let s = second.take();
                    match (r, s) {
                        (Ok(v), Some(s)) => { s.success(); return Ok(v); }
                        (Err(e), Some(s)) => { s.failure(); last_err = Some(e); }
                        (r, None) => return r.map_err(HedgeError::Call),
                    }
                }
                else => break,
            }
        }
        // Both calls failed, so `last_err` holds the later error.
        Err(last_err.map_or(
            HedgeError::Select(SelectError::Unavailable(None)),
            HedgeError::Call,
        ))
    }
}

fn finish<T, A: Admission, R, E>(s: Selected<T, A>, r: Result<R, E>) -> Result<R, HedgeError<E>> {
    match r {
        Ok(v) => {
            s.success();
            Ok(v)
        }
        Err(e) => {
            s.failure();
            Err(HedgeError::Call(e))
        }
    }
}
