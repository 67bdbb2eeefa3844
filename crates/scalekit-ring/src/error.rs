use std::error::Error;
use std::fmt;

/// Why a membership change or a configuration was refused. The engine is left as
/// it was.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RingError {
    /// The node is already a member (nodes are compared with `Eq`).
    DuplicateNode,
    /// The node is not a member.
    UnknownNode,
    /// [`Jump`](crate::Jump) can only remove its last node.
    NotLastNode,
    /// A Maglev table size must be prime.
    TableSizeNotPrime {
        /// The size asked for.
        size: u64,
    },
    /// A Maglev table must have more entries than there are nodes.
    TableTooSmall {
        /// The table size.
        size: u64,
        /// The number of nodes it would hold.
        nodes: usize,
    },
    /// The engine would hold more nodes or points than it can index.
    TooLarge {
        /// What overflowed.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// The bounded-load factor must be a finite number above zero.
    InvalidEpsilon {
        /// The value given.
        epsilon: f64,
    },
    /// Virtual nodes per unit of weight must be at least one.
    InvalidVirtualNodes,
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::DuplicateNode => f.write_str("node is already a member; remove it first"),
            RingError::UnknownNode => f.write_str("node is not a member"),
            RingError::NotLastNode => f.write_str(
                "jump hash can only remove its last node; use Memento for arbitrary removal",
            ),
            RingError::TableSizeNotPrime { size } => write!(
                f,
                "Maglev table size {size} is not prime; use one of MAGLEV_TABLE_SIZES or another prime"
            ),
            RingError::TableTooSmall { size, nodes } => write!(
                f,
                "Maglev table size {size} is too small for {nodes} nodes; use a prime of at least 100 times the node count"
            ),
            RingError::TooLarge { what, limit } => {
                write!(f, "too many {what}: the limit is {limit}")
            }
            RingError::InvalidEpsilon { epsilon } => write!(
                f,
                "bounded-load epsilon must be finite and above zero (got {epsilon}); 0.25 is a common choice"
            ),
            RingError::InvalidVirtualNodes => {
                f.write_str("virtual nodes per unit of weight must be at least 1 (160 is the default)")
            }
        }
    }
}

impl Error for RingError {}
