//! Intrusive doubly linked lists of slot indices.
//!
//! The store keeps its nodes in a slab; a node belongs to one policy queue and
//! at most one timer bucket at a time, through two pairs of links kept in the
//! node. These lists thread through those links: O(1) push, unlink and pop,
//! with no allocation.

pub(crate) const NIL: u32 = u32::MAX;

/// Selects the policy-queue links of a node.
#[derive(Debug)]
pub(crate) struct QueueLink;
/// Selects the timer-bucket links of a node.
#[derive(Debug)]
pub(crate) struct TimerLink;

/// Access to one kind of link (`T`) of the nodes of a slab.
pub(crate) trait Links<T> {
    fn prev(&self, idx: u32) -> u32;
    fn next(&self, idx: u32) -> u32;
    fn set_prev(&mut self, idx: u32, to: u32);
    fn set_next(&mut self, idx: u32, to: u32);
    /// The timer bucket a node is in (only meaningful for `TimerLink`).
    fn bucket(&self, _idx: u32) -> u32 {
        NIL
    }
    fn set_bucket(&mut self, _idx: u32, _bucket: u32) {}
}

/// The two ends of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) first: u32,
    pub(crate) last: u32,
}

impl Head {
    pub(crate) const EMPTY: Head = Head {
        first: NIL,
        last: NIL,
    };

    pub(crate) fn is_empty(&self) -> bool {
        self.first == NIL
    }

    pub(crate) fn push_back<T, L: Links<T>>(&mut self, nodes: &mut L, idx: u32) {
        nodes.set_prev(idx, self.last);
        nodes.set_next(idx, NIL);
        if self.last == NIL {
            self.first = idx;
        } else {
            nodes.set_next(self.last, idx);
        }
        self.last = idx;
    }

    pub(crate) fn unlink<T, L: Links<T>>(&mut self, nodes: &mut L, idx: u32) {
        let prev = nodes.prev(idx);
        let next = nodes.next(idx);
        if prev == NIL {
            self.first = next;
        } else {
            nodes.set_next(prev, next);
        }
        if next == NIL {
            self.last = prev;
        } else {
            nodes.set_prev(next, prev);
        }
        nodes.set_prev(idx, NIL);
        nodes.set_next(idx, NIL);
    }

    /// Empties the list, returning its first node; the nodes keep their `next`
    /// links so the caller can walk them.
    pub(crate) fn take(&mut self) -> u32 {
        let first = self.first;
        *self = Head::EMPTY;
        first
    }
}
