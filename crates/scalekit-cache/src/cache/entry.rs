//! The entry API: get-or-insert and compute on one key, with an [`Entry`]
//! that says what the call did (moka's `entry()`).
//!
//! How each call is made atomic:
//!
//! - the `or_*` methods (get or insert) run their initialiser in the key's
//!   single flight, with no lock held: concurrent callers for a missing key
//!   wait for one initialiser. Its value is published only if the key is
//!   still absent, under the shard's exclusive lock, so it never overwrites
//!   a value another writer put meanwhile (that value is returned instead,
//!   with [`Entry::is_fresh`] false);
//! - the `and_*` methods (compute) run their closure under the shard's
//!   exclusive lock, as `ConcurrentHashMap.compute` does: every other write of
//!   the key (insert, remove, invalidate, another compute, a load's
//!   publication) waits for it. Keep the closure short, and do not use the
//!   same cache from it (the lock is not reentrant: it would deadlock).

use std::convert::Infallible;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use scalekit_core::Clock;

use super::load::Publish;
use super::Cache;
use crate::removal::RemovalCause;

/// A snapshot of one key and its value, as the entry API returns it, with
/// what the call did.
///
/// ```
/// use scalekit_cache::Cache;
///
/// let cache: Cache<String, u32> = Cache::new(100);
/// let entry = cache.entry("a".to_string()).or_insert(1);
/// assert!(entry.is_fresh());           // this call inserted it
/// assert_eq!((entry.key().as_str(), *entry.value()), ("a", 1));
/// let entry = cache.entry("a".to_string()).or_insert(2);
/// assert!(!entry.is_fresh());          // it was there
/// assert_eq!(entry.into_value(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<K, V> {
    key: K,
    value: V,
    fresh: bool,
    replaced: bool,
}

impl<K, V> Entry<K, V> {
    fn new(key: K, value: V, fresh: bool, replaced: bool) -> Self {
        Self {
            key,
            value,
            fresh,
            replaced,
        }
    }

    /// The key.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The value.
    pub fn value(&self) -> &V {
        &self.value
    }

    /// The value, taking the entry apart.
    pub fn into_value(self) -> V {
        self.value
    }

    /// The key and the value, taking the entry apart.
    pub fn into_parts(self) -> (K, V) {
        (self.key, self.value)
    }

    /// Whether this call put the value in the cache (inserted or replaced
    /// it), rather than finding it there.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Whether this call replaced an existing value.
    pub fn is_old_value_replaced(&self) -> bool {
        self.replaced
    }
}

/// What a compute closure asks for (see [`EntrySelector::and_compute_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op<V> {
    /// Leave the entry as it is.
    Nop,
    /// Insert or replace the value.
    Put(V),
    /// Remove the entry (the listener hears [`RemovalCause::Explicit`]).
    Remove,
}

/// What a compute did, with the entry's old and new state.
///
/// | [`Op`] | entry present? | result |
/// |---|---|---|
/// | `Put(v)` | no | `Inserted(entry of v)` |
/// | `Put(v)` | yes | `ReplacedWith { old, new: entry of v }` |
/// | `Remove` | no | `StillNone(key)` |
/// | `Remove` | yes | `Removed(entry of the removed value)` |
/// | `Nop` | no | `StillNone(key)` |
/// | `Nop` | yes | `Unchanged(entry of the current value)` |
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompResult<K, V> {
    /// The key had no entry and still has none.
    StillNone(K),
    /// The entry was left as it was.
    Unchanged(Entry<K, V>),
    /// The key had no entry and now has this one.
    Inserted(Entry<K, V>),
    /// The entry's value `old` was replaced by `new`'s.
    ReplacedWith {
        /// The value before.
        old: V,
        /// The entry now.
        new: Entry<K, V>,
    },
    /// The entry was removed; this was its value.
    Removed(Entry<K, V>),
}

impl<K, V> CompResult<K, V> {
    /// The entry the result carries (the new one after a put, the removed
    /// one after a remove), or `None` for `StillNone`.
    pub fn into_entry(self) -> Option<Entry<K, V>> {
        match self {
            Self::StillNone(_) => None,
            Self::Unchanged(entry)
            | Self::Inserted(entry)
            | Self::Removed(entry)
            | Self::ReplacedWith { new: entry, .. } => Some(entry),
        }
    }

    /// Whether the compute changed the cache.
    pub fn is_changed(&self) -> bool {
        !matches!(self, Self::StillNone(_) | Self::Unchanged(_))
    }
}

/// Chooses what to do with one key's entry; from [`Cache::entry`].
///
/// The `or_*` methods (get or insert) run their initialiser with no lock
/// held, in the key's single flight (concurrent callers for a missing key
/// share one run), and publish its value only if the key is still absent,
/// under the shard's exclusive lock: a value another writer put meanwhile is
/// kept and returned. The `and_*` methods (compute) run their closure under
/// the shard's exclusive lock, so no other write of the key comes between
/// what the closure saw and what it did.
#[must_use = "an entry selector does nothing until one of its methods is called"]
pub struct EntrySelector<'a, K, V, S, C> {
    cache: &'a Cache<K, V, S, C>,
    key: K,
}

impl<K, V, S, C> std::fmt::Debug for EntrySelector<'_, K, V, S, C>
where
    K: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntrySelector")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<K, V, S, C> Cache<K, V, S, C>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
    C: Clock,
{
    /// The entry API for `key`: get or insert, or compute, in one atomic
    /// step, with an [`Entry`] that says whether this call put the value.
    ///
    /// ```
    /// use scalekit_cache::{Cache, CompResult, Op};
    ///
    /// let views: Cache<&str, u64> = Cache::new(1_000);
    /// // Get or insert: the initialiser runs once even with concurrent callers.
    /// let entry = views.entry("home").or_insert_with(|| 0);
    /// assert!(entry.is_fresh());
    /// // Compute: read-modify-write that no other write of the key interleaves.
    /// let result = views.entry("home").and_compute_with(|entry| match entry {
    ///     Some(entry) => Op::Put(entry.into_value() + 1),
    ///     None => Op::Put(1),
    /// });
    /// assert!(matches!(result, CompResult::ReplacedWith { old: 0, .. }));
    /// assert_eq!(views.get("home"), Some(1));
    /// ```
    pub fn entry(&self, key: K) -> EntrySelector<'_, K, V, S, C> {
        EntrySelector { cache: self, key }
    }
}

impl<K, V, S, C> EntrySelector<'_, K, V, S, C>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
    C: Clock,
{
    /// The entry, inserting `value` if the key has none (or only an expired
    /// one).
    pub fn or_insert(self, value: V) -> Entry<K, V> {
        self.or_insert_with(|| value)
    }

    /// The entry, inserting `V::default()` if the key has none.
    ///
    /// ```
    /// # use scalekit_cache::Cache;
    /// let cache: Cache<u32, Vec<u8>> = Cache::new(100);
    /// assert!(cache.entry(1).or_default().value().is_empty());
    /// ```
    pub fn or_default(self) -> Entry<K, V>
    where
        V: Default,
    {
        self.or_insert_with(V::default)
    }

    /// The entry, inserting what `init` returns if the key has none.
    /// Concurrent callers for the missing key run one `init` between them
    /// (single flight); the others get its value with `is_fresh` false. If
    /// another writer puts a value while `init` runs, that value is kept and
    /// returned (`is_fresh` false).
    ///
    /// ```
    /// # use scalekit_cache::Cache;
    /// let cache: Cache<u32, String> = Cache::new(100);
    /// let entry = cache.entry(7).or_insert_with(|| "seven".to_string());
    /// assert!(entry.is_fresh());
    /// let entry = cache.entry(7).or_insert_with(|| unreachable!("present"));
    /// assert_eq!(entry.value(), "seven");
    /// ```
    pub fn or_insert_with(self, init: impl FnOnce() -> V) -> Entry<K, V> {
        match self.or_try_insert_with(|| Ok::<V, Infallible>(init())) {
            Ok(entry) => entry,
            Err(never) => match *never {},
        }
    }

    /// Like [`or_insert_with`](Self::or_insert_with), with the key given to
    /// `init`.
    ///
    /// ```
    /// # use scalekit_cache::Cache;
    /// let cache: Cache<u32, String> = Cache::new(100);
    /// let entry = cache.entry(7).or_insert_with_key(|id| format!("user {id}"));
    /// assert_eq!(entry.value(), "user 7");
    /// ```
    pub fn or_insert_with_key(self, init: impl FnOnce(&K) -> V) -> Entry<K, V> {
        let key = self.key.clone();
        self.or_insert_with(|| init(&key))
    }

    /// The entry, inserting `init`'s value if the key has none, or replacing
    /// its value with `init`'s if `replace_if` holds for it (moka's
    /// `or_insert_with_if`). Concurrent callers that find the key absent, or
    /// its value to be replaced, share one run of `init` (the key's single
    /// flight).
    ///
    /// ```
    /// # use scalekit_cache::Cache;
    /// let cache: Cache<&str, String> = Cache::new(100);
    /// cache.insert("motd", String::new());
    /// let entry = cache.entry("motd").or_insert_with_if(|| "hello".into(), |v| v.is_empty());
    /// assert!(entry.is_fresh() && entry.is_old_value_replaced());
    /// assert_eq!(entry.value(), "hello");
    /// let entry = cache.entry("motd").or_insert_with_if(|| "bye".into(), |v| v.is_empty());
    /// assert!(!entry.is_fresh());
    /// assert_eq!(entry.value(), "hello");
    /// ```
    pub fn or_insert_with_if(
        self,
        init: impl FnOnce() -> V,
        mut replace_if: impl FnMut(&V) -> bool,
    ) -> Entry<K, V> {
        let cache = self.cache;
        // `peek` counts nothing: each branch counts one hit or one miss.
        match cache.peek(&self.key) {
            Some(value) if !replace_if(&value) => match cache.get(&self.key) {
                Some(value) => Entry::new(self.key, value, false, false),
                // Gone in between: insert.
                None => self.or_insert_with(init),
            },
            Some(_) => {
                cache.inner.counters.misses.increment();
                let mut keep = |value: &V| !replace_if(value);
                let (value, fresh) =
                    cache.replace_with(self.key.clone(), &mut keep, || Ok::<V, Infallible>(init()));
                Entry::new(self.key, value, fresh, fresh)
            }
            None => self.or_insert_with(init),
        }
    }

    /// The entry, inserting `init`'s value if it returns `Some`; `None` when
    /// the key has no entry and `init` returned `None` (nothing is cached).
    ///
    /// ```
    /// # use scalekit_cache::Cache;
    /// let cache: Cache<u32, String> = Cache::new(100);
    /// assert!(cache.entry(1).or_optionally_insert_with(|| None).is_none());
    /// let entry = cache.entry(1).or_optionally_insert_with(|| Some("one".into()));
    /// assert!(entry.is_some_and(|e| e.is_fresh()));
    /// ```
    pub fn or_optionally_insert_with(
        self,
        init: impl FnOnce() -> Option<V>,
    ) -> Option<Entry<K, V>> {
        self.or_try_insert_with(|| init().ok_or(NotInserted)).ok()
    }

    /// The entry, inserting `init`'s value if it succeeds. An error goes to
    /// this caller and to the callers waiting on the same flight, and nothing
    /// is cached.
    ///
    /// ```
    /// # use scalekit_cache::Cache;
    /// let cache: Cache<u32, String> = Cache::new(100);
    /// let err = cache.entry(1).or_try_insert_with(|| Err::<String, _>("db down")).unwrap_err();
    /// assert_eq!(*err, "db down");
    /// let entry = cache.entry(1).or_try_insert_with(|| Ok::<_, &str>("one".to_string()))?;
    /// assert!(entry.is_fresh());
    /// # Ok::<(), std::sync::Arc<&str>>(())
    /// ```
    pub fn or_try_insert_with<E>(
        self,
        init: impl FnOnce() -> Result<V, E>,
    ) -> Result<Entry<K, V>, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let (value, fresh) = self
            .cache
            .load(self.key.clone(), false, Publish::IfAbsent, init)?;
        Ok(Entry::new(self.key, value, fresh, false))
    }

    /// The async form of [`or_insert_with`](Self::or_insert_with): one
    /// caller awaits `init`, the others await its result.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// # use scalekit_cache::Cache;
    /// let cache: Cache<u32, String> = Cache::new(100);
    /// let entry = cache.entry(1).or_insert_with_async(async { "ada".to_string() }).await;
    /// assert!(entry.is_fresh());
    /// # });
    /// ```
    pub async fn or_insert_with_async(self, init: impl Future<Output = V>) -> Entry<K, V> {
        match self
            .or_try_insert_with_async(async { Ok::<V, Infallible>(init.await) })
            .await
        {
            Ok(entry) => entry,
            Err(never) => match *never {},
        }
    }

    /// The async form of [`or_optionally_insert_with`](Self::or_optionally_insert_with).
    pub async fn or_optionally_insert_with_async(
        self,
        init: impl Future<Output = Option<V>>,
    ) -> Option<Entry<K, V>> {
        self.or_try_insert_with_async(async { init.await.ok_or(NotInserted) })
            .await
            .ok()
    }

    /// The async form of [`or_try_insert_with`](Self::or_try_insert_with).
    pub async fn or_try_insert_with_async<E>(
        self,
        init: impl Future<Output = Result<V, E>>,
    ) -> Result<Entry<K, V>, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let (value, fresh) = self
            .cache
            .load_async(self.key.clone(), false, Publish::IfAbsent, init)
            .await?;
        Ok(Entry::new(self.key, value, fresh, false))
    }

    /// Computes the key's entry from its current one: `f` sees the current
    /// entry (`None` if absent or expired) and returns an [`Op`]; the result
    /// says what happened, with the old and new values.
    ///
    /// `f` runs under the shard's exclusive lock, so no other write of the key
    /// (insert, remove, invalidate, compute, a load's publication) can come
    /// between what `f` saw and what it did. Keep it short, and do not use
    /// this cache from it (that would deadlock). A put is weighed and given
    /// its deadlines like an insert; a remove is told to the listener as
    /// [`RemovalCause::Explicit`], a replace as `Replaced`. A value heavier
    /// than the whole capacity is put and at once refused, as by `insert`:
    /// the result says it was put, the listener hears `Size`.
    ///
    /// ```
    /// use scalekit_cache::{Cache, CompResult, Op};
    ///
    /// let stock: Cache<&str, u32> = Cache::new(100);
    /// stock.insert("tea", 1);
    /// // Take one; remove the item when the last one is taken.
    /// let take = || stock.entry("tea").and_compute_with(|entry| match entry {
    ///     Some(e) if *e.value() > 1 => Op::Put(e.value() - 1),
    ///     Some(_) => Op::Remove,
    ///     None => Op::Nop,
    /// });
    /// assert!(matches!(take(), CompResult::Removed(e) if *e.value() == 1));
    /// assert!(matches!(take(), CompResult::StillNone("tea")));
    /// ```
    pub fn and_compute_with(
        self,
        f: impl FnOnce(Option<Entry<K, V>>) -> Op<V>,
    ) -> CompResult<K, V> {
        match self.and_try_compute_with(|entry| Ok::<Op<V>, Infallible>(f(entry))) {
            Ok(result) => result,
            Err(never) => match never {},
        }
    }

    /// Like [`and_compute_with`](Self::and_compute_with) with a closure that
    /// may fail: on `Err` nothing changes and the error is returned.
    ///
    /// ```
    /// # use scalekit_cache::{Cache, Op};
    /// let balances: Cache<&str, i64> = Cache::new(100);
    /// balances.insert("ada", 5);
    /// let withdraw = |amount: i64| balances.entry("ada").and_try_compute_with(|entry| {
    ///     let balance = entry.map_or(0, |e| *e.value());
    ///     if balance < amount { Err("insufficient funds") } else { Ok(Op::Put(balance - amount)) }
    /// });
    /// assert!(withdraw(3).is_ok());
    /// assert_eq!(withdraw(3).unwrap_err(), "insufficient funds");
    /// assert_eq!(balances.get("ada"), Some(2));
    /// ```
    pub fn and_try_compute_with<E>(
        self,
        f: impl FnOnce(Option<Entry<K, V>>) -> Result<Op<V>, E>,
    ) -> Result<CompResult<K, V>, E> {
        let cache = self.cache;
        let key = self.key;
        let hash = cache.hash(&key);
        let now = cache.now();
        cache.write(cache.shard_index(hash), now, |store, removed| {
            let current = store.find(hash, &key).and_then(|idx| {
                let node = store.node(idx);
                cache
                    .is_fresh(node.expires_at.load(Relaxed), now)
                    .then(|| node.value.clone())
            });
            let seen = current
                .as_ref()
                .map(|value| Entry::new(key.clone(), value.clone(), false, false));
            let result = match (f(seen)?, current) {
                (Op::Nop, None) | (Op::Remove, None) => CompResult::StillNone(key),
                (Op::Nop, Some(value)) => {
                    CompResult::Unchanged(Entry::new(key, value, false, false))
                }
                (Op::Remove, Some(value)) => {
                    let value = match store.remove(hash, &key) {
                        Some((k, v)) => {
                            removed.push(k, v.clone(), RemovalCause::Explicit);
                            v
                        }
                        None => value,
                    };
                    CompResult::Removed(Entry::new(key, value, false, false))
                }
                (Op::Put(value), current) => {
                    let weight = cache.weigh(&key, &value);
                    let copy = (key.clone(), value.clone());
                    cache.put_locked(store, hash, copy.0, copy.1, weight, None, 0, now, removed);
                    match current {
                        None => CompResult::Inserted(Entry::new(key, value, true, false)),
                        Some(old) => CompResult::ReplacedWith {
                            old,
                            new: Entry::new(key, value, true, true),
                        },
                    }
                }
            };
            Ok(result)
        })
    }

    /// Inserts or replaces the key's value with what `f` makes of the current
    /// entry (`None` if absent), atomically as
    /// [`and_compute_with`](Self::and_compute_with) (under the shard's lock).
    ///
    /// ```
    /// # use scalekit_cache::Cache;
    /// let hits: Cache<&str, u64> = Cache::new(100);
    /// let bump = || hits.entry("/").and_upsert_with(|e| e.map_or(1, |e| e.into_value() + 1));
    /// assert!(!bump().is_old_value_replaced());
    /// let entry = bump();
    /// assert!(entry.is_old_value_replaced());
    /// assert_eq!(entry.into_value(), 2);
    /// ```
    pub fn and_upsert_with(self, f: impl FnOnce(Option<Entry<K, V>>) -> V) -> Entry<K, V> {
        match self.and_compute_with(|entry| Op::Put(f(entry))) {
            CompResult::Inserted(entry) | CompResult::ReplacedWith { new: entry, .. } => entry,
            CompResult::StillNone(_) | CompResult::Unchanged(_) | CompResult::Removed(_) => {
                unreachable!("a put either inserts or replaces")
            }
        }
    }
}

/// `or_optionally_insert_with`'s `None`, carried through the single flight
/// as an error of its own type.
#[derive(Debug)]
struct NotInserted;
