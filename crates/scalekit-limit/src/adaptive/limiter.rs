//! The adaptive concurrency limiter: the limit an algorithm sets, shared by
//! priority partitions, with (feature `tokio`) a queue of waiters.

use std::fmt;
use std::time::Duration;

use parking_lot::Mutex;
use scalekit_core::{Admission, ConfigError, KeyedAdmission, Outcome, RejectReason, Rejected};

use super::algorithms::{LimitAlgorithm, Sample};
#[cfg(feature = "tokio")]
use crate::queue::{wait, WaitQueue, Waiters};

const COMPONENT: &str = "adaptive limiter";

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
    #[cfg(feature = "tokio")]
    waiters: Waiters<AdaptivePermit>,
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

    /// Counts a call starting in partition `i` (admitted or handed a slot).
    fn start(&mut self, i: usize) -> AdaptivePermit {
        self.in_flight += 1;
        if let Some(p) = self.partitions.get_mut(i) {
            p.in_flight += 1;
        }
        AdaptivePermit {
            partition: i,
            in_flight: self.in_flight,
        }
    }

    /// Counts a call of partition `i` ending.
    fn end(&mut self, i: usize) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(p) = self.partitions.get_mut(i) {
            p.in_flight = p.in_flight.saturating_sub(1);
        }
    }

    fn reject(&mut self, i: usize) -> Rejected {
        if let Some(p) = self.partitions.get_mut(i) {
            p.rejected += 1;
        }
        Rejected::new(RejectReason::ConcurrencyLimited)
    }

    /// Hands the capacity there is to waiting callers, in queue order, skipping
    /// those whose partition may not start now.
    #[cfg(feature = "tokio")]
    fn dispatch(&mut self) {
        let mut waiters = std::mem::take(&mut self.waiters);
        while let Some(i) = waiters.next_eligible(|i| self.admits(i)) {
            let permit = self.start(i);
            if waiters.grant(permit, |tag| tag == i).is_err() {
                self.end(i);
            }
        }
        self.waiters = waiters;
    }
}

/// The permit of an [`AdaptiveLimiter`]: which partition and how much was in
/// flight when the call started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptivePermit {
    partition: usize,
    in_flight: u32,
}

impl AdaptivePermit {
    /// The partition the call runs in (its index, 0 = highest priority).
    pub fn partition(&self) -> usize {
        self.partition
    }
}

/// A concurrency limit that adapts to the callee (AIMD, Gradient2, Vegas), with
/// optional priority partitions and (feature `tokio`) a queue of waiters.
///
/// Partitions share the limit by percentage in priority order (first = highest):
/// `checkout` keeps 80%, `browse` 20%. Each is always admitted within its share;
/// beyond it a partition borrows idle capacity not owed to the partitions above
/// it, so when the limit shrinks under load the lowest priority is shed first.
/// Ask with [`KeyedAdmission::try_acquire_key`] by partition name or index;
/// unkeyed [`Admission::try_acquire`] uses the last (lowest) partition.
///
/// With a [`WaitQueue`](crate::WaitQueue), [`acquire`](Self::acquire) and
/// [`acquire_partition`](Self::acquire_partition) wait for capacity (served
/// first or last in, as configured, each waiter in its partition's turn) up to
/// the queue's timeout; a waiter that gives up leaves no slot taken. The sync
/// `try_acquire` never waits.
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
    #[cfg(feature = "tokio")]
    queue: Option<WaitQueue>,
}

impl<A: fmt::Debug> fmt::Debug for AdaptiveLimiter<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimiter")
            .field("inner", &*self.inner.lock())
            .finish_non_exhaustive()
    }
}

/// Builds an [`AdaptiveLimiter`].
#[derive(Debug)]
pub struct AdaptiveLimiterBuilder<A> {
    algorithm: A,
    partitions: Vec<(String, f64)>,
    #[cfg(feature = "tokio")]
    queue: Option<WaitQueue>,
}

impl<A: LimitAlgorithm> AdaptiveLimiterBuilder<A> {
    /// Adds a partition with `share` of the limit (in `(0, 1]`), below the ones
    /// added before it in priority.
    pub fn partition(mut self, name: impl Into<String>, share: f64) -> Self {
        self.partitions.push((name.into(), share));
        self
    }

    /// Callers of [`AdaptiveLimiter::acquire`] wait in `queue` when the limit is
    /// reached (default: no queue, `acquire` fails at once).
    #[cfg(feature = "tokio")]
    pub fn queue(mut self, queue: WaitQueue) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Checks the shares (each in `(0, 1]`, summing to at most 1) and the queue,
    /// and builds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the share or the queue setting that cannot work.
    pub fn build(self) -> Result<AdaptiveLimiter<A>, ConfigError> {
        let mut total = 0.0;
        for (name, share) in &self.partitions {
            if !(*share > 0.0 && *share <= 1.0) {
                return Err(ConfigError::new(
                    COMPONENT,
                    format!("partition {name:?} (share)"),
                    share,
                    "a share in (0, 1]",
                ));
            }
            total += share;
        }
        if total > 1.0 + 1e-9 {
            return Err(ConfigError::new(
                COMPONENT,
                "partition shares (sum)",
                total,
                "shares that add up to at most 1",
            ));
        }
        #[cfg(feature = "tokio")]
        if let Some(q) = &self.queue {
            q.validate(COMPONENT)?;
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
                #[cfg(feature = "tokio")]
                waiters: Waiters::new(self.queue.map(|q| q.order()).unwrap_or_default()),
            }),
            #[cfg(feature = "tokio")]
            queue: self.queue,
        })
    }
}

impl<A: LimitAlgorithm> AdaptiveLimiter<A> {
    /// A builder around `algorithm`.
    pub fn builder(algorithm: A) -> AdaptiveLimiterBuilder<A> {
        AdaptiveLimiterBuilder {
            algorithm,
            partitions: Vec::new(),
            #[cfg(feature = "tokio")]
            queue: None,
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

    /// The index of the partition called `name` (for
    /// [`acquire_partition`](Self::acquire_partition)).
    pub fn partition_index(&self, name: &str) -> Option<usize> {
        self.inner
            .lock()
            .partitions
            .iter()
            .position(|p| p.name == name)
    }

    fn lowest(&self) -> usize {
        self.inner.lock().partitions.len().saturating_sub(1)
    }

    fn acquire_in(&self, i: usize) -> Result<AdaptivePermit, Rejected> {
        let mut inner = self.inner.lock();
        if !inner.admits(i) {
            return Err(inner.reject(i));
        }
        Ok(inner.start(i))
    }
}

#[cfg(feature = "tokio")]
impl<A: LimitAlgorithm> AdaptiveLimiter<A> {
    /// Takes a slot in the lowest partition, waiting in the queue (if one was
    /// configured) while the limit is reached.
    pub async fn acquire(&self) -> Result<AdaptivePermit, Rejected> {
        self.acquire_partition(self.lowest()).await
    }

    /// Takes a slot in partition `partition` (0 = highest priority), waiting
    /// in the queue (if one was configured) until that partition may start;
    /// rejected when the queue is full, when the wait times out, or at once
    /// without a queue. Dropping the future while it waits leaves no slot taken.
    ///
    /// ```
    /// use scalekit_limit::{AdaptiveLimiter, Aimd, WaitQueue};
    /// use scalekit_core::{Admission, Outcome};
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let limiter = AdaptiveLimiter::builder(Aimd::new(1, 1, 1))
    ///     .queue(WaitQueue::lifo(8, Duration::from_millis(50)))
    ///     .build()?;
    /// let held = limiter.acquire().await?;
    /// // Nobody finishes: the waiter times out after 50 ms.
    /// assert!(limiter.acquire().await.is_err());
    /// limiter.record(held, Outcome::Success, Duration::from_millis(1));
    /// assert!(limiter.acquire().await.is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn acquire_partition(&self, partition: usize) -> Result<AdaptivePermit, Rejected> {
        let rx = {
            let mut inner = self.inner.lock();
            if inner.admits(partition) {
                return Ok(inner.start(partition));
            }
            let Some(queue) = self.queue else {
                return Err(inner.reject(partition));
            };
            if partition >= inner.partitions.len().max(1) {
                return Err(inner.reject(partition));
            }
            match inner.waiters.push(partition, queue.capacity()) {
                Some(rx) => rx,
                None => return Err(inner.reject(partition)),
            }
        };
        let timeout = self.queue.map_or(Duration::ZERO, |q| q.timeout());
        let give_back = |permit| self.record(permit, Outcome::Cancelled, Duration::ZERO);
        match wait(rx, timeout, give_back).await {
            Some(permit) => Ok(permit),
            None => Err(self.inner.lock().reject(partition)),
        }
    }

    /// Callers waiting for a slot now (including ones that gave up and were not
    /// yet passed over).
    pub fn waiting(&self) -> usize {
        self.inner.lock().waiters.len()
    }
}

impl<A: LimitAlgorithm> Admission for AdaptiveLimiter<A> {
    type Permit = AdaptivePermit;

    fn try_acquire(&self) -> Result<AdaptivePermit, Rejected> {
        self.acquire_in(self.lowest())
    }

    fn record(&self, permit: AdaptivePermit, outcome: Outcome, latency: Duration) {
        let mut inner = self.inner.lock();
        inner.end(permit.partition);
        let dropped = match outcome {
            Outcome::Success => Some(false),
            Outcome::Failure => Some(true),
            _ => None, // says nothing about the callee's capacity
        };
        if let Some(dropped) = dropped {
            let limit = inner
                .algorithm
                .update(Sample::new(latency, permit.in_flight, dropped));
            inner.limit = limit.max(1);
        }
        #[cfg(feature = "tokio")]
        if inner.waiters.len() > 0 {
            inner.dispatch();
        }
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
        let i = self.partition_index(name).unwrap_or(usize::MAX);
        self.acquire_in(i)
    }
}
