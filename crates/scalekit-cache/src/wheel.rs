//! A hierarchical timer wheel: O(1) scheduling and amortised O(1) expiry.
//!
//! The geometry is Caffeine's: five levels whose buckets span about one second,
//! one minute, one hour, one and a half days and six days (powers of two of
//! nanoseconds, so that a bucket is a shift and a mask away). An entry sits in
//! the bucket of the coarsest level that still resolves its deadline; as time
//! advances, the buckets that time has passed are emptied and each entry is
//! either expired or rescheduled into a finer level. Every entry is therefore
//! touched at most once per level over its lifetime.
//!
//! The wheel stores only bucket heads; the entries' links live in the store's
//! nodes, so scheduling allocates nothing.

use crate::list::{Head, Links, TimerLink, NIL};

/// No deadline.
pub(crate) const NEVER: u64 = u64::MAX;

const BUCKETS: [usize; 5] = [64, 64, 32, 4, 1];
const SHIFT: [u32; 5] = [30, 36, 42, 47, 49];
const OFFSET: [usize; 5] = [0, 64, 128, 160, 164];
const TOTAL: usize = 165;

#[derive(Debug)]
pub(crate) struct TimerWheel {
    heads: Box<[Head]>,
    nanos: u64,
}

impl TimerWheel {
    pub(crate) fn new(now: u64) -> Self {
        Self {
            heads: vec![Head::EMPTY; TOTAL].into_boxed_slice(),
            nanos: now,
        }
    }

    fn bucket_for(&self, deadline: u64) -> usize {
        // A deadline already passed goes to the current finest bucket, swept
        // as soon as time leaves it (not to a passed one, swept only when the
        // level wraps round).
        let deadline = deadline.max(self.nanos);
        let duration = deadline - self.nanos;
        let level = (0..4)
            .find(|&i| duration < 1u64 << SHIFT[i + 1])
            .unwrap_or(4);
        let ticks = deadline >> SHIFT[level];
        OFFSET[level] + (ticks as usize & (BUCKETS[level] - 1))
    }

    /// Schedules node `idx` (not currently scheduled) for `deadline`.
    pub(crate) fn schedule<L: Links<TimerLink>>(&mut self, nodes: &mut L, idx: u32, deadline: u64) {
        let bucket = self.bucket_for(deadline);
        nodes.set_bucket(idx, bucket as u32);
        self.heads[bucket].push_back(nodes, idx);
    }

    /// Removes node `idx` from its bucket, if it is scheduled.
    pub(crate) fn unschedule<L: Links<TimerLink>>(&mut self, nodes: &mut L, idx: u32) {
        let bucket = nodes.bucket(idx);
        if bucket != NIL {
            self.heads[bucket as usize].unlink(nodes, idx);
            nodes.set_bucket(idx, NIL);
        }
    }

    /// Advances the wheel to `now`, pushing onto `expired` every node whose
    /// deadline (read through `deadline`) has passed; the others in the buckets
    /// passed over are rescheduled, and those that no longer have a deadline
    /// ([`NEVER`]: a read took it away) leave the wheel. Buckets are swept when
    /// time leaves them, so an entry may linger up to one finest tick (about a
    /// second) past its deadline; `exact` also sweeps the current finest
    /// bucket. Returns how many nodes left the wheel without expiring.
    pub(crate) fn advance<L: Links<TimerLink>>(
        &mut self,
        nodes: &mut L,
        now: u64,
        deadline: impl Fn(&L, u32) -> u64,
        expired: &mut Vec<u32>,
        exact: bool,
    ) -> usize {
        let mut dropped = 0;
        let previous = self.nanos;
        if now > previous {
            self.nanos = now;
            for level in 0..5 {
                let previous_ticks = previous >> SHIFT[level];
                let current_ticks = now >> SHIFT[level];
                if current_ticks <= previous_ticks {
                    break;
                }
                let mask = BUCKETS[level] - 1;
                let steps =
                    (current_ticks - previous_ticks + 1).min(BUCKETS[level] as u64) as usize;
                let start = previous_ticks as usize & mask;
                for step in 0..steps {
                    let bucket = OFFSET[level] + ((start + step) & mask);
                    dropped += self.sweep(nodes, bucket, now, &deadline, expired);
                }
            }
        }
        if exact {
            let bucket = (self.nanos >> SHIFT[0]) as usize & (BUCKETS[0] - 1);
            dropped += self.sweep(nodes, bucket, self.nanos, &deadline, expired);
        }
        dropped
    }

    fn sweep<L: Links<TimerLink>>(
        &mut self,
        nodes: &mut L,
        bucket: usize,
        now: u64,
        deadline: &impl Fn(&L, u32) -> u64,
        expired: &mut Vec<u32>,
    ) -> usize {
        let mut dropped = 0;
        let mut idx = self.heads[bucket].take();
        while idx != NIL {
            let next = nodes.next(idx);
            nodes.set_bucket(idx, NIL);
            let due = deadline(nodes, idx);
            if due <= now {
                expired.push(idx);
            } else if due == NEVER {
                dropped += 1;
            } else {
                self.schedule(nodes, idx, due);
            }
            idx = next;
        }
        dropped
    }
}
