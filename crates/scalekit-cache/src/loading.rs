//! Loading through the cache: single flight, sync and async.
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
//! and with cancelled and panicking leaders.

use std::any::Any;
use std::borrow::Borrow;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Instant;

// std's primitives (not parking_lot's) so that shuttle's drop-in replacements
// can run this protocol as written: `RUSTFLAGS="--cfg shuttle" cargo test`.
#[cfg(shuttle)]
use shuttle::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(shuttle))]
use std::sync::{Condvar, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Locks, ignoring poisoning: every critical section here leaves the state
/// consistent (a single assignment or map operation).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

use crate::cache::Found;
use crate::Cache;

type SharedError = Arc<dyn Any + Send + Sync>;

enum State<V> {
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

    fn wait(&self) -> Outcome<V> {
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

    async fn wait_async(&self) -> Outcome<V> {
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

enum Outcome<V> {
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
    /// Joins the flight for `key`, or starts one and leads it.
    fn join<'a>(&'a self, key: &K, counters: &'a crate::stats::Counters) -> Role<'a, K, V> {
        let mut map = lock(&self.map);
        if let Some(flight) = map.get(key) {
            return Role::Waiter(Arc::clone(flight));
        }
        let flight = Arc::new(Flight::new());
        map.insert(key.clone(), Arc::clone(&flight));
        Role::Leader(Leader {
            flights: self,
            key: Some(key.clone()),
            flight,
            counters,
            started: Instant::now(),
        })
    }
}

/// What a loading call does next (see `Cache::step`).
enum Step<'a, K: Hash + Eq, V: Clone> {
    Value(V),
    Lead(Leader<'a, K, V>, Option<V>),
    Wait(Arc<Flight<V>>),
}

/// A waited-for flight's result for this caller: its value, its error if of
/// the caller's type, or `None` to go round again (abandoned, or an error of
/// another loader's type).
fn settle<V, E: Send + Sync + 'static>(outcome: Outcome<V>) -> Option<Result<V, Arc<E>>> {
    match outcome {
        Outcome::Done(value) => Some(Ok(value)),
        Outcome::Failed(error) => error.downcast::<E>().ok().map(Err),
        Outcome::Abandoned => None,
    }
}

enum Role<'a, K: Hash + Eq, V: Clone> {
    Leader(Leader<'a, K, V>),
    Waiter(Arc<Flight<V>>),
}

/// The leader's duty: land the flight, or abandon it if dropped first.
struct Leader<'a, K: Hash + Eq, V: Clone> {
    flights: &'a Flights<K, V>,
    key: Option<K>,
    flight: Arc<Flight<V>>,
    counters: &'a crate::stats::Counters,
    started: Instant,
}

impl<K: Hash + Eq, V: Clone> Leader<'_, K, V> {
    fn land(mut self, state: State<V>) {
        let success = matches!(state, State::Done(_));
        self.retire(state, success);
    }

    fn retire(&mut self, state: State<V>, success: bool) {
        if let Some(key) = self.key.take() {
            let nanos = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.counters.record_load(success, nanos);
            let mut map = lock(&self.flights.map);
            if map.get(&key).is_some_and(|f| Arc::ptr_eq(f, &self.flight)) {
                map.remove(&key);
            }
            drop(map);
            self.flight.finish(state);
        }
    }
}

impl<K: Hash + Eq, V: Clone> Drop for Leader<'_, K, V> {
    fn drop(&mut self) {
        // Reached with the key still held only if the loader panicked or the
        // future was dropped: let a waiter lead a new flight.
        self.retire(State::Abandoned, false);
    }
}

/// A uniform draw's natural log, in (-inf, 0]: for XFetch's `ln(rand())`.
pub(crate) fn ln_uniform() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0) };
    }
    let bits = STATE
        .try_with(|state| {
            let mut x = state.get();
            if x == 0 {
                // A distinct seed per thread.
                static SEEDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
                let n = SEEDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                x = scalekit_core::mix64(n) | 1;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            state.set(x);
            x
        })
        .unwrap_or(0x5555_5555_5555_5555);
    // 53 random bits in (0, 1].
    let unit = ((bits >> 11) + 1) as f64 / (1u64 << 53) as f64;
    unit.ln()
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    fn role(&self, key: &K) -> Role<'_, K, V> {
        let flights = &self.inner.flights[self.shard_index(self.hash(key))];
        flights.join(key, &self.inner.counters)
    }

    /// The value for `key`, loading it with `init` on a miss. Concurrent
    /// callers that miss the same key wait for one load (single flight).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use scalekit_cache::Cache;
    ///
    /// let cache: Cache<u32, String> = Cache::new(100);
    /// let loads = AtomicU32::new(0);
    /// let load = |id: u32| { loads.fetch_add(1, Ordering::Relaxed); format!("user {id}") };
    /// assert_eq!(cache.get_with(7, || load(7)), "user 7");
    /// assert_eq!(cache.get_with(7, || load(7)), "user 7");
    /// assert_eq!(loads.load(Ordering::Relaxed), 1);
    /// ```
    pub fn get_with(&self, key: K, init: impl FnOnce() -> V) -> V {
        match self.try_get_with(key, || Ok::<V, std::convert::Infallible>(init())) {
            Ok(value) => value,
            Err(never) => match *never {},
        }
    }

    /// Like [`get_with`](Self::get_with) with a loader that may fail. The
    /// error goes to this caller and to the callers waiting on the same load,
    /// and nothing is cached; the next call loads again.
    ///
    /// ```
    /// use scalekit_cache::Cache;
    ///
    /// let cache: Cache<u32, u32> = Cache::new(100);
    /// let err = cache.try_get_with(1, || Err::<u32, _>("db down")).unwrap_err();
    /// assert_eq!(*err, "db down");
    /// assert_eq!(cache.try_get_with(1, || Ok::<_, &str>(10)), Ok(10));
    /// ```
    pub fn try_get_with<E>(&self, key: K, init: impl FnOnce() -> Result<V, E>) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let mut init = Some(init);
        loop {
            match self.step(&key) {
                Step::Value(value) => return Ok(value),
                Step::Lead(leader, stale) => {
                    let Some(init) = init.take() else {
                        // Unreachable: a leader always returns below.
                        continue;
                    };
                    let started = Instant::now();
                    let result = init();
                    return self.land(leader, key, result, stale, started);
                }
                Step::Wait(flight) => {
                    if let Some(result) = settle(flight.wait()) {
                        return result;
                    }
                }
            }
        }
    }

    /// The async form of [`get_with`](Self::get_with): `init` is awaited by
    /// one caller; the others await its result. Dropping the leading future
    /// hands the load to a waiter.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// use scalekit_cache::Cache;
    ///
    /// let cache: Cache<u32, String> = Cache::new(100);
    /// let name = cache.get_with_async(1, async { "ada".to_string() }).await;
    /// assert_eq!(name, "ada");
    /// # });
    /// ```
    pub async fn get_with_async(&self, key: K, init: impl Future<Output = V>) -> V {
        match self
            .try_get_with_async(key, async { Ok::<V, std::convert::Infallible>(init.await) })
            .await
        {
            Ok(value) => value,
            Err(never) => match *never {},
        }
    }

    /// The async form of [`try_get_with`](Self::try_get_with).
    pub async fn try_get_with_async<E>(
        &self,
        key: K,
        init: impl Future<Output = Result<V, E>>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let mut init = Some(init);
        loop {
            match self.step(&key) {
                Step::Value(value) => return Ok(value),
                Step::Lead(leader, stale) => {
                    let Some(init) = init.take() else {
                        continue;
                    };
                    let started = Instant::now();
                    let result = init.await;
                    return self.land(leader, key, result, stale, started);
                }
                Step::Wait(flight) => {
                    if let Some(result) = settle(flight.wait_async().await) {
                        return result;
                    }
                }
            }
        }
    }

    /// One round of a loading call, shared by the sync and async forms: a
    /// value to return (fresh, stale while another caller refreshes, or just
    /// landed by another flight), a load to lead, or a flight to wait for.
    fn step(&self, key: &K) -> Step<'_, K, V> {
        let stale = match self.lookup(key, true) {
            Found::Fresh(value) => return Step::Value(value),
            Found::Refresh(value) => Some(value),
            Found::Missing => None,
        };
        match self.role(key) {
            Role::Leader(leader) => {
                if stale.is_none() {
                    if let Some(value) = self.peek(key) {
                        // Another flight landed between our lookup and now.
                        leader.land(State::Done(value.clone()));
                        return Step::Value(value);
                    }
                }
                Step::Lead(leader, stale)
            }
            Role::Waiter(flight) => match stale {
                Some(value) => Step::Value(value),
                None => Step::Wait(flight),
            },
        }
    }

    /// Publishes a load's result, then retires the flight.
    fn land<E>(
        &self,
        leader: Leader<'_, K, V>,
        key: K,
        result: Result<V, E>,
        stale: Option<V>,
        started: Instant,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        match result {
            Ok(value) => {
                let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                self.insert_with_deadline(key, value.clone(), None, nanos.max(1));
                leader.land(State::Done(value.clone()));
                Ok(value)
            }
            Err(error) => {
                let error = Arc::new(error);
                leader.land(State::Failed(Arc::clone(&error) as SharedError));
                // A failed refresh keeps serving the stale value.
                match stale {
                    Some(value) => Ok(value),
                    None => Err(error),
                }
            }
        }
    }

    /// The live value without counting an access (for the leader's re-check).
    fn peek<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let store = self.shard(hash).read();
        let now = self.now();
        let idx = store.find(hash, key)?;
        let node = store.node(idx);
        let deadline = node.expires_at.load(std::sync::atomic::Ordering::Relaxed);
        self.is_fresh(deadline, now).then(|| node.value.clone())
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
        let counters = Arc::new(crate::stats::Counters::default());
        // Plays the cache: the value once published.
        let published: Arc<Mutex<Option<u32>>> = Arc::new(Mutex::new(None));
        let loads = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..3)
            .map(|caller| {
                let (flights, counters, published, loads) = (
                    flights.clone(),
                    counters.clone(),
                    published.clone(),
                    loads.clone(),
                );
                thread::spawn(move || loop {
                    if let Some(value) = *lock(&published) {
                        return Some(value);
                    }
                    match flights.join(&1, &counters) {
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
