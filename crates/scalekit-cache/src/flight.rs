//! Single flight: one load per key for all concurrent callers.
//!
//! The first caller to miss a key becomes the *leader* of a flight and runs
//! the loader; callers that miss the same key meanwhile wait for the flight's
//! result instead of loading again. The leader publishes the value into the
//! cache *before* it retires the flight, so a later caller finds one or the
//! other. If the leader's loader panics, or its future is dropped (the async
//! caller was cancelled), a guard marks the flight abandoned and wakes the
//! waiters, and one of them leads a new flight: nobody waits forever. A
//! loader's error is shared with the waiters of that flight (as `Arc<E>`) and
//! is not cached.
//!
//! The waiting is hand-written (a mutex, a condition variable for threads and
//! a notifier for tasks); `tests/single_flight.rs` checks it with many threads
//! and with cancelled and panicking leaders, and the shuttle test below
//! explores its interleavings. The protocol knows nothing of the cache: the
//! loading methods (`loading.rs`) drive it.

use std::any::Any;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use scalekit_core::Clock;
// std's primitives (not parking_lot's) so that shuttle's drop-in replacements
// can run this protocol as written: `RUSTFLAGS="--cfg shuttle" cargo test`.
#[cfg(shuttle)]
use shuttle::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(shuttle))]
use std::sync::{Condvar, Mutex, MutexGuard};
use tokio::sync::Notify;

use crate::stats::Counters;

/// Locks, ignoring poisoning: every critical section here leaves the state
/// consistent (a single assignment or map operation).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A loader's error, shared with the flight's waiters (each downcasts it to
/// its own error type).
pub(crate) type SharedError = Arc<dyn Any + Send + Sync>;

/// Where a flight stands.
pub(crate) enum State<V> {
    Running,
    Done(V),
    Failed(SharedError),
    Abandoned,
}

/// One load in progress.
pub(crate) struct Flight<V> {
    state: Mutex<State<V>>,
    threads: Condvar,
    tasks: Notify,
}

impl<V: Clone> Flight<V> {
    fn new() -> Self {
        Self {
            state: Mutex::new(State::Running),
            threads: Condvar::new(),
            tasks: Notify::new(),
        }
    }

    fn finish(&self, state: State<V>) {
        *lock(&self.state) = state;
        self.threads.notify_all();
        self.tasks.notify_waiters();
    }

    /// The outcome, if the flight has landed.
    fn outcome(&self) -> Option<Outcome<V>> {
        match &*lock(&self.state) {
            State::Running => None,
            State::Done(value) => Some(Outcome::Done(value.clone())),
            State::Failed(error) => Some(Outcome::Failed(Arc::clone(error))),
            State::Abandoned => Some(Outcome::Abandoned),
        }
    }

    /// Blocks the thread until the flight lands.
    pub(crate) fn wait(&self) -> Outcome<V> {
        let mut state = lock(&self.state);
        loop {
            match &*state {
                State::Running => {
                    state = self
                        .threads
                        .wait(state)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                State::Done(value) => return Outcome::Done(value.clone()),
                State::Failed(error) => return Outcome::Failed(Arc::clone(error)),
                State::Abandoned => return Outcome::Abandoned,
            }
        }
    }

    /// Waits (as a task) until the flight lands.
    pub(crate) async fn wait_async(&self) -> Outcome<V> {
        loop {
            let mut notified = std::pin::pin!(self.tasks.notified());
            // Register before checking, so a finish in between is not missed.
            notified.as_mut().enable();
            if let Some(outcome) = self.outcome() {
                return outcome;
            }
            notified.await;
        }
    }
}

/// How a flight ended, for a waiter.
pub(crate) enum Outcome<V> {
    Done(V),
    Failed(SharedError),
    Abandoned,
}

/// The flights of one shard.
pub(crate) struct Flights<K, V> {
    map: Mutex<HashMap<K, Arc<Flight<V>>, ahash::RandomState>>,
}

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::default()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Flights<K, V> {
    /// Joins the flight for `key`, or starts one and leads it; the leader's
    /// load is timed on `clock`.
    pub(crate) fn join<'a, C: Clock>(
        &'a self,
        key: &K,
        counters: &'a Counters,
        clock: &'a C,
    ) -> Role<'a, K, V, C> {
        let mut map = lock(&self.map);
        if let Some(flight) = map.get(key) {
            return Role::Waiter(Arc::clone(flight));
        }
        let flight = Arc::new(Flight::new());
        map.insert(key.clone(), Arc::clone(&flight));
        drop(map);
        Role::Leader(Leader {
            flights: self,
            key: Some(key.clone()),
            flight,
            counters,
            clock,
            started: clock.now_nanos(),
        })
    }
}

/// A waited-for flight's result for this caller: its value, its error if of
/// the caller's type, or `None` to go round again (abandoned, or an error of
/// another loader's type).
pub(crate) fn settle<V, E: Send + Sync + 'static>(
    outcome: Outcome<V>,
) -> Option<Result<V, Arc<E>>> {
    match outcome {
        Outcome::Done(value) => Some(Ok(value)),
        Outcome::Failed(error) => error.downcast::<E>().ok().map(Err),
        Outcome::Abandoned => None,
    }
}

/// A caller's part in a flight.
pub(crate) enum Role<'a, K: Hash + Eq, V: Clone, C: Clock> {
    Leader(Leader<'a, K, V, C>),
    Waiter(Arc<Flight<V>>),
}

/// The leader's duty: land the flight, or abandon it if dropped first.
pub(crate) struct Leader<'a, K: Hash + Eq, V: Clone, C: Clock> {
    flights: &'a Flights<K, V>,
    key: Option<K>,
    flight: Arc<Flight<V>>,
    counters: &'a Counters,
    clock: &'a C,
    started: u64,
}

impl<K: Hash + Eq, V: Clone, C: Clock> Leader<'_, K, V, C> {
    /// How long the load has taken so far, in clock nanoseconds (at least 1,
    /// so that a loaded value is told apart from an inserted one).
    pub(crate) fn elapsed_nanos(&self) -> u64 {
        self.clock.now_nanos().saturating_sub(self.started).max(1)
    }

    /// Lands the flight: its waiters get `state`.
    pub(crate) fn land(mut self, state: State<V>) {
        let success = matches!(state, State::Done(_));
        self.retire(state, Some(success));
    }

    /// Lands the flight with a value found already in the cache (another
    /// flight landed it between this caller's lookup and its joining): its
    /// waiters get it, and no load is counted, since none ran.
    pub(crate) fn land_found(mut self, value: V) {
        self.retire(State::Done(value), None);
    }

    /// Retires the flight; `load` is the outcome of a load that ran, counted
    /// in the stats, or `None` when none did.
    fn retire(&mut self, state: State<V>, load: Option<bool>) {
        if let Some(key) = self.key.take() {
            if let Some(success) = load {
                let nanos = self.clock.now_nanos().saturating_sub(self.started);
                self.counters.record_load(success, nanos);
            }
            let mut map = lock(&self.flights.map);
            if map.get(&key).is_some_and(|f| Arc::ptr_eq(f, &self.flight)) {
                map.remove(&key);
            }
            drop(map);
            self.flight.finish(state);
        }
    }
}

impl<K: Hash + Eq, V: Clone, C: Clock> Drop for Leader<'_, K, V, C> {
    fn drop(&mut self) {
        // Reached with the key still held only if the loader panicked or the
        // future was dropped: let a waiter lead a new flight.
        self.retire(State::Abandoned, Some(false));
    }
}

/// The flight protocol under shuttle's randomized scheduler: many
/// interleavings of leaders, waiters and an abandoning leader. Run with
/// `RUSTFLAGS="--cfg shuttle" cargo test -p scalekit-cache --lib shuttle`.
#[cfg(all(test, shuttle))]
mod shuttle_tests {
    use super::*;
    use shuttle::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use shuttle::thread;

    fn scenario() {
        let flights: Arc<Flights<u32, u32>> = Arc::new(Flights::default());
        let counters = Arc::new(Counters::default());
        let clock = scalekit_core::ManualClock::new();
        // Plays the cache: the value once published.
        let published: Arc<Mutex<Option<u32>>> = Arc::new(Mutex::new(None));
        let loads = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..3)
            .map(|caller| {
                let (flights, counters, published, loads, clock) = (
                    flights.clone(),
                    counters.clone(),
                    published.clone(),
                    loads.clone(),
                    clock.clone(),
                );
                thread::spawn(move || loop {
                    if let Some(value) = *lock(&published) {
                        return Some(value);
                    }
                    match flights.join(&1, &counters, &clock) {
                        Role::Leader(leader) => {
                            if let Some(value) = *lock(&published) {
                                leader.land(State::Done(value));
                                return Some(value);
                            }
                            if caller == 0 {
                                // A loader that panics or is cancelled.
                                drop(leader);
                                return None;
                            }
                            loads.fetch_add(1, SeqCst);
                            *lock(&published) = Some(10);
                            leader.land(State::Done(10));
                            return Some(10);
                        }
                        Role::Waiter(flight) => match flight.wait() {
                            Outcome::Done(value) => return Some(value),
                            Outcome::Abandoned => continue,
                            Outcome::Failed(_) => panic!("nobody fails here"),
                        },
                    }
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            &results[1..],
            &[Some(10), Some(10)],
            "waiters get the value"
        );
        assert!(matches!(results[0], None | Some(10)));
        assert_eq!(loads.load(SeqCst), 1, "exactly one successful load");
        assert!(lock(&flights.map).is_empty(), "no flight left behind");
    }

    #[test]
    fn one_load_and_no_stranded_waiter() {
        shuttle::check_random(scenario, 2_000);
    }

    #[test]
    fn one_load_and_no_stranded_waiter_pct() {
        shuttle::check_pct(scenario, 2_000, 3);
    }
}
