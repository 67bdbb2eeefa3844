//! A fixed cap on calls in flight, with (feature `tokio`) a queue of callers
//! waiting for a slot.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use scalekit_core::{Admission, ConfigError, Outcome, RejectReason, Rejected};

#[cfg(feature = "tokio")]
use crate::queue::{wait, WaitQueue, Waiters};

/// At most `max` calls in flight: one atomic, no lock, no clock.
///
/// Through [`Admission`] the slot is freed by `record`; for direct use,
/// [`enter`](Self::enter) returns a guard that frees it on drop. With a
/// [`WaitQueue`](crate::WaitQueue) (feature `tokio`),
/// [`acquire`](Self::acquire) waits for a slot instead of failing at once:
/// a freed slot goes straight to a waiter (first or last in, as configured),
/// and a waiter that gives up (its timeout, or its future dropped) leaves no
/// slot behind. [`try_acquire`](Admission::try_acquire) and `enter` never wait.
///
/// ```
/// use scalekit_limit::Bulkhead;
///
/// let bulkhead = Bulkhead::new(2);
/// let a = bulkhead.enter().unwrap();
/// let _b = bulkhead.enter().unwrap();
/// assert!(bulkhead.enter().is_err());
/// drop(a);
/// assert!(bulkhead.enter().is_ok());
/// ```
#[derive(Debug)]
pub struct Bulkhead {
    in_flight: AtomicU32,
    max: AtomicU32,
    #[cfg(feature = "tokio")]
    queue: Option<Queue>,
}

#[cfg(feature = "tokio")]
#[derive(Debug)]
struct Queue {
    config: WaitQueue,
    waiters: parking_lot::Mutex<Waiters<()>>,
    /// Waiters queued (a copy of the queue's length, read without its lock).
    waiting: std::sync::atomic::AtomicUsize,
}

/// Builds a [`Bulkhead`].
///
/// ```
/// # #[cfg(feature = "tokio")] {
/// use scalekit_limit::{Bulkhead, WaitQueue};
/// use std::time::Duration;
///
/// let bulkhead = Bulkhead::builder(16)
///     .queue(WaitQueue::lifo(64, Duration::from_millis(100)))
///     .build()?;
/// assert_eq!(bulkhead.max(), 16);
/// # }
/// # Ok::<(), scalekit_limit::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct BulkheadBuilder {
    max: u32,
    #[cfg(feature = "tokio")]
    queue: Option<WaitQueue>,
}

impl BulkheadBuilder {
    /// Callers of [`Bulkhead::acquire`] wait in `queue` when every slot is taken
    /// (default: no queue, `acquire` fails at once like `enter`).
    #[cfg(feature = "tokio")]
    pub fn queue(mut self, queue: WaitQueue) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Checks the settings and builds the bulkhead.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the queue's capacity or timeout cannot work. (A cap
    /// of zero is accepted: it rejects everything, an operator's switch.)
    pub fn build(self) -> Result<Bulkhead, ConfigError> {
        #[cfg(feature = "tokio")]
        let queue = match self.queue {
            Some(config) => {
                config.validate("bulkhead")?;
                Some(Queue {
                    config,
                    waiters: parking_lot::Mutex::new(Waiters::new(config.order())),
                    waiting: std::sync::atomic::AtomicUsize::new(0),
                })
            }
            None => None,
        };
        Ok(Bulkhead {
            in_flight: AtomicU32::new(0),
            max: AtomicU32::new(self.max),
            #[cfg(feature = "tokio")]
            queue,
        })
    }
}

/// A slot in a [`Bulkhead`], freed on drop.
#[derive(Debug)]
pub struct BulkheadGuard<'a> {
    bulkhead: &'a Bulkhead,
}

impl Drop for BulkheadGuard<'_> {
    fn drop(&mut self) {
        self.bulkhead.release();
    }
}

fn rejected() -> Rejected {
    Rejected::new(RejectReason::ConcurrencyLimited)
}

impl Bulkhead {
    /// A bulkhead admitting `max` calls at once, without a queue.
    pub fn new(max: u32) -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            max: AtomicU32::new(max),
            #[cfg(feature = "tokio")]
            queue: None,
        }
    }

    /// A builder for a bulkhead admitting `max` calls at once.
    pub fn builder(max: u32) -> BulkheadBuilder {
        BulkheadBuilder {
            max,
            #[cfg(feature = "tokio")]
            queue: None,
        }
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// The cap.
    pub fn max(&self) -> u32 {
        self.max.load(Ordering::Relaxed)
    }

    /// Changes the cap; calls already in flight above a lower cap finish
    /// normally. A higher cap lets waiters in at once.
    pub fn set_max(&self, max: u32) {
        self.max.store(max, Ordering::SeqCst);
        #[cfg(feature = "tokio")]
        if let Some(q) = &self.queue {
            self.dispatch(q);
        }
    }

    /// Takes a slot, freed when the guard drops.
    pub fn enter(&self) -> Result<BulkheadGuard<'_>, Rejected> {
        self.try_acquire()?;
        Ok(BulkheadGuard { bulkhead: self })
    }

    #[inline]
    fn take_slot(&self, order: Ordering) -> bool {
        let max = self.max.load(Ordering::Relaxed);
        self.in_flight
            .fetch_update(order, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .is_ok()
    }

    #[inline]
    fn free_slot(&self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::Acquire, |n| n.checked_sub(1));
    }

    fn release(&self) {
        #[cfg(feature = "tokio")]
        if let Some(q) = &self.queue {
            return self.release_queued(q);
        }
        self.free_slot();
    }
}

#[cfg(feature = "tokio")]
impl Bulkhead {
    /// Takes a slot, waiting in the queue (if one was configured) while every
    /// slot is taken; rejected when the queue is full, when the wait times out,
    /// or at once without a queue. Dropping the future while it waits leaves no
    /// slot taken.
    ///
    /// ```
    /// use scalekit_limit::{Bulkhead, WaitQueue};
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let bulkhead = Bulkhead::builder(1)
    ///     .queue(WaitQueue::fifo(10, Duration::from_secs(1)))
    ///     .build()?;
    /// let first = bulkhead.acquire().await?;
    /// let (second, _) = tokio::join!(bulkhead.acquire(), async { drop(first) });
    /// assert!(second.is_ok(), "the second caller waited for the first slot");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn acquire(&self) -> Result<BulkheadGuard<'_>, Rejected> {
        if self.take_slot(Ordering::SeqCst) {
            return Ok(BulkheadGuard { bulkhead: self });
        }
        let Some(q) = &self.queue else {
            return Err(rejected());
        };
        let rx = {
            let mut waiters = q.waiters.lock();
            let Some(rx) = waiters.push(0, q.config.capacity()) else {
                return Err(rejected());
            };
            q.waiting.store(waiters.len(), Ordering::SeqCst);
            // A slot freed after our first try by a release that saw no waiter
            // is free now: take it ourselves (the release's second look at
            // `waiting` or this try sees the other, whichever comes last).
            if self.take_slot(Ordering::SeqCst) {
                waiters.remove_newest();
                q.waiting.store(waiters.len(), Ordering::SeqCst);
                return Ok(BulkheadGuard { bulkhead: self });
            }
            rx
        };
        match wait(rx, q.config.timeout(), |()| self.release()).await {
            Some(()) => Ok(BulkheadGuard { bulkhead: self }),
            None => Err(rejected()),
        }
    }

    /// Callers waiting for a slot now (including ones that gave up and were not
    /// yet passed over).
    pub fn waiting(&self) -> usize {
        self.queue
            .as_ref()
            .map_or(0, |q| q.waiting.load(Ordering::Acquire))
    }

    fn release_queued(&self, q: &Queue) {
        if q.waiting.load(Ordering::SeqCst) == 0 {
            self.free_slot();
            // A waiter may have queued between the look and the release.
            if q.waiting.load(Ordering::SeqCst) != 0 {
                self.dispatch(q);
            }
            return;
        }
        let mut waiters = q.waiters.lock();
        let handed = self.in_flight.load(Ordering::Acquire) <= self.max()
            && waiters.grant((), |_| true).is_ok();
        if !handed {
            self.free_slot();
        }
        q.waiting.store(waiters.len(), Ordering::SeqCst);
    }

    /// Hands free slots to waiters, while there are both.
    fn dispatch(&self, q: &Queue) {
        let mut waiters = q.waiters.lock();
        while waiters.len() > 0 && self.take_slot(Ordering::SeqCst) {
            if waiters.grant((), |_| true).is_err() {
                self.free_slot();
                break;
            }
        }
        q.waiting.store(waiters.len(), Ordering::SeqCst);
    }
}

impl Admission for Bulkhead {
    type Permit = ();

    #[inline]
    fn try_acquire(&self) -> Result<(), Rejected> {
        if self.take_slot(Ordering::AcqRel) {
            Ok(())
        } else {
            Err(rejected())
        }
    }

    #[inline]
    fn record(&self, _permit: (), _outcome: Outcome, _latency: Duration) {
        self.release();
    }
}
