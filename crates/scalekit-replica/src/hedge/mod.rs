//! Hedged requests within a budget (The Tail at Scale).
//!
//! A hedged call goes to one endpoint; if it has not answered after a delay, a
//! second copy goes to another endpoint, the first answer wins and the other
//! call is cancelled (its future dropped). Hedges and retries draw on one
//! [`Budget`]: at most a share of the calls (10% by default) plus a small
//! floor per second, so that in an outage, when every call is slow, hedging
//! adds a tenth to the load instead of doubling it.
//!
//! The delay is fixed ([`Hedge::new`]) or follows a percentile of the recent
//! latencies of the first attempts ([`HedgeBuilder::percentile`]), bounded.
//!
//! * `budget`: [`Budget`] and [`BudgetBuilder`].
//! * `latency`: the histogram behind a percentile delay.

mod budget;
mod latency;

pub use budget::{Budget, BudgetBuilder};

use crate::endpoint::nanos;
use crate::error::{ConfigError, HedgeError, SelectError};
use crate::set::{ReplicaSet, Selected};
use latency::LatencyPercentile;
use scalekit_core::{Admission, Clock, MonotonicClock};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
enum Delay {
    Fixed(Duration),
    Percentile(Arc<LatencyPercentile>),
}

/// When to hedge and what to draw on: a fixed delay, or a percentile of the
/// recent latencies (see [`HedgeBuilder`]), and the [`Budget`] extra calls
/// come from.
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
pub struct Hedge<C = MonotonicClock> {
    delay: Delay,
    budget: Arc<Budget<C>>,
}

impl<C> Clone for Hedge<C> {
    fn clone(&self) -> Self {
        Self {
            delay: self.delay.clone(),
            budget: Arc::clone(&self.budget),
        }
    }
}

impl<C> fmt::Debug for Hedge<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let delay: &dyn fmt::Debug = match &self.delay {
            Delay::Fixed(d) => d,
            Delay::Percentile(_) => &"percentile",
        };
        f.debug_struct("Hedge")
            .field("delay", delay)
            .field("budget", &self.budget)
            .finish()
    }
}

impl<C: Clock> Hedge<C> {
    /// Hedge after a fixed `delay` (pick about the 95th to 99th percentile
    /// latency), drawing on `budget` (share it with the retries of the same
    /// calls).
    pub fn new(delay: Duration, budget: Arc<Budget<C>>) -> Self {
        Self {
            delay: Delay::Fixed(delay),
            budget,
        }
    }

    /// A builder drawing on `budget`: by default the delay follows the 95th
    /// percentile of recent latencies, between 1 ms and 1 s.
    pub fn builder(budget: Arc<Budget<C>>) -> HedgeBuilder<C> {
        HedgeBuilder {
            budget,
            fixed: None,
            quantile: 0.95,
            min: Duration::from_millis(1),
            max: Duration::from_secs(1),
            window: Duration::from_secs(10),
            min_samples: 20,
        }
    }

    /// The delay before the second call, as it stands now.
    pub fn delay(&self) -> Duration {
        match &self.delay {
            Delay::Fixed(d) => *d,
            Delay::Percentile(p) => Duration::from_nanos(p.delay(self.budget.clock.now_nanos())),
        }
    }

    /// Counts the latency of one call toward the percentile (nothing for a
    /// fixed delay). [`ReplicaSet::hedged`] counts its first attempts itself:
    /// the answered ones at their latency, the ones a hedge overtook at the
    /// time they had run (a lower bound, which is all a percentile in the
    /// tail needs).
    pub fn observe(&self, latency: Duration) {
        if let Delay::Percentile(p) = &self.delay {
            p.record(nanos(latency), self.budget.clock.now_nanos());
        }
    }

    /// The budget hedges draw on.
    pub fn budget(&self) -> &Arc<Budget<C>> {
        &self.budget
    }

    fn now(&self) -> u64 {
        self.budget.clock.now_nanos()
    }

    fn observe_since(&self, start: u64) {
        if let Delay::Percentile(p) = &self.delay {
            let now = self.now();
            p.record(now.saturating_sub(start), now);
        }
    }
}

/// Builds a [`Hedge`] whose delay follows a latency percentile (or is fixed).
///
/// The delay is the `percentile` of the latencies counted over the last
/// complete `window` (a log-linear histogram, 12.5% resolution, read once per
/// window: selection pays one atomic add per call), clamped to
/// `[min_delay, max_delay]`. Until a window has counted `min_samples`
/// latencies, the delay is `max_delay`; a window with fewer keeps the delay
/// of the one before.
///
/// ```
/// use scalekit_core::ManualClock;
/// use scalekit_replica::{Budget, Hedge};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let budget = Arc::new(Budget::builder().clock(clock.clone()).build()?);
/// let hedge = Hedge::builder(budget)
///     .percentile(0.9)
///     .min_delay(Duration::from_millis(2))
///     .max_delay(Duration::from_millis(500))
///     .window(Duration::from_secs(5))
///     .min_samples(10)
///     .build()?;
/// assert_eq!(hedge.delay(), Duration::from_millis(500)); // nothing measured yet
/// for i in 1..=100u64 {
///     hedge.observe(Duration::from_millis(i)); // 1 ms .. 100 ms
/// }
/// clock.advance(Duration::from_secs(5));
/// let p90 = hedge.delay();
/// assert!(p90 >= Duration::from_millis(90) && p90 <= Duration::from_millis(102), "{p90:?}");
/// # Ok::<(), scalekit_replica::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct HedgeBuilder<C = MonotonicClock> {
    budget: Arc<Budget<C>>,
    fixed: Option<Duration>,
    quantile: f64,
    min: Duration,
    max: Duration,
    window: Duration,
    min_samples: u64,
}

impl<C: Clock> HedgeBuilder<C> {
    /// A fixed delay instead of a percentile.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.fixed = Some(delay);
        self
    }

    /// Hedge after this quantile of recent latencies, in (0, 1] (default
    /// 0.95, the 95th percentile).
    pub fn percentile(mut self, quantile: f64) -> Self {
        self.fixed = None;
        self.quantile = quantile;
        self
    }

    /// The least delay (default 1 ms): a burst of fast answers must not make
    /// every call a hedge.
    pub fn min_delay(mut self, min: Duration) -> Self {
        self.min = min;
        self
    }

    /// The most delay (default 1 s), and the delay until enough latencies
    /// are counted.
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// How long latencies are counted before the delay is read again
    /// (default 10 s).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The fewest latencies a window needs to set the delay (default 20).
    pub fn min_samples(mut self, n: u64) -> Self {
        self.min_samples = n;
        self
    }

    /// The hedge, or which setting is wrong.
    pub fn build(self) -> Result<Hedge<C>, ConfigError> {
        let invalid = |field: &'static str, value: String, expected: &'static str| {
            ConfigError::new("hedge", field, value, expected)
        };
        if let Some(d) = self.fixed {
            return Ok(Hedge::new(d, self.budget));
        }
        if !(self.quantile > 0.0 && self.quantile <= 1.0) {
            return Err(invalid(
                "percentile",
                self.quantile.to_string(),
                "a quantile in (0, 1], such as 0.95",
            ));
        }
        if self.min > self.max {
            return Err(invalid(
                "min_delay",
                format!("{:?} (max_delay {:?})", self.min, self.max),
                "a minimum no larger than max_delay",
            ));
        }
        if self.window.is_zero() {
            return Err(invalid("window", "0s".into(), "a positive duration"));
        }
        let now = self.budget.clock.now_nanos();
        let tracker = LatencyPercentile::new(
            self.quantile,
            nanos(self.min),
            nanos(self.max),
            nanos(self.window),
            self.min_samples,
            now,
        );
        Ok(Hedge {
            delay: Delay::Percentile(Arc::new(tracker)),
            budget: self.budget,
        })
    }
}

impl<T: Clone, A: Admission, C: Clock> ReplicaSet<T, A, C> {
    /// Sends `call` to a read endpoint; if it has not answered after the
    /// hedge's delay and the budget allows, sends a copy to another endpoint;
    /// the first success wins and the other call is dropped (cancelled). A call
    /// that fails before the delay is retried once on another endpoint, from
    /// the same budget. Outcomes are reported to the set as they happen, and
    /// the first attempt's latency to the hedge (see [`Hedge::observe`]).
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
    pub async fn hedged<F, Fut, R, E, HC: Clock>(
        &self,
        hedge: &Hedge<HC>,
        mut call: F,
    ) -> Result<R, HedgeError<E>>
    where
        F: FnMut(T) -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        let budget = &hedge.budget;
        budget.deposit();
        let first = self.select().map_err(HedgeError::Select)?;
        let f1 = call(first.value().clone());
        let sent = hedge.now();
        tokio::pin!(f1);
        let sleep = tokio::time::sleep(hedge.delay());
        tokio::pin!(sleep);
        let early = tokio::select! {
            biased;
            r = &mut f1 => Some(r),
            _ = &mut sleep => None,
        };
        match early {
            Some(Ok(v)) => {
                hedge.observe_since(sent);
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
            if r.is_ok() {
                hedge.observe_since(sent);
            }
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
                        (Ok(v), Some(s)) => {
                            hedge.observe_since(sent);
                            s.success();
                            return Ok(v); // `second` drops: cancelled
                        }
                        (Err(e), Some(s)) => { s.failure(); last_err = Some(e); }
                        (r, None) => return r.map_err(HedgeError::Call),
                    }
                }
                r = &mut f2, if second.is_some() => {
                    let s = second.take();
                    match (r, s) {
                        (Ok(v), Some(s)) => {
                            if first.is_some() {
                                // The first attempt is cancelled: it ran at least this long.
                                hedge.observe_since(sent);
                            }
                            s.success();
                            return Ok(v);
                        }
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

fn finish<T, A: Admission, C: Clock, R, E>(
    s: Selected<T, A, C>,
    r: Result<R, E>,
) -> Result<R, HedgeError<E>> {
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
