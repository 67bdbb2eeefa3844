//! Waiting for a concurrency slot, on tokio's paused clock: the order waiters
//! are served in (FIFO, LIFO), the timeout, a full queue, and cancellation (a
//! waiter dropped at any point, even just after a slot was handed to it, leaves
//! no slot taken).
#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use scalekit_core::{Admission, KeyedAdmission, Outcome, RejectReason};
use scalekit_limit::{AdaptiveLimiter, Aimd, Bulkhead, WaitQueue};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

/// Polls a future once, without a runtime's help.
fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

/// Starts `n` waiters on `bulkhead` one after another (each queued before the
/// next), then frees the held slots one at a time; returns the order in which
/// the waiters got a slot.
async fn service_order(bulkhead: Arc<Bulkhead>, n: usize) -> Vec<usize> {
    let order = Arc::new(Mutex::new(vec![]));
    // Take the one slot through `Admission`: `record` frees it below.
    bulkhead.try_acquire().unwrap();
    let mut tasks = vec![];
    for i in 0..n {
        let (b, order) = (Arc::clone(&bulkhead), Arc::clone(&order));
        tasks.push(tokio::spawn(async move {
            let guard = b.acquire().await.unwrap();
            order.lock().unwrap().push(i);
            // Hold the slot a moment, then pass it on.
            tokio::time::sleep(MS).await;
            drop(guard);
        }));
        // Let it run until it waits.
        tokio::task::yield_now().await;
    }
    assert_eq!(bulkhead.waiting(), n);
    // Free the slot taken above: the queue drains one waiter at a time.
    bulkhead.record((), Outcome::Success, MS);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(bulkhead.in_flight(), 0);
    let got = order.lock().unwrap().clone();
    got
}

#[tokio::test(start_paused = true)]
async fn fifo_serves_the_oldest_waiter_and_lifo_the_newest() {
    let fifo = Arc::new(
        Bulkhead::builder(1)
            .queue(WaitQueue::fifo(10, Duration::from_secs(60)))
            .build()
            .unwrap(),
    );
    assert_eq!(service_order(fifo, 5).await, [0, 1, 2, 3, 4]);
    let lifo = Arc::new(
        Bulkhead::builder(1)
            .queue(WaitQueue::lifo(10, Duration::from_secs(60)))
            .build()
            .unwrap(),
    );
    // The newest waiter first; each slot freed goes to the newest still waiting.
    assert_eq!(service_order(lifo, 5).await, [4, 3, 2, 1, 0]);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_times_out_and_a_full_queue_rejects_at_once() {
    let b = Bulkhead::builder(1)
        .queue(WaitQueue::fifo(2, Duration::from_millis(100)))
        .build()
        .unwrap();
    let held = b.enter().unwrap();
    let start = Instant::now();
    let (r1, r2, r3) = tokio::join!(b.acquire(), b.acquire(), async {
        // Both queued: a third finds the queue full and is rejected at once.
        let r = b.acquire().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        r
    });
    assert_eq!(r3.unwrap_err().reason(), RejectReason::ConcurrencyLimited);
    assert!(r1.is_err() && r2.is_err(), "nobody freed a slot in 100 ms");
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(b.in_flight(), 1);
    drop(held);
    assert_eq!(
        b.in_flight(),
        0,
        "no slot is left with the waiters that left"
    );
    // Without a queue, acquire does not wait.
    let plain = Bulkhead::new(1);
    let _g = plain.enter().unwrap();
    assert!(plain.acquire().await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_leaves_no_slot_taken() {
    let b = Bulkhead::builder(1)
        .queue(WaitQueue::fifo(4, Duration::from_secs(60)))
        .build()
        .unwrap();
    let held = b.enter().unwrap();
    // 1. Dropped while waiting: nothing was handed to it.
    {
        let mut w = pin!(b.acquire());
        assert!(poll_once(w.as_mut()).is_pending());
        assert_eq!(b.waiting(), 1);
    }
    // 2. Dropped after the slot was handed to it, before it was polled again:
    //    the slot goes back (here: to nobody, so it is free).
    {
        let mut w = pin!(b.acquire());
        assert!(poll_once(w.as_mut()).is_pending());
        drop(held); // hands the slot to the waiter still queued
        assert_eq!(b.in_flight(), 1, "handed over, not freed");
    }
    assert_eq!(b.in_flight(), 0, "the dropped waiter gave the slot back");
    // 3. The same with a second waiter behind: it gets the slot.
    let held = b.enter().unwrap();
    let mut first = Box::pin(b.acquire());
    let mut second = Box::pin(b.acquire());
    assert!(poll_once(first.as_mut()).is_pending());
    assert!(poll_once(second.as_mut()).is_pending());
    drop(held); // to `first`
    drop(first); // which leaves: to `second`
    let guard = second.await.unwrap();
    assert_eq!(b.in_flight(), 1);
    drop(guard);
    assert_eq!(b.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn many_waiters_some_cancelled_leak_nothing() {
    let b = Arc::new(
        Bulkhead::builder(3)
            .queue(WaitQueue::lifo(1000, Duration::from_millis(50)))
            .build()
            .unwrap(),
    );
    let mut tasks = vec![];
    for i in 0..200u64 {
        let b = Arc::clone(&b);
        tasks.push(tokio::spawn(async move {
            // Some callers give up early (their own timeout, shorter than the
            // queue's), the rest wait; each holds its slot for a while.
            let wait = Duration::from_millis(i % 7 * 5);
            match tokio::time::timeout(wait + MS, b.acquire()).await {
                Ok(Ok(g)) => {
                    assert!(b.in_flight() <= 3);
                    tokio::time::sleep(Duration::from_millis(i % 5 + 1)).await;
                    drop(g);
                    true
                }
                _ => false,
            }
        }));
        if i % 10 == 0 {
            tokio::time::sleep(MS).await;
        }
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += usize::from(t.await.unwrap());
    }
    assert!(admitted > 3, "{admitted}");
    assert_eq!(b.in_flight(), 0, "every slot came back");
    assert!(b.enter().is_ok());
}

#[tokio::test(start_paused = true)]
async fn the_adaptive_limiter_queues_by_partition() {
    let l = Arc::new(
        AdaptiveLimiter::builder(Aimd::new(4, 1, 4))
            .partition("checkout", 0.5)
            .partition("browse", 0.5)
            .queue(WaitQueue::fifo(10, Duration::from_secs(1)))
            .build()
            .unwrap(),
    );
    let checkout = l.partition_index("checkout").unwrap();
    let browse = l.partition_index("browse").unwrap();
    // Each partition takes its share (2 of 4): the limit is reached.
    let checking_out: Vec<_> = (0..2)
        .map(|_| l.try_acquire_key("checkout").unwrap())
        .collect();
    let browsing: Vec<_> = (0..2)
        .map(|_| l.try_acquire_key("browse").unwrap())
        .collect();
    assert!(l.try_acquire_key("browse").is_err());
    // A browse waiter queues first, then a checkout one.
    let (l1, l2) = (Arc::clone(&l), Arc::clone(&l));
    let b = tokio::spawn(async move { l1.acquire_partition(browse).await });
    tokio::task::yield_now().await;
    let c = tokio::spawn(async move { l2.acquire_partition(checkout).await });
    tokio::task::yield_now().await;
    assert_eq!(l.waiting(), 2);
    // A checkout call ends: browse, at its share, may not borrow the slot owed
    // to checkout, so it goes to the checkout waiter although browse waited
    // longer (FIFO within what may start).
    l.record(checking_out[0], Outcome::Success, MS);
    let p = c.await.unwrap().unwrap();
    assert_eq!(p.partition(), checkout);
    assert_eq!(l.waiting(), 1);
    // A browse call ends: the browse waiter takes its place.
    l.record(browsing[0], Outcome::Success, MS);
    let q = b.await.unwrap().unwrap();
    assert_eq!(q.partition(), browse);
    for p in [checking_out[1], browsing[1], p, q] {
        l.record(p, Outcome::Success, MS);
    }
    assert_eq!(l.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_adaptive_waiter_dropped_after_its_grant_gives_the_slot_back() {
    let l = AdaptiveLimiter::builder(Aimd::new(1, 1, 1))
        .queue(WaitQueue::lifo(4, Duration::from_secs(1)))
        .build()
        .unwrap();
    let held = l.try_acquire().unwrap();
    {
        let mut w = pin!(l.acquire());
        assert!(poll_once(w.as_mut()).is_pending());
        l.record(held, Outcome::Success, MS); // handed to the waiter
        assert_eq!(l.in_flight(), 1);
    }
    assert_eq!(l.in_flight(), 0, "the dropped waiter gave the slot back");
    // And a waiter that times out counts as rejected in its partition.
    let held = l.try_acquire().unwrap();
    assert!(l.acquire().await.is_err());
    l.record(held, Outcome::Success, MS);
    assert_eq!(l.in_flight(), 0);
    assert!(l.acquire().await.is_ok());
}
