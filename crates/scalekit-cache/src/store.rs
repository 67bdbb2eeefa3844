//! One shard's entries and its eviction policy: W-TinyLFU with an adaptive window.
//!
//! # The policy
//!
//! New entries enter a small *window* queue. When the window is over its share of
//! the capacity, its oldest entry becomes a *candidate* for the *main* space,
//! which is split into *probation* and *protected* queues (segmented LRU). If the
//! main space is full, the candidate duels the main space's victim: the TinyLFU
//! frequency sketch estimates how often each key was asked for recently, and the
//! more popular one stays. An entry hit while on probation is promoted to
//! protected; protected's overflow falls back to probation.
//!
//! The window's share is not fixed. A hill climber samples the hit ratio over
//! periods of requests and moves the window by a step in the direction that
//! improved it (reversing when it got worse, with a decaying step, and restarting
//! with a large step when the workload shifts). Recency-biased workloads grow the
//! window towards LRU; frequency-biased and looping ones shrink it, where TinyLFU
//! admission protects the main space from one-hit wonders and scans.
//!
//! # Concurrency
//!
//! Each queue is a CLOCK approximation of LRU: a read only sets the entry's
//! `visited` bit (an atomic, under the shard's *shared* lock) and counts the key
//! in the sketch; the queues are reordered lazily, under the exclusive lock, when
//! eviction scans them (a visited entry gets a second chance, or a promotion).
//! So reads never wait for each other.

use std::borrow::Borrow;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};

use crossbeam_utils::CachePadded;
use hashbrown::HashTable;

use crate::list::{Head, Links, QueueLink, TimerLink, NIL};
use crate::sketch::FrequencySketch;
use crate::wheel::TimerWheel;
use crate::RemovalCause;

/// No deadline.
pub(crate) const NEVER: u64 = u64::MAX;

const WINDOW: usize = 0;
const PROBATION: usize = 1;
const PROTECTED: usize = 2;

/// Frequency at which a losing candidate is still admitted now and then, so an
/// attacker cannot pin a victim by colliding with it in the sketch (Caffeine's
/// defence against hash flooding).
const ADMIT_HASHDOS_THRESHOLD: u8 = 6;

/// An entry and what the policy keeps of it: all that a read touches, in
/// one cache line for small keys and values (64 bytes for `u64` and `u64`).
#[repr(align(64))]
pub(crate) struct Node<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
    pub(crate) hash: u64,
    /// Deadline in clock nanoseconds, or [`NEVER`]. Readers may push it later
    /// (time-to-idle); the timer wheel re-reads it before expiring.
    pub(crate) expires_at: AtomicU64,
    /// Position in its queue: the queue's counter when the node joined it.
    stamp: u64,
    q_prev: u32,
    q_next: u32,
    pub(crate) weight: u32,
    queue: Queue,
    pub(crate) visited: AtomicBool,
    /// Accesses while resident, since the sketch's last halving (0 to 15):
    /// counted here, in the line a read touches anyway, rather than in the
    /// sketch; folded into the sketch when the entry leaves.
    hits: AtomicU8,
}

/// Which queue a node is in. An enum rather than a `u8` so that `Slot`'s
/// `Free` fits in its unused values: a slot stays one 64-byte line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Queue {
    Window = 0,
    Probation = 1,
    Protected = 2,
}

impl Queue {
    const ALL: [Queue; 3] = [Queue::Window, Queue::Probation, Queue::Protected];

    fn index(self) -> usize {
        self as usize
    }
}

/// What only expiry and loading need of an entry, kept beside the nodes (and
/// allocated only once some entry has a deadline or a load time), so that
/// caches without them carry none of it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timer {
    /// The deadline set at the last write (time-to-live), which time-to-idle
    /// never extends.
    pub(crate) write_deadline: u64,
    /// How long the loader took to produce this value (0 when inserted
    /// directly): the `delta` of probabilistic early refresh.
    pub(crate) load_nanos: u64,
    prev: u32,
    next: u32,
    bucket: u32,
}

impl Timer {
    pub(crate) const EMPTY: Timer = Timer {
        write_deadline: NEVER,
        load_nanos: 0,
        prev: NIL,
        next: NIL,
        bucket: NIL,
    };
}

impl<K, V> Node<K, V> {
    #[inline]
    pub(crate) fn is_expired(&self, now: u64) -> bool {
        self.expires_at.load(Relaxed) <= now
    }

    /// Records a read: the CLOCK bit, written only when it changes.
    #[inline]
    pub(crate) fn touch(&self) {
        if !self.visited.load(Relaxed) {
            self.visited.store(true, Relaxed);
        }
    }

    /// Counts a read for TinyLFU in the entry itself (lossy under races, like
    /// the sketch). Returns whether the count changed.
    #[inline]
    pub(crate) fn count_hit(&self) -> bool {
        let hits = self.hits.load(Relaxed);
        if hits < 15 {
            self.hits.store(hits + 1, Relaxed);
            true
        } else {
            false
        }
    }
}

enum Slot<K, V> {
    Used(Node<K, V>),
    Free,
}

/// The slab of nodes, addressed by `u32` index, and their timers.
pub(crate) struct Slab<K, V> {
    slots: Vec<Slot<K, V>>,
    free: Vec<u32>,
    /// Empty until first needed; then as long as `slots`.
    timers: Vec<Timer>,
}

impl<K, V> Slab<K, V> {
    /// The node's timer fields (the empty timer when none was ever set).
    #[inline]
    pub(crate) fn timer(&self, idx: u32) -> Timer {
        self.timers
            .get(idx as usize)
            .copied()
            .unwrap_or(Timer::EMPTY)
    }

    fn timer_mut(&mut self, idx: u32) -> &mut Timer {
        if self.timers.len() < self.slots.len() {
            self.timers.resize(self.slots.len(), Timer::EMPTY);
        }
        &mut self.timers[idx as usize]
    }

    #[inline]
    pub(crate) fn get(&self, idx: u32) -> &Node<K, V> {
        match &self.slots[idx as usize] {
            Slot::Used(node) => node,
            Slot::Free => unreachable!("a live index points at a free slot"),
        }
    }

    #[inline]
    fn get_mut(&mut self, idx: u32) -> &mut Node<K, V> {
        match &mut self.slots[idx as usize] {
            Slot::Used(node) => node,
            Slot::Free => unreachable!("a live index points at a free slot"),
        }
    }

    fn insert(&mut self, node: Node<K, V>) -> u32 {
        match self.free.pop() {
            Some(idx) => {
                self.slots[idx as usize] = Slot::Used(node);
                if let Some(timer) = self.timers.get_mut(idx as usize) {
                    *timer = Timer::EMPTY;
                }
                idx
            }
            None => {
                self.slots.push(Slot::Used(node));
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn take(&mut self, idx: u32) -> Node<K, V> {
        match std::mem::replace(&mut self.slots[idx as usize], Slot::Free) {
            Slot::Used(node) => {
                self.free.push(idx);
                node
            }
            Slot::Free => unreachable!("a live index points at a free slot"),
        }
    }
}

impl<K, V> Links<QueueLink> for Slab<K, V> {
    fn prev(&self, idx: u32) -> u32 {
        self.get(idx).q_prev
    }
    fn next(&self, idx: u32) -> u32 {
        self.get(idx).q_next
    }
    fn set_prev(&mut self, idx: u32, to: u32) {
        self.get_mut(idx).q_prev = to;
    }
    fn set_next(&mut self, idx: u32, to: u32) {
        self.get_mut(idx).q_next = to;
    }
}

impl<K, V> Links<TimerLink> for Slab<K, V> {
    fn prev(&self, idx: u32) -> u32 {
        self.timer(idx).prev
    }
    fn next(&self, idx: u32) -> u32 {
        self.timer(idx).next
    }
    fn set_prev(&mut self, idx: u32, to: u32) {
        self.timer_mut(idx).prev = to;
    }
    fn set_next(&mut self, idx: u32, to: u32) {
        self.timer_mut(idx).next = to;
    }
    fn bucket(&self, idx: u32) -> u32 {
        self.timer(idx).bucket
    }
    fn set_bucket(&mut self, idx: u32, bucket: u32) {
        self.timer_mut(idx).bucket = bucket;
    }
}

/// Initial window share, as in Caffeine.
const INITIAL_WINDOW: f64 = 0.01;
/// Protected's share of the main space.
const PROTECTED_SHARE: f64 = 0.80;

/// The adaptation's probe distance, as a share of the entries: it weighs the
/// hits the last `delta` entries of each space earn.
const DELTA_SHARE: f64 = 0.05;
/// Inserts of new keys between adaptation decisions, as a share of the capacity.
const ADAPT_PERIOD: f64 = 0.1;
/// How many standard deviations of counting noise a difference must exceed
/// before the boundary moves.
const NOISE_Z: f64 = 2.0;
/// Events (tail and ghost hits) to count before any decision.
const MIN_EVIDENCE: f64 = 32.0;
/// Periods to keep counting for a clear difference before starting afresh.
const ADAPT_PATIENCE: u64 = 8;

/// Recently dropped keys, for the adaptation's "what if the boundary were
/// elsewhere" counts. A direct-mapped table of (fingerprint, stamp) pairs,
/// where the stamp counts the departures from the key's space: a returning key
/// is a ghost hit if it left within the last `delta` departures, that is, if a
/// space `delta` larger would still have held it. O(1), no allocation.
#[derive(Debug, Default)]
struct Ghost {
    slots: Vec<u64>,
    /// Departures from the space so far.
    clock: u32,
}

impl Ghost {
    #[inline]
    fn slot(&self, hash: u64) -> (usize, u32) {
        let mixed = scalekit_core::mix64(hash);
        // Multiply-shift maps the low half onto 0..len without a division.
        let slot = ((mixed & 0xffff_ffff) * self.slots.len() as u64) >> 32;
        (slot as usize, (mixed >> 32) as u32 | 1)
    }

    /// Counts a departure; remembers the key if it is gone from the cache.
    fn depart(&mut self, hash: u64, dropped: bool) {
        self.clock = self.clock.wrapping_add(1);
        if dropped && !self.slots.is_empty() {
            let (slot, print) = self.slot(hash);
            self.slots[slot] = u64::from(print) << 32 | u64::from(self.clock);
        }
    }

    /// Whether the key left within the last `delta` departures (and forgets it).
    fn take(&mut self, hash: u64, delta: u64) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let (slot, print) = self.slot(hash);
        let entry = self.slots[slot];
        if (entry >> 32) as u32 != print {
            return false;
        }
        self.slots[slot] = 0;
        u64::from(self.clock.wrapping_sub(entry as u32)) < delta
    }

    fn resize(&mut self, cap: usize) {
        let len = cap.max(1);
        // Resized (and so forgotten) only on a real change of scale.
        let current = self.slots.len();
        if len > current + current / 4 || len < current - current / 4 {
            self.slots = vec![0; len];
        }
    }
}

/// Marginal-utility estimates of the window and main spaces: hits that land
/// within `delta` entries of each space's eviction point, and misses on keys
/// that space dropped in its last `delta` evictions.
#[derive(Debug)]
struct Adaptation {
    delta: u64,
    window_ghost: Ghost,
    main_ghost: Ghost,
    window_ghost_hits: u64,
    main_ghost_hits: u64,
    requests_at_start: u64,
    period: u64,
}

/// A shard's entries, queues, sketch and timer wheel. All methods that take
/// `&mut self` run under the shard's exclusive lock; readers use `find` and the
/// atomics in `Node` under the shared lock.
pub(crate) struct Store<K, V> {
    table: HashTable<u32>,
    pub(crate) slab: Slab<K, V>,
    queues: [Head; 3],
    queue_weight: [u64; 3],
    capacity: u64,
    window_max: u64,
    protected_max: u64,
    weight: u64,
    pub(crate) sketch: FrequencySketch,
    adapt: Adaptation,
    next_stamp: [u64; 3],
    head_stamp: [u64; 3],
    queue_len: [u64; 3],
    /// Hits within `delta` of the eviction point: window, main (atomics: readers count them).
    tail_hits: CachePadded<[AtomicU64; 2]>,
    wheel: TimerWheel,
    /// Entries with a deadline are in the wheel; without any, it stays empty.
    scheduled: usize,
    rng: u64,
    /// New keys inserted: the adaptation's clock.
    inserts: u64,
    /// Removals by cause (`RemovalCause as usize`).
    pub(crate) removals: [u64; 4],
    expired: Vec<u32>,
}

impl<K, V> Store<K, V> {
    pub(crate) fn new(capacity: u64, sketch_entries: u64, seed: u64, now: u64) -> Self {
        let mut store = Self {
            table: HashTable::new(),
            slab: Slab {
                slots: Vec::new(),
                free: Vec::new(),
                timers: Vec::new(),
            },
            queues: [Head::EMPTY; 3],
            queue_weight: [0; 3],
            capacity,
            window_max: 0,
            protected_max: 0,
            weight: 0,
            sketch: FrequencySketch::new(sketch_entries),
            adapt: Adaptation {
                delta: 1,
                window_ghost: Ghost::default(),
                main_ghost: Ghost::default(),
                window_ghost_hits: 0,
                main_ghost_hits: 0,
                requests_at_start: 0,
                period: ((capacity as f64 * ADAPT_PERIOD) as u64).max(64),
            },
            next_stamp: [0; 3],
            head_stamp: [0; 3],
            queue_len: [0; 3],
            tail_hits: CachePadded::new([AtomicU64::new(0), AtomicU64::new(0)]),
            wheel: TimerWheel::new(now),
            scheduled: 0,
            rng: seed | 1,
            inserts: 0,
            removals: [0; 4],
            expired: Vec::new(),
        };
        store.set_window((capacity as f64 * INITIAL_WINDOW) as u64);
        store
    }

    fn set_window(&mut self, window: u64) {
        self.window_max = window.min(self.capacity);
        self.protected_max = ((self.capacity - self.window_max) as f64 * PROTECTED_SHARE) as u64;
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    /// The window's current target, for tests and stats.
    pub(crate) fn window_max(&self) -> u64 {
        self.window_max
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

    /// Inserts or replaces. Returns the node index, or `None` when the entry
    /// weighs more than the whole capacity (it is handed to `sink` as `Size`),
    /// and whether the key was new.
    #[allow(clippy::too_many_arguments)] // the hot path; a struct would only rename them
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        weight: u32,
        expires_at: u64,
        now: u64,
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
            let old_weight = std::mem::replace(&mut node.weight, weight);
            let queue = node.queue.index();
            // The common replace (same weight, no deadline before or after)
            // touches nothing but the node.
            if expires_at != NEVER || node.expires_at.load(Relaxed) != NEVER {
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
            if u64::from(weight) > self.capacity {
                self.remove_idx(idx, RemovalCause::Size, sink);
                return (None, false);
            }
            self.evict(now, sink);
            return (self.find_idx_alive(idx), false);
        }
        self.sketch.increment(hash);
        if u64::from(weight) > self.capacity {
            self.removals[RemovalCause::Size as usize] += 1;
            sink(key, value, RemovalCause::Size);
            return (None, true);
        }
        let idx = self.slab.insert(Node {
            key,
            value,
            hash,
            weight,
            queue: Queue::Window,
            visited: AtomicBool::new(false),
            hits: AtomicU8::new(0),
            expires_at: AtomicU64::new(expires_at),
            stamp: 0,
            q_prev: NIL,
            q_next: NIL,
        });
        let slab = &self.slab;
        self.table.insert_unique(hash, idx, |&i| slab.get(i).hash);
        self.enqueue(idx, WINDOW);
        self.weight += u64::from(weight);
        self.inserts += 1;
        if self.adapt.window_ghost.take(hash, self.adapt.delta) {
            self.adapt.window_ghost_hits += 1;
        }
        if self.adapt.main_ghost.take(hash, self.adapt.delta) {
            self.adapt.main_ghost_hits += 1;
        }
        if expires_at != NEVER {
            self.wheel.schedule(&mut self.slab, idx, expires_at);
            self.scheduled += 1;
        }
        self.evict(now, sink);
        (self.find_idx_alive(idx), true)
    }

    /// `idx` if the node survived this call's eviction (it may have been the victim).
    fn find_idx_alive(&self, idx: u32) -> Option<u32> {
        match self.slab.slots.get(idx as usize) {
            Some(Slot::Used(_)) => Some(idx),
            _ => None,
        }
    }

    pub(crate) fn set_write_info(&mut self, idx: u32, deadline: u64, load_nanos: u64) {
        if deadline != NEVER || load_nanos != 0 || !self.slab.timers.is_empty() {
            let timer = self.slab.timer_mut(idx);
            timer.write_deadline = deadline;
            timer.load_nanos = load_nanos;
        }
    }

    /// Moves a node's deadline, keeping the wheel in step.
    pub(crate) fn reschedule(&mut self, idx: u32, expires_at: u64) {
        let node = self.slab.get(idx);
        let was = self.slab.timer(idx).bucket != NIL;
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
            let node = self.slab.get(idx);
            (node.hash, node.weight, self.slab.timer(idx).bucket != NIL)
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
        self.sketch.add(node.hash, node.hits.load(Relaxed));
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

    /// Evicts (or expires) until the shard is within its capacity.
    fn evict(&mut self, now: u64, sink: &mut dyn FnMut(K, V, RemovalCause)) {
        while self.weight > self.capacity {
            let main = self.queue_weight[PROBATION] + self.queue_weight[PROTECTED];
            let main_empty = self.queues[PROBATION].is_empty() && self.queues[PROTECTED].is_empty();
            if self.queue_weight[WINDOW] > self.window_max || main_empty {
                let Some(candidate) = self.clock_victim(WINDOW) else {
                    break;
                };
                let candidate_weight = u64::from(self.slab.get(candidate).weight);
                if main + candidate_weight <= self.capacity - self.window_max {
                    self.adapt.window_ghost.depart(0, false);
                    self.move_to(candidate, PROBATION);
                    continue;
                }
                match self.main_victim() {
                    Some(victim) if self.admit(candidate, victim) => {
                        self.adapt.window_ghost.depart(0, false);
                        let hash = self.slab.get(victim).hash;
                        self.adapt.main_ghost.depart(hash, true);
                        self.evict_idx(victim, now, sink);
                        self.move_to(candidate, PROBATION);
                    }
                    _ => {
                        let hash = self.slab.get(candidate).hash;
                        self.adapt.window_ghost.depart(hash, true);
                        self.evict_idx(candidate, now, sink);
                    }
                }
            } else {
                match self.main_victim() {
                    Some(victim) => {
                        let hash = self.slab.get(victim).hash;
                        self.adapt.main_ghost.depart(hash, true);
                        self.evict_idx(victim, now, sink);
                    }
                    None => match self.clock_victim(WINDOW) {
                        Some(victim) => self.evict_idx(victim, now, sink),
                        None => break,
                    },
                }
            }
        }
    }

    fn evict_idx(&mut self, idx: u32, now: u64, sink: &mut dyn FnMut(K, V, RemovalCause)) {
        let cause = if self.slab.get(idx).is_expired(now) {
            RemovalCause::Expired
        } else {
            RemovalCause::Size
        };
        self.remove_idx(idx, cause, sink);
    }

    fn enqueue(&mut self, idx: u32, queue: usize) {
        let stamp = self.next_stamp[queue];
        self.next_stamp[queue] += 1;
        let node = self.slab.get_mut(idx);
        node.queue = Queue::ALL[queue];
        node.stamp = stamp;
        let weight = u64::from(node.weight);
        if self.queues[queue].is_empty() {
            self.head_stamp[queue] = stamp;
        }
        self.queues[queue].push_back::<QueueLink, _>(&mut self.slab, idx);
        self.queue_weight[queue] += weight;
        self.queue_len[queue] += 1;
    }

    fn dequeue(&mut self, idx: u32) {
        let node = self.slab.get(idx);
        let queue = node.queue.index();
        let weight = u64::from(node.weight);
        let was_first = self.queues[queue].first == idx;
        self.queues[queue].unlink::<QueueLink, _>(&mut self.slab, idx);
        self.queue_weight[queue] -= weight;
        self.queue_len[queue] -= 1;
        if was_first {
            // Keep the head position current for readers' tail-hit counts;
            // the new first node's links were just written, so it is in cache.
            let first = self.queues[queue].first;
            self.head_stamp[queue] = if first == NIL {
                self.next_stamp[queue]
            } else {
                self.slab.get(first).stamp
            };
        }
    }

    fn move_to(&mut self, idx: u32, queue: usize) {
        self.dequeue(idx);
        self.enqueue(idx, queue);
    }

    /// Counts a hit for the adaptation: is the entry near its space's eviction point?
    #[inline]
    pub(crate) fn record_hit(&self, node: &Node<K, V>) {
        let queue = node.queue.index();
        let mut distance = node.stamp.wrapping_sub(self.head_stamp[queue]);
        if queue == PROTECTED {
            distance = distance.saturating_add(self.queue_len[PROBATION]);
        }
        if distance < self.adapt.delta {
            self.tail_hits[queue.min(1)].fetch_add(1, Relaxed);
        }
    }

    /// The oldest unvisited entry of a queue; visited ones get a second chance
    /// (their bit cleared, moved to the back). At most one pass.
    fn clock_victim(&mut self, queue: usize) -> Option<u32> {
        let mut budget = self.table.len() + 1;
        loop {
            let first = self.queues[queue].first;
            if first == NIL {
                return None;
            }
            let node = self.slab.get(first);
            if budget == 0 || !node.visited.load(Relaxed) {
                return Some(first);
            }
            node.visited.store(false, Relaxed);
            self.move_to(first, queue);
            budget -= 1;
        }
    }

    /// The main space's victim: probation's oldest unvisited entry. Visited
    /// probation entries are promoted to protected on the way; protected's
    /// overflow (its oldest unvisited) is demoted to probation.
    fn main_victim(&mut self) -> Option<u32> {
        let mut budget = 2 * self.table.len() + 2;
        loop {
            budget = budget.saturating_sub(1);
            let first = self.queues[PROBATION].first;
            if first != NIL {
                let node = self.slab.get(first);
                if budget == 0 || !node.visited.load(Relaxed) {
                    return Some(first);
                }
                node.visited.store(false, Relaxed);
                self.move_to(first, PROTECTED);
                while self.queue_weight[PROTECTED] > self.protected_max {
                    let Some(demoted) = self.clock_victim(PROTECTED) else {
                        break;
                    };
                    self.move_to(demoted, PROBATION);
                }
                continue;
            }
            let first = self.queues[PROTECTED].first;
            if first == NIL {
                return None;
            }
            self.slab.get(first).visited.store(false, Relaxed);
            self.move_to(first, PROBATION);
        }
    }

    /// A resident entry's estimated popularity: the sketch's history of its
    /// key plus the accesses it counted while resident.
    fn frequency(&self, idx: u32) -> u8 {
        let node = self.slab.get(idx);
        (self.sketch.frequency(node.hash) + node.hits.load(Relaxed)).min(15)
    }

    /// Counts a read of a resident entry for the policy.
    #[inline]
    pub(crate) fn record_read(&self, node: &Node<K, V>) {
        node.touch();
        if node.count_hit() {
            self.sketch.count_sample(node.hash);
        }
        self.record_hit(node);
    }

    /// TinyLFU admission: the candidate replaces the victim if it is more popular.
    fn admit(&mut self, candidate: u32, victim: u32) -> bool {
        let candidate_freq = self.frequency(candidate);
        let victim_freq = self.frequency(victim);
        if candidate_freq > victim_freq {
            true
        } else if candidate_freq >= ADMIT_HASHDOS_THRESHOLD {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            self.rng & 127 == 0
        } else {
            false
        }
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
            self.wheel.advance(
                &mut self.slab,
                now,
                |slab, idx| slab.get(idx).expires_at.load(Relaxed),
                &mut expired,
                exact,
            );
            self.scheduled -= expired.len();
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
            for slot in &self.slab.slots {
                if let Slot::Used(node) = slot {
                    let hits = node.hits.load(Relaxed);
                    node.hits.store(hits >> 1, Relaxed);
                }
            }
        }
        self.adapt();
    }

    /// Moves the window/main boundary towards the space whose marginal entries
    /// earn more hits.
    fn adapt(&mut self) {
        let requests = self.inserts;
        if self.weight < self.capacity {
            self.adapt.requests_at_start = requests;
            self.resize_adaptation();
            return;
        }
        if requests.wrapping_sub(self.adapt.requests_at_start) < self.adapt.period {
            return;
        }
        let window_tail = self.tail_hits[0].load(Relaxed);
        let main_tail = self.tail_hits[1].load(Relaxed);
        let up = (self.adapt.window_ghost_hits + window_tail) as f64;
        let down = (self.adapt.main_ghost_hits + main_tail) as f64;
        let step = self.adapt.delta;
        // Move only on a difference beyond counting noise (Poisson: about the
        // square root of the counts); otherwise keep counting, a while.
        let noise = NOISE_Z * (up + down).sqrt();
        let elapsed = requests.wrapping_sub(self.adapt.requests_at_start);
        let enough = up + down >= MIN_EVIDENCE;
        if enough && up - down > noise {
            self.set_window(self.window_max.saturating_add(step));
        } else if enough && down - up > noise {
            self.set_window(self.window_max.saturating_sub(step));
        } else if elapsed < self.adapt.period * ADAPT_PATIENCE {
            return;
        }
        self.tail_hits[0].store(0, Relaxed);
        self.tail_hits[1].store(0, Relaxed);
        self.adapt.window_ghost_hits = 0;
        self.adapt.main_ghost_hits = 0;
        self.adapt.requests_at_start = requests;
        self.resize_adaptation();
    }

    fn resize_adaptation(&mut self) {
        let delta = ((self.table.len() as f64 * DELTA_SHARE) as u64).max(1);
        if delta != self.adapt.delta {
            self.adapt.delta = delta;
            self.adapt.window_ghost.resize(delta as usize);
            self.adapt.main_ghost.resize(delta as usize);
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
                let next = node.q_next;
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
        for (queue, head) in self.queues.iter().enumerate() {
            let mut idx = head.first;
            let mut prev = NIL;
            while idx != NIL {
                let node = self.slab.get(idx);
                assert_eq!(node.queue.index(), queue);
                assert_eq!(node.q_prev, prev);
                weights[queue] += u64::from(node.weight);
                count += 1;
                prev = idx;
                idx = node.q_next;
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
        assert!(self.weight <= self.capacity);
    }
}

impl<K, V> std::fmt::Debug for Store<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("len", &self.table.len())
            .field("weight", &self.weight)
            .field("capacity", &self.capacity)
            .field("window_max", &self.window_max)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drop_all(_: u64, _: u64, _: RemovalCause) {}

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u32, Option<u64>),
        Get(u64),
        Remove(u64),
        Maintain(u64),
        Retain(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0..64u64, 0..4u32, proptest::option::of(1..50u64))
                .prop_map(|(k, w, t)| Op::Insert(k, w, t)),
            5 => (0..64u64).prop_map(Op::Get),
            1 => (0..64u64).prop_map(Op::Remove),
            1 => (0..20u64).prop_map(Op::Maintain),
            1 => (2..4u64).prop_map(Op::Retain),
        ]
    }

    proptest! {
        /// Queues, weights, the table and the wheel stay consistent whatever happens.
        #[test]
        fn structure_stays_consistent(ops in proptest::collection::vec(op(), 1..300)) {
            let mut store: Store<u64, u64> = Store::new(16, 16, 7, 0);
            let mut now = 0;
            for op in ops {
                match op {
                    Op::Insert(k, w, ttl) => {
                        let deadline = ttl.map_or(NEVER, |t| now + t);
                        store.insert(mix(k), k, k, w, deadline, now, &mut drop_all);
                    }
                    Op::Get(k) => {
                        if let Some(idx) = store.find(mix(k), &k) {
                            store.record_read(store.node(idx));
                        }
                    }
                    Op::Remove(k) => {
                        store.remove(mix(k), &k);
                    }
                    Op::Maintain(dt) => {
                        now += dt << 30;
                        store.maintain(now, dt % 2 == 0, &mut drop_all);
                    }
                    Op::Retain(m) => store.retain(|k, _| k % m != 0, RemovalCause::Explicit, &mut drop_all),
                }
                store.check();
                prop_assert_eq!(store.scheduled, store.slab.slots.iter().enumerate().filter(|(i, s)| matches!(s, Slot::Used(_)) && store.slab.timer(*i as u32).bucket != NIL).count());
            }
        }
    }

    fn mix(k: u64) -> u64 {
        scalekit_core::mix64(k)
    }

    fn replay(store: &mut Store<u64, ()>, keys: impl Iterator<Item = u64>) -> f64 {
        let (mut hits, mut requests) = (0u64, 0u64);
        for key in keys {
            requests += 1;
            let hash = mix(key);
            if let Some(idx) = store.find(hash, &key) {
                hits += 1;
                store.record_read(store.node(idx));
            } else {
                store.insert(hash, key, (), 1, NEVER, 0, &mut |_, _, _| {});
                store.maintain(0, false, &mut |_, _, _| {});
            }
        }
        hits as f64 / requests as f64
    }

    #[test]
    fn a_loop_shrinks_the_window() {
        // A loop a little larger than the cache: LRU would hit nothing.
        let mut store: Store<u64, ()> = Store::new(1_000, 1_000, 1, 0);
        store.set_window(300);
        let ratio = replay(&mut store, (0..200).flat_map(|_| 0..1_050u64));
        assert!(store.window_max() < 50, "window {}", store.window_max());
        assert!(ratio > 0.85, "hit ratio {ratio}");
    }

    #[test]
    fn a_shifting_working_set_grows_the_window() {
        // Each key is used a few times in a burst and then never again:
        // recency is everything, frequency history only gets in the way.
        let mut store: Store<u64, ()> = Store::new(1_000, 1_000, 1, 0);
        let keys = (0..400_000u64).map(|i| {
            let base = i / 8;
            base + (mix(i) % 600)
        });
        replay(&mut store, keys);
        assert!(store.window_max() > 300, "window {}", store.window_max());
    }
}

#[cfg(test)]
mod layout {
    #[test]
    fn a_slot_of_small_keys_and_values_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<super::Slot<u64, u64>>(), 64);
    }
}
