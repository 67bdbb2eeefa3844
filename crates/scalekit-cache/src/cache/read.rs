//! Reads: `get`, `contains_key`, and the lookup the loading methods share,
//! with what a read may do to a deadline (time-to-idle, `expire_after_read`).

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use scalekit_core::Clock;

use super::Cache;
use crate::config::nanos;
use crate::rand::ln_uniform;
use crate::store::{Node, Store, NEVER};

/// What a lookup found.
pub(crate) enum Found<V> {
    Fresh(V),
    /// A value to serve while one caller refreshes it.
    Refresh(V),
    Missing,
}

impl<K, V, S, C> Cache<K, V, S, C>
where
    K: Hash + Eq,
    V: Clone,
    S: BuildHasher,
    C: Clock,
{
    /// The value for `key`, if present and not expired. Counts as an access
    /// for the eviction policy, for time-to-idle and for
    /// [`Expiry::expire_after_read`](crate::Expiry::expire_after_read).
    ///
    /// ```
    /// # use scalekit_cache::Cache;
    /// let cache: Cache<String, u32> = Cache::new(100);
    /// cache.insert("a".to_string(), 1);
    /// assert_eq!(cache.get("a"), Some(1));
    /// ```
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.lookup(key, false) {
            Found::Fresh(value) => Some(value),
            Found::Refresh(_) | Found::Missing => None,
        }
    }

    /// Looks a key up, counting a hit or a miss. With `for_load`, an entry in
    /// its stale-while-revalidate period, or picked for early refresh, is
    /// returned as `Refresh`; otherwise such an entry is a miss.
    #[inline]
    pub(crate) fn lookup<Q>(&self, key: &Q, for_load: bool) -> Found<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let store = self.shard(hash).read();
        let now = self.now();
        if let Some(idx) = store.find(hash, key) {
            let node = store.node(idx);
            let deadline = node.expires_at.load(Relaxed);
            // Without deadlines `now` is 0 and every deadline NEVER.
            if now < deadline {
                let fresh_until = deadline.saturating_sub(self.inner.stale);
                let stale = now >= fresh_until && deadline != NEVER;
                if stale && !for_load {
                    drop(store);
                    self.inner.counters.misses.increment();
                    return Found::Missing;
                }
                let earlier =
                    self.inner.on_read && !stale && self.on_read(&store, idx, node, now, deadline);
                store.record_read(node, hash);
                self.inner.counters.hits.increment();
                let value = node.value.clone();
                let refresh =
                    stale || (for_load && self.refresh_early(&store, idx, now, fresh_until));
                drop(store);
                if earlier {
                    self.reschedule(hash, key);
                }
                return if refresh {
                    Found::Refresh(value)
                } else {
                    Found::Fresh(value)
                };
            }
        }
        drop(store);
        self.inner.counters.misses.increment();
        Found::Missing
    }

    /// What a read does to the entry's deadline: time-to-idle pushes it
    /// later; the [`Expiry`](crate::Expiry)'s `expire_after_read` may move it
    /// either way. Returns whether it moved earlier (the wheel must then be
    /// told; a later one it finds by itself).
    #[inline]
    fn on_read(
        &self,
        store: &Store<K, V>,
        idx: u32,
        node: &Node<K, V>,
        now: u64,
        deadline: u64,
    ) -> bool {
        let timer = store.slab.timer(idx);
        let mut custom = timer.custom();
        if let Some(expiry) = &self.inner.expiry {
            if !timer.overridden {
                let fresh_until = deadline.saturating_sub(self.inner.stale);
                let remaining = (deadline != NEVER)
                    .then(|| Duration::from_nanos(fresh_until.saturating_sub(now)));
                let wanted = expiry.expire_after_read(&node.key, &node.value, remaining);
                if wanted != remaining {
                    custom = wanted.map_or(NEVER, |d| now.saturating_add(nanos(d)));
                    store.slab.set_custom_deadline(idx, custom);
                }
            }
        }
        let idle = self
            .inner
            .tti
            .map_or(NEVER, |tti| now.saturating_add(nanos(tti)));
        let moved = timer
            .write_deadline
            .min(custom)
            .min(idle)
            .saturating_add(self.inner.stale);
        if moved != deadline {
            node.expires_at.store(moved, Relaxed);
        }
        moved < deadline
    }

    /// XFetch (Vattani et al., VLDB 2015): whether a loading call should
    /// refresh a fresh entry early, with a probability that grows as the
    /// deadline nears, scaled by how long its load took.
    #[inline]
    fn refresh_early(&self, store: &Store<K, V>, idx: u32, now: u64, fresh_until: u64) -> bool {
        if self.inner.refresh_beta <= 0.0 || fresh_until == NEVER {
            return false;
        }
        let load_nanos = store.slab.timer(idx).load_nanos;
        if load_nanos == 0 {
            return false;
        }
        let early = load_nanos as f64 * self.inner.refresh_beta * -ln_uniform();
        now as f64 + early >= fresh_until as f64
    }

    /// Puts an entry whose deadline a read moved earlier in the right bucket
    /// of the timer wheel.
    #[cold]
    fn reschedule<Q>(&self, hash: u64, key: &Q)
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mut store = self.shard(hash).write();
        if let Some(idx) = store.find(hash, key) {
            let deadline = store.node(idx).expires_at.load(Relaxed);
            store.reschedule(idx, deadline);
        }
    }

    /// Whether `key` is present and not expired. Not an access: it changes
    /// neither the policy's view nor the stats.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let store = self.shard(hash).read();
        let now = self.now();
        store
            .find(hash, key)
            .is_some_and(|idx| self.is_fresh(store.node(idx).expires_at.load(Relaxed), now))
    }

    /// The live value without counting an access (for a leader's re-check).
    pub(crate) fn peek<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let store = self.shard(hash).read();
        let now = self.now();
        let idx = store.find(hash, key)?;
        let node = store.node(idx);
        self.is_fresh(node.expires_at.load(Relaxed), now)
            .then(|| node.value.clone())
    }
}
