//! What a user adds to a replica set: members, their roles, replication
//! positions, and the admission policy of an endpoint that has none.

use scalekit_core::{Admission, Outcome, Rejected};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What an endpoint does in the set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Takes the writes (and reads that must see them).
    Primary,
    /// Takes reads.
    Replica,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        })
    }
}

/// A replication position: how far an endpoint has applied the primary's
/// history. Positions only grow, so a read that carries the position of a
/// write goes to an endpoint whose applied position is at least as large.
///
/// A PostgreSQL WAL position (LSN `16/B374D848`) is one 64-bit number (see the
/// `postgres` feature's `pg::parse_lsn`); a MySQL GTID executed on one source is
/// its transaction number; a version column is its value.
///
/// ```
/// use scalekit_replica::Position;
///
/// let write = Position::new(0x16_B374_D848);
/// assert!(Position::new(0x16_B374_D850) >= write);
/// assert_eq!(write.get(), 0x16_B374_D848);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(u64);

impl Position {
    /// The position `value`.
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The position as a number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// The admission policy of an endpoint that has none: admits every call.
///
/// ```
/// use scalekit_core::Admission;
/// use scalekit_replica::AlwaysAdmit;
///
/// assert!(AlwaysAdmit.try_acquire().is_ok());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct AlwaysAdmit;

impl Admission for AlwaysAdmit {
    type Permit = ();
    #[inline]
    fn try_acquire(&self) -> Result<(), Rejected> {
        Ok(())
    }
    #[inline]
    fn record(&self, _permit: (), _outcome: Outcome, _latency: Duration) {}
}

/// An endpoint to add to a [`ReplicaSet`](crate::ReplicaSet): a name, the
/// value calls use (a connection pool, an address, a client), a role, and
/// optionally a zone, a weight and an admission policy.
///
/// ```
/// use scalekit_replica::{Member, Role};
///
/// let m: Member<&str> = Member::replica("db-2", "postgres://db-2/app").zone("eu-west-1b").weight(2);
/// assert_eq!(m.role(), Role::Replica);
/// ```
pub struct Member<T, A = AlwaysAdmit> {
    pub(crate) name: Arc<str>,
    pub(crate) value: T,
    pub(crate) role: Role,
    pub(crate) zone: Option<Arc<str>>,
    pub(crate) weight: u32,
    pub(crate) admission: Option<A>,
}

impl<T, A> Member<T, A> {
    /// The primary: writes go here.
    pub fn primary(name: impl Into<Arc<str>>, value: T) -> Self {
        Self::new(name, value, Role::Primary)
    }

    /// A replica: reads go here.
    pub fn replica(name: impl Into<Arc<str>>, value: T) -> Self {
        Self::new(name, value, Role::Replica)
    }

    fn new(name: impl Into<Arc<str>>, value: T, role: Role) -> Self {
        Self {
            name: name.into(),
            value,
            role,
            zone: None,
            weight: 1,
            admission: None,
        }
    }

    /// The zone (data centre, availability zone) the endpoint is in; reads
    /// prefer the set's local zone.
    pub fn zone(mut self, zone: impl Into<Arc<str>>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// The endpoint's relative capacity (default 1; zero is refused when the
    /// member is added).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// A policy asked before each call to this endpoint and told its outcome:
    /// a circuit breaker, a concurrency limit.
    pub fn admission(mut self, admission: A) -> Self {
        self.admission = Some(admission);
        self
    }

    /// The member's role.
    pub fn role(&self) -> Role {
        self.role
    }
}

impl<T: fmt::Debug, A> fmt::Debug for Member<T, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("name", &self.name)
            .field("value", &self.value)
            .field("role", &self.role)
            .field("zone", &self.zone)
            .field("weight", &self.weight)
            .field("admission", &self.admission.is_some())
            .finish()
    }
}
