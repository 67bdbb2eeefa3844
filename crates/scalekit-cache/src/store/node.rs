//! Entries, their slab, what writers keep beside them, and the timer fields
//! that only expiry and loading use.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};

use crate::list::{Links, QueueLink, TimerLink, NIL};
pub(crate) use crate::wheel::NEVER;

/// An entry and what a read touches of it: 32 bytes for `u64` keys and
/// values, so a cache line holds two and a Zipf stream's hot entries take
/// half the CPU cache they took as one 64-byte node. What only writes and
/// eviction read (the hash, the queue links, the weight) is in [`Meta`].
#[repr(align(32))]
pub(crate) struct Node<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
    /// Deadline in clock nanoseconds, or [`NEVER`]. Readers may move it
    /// (time-to-idle, `Expiry::expire_after_read`); the timer wheel re-reads
    /// it before expiring.
    pub(crate) expires_at: AtomicU64,
    /// Position in its queue: the queue's counter when the node joined it
    /// (wrapping; only the distance to the queue's head is read, see
    /// `Store::record_hit`).
    pub(super) stamp: u32,
    pub(super) queue: Queue,
    pub(crate) visited: AtomicBool,
    /// Accesses while resident, since the sketch's last halving (0 to 15):
    /// counted here, in the line a read touches anyway, rather than in the
    /// sketch; folded into the sketch when the entry leaves.
    pub(super) hits: AtomicU8,
}

/// What the writers and eviction keep of an entry beside its [`Node`]: the
/// read path never loads it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Meta {
    pub(super) hash: u64,
    pub(super) q_prev: u32,
    pub(super) q_next: u32,
    pub(super) weight: u32,
    /// The key lost the admission duel lately and came back soon (see
    /// `Store::admit`).
    pub(super) returned: bool,
}

impl Meta {
    const EMPTY: Meta = Meta {
        hash: 0,
        q_prev: NIL,
        q_next: NIL,
        weight: 0,
        returned: false,
    };
}

/// Which queue a node is in. An enum rather than a `u8` so that `Slot`'s
/// `Free` fits in its unused values: a slot is no bigger than its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Queue {
    Window = 0,
    Probation = 1,
    Protected = 2,
}

impl Queue {
    pub(super) const ALL: [Queue; 3] = [Queue::Window, Queue::Probation, Queue::Protected];

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

impl<K, V> Node<K, V> {
    pub(super) fn new(key: K, value: V, expires_at: u64) -> Self {
        Self {
            key,
            value,
            queue: Queue::Window,
            visited: AtomicBool::new(false),
            hits: AtomicU8::new(0),
            expires_at: AtomicU64::new(expires_at),
            stamp: 0,
        }
    }

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

/// What only expiry and loading need of an entry, kept beside the nodes (and
/// allocated only once some entry has a deadline or a load time), so that
/// caches without them carry none of it.
#[derive(Debug)]
pub(crate) struct Timer {
    /// The deadline set at the last write by the time-to-live (or
    /// `insert_with_ttl`, or negative caching), which reads never extend.
    pub(crate) write_deadline: u64,
    /// The [`Expiry`](crate::Expiry)'s deadline: set at the last write,
    /// moved by `expire_after_read` (under the shared lock, hence atomic).
    pub(crate) custom_deadline: AtomicU64,
    /// Set by `insert_with_ttl`: the `Expiry` does not apply to this entry.
    pub(crate) overridden: bool,
    /// How long the loader took to produce this value (0 when inserted
    /// directly): the `delta` of probabilistic early refresh.
    pub(crate) load_nanos: u64,
    prev: u32,
    next: u32,
    bucket: u32,
}

impl Timer {
    pub(crate) const fn empty() -> Timer {
        Timer {
            write_deadline: NEVER,
            custom_deadline: AtomicU64::new(NEVER),
            overridden: false,
            load_nanos: 0,
            prev: NIL,
            next: NIL,
            bucket: NIL,
        }
    }

    /// The custom deadline (a plain load).
    #[inline]
    pub(crate) fn custom(&self) -> u64 {
        self.custom_deadline.load(Relaxed)
    }

    /// Whether the node is in a bucket of the timer wheel.
    #[inline]
    pub(crate) fn bucket_is_set(&self) -> bool {
        self.bucket != NIL
    }
}

/// The timer of every node that never had one.
static EMPTY_TIMER: Timer = Timer::empty();

/// What a write sets in an entry's timer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteInfo {
    pub(crate) write_deadline: u64,
    pub(crate) custom_deadline: u64,
    pub(crate) overridden: bool,
    pub(crate) load_nanos: u64,
    /// Reads may move the custom deadline (an `Expiry` applies): the node
    /// needs a timer even without a deadline yet.
    pub(crate) movable: bool,
}

impl WriteInfo {
    /// Nothing to record: no deadline, no load time.
    pub(crate) const NONE: WriteInfo = WriteInfo {
        write_deadline: NEVER,
        custom_deadline: NEVER,
        overridden: false,
        load_nanos: 0,
        movable: false,
    };

    fn is_none(&self) -> bool {
        self.write_deadline == NEVER
            && self.custom_deadline == NEVER
            && !self.overridden
            && self.load_nanos == 0
            && !self.movable
    }
}

pub(super) enum Slot<K, V> {
    Used(Node<K, V>),
    Free,
}

/// The slab of nodes, addressed by `u32` index, with their metadata and
/// their timers.
pub(crate) struct Slab<K, V> {
    pub(super) slots: Vec<Slot<K, V>>,
    /// As long as `slots`; a free slot's is stale.
    meta: Vec<Meta>,
    free: Vec<u32>,
    /// Empty until first needed; then as long as `slots`.
    pub(super) timers: Vec<Timer>,
}

impl<K, V> Slab<K, V> {
    pub(super) fn new() -> Self {
        Self {
            slots: Vec::new(),
            meta: Vec::new(),
            free: Vec::new(),
            timers: Vec::new(),
        }
    }

    /// Marks an entry whose key lost the admission duel lately.
    pub(super) fn set_returned(&mut self, idx: u32) {
        self.meta[idx as usize].returned = true;
    }

    /// What writers keep of the entry.
    #[inline]
    pub(super) fn meta(&self, idx: u32) -> &Meta {
        &self.meta[idx as usize]
    }

    /// The key's hash.
    #[inline]
    pub(super) fn hash(&self, idx: u32) -> u64 {
        self.meta[idx as usize].hash
    }

    /// The entry's weight.
    #[inline]
    pub(super) fn weight(&self, idx: u32) -> u32 {
        self.meta[idx as usize].weight
    }

    /// Sets the entry's weight and returns the old one.
    pub(super) fn set_weight(&mut self, idx: u32, weight: u32) -> u32 {
        std::mem::replace(&mut self.meta[idx as usize].weight, weight)
    }

    /// The node's timer fields (the empty timer when none was ever set).
    #[inline]
    pub(crate) fn timer(&self, idx: u32) -> &Timer {
        self.timers.get(idx as usize).unwrap_or(&EMPTY_TIMER)
    }

    fn timer_mut(&mut self, idx: u32) -> &mut Timer {
        if self.timers.len() < self.slots.len() {
            self.timers.resize_with(self.slots.len(), Timer::empty);
        }
        &mut self.timers[idx as usize]
    }

    /// Moves a node's custom deadline (a reader, under the shared lock). A
    /// node without a timer has no `Expiry` to move it, so nothing is stored.
    pub(crate) fn set_custom_deadline(&self, idx: u32, deadline: u64) {
        if let Some(timer) = self.timers.get(idx as usize) {
            timer.custom_deadline.store(deadline, Relaxed);
        }
    }

    /// Records a write's deadlines and load time (allocating the timers only
    /// once some entry needs one).
    pub(super) fn set_write_info(&mut self, idx: u32, info: WriteInfo) {
        if !info.is_none() || !self.timers.is_empty() {
            let timer = self.timer_mut(idx);
            timer.write_deadline = info.write_deadline;
            *timer.custom_deadline.get_mut() = info.custom_deadline;
            timer.overridden = info.overridden;
            timer.load_nanos = info.load_nanos;
        }
    }

    #[inline]
    pub(crate) fn get(&self, idx: u32) -> &Node<K, V> {
        match &self.slots[idx as usize] {
            Slot::Used(node) => node,
            Slot::Free => unreachable!("a live index points at a free slot"),
        }
    }

    #[inline]
    pub(super) fn get_mut(&mut self, idx: u32) -> &mut Node<K, V> {
        match &mut self.slots[idx as usize] {
            Slot::Used(node) => node,
            Slot::Free => unreachable!("a live index points at a free slot"),
        }
    }

    /// Whether `idx` holds a node.
    #[cfg(test)]
    pub(super) fn is_used(&self, idx: u32) -> bool {
        matches!(self.slots.get(idx as usize), Some(Slot::Used(_)))
    }

    pub(super) fn insert(&mut self, node: Node<K, V>, hash: u64, weight: u32) -> u32 {
        let meta = Meta {
            hash,
            weight,
            ..Meta::EMPTY
        };
        match self.free.pop() {
            Some(idx) => {
                self.slots[idx as usize] = Slot::Used(node);
                self.meta[idx as usize] = meta;
                if let Some(timer) = self.timers.get_mut(idx as usize) {
                    *timer = Timer::empty();
                }
                idx
            }
            None => {
                self.slots.push(Slot::Used(node));
                self.meta.push(meta);
                (self.slots.len() - 1) as u32
            }
        }
    }

    pub(super) fn take(&mut self, idx: u32) -> Node<K, V> {
        match std::mem::replace(&mut self.slots[idx as usize], Slot::Free) {
            Slot::Used(node) => {
                self.free.push(idx);
                node
            }
            Slot::Free => unreachable!("a live index points at a free slot"),
        }
    }

    /// Every live node.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = &Node<K, V>> {
        self.slots.iter().filter_map(|slot| match slot {
            Slot::Used(node) => Some(node),
            Slot::Free => None,
        })
    }
}

impl<K, V> Links<QueueLink> for Slab<K, V> {
    fn prev(&self, idx: u32) -> u32 {
        self.meta[idx as usize].q_prev
    }
    fn next(&self, idx: u32) -> u32 {
        self.meta[idx as usize].q_next
    }
    fn set_prev(&mut self, idx: u32, to: u32) {
        self.meta[idx as usize].q_prev = to;
    }
    fn set_next(&mut self, idx: u32, to: u32) {
        self.meta[idx as usize].q_next = to;
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

#[cfg(test)]
mod layout {
    #[test]
    fn a_slot_of_small_keys_and_values_is_half_a_cache_line() {
        assert_eq!(std::mem::size_of::<super::Slot<u64, u64>>(), 32);
        assert_eq!(std::mem::align_of::<super::Slot<u64, u64>>(), 32);
    }
}
