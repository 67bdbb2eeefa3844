//! Iteration over a cache, shard by shard.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::Ordering::Relaxed;

use scalekit_core::Clock;

use super::Cache;

/// An iterator over a cache's live entries, as clones; from [`Cache::iter`].
///
/// It is *weakly consistent*: each shard is copied at one instant, under its
/// shared lock (held only while copying that shard's entries), one shard
/// after another. An entry written to a shard after that shard was copied is
/// not seen; one removed after it was copied still is. No entry is seen
/// twice. Expired entries (and those in their stale-while-revalidate period)
/// are skipped. Iterating is not an access: it changes neither the policy's
/// view, nor deadlines, nor the stats.
pub struct Iter<'a, K, V, S, C> {
    cache: &'a Cache<K, V, S, C>,
    next_shard: usize,
    batch: std::vec::IntoIter<(K, V)>,
}

impl<K, V, S, C> std::fmt::Debug for Iter<'_, K, V, S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter")
            .field("next_shard", &self.next_shard)
            .field("buffered", &self.batch.len())
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
    /// The live entries, as `(key, value)` clones, shard by shard (weakly
    /// consistent: see [`Iter`]).
    ///
    /// ```
    /// use scalekit_cache::Cache;
    ///
    /// let cache: Cache<u32, &str> = Cache::new(100);
    /// cache.insert(1, "one");
    /// cache.insert(2, "two");
    /// let mut entries: Vec<_> = cache.iter().collect();
    /// entries.sort();
    /// assert_eq!(entries, [(1, "one"), (2, "two")]);
    /// ```
    pub fn iter(&self) -> Iter<'_, K, V, S, C> {
        Iter {
            cache: self,
            next_shard: 0,
            batch: Vec::new().into_iter(),
        }
    }
}

impl<'a, K, V, S, C> IntoIterator for &'a Cache<K, V, S, C>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
    C: Clock,
{
    type Item = (K, V);
    type IntoIter = Iter<'a, K, V, S, C>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<K, V, S, C> Iterator for Iter<'_, K, V, S, C>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
    C: Clock,
{
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        loop {
            if let Some(entry) = self.batch.next() {
                return Some(entry);
            }
            let shard = self.cache.inner.shards.get(self.next_shard)?;
            self.next_shard += 1;
            let store = shard.store.read();
            let now = self.cache.now();
            let live: Vec<(K, V)> = store
                .slab
                .nodes()
                .filter(|node| self.cache.is_fresh(node.expires_at.load(Relaxed), now))
                .map(|node| (node.key.clone(), node.value.clone()))
                .collect();
            drop(store);
            self.batch = live.into_iter();
        }
    }
}
