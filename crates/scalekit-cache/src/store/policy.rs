//! The eviction policy's moves: queues, CLOCK victims, TinyLFU admission,
//! and shedding weight.

use std::sync::atomic::Ordering::Relaxed;

use super::admit::SECOND_CHANCE_WINDOW;
use super::node::{Node, Queue};
use super::{Store, PROBATION, PROTECTED, WINDOW};
use crate::list::{QueueLink, NIL};
use crate::removal::RemovalCause;

/// Frequency at which a losing candidate is still admitted now and then, so an
/// attacker cannot pin a victim by colliding with it in the sketch (Caffeine's
/// defence against hash flooding).
const ADMIT_HASHDOS_THRESHOLD: u8 = 6;

impl<K, V> Store<K, V> {
    /// Evicts (or expires) entries the policy picks until the shard weighs at
    /// most `target`.
    ///
    /// New entries wait in the window; when it is over its share, its oldest
    /// entry is a candidate for main, admitted if main has room or if it is
    /// more popular than main's victim (which then leaves). An entry heavier
    /// than the window (but not than the share) meets that duel at once; a
    /// heavy one (heavier than the share) waits in the window like a light
    /// one, and its room in main is borrowed.
    pub(crate) fn evict_to(
        &mut self,
        target: u64,
        now: u64,
        sink: &mut dyn FnMut(K, V, RemovalCause),
    ) {
        while self.weight > target {
            let main = self.queue_weight[PROBATION] + self.queue_weight[PROTECTED];
            let main_empty = self.queues[PROBATION].is_empty() && self.queues[PROTECTED].is_empty();
            let window = self.queue_weight[WINDOW] - self.queue_heavy[WINDOW];
            if window > self.window_max || main_empty {
                let Some(candidate) = self.clock_victim(WINDOW) else {
                    break;
                };
                let candidate_weight = u64::from(self.slab.weight(candidate));
                let main_room = self.room().saturating_sub(self.window_max);
                if main + candidate_weight <= main_room {
                    self.adapt.window_ghost.depart(0, false);
                    self.move_to(candidate, PROBATION);
                    continue;
                }
                match self.main_victim() {
                    Some(victim) if self.admit(candidate, victim) => {
                        self.adapt.window_ghost.depart(0, false);
                        let hash = self.slab.hash(victim);
                        self.adapt.main_ghost.depart(hash, true);
                        self.evict_idx(victim, now, sink);
                        self.move_to(candidate, PROBATION);
                    }
                    _ => {
                        let hash = self.slab.hash(candidate);
                        if self.losers_kept() {
                            self.rejected.remember(hash, self.inserts);
                        }
                        self.adapt.window_ghost.depart(hash, true);
                        self.evict_idx(candidate, now, sink);
                    }
                }
            } else {
                match self.main_victim() {
                    Some(victim) => {
                        let hash = self.slab.hash(victim);
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

    pub(super) fn enqueue(&mut self, idx: u32, queue: usize) {
        let stamp = self.next_stamp[queue];
        self.next_stamp[queue] = stamp.wrapping_add(1);
        let node = self.slab.get_mut(idx);
        node.queue = Queue::ALL[queue];
        node.stamp = stamp;
        let weight = self.slab.weight(idx);
        if self.queues[queue].is_empty() {
            self.head_stamp[queue] = stamp;
        }
        self.queues[queue].push_back::<QueueLink, _>(&mut self.slab, idx);
        self.queue_weight[queue] += u64::from(weight);
        let heavy = self.heavy_part(weight);
        self.queue_heavy[queue] += heavy;
        self.heavy += heavy;
        self.queue_len[queue] += 1;
    }

    pub(super) fn dequeue(&mut self, idx: u32) {
        let queue = self.slab.get(idx).queue.index();
        let weight = self.slab.weight(idx);
        let was_first = self.queues[queue].first == idx;
        self.queues[queue].unlink::<QueueLink, _>(&mut self.slab, idx);
        self.queue_weight[queue] -= u64::from(weight);
        let heavy = self.heavy_part(weight);
        self.queue_heavy[queue] -= heavy;
        self.heavy -= heavy;
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
        let mut distance = u64::from(node.stamp.wrapping_sub(self.head_stamp[queue]));
        if queue == PROTECTED {
            distance = distance.saturating_add(self.queue_len[PROBATION]);
        }
        if distance < self.adapt.delta {
            self.adapt.tail_hits[queue.min(1)].fetch_add(1, Relaxed);
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
        let protected_max = self.protected_max.saturating_add(self.heavy);
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
                while self.queue_weight[PROTECTED] > protected_max {
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
        let hits = self.slab.get(idx).hits.load(Relaxed);
        (self.sketch.frequency(self.slab.hash(idx)) + hits).min(15)
    }

    /// Counts a read of a resident entry for the policy.
    #[inline]
    pub(crate) fn record_read(&self, node: &Node<K, V>, hash: u64) {
        node.touch();
        if node.count_hit() {
            self.sketch.count_sample(hash);
        }
        self.record_hit(node);
    }

    /// Whether candidates that lost the duel get a second chance: while the
    /// window holds at least `SECOND_CHANCE_WINDOW` of the share (the
    /// adaptation finds recency worth more than frequency).
    #[inline]
    pub(super) fn second_chances(&self) -> bool {
        self.window_max as f64 >= self.share as f64 * SECOND_CHANCE_WINDOW
    }

    /// Whether the losers of the duel are remembered (and new keys looked up
    /// among them): from half the window's share at which they get second
    /// chances, so the table is current when they start. Below, a new key
    /// costs no lookup in it: a frequency-biased workload, whose window stays
    /// near its smallest, pays nothing for second chances.
    #[inline]
    pub(super) fn losers_kept(&self) -> bool {
        self.window_max as f64 >= self.share as f64 * SECOND_CHANCE_WINDOW / 2.0
    }

    /// TinyLFU admission: the candidate replaces the victim if it is more
    /// popular, or if it lost a duel lately and came back soon while the
    /// window holds more than `SECOND_CHANCE_WINDOW` of the share.
    fn admit(&mut self, candidate: u32, victim: u32) -> bool {
        if self.slab.meta(candidate).returned && self.second_chances() {
            return true;
        }
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
}
