use std::error::Error;
use std::fmt;

pub use scalekit_core::ConfigError;

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
    /// A setting that cannot work (a Maglev table size that is not prime, a
    /// bounded-load epsilon that is not above zero, zero virtual nodes): the
    /// kit's one shape of a refused setting.
    Config(ConfigError),
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::DuplicateNode => f.write_str("node is already a member; remove it first"),
            RingError::UnknownNode => f.write_str("node is not a member"),
            RingError::NotLastNode => f.write_str(
                "jump hash can only remove its last node; use Memento for arbitrary removal",
            ),
            RingError::TableTooSmall { size, nodes } => write!(
                f,
                "Maglev table size {size} is too small for {nodes} nodes; use a prime of at least 100 times the node count"
            ),
            RingError::TooLarge { what, limit } => {
                write!(f, "too many {what}: the limit is {limit}")
            }
            RingError::Config(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl Error for RingError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            RingError::Config(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigError> for RingError {
    fn from(e: ConfigError) -> Self {
        RingError::Config(e)
    }
}
