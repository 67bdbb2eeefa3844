//! Writes, and keeping the whole cache within its capacity.
//!
//! # Capacity across shards
//!
//! Each shard has a *share* of the capacity, which sizes its policy, but the
//! limit is the whole capacity: the cache counts the weight of all shards in
//! one atomic (`Inner::total`), and evicts only when that total is over the
//! capacity. A write that grows a shard sheds what the growth puts the cache
//! over, from its own shard first as long as the shard is over its *room*
//! (its share, plus the heavy entries it holds: those heavier than the share,
//! whose weight the other shards make room for); what is left is shed from
//! the other shards after the lock is released, first from those over their
//! room, then an even part from each, then whatever it takes. No two shard
//! locks are ever held at once.
//!
//! So an entry is refused only when it is heavier than the whole capacity,
//! and, in one thread, nothing is evicted while the total is within the
//! capacity (`tests/model.rs` checks both). With writers racing, the total may
//! pass the capacity for the time of a write, and eviction may overshoot by
//! what racing writers add at the same instant.
//!
//! The common write at steady state (a new key into a full shard) costs one
//! load of the shared total: the shard sheds its own victim and its weight
//! does not change, so the total is not written.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use scalekit_core::Clock;

use super::Cache;
use crate::config::{nanos, Listener};
use crate::removal::RemovalCause;
use crate::store::{Store, WriteInfo, NEVER};

impl<K, V, S, C> Cache<K, V, S, C>
where
    K: Hash + Eq,
    V: Clone,
    S: BuildHasher,
    C: Clock,
{
    /// Inserts or replaces the value for `key`. A replaced value is reported to
    /// the eviction listener as [`RemovalCause::Replaced`]; entries pushed out to
    /// make room as [`RemovalCause::Size`].
    ///
    /// ```
    /// # use scalekit_cache::Cache;
    /// let cache: Cache<u32, &str> = Cache::new(100);
    /// cache.insert(7, "seven");
    /// cache.insert(7, "SEVEN");
    /// assert_eq!(cache.get(&7), Some("SEVEN"));
    /// ```
    pub fn insert(&self, key: K, value: V) {
        self.put(key, value, None, 0);
    }

    /// Inserts or replaces with a time-to-live for this entry only, overriding the
    /// cache's time-to-live and [`Expiry`](crate::Expiry) for it (time-to-idle
    /// still applies).
    ///
    /// ```
    /// # use scalekit_cache::Cache;
    /// # use std::time::Duration;
    /// let cache: Cache<u32, u32> = Cache::new(100);
    /// cache.insert_with_ttl(1, 10, Duration::from_secs(30));
    /// assert_eq!(cache.get(&1), Some(10));
    /// ```
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) {
        if !self.is_expiring() {
            self.inner.expiring.store(true, Relaxed);
        }
        self.put(key, value, Some(ttl), 0);
    }

    /// Inserts or replaces: the write behind `insert`, `insert_with_ttl` and
    /// a load's publication (with the load's time).
    pub(crate) fn put(&self, key: K, value: V, ttl: Option<Duration>, load_nanos: u64) {
        let hash = self.hash(&key);
        let weight = self.weigh(&key, &value);
        let now = self.now();
        self.write(self.shard_index(hash), now, |store, removed| {
            self.put_locked(
                store, hash, key, value, weight, ttl, load_nanos, now, removed,
            );
        });
    }

    /// The entry's weight (1 without a weigher).
    pub(crate) fn weigh(&self, key: &K, value: &V) -> u32 {
        self.inner.weigher.as_ref().map_or(1, |w| w(key, value))
    }

    /// Inserts or replaces under the shard's exclusive lock (the capacity is
    /// settled by `write` afterwards, then the periodic work runs).
    #[allow(clippy::too_many_arguments)] // the write path; a struct would only rename them
    pub(crate) fn put_locked(
        &self,
        store: &mut Store<K, V>,
        hash: u64,
        key: K,
        value: V,
        weight: u32,
        ttl: Option<Duration>,
        load_nanos: u64,
        now: u64,
        removed: &mut Removed<K, V>,
    ) {
        let expiring = self.is_expiring();
        let (info, deadline) = if expiring {
            let replacing = store.find(hash, &key).is_some();
            self.deadlines(&key, &value, now, ttl, replacing, load_nanos)
        } else {
            (
                WriteInfo {
                    load_nanos,
                    ..WriteInfo::NONE
                },
                NEVER,
            )
        };
        let mut sink = |k, v, cause| removed.push(k, v, cause);
        let (idx, new) = store.insert(hash, key, value, weight, deadline, &mut sink);
        if let Some(idx) = idx {
            store.set_write_info(idx, info);
        }
        // Replacing a value changes neither the policy's counts nor the
        // clock's: the periodic work waits for the next new key (or runs
        // now if entries expire). It runs once the capacity is settled.
        removed.maintain |= new || expiring;
    }

    /// What a write sets in the entry's timer, and its effective deadline.
    fn deadlines(
        &self,
        key: &K,
        value: &V,
        now: u64,
        ttl: Option<Duration>,
        replacing: bool,
        load_nanos: u64,
    ) -> (WriteInfo, u64) {
        let after = |d: Duration| now.saturating_add(nanos(d));
        let (write, custom, overridden) = match ttl {
            Some(ttl) => (after(ttl), NEVER, true),
            None => {
                let mut write = self.inner.ttl.map_or(NEVER, after);
                if let Some((ttl, is_negative)) = self.inner.negative {
                    if is_negative(value) {
                        write = write.min(now.saturating_add(ttl));
                    }
                }
                let custom = match &self.inner.expiry {
                    Some(expiry) => {
                        let lifetime = if replacing {
                            expiry.expire_after_update(key, value)
                        } else {
                            expiry.expire_after_create(key, value)
                        };
                        lifetime.map_or(NEVER, after)
                    }
                    None => NEVER,
                };
                (write, custom, false)
            }
        };
        let idle = self.inner.tti.map_or(NEVER, after);
        let info = WriteInfo {
            write_deadline: write,
            custom_deadline: custom,
            overridden,
            load_nanos,
            movable: self.inner.expiry.is_some() && !overridden,
        };
        let deadline = write.min(custom).min(idle).saturating_add(self.inner.stale);
        (info, deadline)
    }

    /// Runs `op` under shard `index`'s exclusive lock, then keeps the cache
    /// within its capacity (see the module docs), then runs the shard's
    /// periodic work if `op` asked for it, then tells the listener what left,
    /// with no lock held.
    pub(crate) fn write<R>(
        &self,
        index: usize,
        now: u64,
        op: impl FnOnce(&mut Store<K, V>, &mut Removed<K, V>) -> R,
    ) -> R {
        let shard = &self.inner.shards[index];
        let mut removed = Removed::new(self.inner.listener.is_some());
        let (result, left) = {
            let mut store = shard.store.write();
            let before = store.weight();
            let result = op(&mut store, &mut removed);
            let left = self.settle(&mut store, before, now, &mut removed);
            if removed.maintain {
                let before = store.weight();
                store.maintain(now, false, &mut |k, v, cause| removed.push(k, v, cause));
                let expired = before - store.weight();
                if expired > 0 && self.inner.bounded {
                    self.inner.total.fetch_sub(expired, Relaxed);
                }
            }
            shard.mark(&store);
            (result, left)
        };
        removed.notify(self.inner.listener.as_deref());
        if left > 0 {
            self.shed_elsewhere(index, left, now);
        }
        result
    }

    /// Accounts for a shard's change of weight since `before`, and sheds what
    /// its growth put the cache over: from this shard down to its room, the
    /// rest is returned for the other shards.
    fn settle(
        &self,
        store: &mut Store<K, V>,
        before: u64,
        now: u64,
        removed: &mut Removed<K, V>,
    ) -> u64 {
        if !self.inner.bounded {
            return 0;
        }
        let total = &self.inner.total;
        let capacity = self.inner.capacity;
        let mut sink = |k, v, cause| removed.push(k, v, cause);
        let grown = store.weight().saturating_sub(before);
        if grown > 0 {
            // Shed before publishing the growth: at steady state the shard
            // sheds what it took and the total is not written at all.
            let excess = total
                .load(Relaxed)
                .saturating_add(grown)
                .saturating_sub(capacity)
                .min(grown);
            if excess > 0 {
                let target = store.room().max(store.weight() - excess);
                store.evict_to(target, now, &mut sink);
            }
        }
        let after = store.weight();
        if after < before {
            total.fetch_sub(before - after, Relaxed);
            return 0;
        }
        let added = after - before;
        if added == 0 {
            return 0;
        }
        let sum = total.fetch_add(added, Relaxed).saturating_add(added);
        // Over the capacity by what this write added (writers raced, or this
        // shard is within its room): shed it, here first.
        let over = sum.saturating_sub(capacity).min(added);
        if over == 0 {
            return 0;
        }
        let target = store.room().max(after.saturating_sub(over));
        store.evict_to(target, now, &mut sink);
        let shed = after - store.weight();
        total.fetch_sub(shed, Relaxed);
        over.saturating_sub(shed)
    }

    /// Sheds `need` from the shards other than `own`: first from those over
    /// their room, then an even part from each, then whatever it takes (own
    /// shard last). Never below the capacity: each step sheds at most what
    /// the total is over it then.
    #[cold]
    fn shed_elsewhere(&self, own: usize, mut need: u64, now: u64) {
        let shards = self.inner.shards.len();
        let others = (1..shards).map(|i| (own + i) & self.inner.shard_mask);
        let still = |need: u64| need.min(self.excess());
        for i in others.clone() {
            need = still(need);
            if need == 0 {
                return;
            }
            let over = self.inner.shards[i].over.load(Relaxed);
            if over > 0 {
                need -= self.shed_from(i, need.min(over), now);
            }
        }
        let part = need.div_ceil((shards as u64 - 1).max(1));
        for i in others.clone() {
            need = still(need);
            if need == 0 {
                return;
            }
            need -= self.shed_from(i, need.min(part), now);
        }
        for i in others.chain(std::iter::once(own)) {
            need = still(need);
            if need == 0 {
                return;
            }
            need -= self.shed_from(i, need, now).min(need);
        }
    }

    /// How far the total is over the capacity.
    fn excess(&self) -> u64 {
        self.inner
            .total
            .load(Relaxed)
            .saturating_sub(self.inner.capacity)
    }

    /// Sheds up to `amount` (and no more than the total is over the capacity)
    /// from shard `index`, as its policy picks. Returns what it shed (at most
    /// `amount`, or one entry more when entries are heavier than the rest).
    fn shed_from(&self, index: usize, amount: u64, now: u64) -> u64 {
        let shard = &self.inner.shards[index];
        let mut removed = Removed::new(self.inner.listener.is_some());
        let shed = {
            let mut store = shard.store.write();
            let amount = amount.min(self.excess());
            if amount == 0 {
                return 0;
            }
            let before = store.weight();
            store.evict_to(before.saturating_sub(amount), now, &mut |k, v, cause| {
                removed.push(k, v, cause)
            });
            let shed = before - store.weight();
            self.inner.total.fetch_sub(shed, Relaxed);
            shard.mark(&store);
            shed
        };
        removed.notify(self.inner.listener.as_deref());
        shed.min(amount)
    }

    /// Removes `key`, returning its value if it was present (expired or not).
    /// The listener hears [`RemovalCause::Explicit`].
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let removed = self.write(self.shard_index(hash), 0, |store, _| {
            store.remove(hash, key)
        });
        let (key, value) = removed?;
        if let Some(listener) = &self.inner.listener {
            listener(key, value.clone(), RemovalCause::Explicit);
        }
        Some(value)
    }

    /// Removes `key`; the same as [`Cache::remove`] without returning the value.
    pub fn invalidate<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let _ = self.remove(key);
    }

    /// Removes every entry (the listener hears [`RemovalCause::Explicit`]) and
    /// forgets the popularity history.
    pub fn invalidate_all(&self) {
        for index in 0..self.inner.shards.len() {
            self.write(index, 0, |store, removed| {
                store.clear(RemovalCause::Explicit, &mut |k, v, cause| {
                    removed.push(k, v, cause)
                });
            });
        }
    }

    /// Removes every entry for which `predicate` holds (the listener hears
    /// [`RemovalCause::Explicit`]). Runs shard by shard, so concurrent writes to
    /// other shards go on meanwhile.
    ///
    /// ```
    /// # use scalekit_cache::Cache;
    /// let cache: Cache<u32, u32> = Cache::new(100);
    /// for i in 0..10 { cache.insert(i, i * i); }
    /// cache.invalidate_if(|k, _| k % 2 == 0);
    /// assert_eq!(cache.entry_count(), 5);
    /// ```
    pub fn invalidate_if(&self, mut predicate: impl FnMut(&K, &V) -> bool) {
        for index in 0..self.inner.shards.len() {
            self.write(index, 0, |store, removed| {
                store.retain(
                    |k, v| !predicate(k, v),
                    RemovalCause::Explicit,
                    &mut |k, v, cause| removed.push(k, v, cause),
                );
            });
        }
    }

    /// Runs pending maintenance now: expires what is due and adapts the policy.
    /// Writes do this as they go; call it when a cache may sit idle with
    /// expired entries you want gone (and reported to the listener).
    pub fn run_pending_tasks(&self) {
        let now = self.now();
        for index in 0..self.inner.shards.len() {
            self.write(index, now, |store, removed| {
                store.maintain(now, true, &mut |k, v, cause| removed.push(k, v, cause));
            });
        }
    }
}

/// Entries removed under a shard's lock, handed to the listener after it is
/// released (so a listener may use the cache). Collected only when a listener
/// is set; otherwise they are dropped in place. A write also says here
/// whether the shard's periodic work is due after it.
pub(crate) struct Removed<K, V> {
    collect: bool,
    entries: Vec<(K, V, RemovalCause)>,
    /// Run `Store::maintain` once the capacity is settled.
    pub(crate) maintain: bool,
}

impl<K, V> Removed<K, V> {
    pub(crate) fn new(collect: bool) -> Self {
        Self {
            collect,
            entries: Vec::new(),
            maintain: false,
        }
    }

    pub(crate) fn push(&mut self, key: K, value: V, cause: RemovalCause) {
        if self.collect {
            self.entries.push((key, value, cause));
        }
    }

    pub(crate) fn notify(self, listener: Option<&Listener<K, V>>) {
        if let Some(listener) = listener {
            for (key, value, cause) in self.entries {
                listener(key, value, cause);
            }
        }
    }
}
