//! Where rows go: targets, routes, and the shard nodes engines place.

use std::fmt;
use std::sync::Arc;

/// A physical place for rows: a database and a table in it.
///
/// ```
/// use scalekit_shard::Target;
/// let t = Target::new("orders_1", "orders_202611");
/// assert_eq!(t.to_string(), "orders_1.orders_202611");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// The database (a name from the configuration's `databases`).
    pub database: Arc<str>,
    /// The physical table in it.
    pub table: Arc<str>,
}

impl Target {
    /// A target.
    pub fn new(database: impl Into<Arc<str>>, table: impl Into<Arc<str>>) -> Self {
        Self {
            database: database.into(),
            table: table.into(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.database, self.table)
    }
}

/// Where a statement goes.
///
/// `targets` must all be asked (a read merges their answers; a write applies to
/// each). `mirrors` are extra writes during a migration's dual-write phases:
/// apply them too, or roll the migration back.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Route {
    /// The targets, sorted, without duplicates.
    pub targets: Vec<Target>,
    /// Writes that must also be applied (dual write during a migration).
    pub mirrors: Vec<Target>,
}

impl Route {
    /// The single target, when there is exactly one.
    ///
    /// ```
    /// use scalekit_shard::{Route, Target};
    /// let one = Route { targets: vec![Target::new("a", "t")], mirrors: vec![] };
    /// assert_eq!(one.single(), Some(&Target::new("a", "t")));
    /// assert_eq!(Route::default().single(), None);
    /// ```
    pub fn single(&self) -> Option<&Target> {
        match self.targets.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

/// A node handed to a placement engine: a shard's name and its position in the
/// configured list. Engines hash nodes by name only, so placement does not
/// change when the list is reordered.
///
/// ```
/// use scalekit_shard::Engines;
/// // An engine of your own sees the nodes in configured order.
/// let engines = Engines::new().register("first", |nodes| {
///     assert_eq!(nodes[0].index(), 0);
///     Ok(Box::new(scalekit_ring::Jump::with_nodes(nodes.iter().cloned())?))
/// });
/// # let _ = engines;
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ShardNode {
    pub(crate) name: Arc<str>,
    pub(crate) index: u32,
}

impl ShardNode {
    /// The shard's name (a database, or a table suffix).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its position in the configured list.
    pub fn index(&self) -> u32 {
        self.index
    }
}

impl scalekit_core::StableHash for ShardNode {
    fn stable_hash_into(&self, state: &mut scalekit_core::StableHasher) {
        state.write(self.name.as_bytes());
    }
}
