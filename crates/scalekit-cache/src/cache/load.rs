//! Loading through the cache: `get_with` and friends, sync and async, on top
//! of the single-flight protocol (the crate's `flight.rs`), with
//! stale-while-revalidate and early refresh decided by the lookup (`read.rs`).

use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use scalekit_core::Clock;

use super::read::Found;
use super::Cache;
use crate::flight::{settle, Flight, Leader, Role, SharedError, State};

/// How a load's value is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Publish {
    /// Insert or replace (the loading methods: a refresh must replace).
    Overwrite,
    /// Insert only if the key has no live entry (the entry API).
    IfAbsent,
}

/// What a loading call does next (see `Cache::step`).
enum Step<'a, K: Hash + Eq, V: Clone, C: Clock> {
    Value(V),
    Lead(Leader<'a, K, V, C>, Option<V>),
    Wait(Arc<Flight<V>>),
}

impl<K, V, S, C> Cache<K, V, S, C>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
    C: Clock,
{
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
        self.load(key, true, Publish::Overwrite, init)
            .map(|(value, _)| value)
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
        self.load_async(key, true, Publish::Overwrite, init)
            .await
            .map(|(value, _)| value)
    }

    /// The value for `key` and whether this call's `init` produced it: the
    /// loop behind the loading methods and the entry API. With `serve_stale`,
    /// a value in its stale-while-revalidate period (or picked for early
    /// refresh) is returned while one caller reloads it.
    pub(crate) fn load<E>(
        &self,
        key: K,
        serve_stale: bool,
        publish: Publish,
        init: impl FnOnce() -> Result<V, E>,
    ) -> Result<(V, bool), Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let mut init = Some(init);
        loop {
            match self.step(&key, serve_stale) {
                Step::Value(value) => return Ok((value, false)),
                Step::Lead(leader, stale) => {
                    let Some(init) = init.take() else {
                        // Unreachable: a leader always returns below.
                        continue;
                    };
                    let result = init();
                    return self.land(leader, key, result, stale, publish);
                }
                Step::Wait(flight) => {
                    if let Some(result) = settle(flight.wait()) {
                        return result.map(|value| (value, false));
                    }
                }
            }
        }
    }

    /// The async form of [`load`](Self::load).
    pub(crate) async fn load_async<E>(
        &self,
        key: K,
        serve_stale: bool,
        publish: Publish,
        init: impl Future<Output = Result<V, E>>,
    ) -> Result<(V, bool), Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let mut init = Some(init);
        loop {
            match self.step(&key, serve_stale) {
                Step::Value(value) => return Ok((value, false)),
                Step::Lead(leader, stale) => {
                    let Some(init) = init.take() else {
                        continue;
                    };
                    let result = init.await;
                    return self.land(leader, key, result, stale, publish);
                }
                Step::Wait(flight) => {
                    if let Some(result) = settle(flight.wait_async().await) {
                        return result.map(|value| (value, false));
                    }
                }
            }
        }
    }

    /// Replaces the key's value (whose value failed `keep`) with `init`'s,
    /// in the key's single flight: the first caller to get here runs `init`
    /// (unless a value that passes `keep` landed meanwhile), the others wait
    /// for its value. Returns the value and whether this call's `init`
    /// produced it.
    pub(crate) fn replace_with(
        &self,
        key: K,
        keep: &mut dyn FnMut(&V) -> bool,
        init: impl FnOnce() -> Result<V, std::convert::Infallible>,
    ) -> (V, bool) {
        let mut init = Some(init);
        loop {
            let flights = &self.inner.flights[self.shard_index(self.hash(&key))];
            match flights.join(&key, &self.inner.counters, &self.inner.clock) {
                Role::Leader(leader) => {
                    if let Some(value) = self.peek(&key).filter(|v| keep(v)) {
                        leader.land_found(value.clone());
                        return (value, false);
                    }
                    let Some(init) = init.take() else {
                        // Unreachable: a leader always returns.
                        continue;
                    };
                    match self.land(leader, key, init(), None, Publish::Overwrite) {
                        Ok(landed) => return landed,
                        Err(never) => match *never {},
                    }
                }
                Role::Waiter(flight) => {
                    if let Some(Ok(value)) = settle::<V, std::convert::Infallible>(flight.wait()) {
                        return (value, false);
                    }
                }
            }
        }
    }

    /// One round of a loading call, shared by the sync and async forms: a
    /// value to return (fresh, stale while another caller refreshes, or just
    /// landed by another flight), a load to lead, or a flight to wait for.
    fn step(&self, key: &K, serve_stale: bool) -> Step<'_, K, V, C> {
        let stale = match self.lookup(key, serve_stale) {
            Found::Fresh(value) => return Step::Value(value),
            Found::Refresh(value) => Some(value),
            Found::Missing => None,
        };
        let flights = &self.inner.flights[self.shard_index(self.hash(key))];
        match flights.join(key, &self.inner.counters, &self.inner.clock) {
            Role::Leader(leader) => {
                if stale.is_none() {
                    if let Some(value) = self.peek(key) {
                        // Another flight landed between our lookup and now.
                        leader.land_found(value.clone());
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

    /// Publishes a load's result, then retires the flight. The load's time,
    /// on the cache's clock, is kept with the value for early refresh.
    fn land<E>(
        &self,
        leader: Leader<'_, K, V, C>,
        key: K,
        result: Result<V, E>,
        stale: Option<V>,
        publish: Publish,
    ) -> Result<(V, bool), Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        match result {
            Ok(value) => {
                let nanos = leader.elapsed_nanos();
                let (value, fresh) = match publish {
                    Publish::Overwrite => {
                        self.put(key, value.clone(), None, nanos);
                        (value, true)
                    }
                    Publish::IfAbsent => match self.put_if_absent(key, value.clone(), nanos) {
                        None => (value, true),
                        Some(present) => (present, false),
                    },
                };
                leader.land(State::Done(value.clone()));
                Ok((value, fresh))
            }
            Err(error) => {
                let error = Arc::new(error);
                leader.land(State::Failed(Arc::clone(&error) as SharedError));
                // A failed refresh keeps serving the stale value.
                match stale {
                    Some(value) => Ok((value, false)),
                    None => Err(error),
                }
            }
        }
    }

    /// Inserts unless the key has a live entry, which is returned instead.
    fn put_if_absent(&self, key: K, value: V, load_nanos: u64) -> Option<V> {
        let hash = self.hash(&key);
        let weight = self.weigh(&key, &value);
        let now = self.now();
        self.write(self.shard_index(hash), now, |store, removed| {
            if let Some(idx) = store.find(hash, &key) {
                let node = store.node(idx);
                let deadline = node.expires_at.load(std::sync::atomic::Ordering::Relaxed);
                if self.is_fresh(deadline, now) {
                    return Some(node.value.clone());
                }
            }
            self.put_locked(
                store, hash, key, value, weight, None, load_nanos, now, removed,
            );
            None
        })
    }
}
