//! Waiting for a concurrency slot (feature `tokio`): a bounded queue of waiters
//! served first-in-first-out or last-in-first-out, each with a timeout, as in
//! Netflix's concurrency-limits (`LifoBlockingLimiter`, `BlockingLimiter`).
//!
//! A slot freed while callers wait is handed to one of them directly (it never
//! becomes free for a newcomer to take first). Each waiter holds the receiving
//! end of a one-shot channel; a waiter that gives up (its timeout, or its
//! future dropped) closes it, and a slot sent to it just before is handed back,
//! so no slot is ever lost to a waiter that left.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use scalekit_core::ConfigError;
use tokio::sync::oneshot;

/// Which waiter a freed slot goes to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum QueueOrder {
    /// The one that has waited longest (fair; under overload every waiter waits
    /// about as long as the queue is deep).
    #[default]
    Fifo,
    /// The one that came last (Netflix's `LifoBlockingLimiter`): under overload
    /// the newest callers, whose clients are still waiting for an answer, are
    /// served first, and the oldest ones time out.
    Lifo,
}

/// How callers of `acquire` wait when every slot is taken: the order they are
/// served in, how many may wait, and for how long.
///
/// ```
/// use scalekit_limit::{QueueOrder, WaitQueue};
/// use std::time::Duration;
///
/// let q = WaitQueue::lifo(100, Duration::from_millis(250));
/// assert_eq!(q.order(), QueueOrder::Lifo);
/// assert_eq!((q.capacity(), q.timeout()), (100, Duration::from_millis(250)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WaitQueue {
    order: QueueOrder,
    capacity: usize,
    timeout: Duration,
}

/// The most waiters a queue may hold.
pub const MAX_WAITERS: usize = 1 << 20;

impl WaitQueue {
    /// Up to `capacity` waiters, served oldest first, each waiting at most
    /// `timeout`.
    pub const fn fifo(capacity: usize, timeout: Duration) -> Self {
        Self {
            order: QueueOrder::Fifo,
            capacity,
            timeout,
        }
    }

    /// Up to `capacity` waiters, served newest first, each waiting at most
    /// `timeout`.
    pub const fn lifo(capacity: usize, timeout: Duration) -> Self {
        Self {
            order: QueueOrder::Lifo,
            capacity,
            timeout,
        }
    }

    /// The order waiters are served in.
    pub const fn order(&self) -> QueueOrder {
        self.order
    }

    /// How many callers may wait at once; one more is rejected at once.
    pub const fn capacity(&self) -> usize {
        self.capacity
    }

    /// How long a caller waits before it is rejected.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn validate(&self, component: &'static str) -> Result<(), ConfigError> {
        if self.capacity == 0 || self.capacity > MAX_WAITERS {
            return Err(ConfigError::new(
                component,
                "queue (capacity)",
                self.capacity,
                "1 to 2^20 waiters",
            ));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(24 * 3600) {
            return Err(ConfigError::new(
                component,
                "queue (timeout)",
                format!("{:?}", self.timeout),
                "more than zero and at most a day",
            ));
        }
        Ok(())
    }
}

/// The waiters themselves: the sending ends, each with a tag (the adaptive
/// limiter's partition), oldest at the front.
pub(crate) struct Waiters<T> {
    order: QueueOrder,
    queue: VecDeque<(usize, oneshot::Sender<T>)>,
}

impl<T> fmt::Debug for Waiters<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiters")
            .field("order", &self.order)
            .field("len", &self.queue.len())
            .finish()
    }
}

impl<T> Default for Waiters<T> {
    fn default() -> Self {
        Self::new(QueueOrder::Fifo)
    }
}

impl<T> Waiters<T> {
    pub(crate) fn new(order: QueueOrder) -> Self {
        Self {
            order,
            queue: VecDeque::new(),
        }
    }

    /// Waiters queued, including ones that left and were not yet passed over.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Queues a waiter tagged `tag`; `None` when `capacity` waiters that are
    /// still waiting are queued.
    pub(crate) fn push(&mut self, tag: usize, capacity: usize) -> Option<oneshot::Receiver<T>> {
        if self.queue.len() >= capacity {
            self.queue.retain(|(_, tx)| !tx.is_closed());
            if self.queue.len() >= capacity {
                return None;
            }
        }
        let (tx, rx) = oneshot::channel();
        self.queue.push_back((tag, tx));
        Some(rx)
    }

    /// Takes back the waiter queued last (its caller got a slot by itself).
    pub(crate) fn remove_newest(&mut self) {
        self.queue.pop_back();
    }

    /// Hands `value` to the next waiter in order whose tag `eligible` accepts;
    /// waiters that left are dropped on the way. `Err(value)` when nobody took it.
    pub(crate) fn grant(
        &mut self,
        mut value: T,
        eligible: impl Fn(usize) -> bool,
    ) -> Result<(), T> {
        let mut k = 0;
        while k < self.queue.len() {
            let i = match self.order {
                QueueOrder::Fifo => k,
                QueueOrder::Lifo => self.queue.len() - 1 - k,
            };
            let closed = self.queue.get(i).is_none_or(|(_, tx)| tx.is_closed());
            let wanted = !closed && self.queue.get(i).is_some_and(|(tag, _)| eligible(*tag));
            if !closed && !wanted {
                k += 1;
                continue;
            }
            let Some((_, tx)) = self.queue.remove(i) else {
                break;
            };
            if closed {
                continue;
            }
            match tx.send(value) {
                Ok(()) => return Ok(()),
                // It left between the check and the send.
                Err(v) => value = v,
            }
        }
        Err(value)
    }

    /// The tag of the next waiter in order that is still waiting and that
    /// `eligible` accepts.
    pub(crate) fn next_eligible(&self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let pick = |(tag, tx): &(usize, oneshot::Sender<T>)| {
            (!tx.is_closed() && eligible(*tag)).then_some(*tag)
        };
        match self.order {
            QueueOrder::Fifo => self.queue.iter().find_map(pick),
            QueueOrder::Lifo => self.queue.iter().rev().find_map(pick),
        }
    }
}

/// The receiving end while its caller waits: if the caller leaves (timeout, or
/// its future dropped) after a slot was sent, the slot goes back through
/// `give_back`.
struct Claim<T, F: FnOnce(T)> {
    rx: Option<oneshot::Receiver<T>>,
    give_back: Option<F>,
}

impl<T, F: FnOnce(T)> Drop for Claim<T, F> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            // After `close`, no send can succeed; one that already did is read.
            rx.close();
            if let Ok(value) = rx.try_recv() {
                if let Some(give_back) = self.give_back.take() {
                    give_back(value);
                }
            }
        }
    }
}

/// Waits up to `timeout` for a slot sent on `rx`. Cancellation safe: dropped at
/// any point, a slot already sent is handed to `give_back`.
pub(crate) async fn wait<T>(
    rx: oneshot::Receiver<T>,
    timeout: Duration,
    give_back: impl FnOnce(T),
) -> Option<T> {
    let mut claim = Claim {
        rx: Some(rx),
        give_back: Some(give_back),
    };
    let rx = claim.rx.as_mut()?;
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(value)) => {
            claim.rx = None;
            Some(value)
        }
        // The sender went away without a slot (the limiter was dropped), or the
        // time is up: the claim's drop returns a slot sent at the last moment.
        Ok(Err(_)) | Err(_) => None,
    }
}
