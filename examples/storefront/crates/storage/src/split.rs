//! Where reads go (replicas or the primary) and how many writes there were, in
//! this process: every [`Db`](crate::Db) counts here, a read when it hands out a
//! reader (on a replica or the primary), a write when the store calls
//! [`wrote`](crate::Db::wrote) after a commit. Plain relaxed atomics, one
//! increment per call. The ops page shows them (stage 5 on).

use std::sync::atomic::{AtomicU64, Ordering};

use scalekit_replica::Role;
use storefront_contract::ops::replicas::ReadSplit;

static REPLICA_READS: AtomicU64 = AtomicU64::new(0);
static PRIMARY_READS: AtomicU64 = AtomicU64::new(0);
static PRIMARY_WRITES: AtomicU64 = AtomicU64::new(0);

/// Counts one read handed to an endpoint of `role`.
pub fn count_read(role: Role) {
    match role {
        Role::Replica => REPLICA_READS.fetch_add(1, Ordering::Relaxed),
        _ => PRIMARY_READS.fetch_add(1, Ordering::Relaxed),
    };
}

/// Counts one committed write (on the primary).
pub fn count_write() {
    PRIMARY_WRITES.fetch_add(1, Ordering::Relaxed);
}

/// This process's counts now.
pub fn read_split_now() -> ReadSplit {
    ReadSplit {
        replica_reads: REPLICA_READS.load(Ordering::Relaxed),
        primary_reads: PRIMARY_READS.load(Ordering::Relaxed),
        primary_writes: PRIMARY_WRITES.load(Ordering::Relaxed),
    }
}
