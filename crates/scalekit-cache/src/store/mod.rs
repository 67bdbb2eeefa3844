//! One shard's entries and its eviction policy: W-TinyLFU with an adaptive window.
//!
//! # The policy
//!
//! New entries enter a small *window* queue. When the window is over its share of
//! the shard, its oldest entry becomes a *candidate* for the *main* space,
//! which is split into *probation* and *protected* queues (segmented LRU). If the
//! main space is full, the candidate duels the main space's victim: the TinyLFU
//! frequency sketch estimates how often each key was asked for recently, and the
//! more popular one stays. An entry hit while on probation is promoted to
//! protected; protected's overflow falls back to probation (`policy.rs`).
//!
//! The window's share is not fixed: it moves towards whichever space earns
//! more hits at its margin (`adapt.rs`), up to `WINDOW_CAP`: a main space
//! always remains, so the policy never degenerates to CLOCK alone.
//!
//! A candidate that lost the duel gets a second chance if it comes back soon,
//! as S3-FIFO and ARC admit on a ghost hit, but only while the window is
//! beyond its smallest shares, that is while the adaptation finds recency
//! worth more than frequency (`admit.rs`).
//!
//! # Capacity
//!
//! A store does not decide how much it holds: the cache counts the weight of
//! all shards together and asks a store to shed weight (`evict_to`) when the
//! whole cache is over its capacity. The store's *share* sizes its policy
//! (window, protected); entries heavier than the share are *heavy*: their
//! weight is borrowed from the other shards, so a heavy entry does not push
//! its shard's other entries out (`room`), nor make the window overflow (it
//! leaves the window when lighter entries push it out, and then fits in
//! main).
//!
//! # Concurrency
//!
//! Each queue is a CLOCK approximation of LRU: a read only sets the entry's
//! `visited` bit (an atomic, under the shard's *shared* lock) and counts the key
//! in the entry; the queues are reordered lazily, under the exclusive lock, when
//! eviction scans them (a visited entry gets a second chance, or a promotion).
//! So reads never wait for each other.

mod adapt;
mod admit;
mod node;
mod policy;
mod recent;
#[cfg(test)]
mod tests;

use std::borrow::Borrow;
use std::sync::atomic::Ordering::Relaxed;

use hashbrown::HashTable;

use crate::list::{Head, NIL};
use crate::removal::RemovalCause;
use crate::sketch::FrequencySketch;
use crate::wheel::TimerWheel;
use adapt::{Adaptation, Move};
use admit::Rejected;
pub(crate) use node::{Node, Slab, WriteInfo, NEVER};

const WINDOW: usize = 0;
const PROBATION: usize = 1;
const PROTECTED: usize = 2;

/// Initial window share, as in Caffeine.
const INITIAL_WINDOW: f64 = 0.01;
/// Protected's share of the main space.
const PROTECTED_SHARE: f64 = 0.80;
/// The window's largest share: beyond it, the adaptation's growth stops.
const WINDOW_CAP: f64 = 0.80;

/// A shard's entries, queues, sketch and timer wheel. All methods that take
/// `&mut self` run under the shard's exclusive lock; readers use `find` and the
/// atomics in `Node` under the shared lock.
pub(crate) struct Store<K, V> {
    table: HashTable<u32>,
    pub(crate) slab: Slab<K, V>,
    queues: [Head; 3],
    queue_weight: [u64; 3],
    /// This shard's share of the capacity: the size its policy works with.
    share: u64,
    /// The whole cache's capacity: an entry heavier than this is not kept.
    max_weight: u64,
    window_max: u64,
    protected_max: u64,
    weight: u64,
    /// Whether any entry ever weighed other than 1: until then a replace
    /// need not read the entry's weight (it is 1).
    weighted: bool,
    /// The weight of resident entries heavier than `share` (borrowed from the
    /// other shards), in all and by queue.
    heavy: u64,
    queue_heavy: [u64; 3],
    pub(crate) sketch: FrequencySketch,
    adapt: Adaptation,
    next_stamp: [u32; 3],
    head_stamp: [u32; 3],
    queue_len: [u64; 3],
    wheel: TimerWheel,
    /// Entries with a deadline are in the wheel; without any, it stays empty.
    scheduled: usize,
    rng: u64,
    /// New keys inserted: the adaptation's clock.
    inserts: u64,
    /// Removals by cause (`RemovalCause as usize`).
    pub(crate) removals: [u64; 4],
    expired: Vec<u32>,
    /// Candidates that lost the admission duel lately.
    rejected: Rejected,
}

impl<K, V> Store<K, V> {
    /// A store for `share` of a cache of `max_weight`.
    pub(crate) fn new(
        share: u64,
        max_weight: u64,
        sketch_entries: u64,
        seed: u64,
        now: u64,
    ) -> Self {
        let mut store = Self {
            table: HashTable::new(),
            slab: Slab::new(),
            queues: [Head::EMPTY; 3],
            queue_weight: [0; 3],
            share,
            max_weight,
            window_max: 0,
            protected_max: 0,
            weight: 0,
            weighted: false,
            heavy: 0,
            queue_heavy: [0; 3],
            sketch: FrequencySketch::new(sketch_entries),
            adapt: Adaptation::new(share),
            next_stamp: [0; 3],
            head_stamp: [0; 3],
            queue_len: [0; 3],
            wheel: TimerWheel::new(now),
            scheduled: 0,
            rng: seed | 1,
            inserts: 0,
            removals: [0; 4],
            expired: Vec::new(),
            rejected: Rejected::default(),
        };
        store.set_window((share as f64 * INITIAL_WINDOW) as u64);
        store
    }

    fn set_window(&mut self, window: u64) {
        self.window_max = window.min((self.share as f64 * WINDOW_CAP) as u64);
        self.protected_max = ((self.share - self.window_max) as f64 * PROTECTED_SHARE) as u64;
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// The total weight of the entries.
    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    /// This shard's share of the capacity.
    #[cfg(test)]
    pub(crate) fn share(&self) -> u64 {
        self.share
    }

    /// What this shard may hold before it sheds its own entries: its share,
    /// plus the heavy entries it holds (whose weight the other shards make
    /// room for).
    pub(crate) fn room(&self) -> u64 {
        self.share.saturating_add(self.heavy)
    }

    /// The weight beyond `room`: what this shard holds at the others' expense.
    pub(crate) fn over_room(&self) -> u64 {
        self.weight.saturating_sub(self.room())
    }

    /// The window's current target, for tests and stats.
    pub(crate) fn window_max(&self) -> u64 {
        self.window_max
    }

    pub(super) fn heavy_part(&self, weight: u32) -> u64 {
        if u64::from(weight) > self.share {
            u64::from(weight)
        } else {
            0
        }
    }

    /// The node index for a key.
    #[inline]
    pub(crate) fn find<Q>(&self, hash: u64, key: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.table
            .find(hash, |&idx| self.slab.get(idx).key.borrow() == key)
            .copied()
    }

    #[inline]
    pub(crate) fn node(&self, idx: u32) -> &Node<K, V> {
        self.slab.get(idx)
    }

    /// Inserts or replaces, without evicting (the cache decides what to shed,
    /// see `evict_to`). Returns the node index, or `None` when the entry weighs
    /// more than the whole capacity (it is handed to `sink` as `Size`), and
    /// whether the key was new.
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        weight: u32,
        expires_at: u64,
        sink: &mut dyn FnMut(K, V, RemovalCause),
    ) -> (Option<u32>, bool)
    where
        K: Eq,
    {
        if let Some(idx) = self.find(hash, &key) {
            let node = self.slab.get_mut(idx);
            if node.count_hit() {
                self.sketch.count_sample(hash);
            }
            let old_value = std::mem::replace(&mut node.value, value);
            node.touch();
            let queue = node.queue.index();
            let timed = expires_at != NEVER || node.expires_at.load(Relaxed) != NEVER;
            // The common replace (no weigher, no deadline before or after)
            // touches nothing but the node.
            let old_weight = if self.weighted || weight != 1 {
                self.weighted = true;
                self.slab.set_weight(idx, weight)
            } else {
                1
            };
            if timed {
                self.reschedule(idx, expires_at);
            }
            self.removals[RemovalCause::Replaced as usize] += 1;
            sink(key, old_value, RemovalCause::Replaced);
            if old_weight == weight {
                return (Some(idx), false);
            }
            self.queue_weight[queue] =
                self.queue_weight[queue] - u64::from(old_weight) + u64::from(weight);
            self.weight = self.weight - u64::from(old_weight) + u64::from(weight);
            let (old_heavy, new_heavy) = (self.heavy_part(old_weight), self.heavy_part(weight));
            self.queue_heavy[queue] = self.queue_heavy[queue] - old_heavy + new_heavy;
            self.heavy = self.heavy - old_heavy + new_heavy;
            if u64::from(weight) > self.max_weight {
                self.remove_idx(idx, RemovalCause::Size, sink);
                return (None, false);
            }
            return (Some(idx), false);
        }
        self.sketch.increment(hash);
        self.weighted |= weight != 1;
        if u64::from(weight) > self.max_weight {
            self.removals[RemovalCause::Size as usize] += 1;
            sink(key, value, RemovalCause::Size);
            return (None, true);
        }
        let idx = self
            .slab
            .insert(Node::new(key, value, expires_at), hash, weight);
        let slab = &self.slab;
        self.table.insert_unique(hash, idx, |&i| slab.hash(i));
        self.enqueue(idx, WINDOW);
        self.weight += u64::from(weight);
        self.inserts += 1;
        self.adapt.on_new_key(hash);
        if self.losers_kept() && self.rejected.returned(hash, self.inserts, self.share) {
            self.slab.set_returned(idx);
        }
        if expires_at != NEVER {
            self.wheel.schedule(&mut self.slab, idx, expires_at);
            self.scheduled += 1;
        }
        (Some(idx), true)
    }

    /// Records a write's deadlines and load time in the node's timer.
    pub(crate) fn set_write_info(&mut self, idx: u32, info: WriteInfo) {
        self.slab.set_write_info(idx, info);
    }

    /// Moves a node's deadline, keeping the wheel in step.
    pub(crate) fn reschedule(&mut self, idx: u32, expires_at: u64) {
        let node = self.slab.get(idx);
        let was = self.slab.timer(idx).bucket_is_set();
        node.expires_at.store(expires_at, Relaxed);
        if was {
            self.wheel.unschedule(&mut self.slab, idx);
            self.scheduled -= 1;
        }
        if expires_at != NEVER {
            self.wheel.schedule(&mut self.slab, idx, expires_at);
            self.scheduled += 1;
        }
    }

    pub(crate) fn remove<Q>(&mut self, hash: u64, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let idx = self.find(hash, key)?;
        let removed = self.detach(idx);
        self.removals[RemovalCause::Explicit as usize] += 1;
        Some(removed)
    }

    /// Unlinks a node from every structure and returns its key and value.
    fn detach(&mut self, idx: u32) -> (K, V) {
        let (hash, weight, scheduled) = {
            let meta = self.slab.meta(idx);
            (meta.hash, meta.weight, self.slab.timer(idx).bucket_is_set())
        };
        if let Ok(entry) = self.table.find_entry(hash, |&i| i == idx) {
            entry.remove();
        }
        self.dequeue(idx);
        self.weight -= u64::from(weight);
        if scheduled {
            self.wheel.unschedule(&mut self.slab, idx);
            self.scheduled -= 1;
        }
        let node = self.slab.take(idx);
        self.sketch.add(hash, node.hits.load(Relaxed));
        (node.key, node.value)
    }

    fn remove_idx(
        &mut self,
        idx: u32,
        cause: RemovalCause,
        sink: &mut dyn FnMut(K, V, RemovalCause),
    ) {
        let (key, value) = self.detach(idx);
        self.removals[cause as usize] += 1;
        sink(key, value, cause);
    }

    /// Periodic work under the exclusive lock: expiry, the sketch's aging and the
    /// window's adaptation.
    pub(crate) fn maintain(
        &mut self,
        now: u64,
        exact: bool,
        sink: &mut dyn FnMut(K, V, RemovalCause),
    ) {
        if self.scheduled > 0 {
            let mut expired = std::mem::take(&mut self.expired);
            let dropped = self.wheel.advance(
                &mut self.slab,
                now,
                |slab, idx| slab.get(idx).expires_at.load(Relaxed),
                &mut expired,
                exact,
            );
            self.scheduled -= expired.len() + dropped;
            for idx in expired.drain(..) {
                // The wheel already unscheduled it.
                self.remove_idx(idx, RemovalCause::Expired, sink);
            }
            self.expired = expired;
        } else {
            self.wheel
                .advance(&mut self.slab, now, |_, _| 0, &mut self.expired, false);
        }
        if self.table.len() as u64 > self.sketch.sized_for() {
            // Weighted caches can hold more entries than first estimated.
            self.sketch = FrequencySketch::new(self.table.len() as u64 * 2);
        } else if self.sketch.reset_due() {
            self.sketch.halve();
            // Resident entries age with the sketch.
            for node in self.slab.nodes() {
                let hits = node.hits.load(Relaxed);
                node.hits.store(hits >> 1, Relaxed);
            }
        }
        let full = self.weight >= self.room();
        if full {
            self.rejected.resize(self.table.len());
        }
        match self.adapt.decide(self.inserts, full, self.table.len()) {
            Move::Grow(step) => self.set_window(self.window_max.saturating_add(step)),
            Move::Shrink(step) => self.set_window(self.window_max.saturating_sub(step)),
            Move::Wait | Move::Stay => {}
        }
    }

    /// Removes everything, handing each entry to `sink`.
    pub(crate) fn clear(&mut self, cause: RemovalCause, sink: &mut dyn FnMut(K, V, RemovalCause)) {
        self.retain(|_, _| false, cause, sink);
        self.sketch.clear();
    }

    /// Keeps the entries for which `keep` holds.
    pub(crate) fn retain(
        &mut self,
        mut keep: impl FnMut(&K, &V) -> bool,
        cause: RemovalCause,
        sink: &mut dyn FnMut(K, V, RemovalCause),
    ) {
        for queue in [WINDOW, PROBATION, PROTECTED] {
            let mut idx = self.queues[queue].first;
            while idx != NIL {
                let node = self.slab.get(idx);
                let next = self.slab.meta(idx).q_next;
                if !keep(&node.key, &node.value) {
                    self.remove_idx(idx, cause, sink);
                }
                idx = next;
            }
        }
    }

    /// Checks the structure's invariants (tests only).
    #[cfg(test)]
    pub(crate) fn check(&self) {
        let mut weights = [0u64; 3];
        let mut count = 0;
        let mut heavy = [0u64; 3];
        for (queue, head) in self.queues.iter().enumerate() {
            let mut idx = head.first;
            let mut prev = NIL;
            while idx != NIL {
                let (node, meta) = (self.slab.get(idx), self.slab.meta(idx));
                assert_eq!(node.queue.index(), queue);
                assert_eq!(meta.q_prev, prev);
                weights[queue] += u64::from(meta.weight);
                heavy[queue] += self.heavy_part(meta.weight);
                count += 1;
                prev = idx;
                idx = meta.q_next;
            }
            assert_eq!(head.last, prev);
            let expected = if head.first == NIL {
                self.next_stamp[queue]
            } else {
                self.slab.get(head.first).stamp
            };
            assert_eq!(
                self.head_stamp[queue], expected,
                "head stamp of queue {queue}"
            );
        }
        assert_eq!(weights, self.queue_weight);
        assert_eq!(count, self.table.len());
        assert_eq!(weights.iter().sum::<u64>(), self.weight);
        assert_eq!(heavy, self.queue_heavy);
        assert_eq!(heavy.iter().sum::<u64>(), self.heavy);
        let scheduled = (0..self.slab.slots.len() as u32)
            .filter(|&i| self.slab.is_used(i) && self.slab.timer(i).bucket_is_set())
            .count();
        assert_eq!(scheduled, self.scheduled, "scheduled entries");
    }
}

impl<K, V> std::fmt::Debug for Store<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("len", &self.table.len())
            .field("weight", &self.weight)
            .field("share", &self.share)
            .field("heavy", &self.heavy)
            .field("window_max", &self.window_max)
            .finish_non_exhaustive()
    }
}
