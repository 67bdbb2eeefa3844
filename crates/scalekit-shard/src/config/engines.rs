//! The placement engines a configuration may name, registered by the
//! application.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::sync::Arc;

use scalekit_core::Placement;

use crate::router::ShardNode;

/// The built-in engine: slot `s` of `S` goes to shard `s * n / S` (contiguous
/// slot ranges, as Vitess key ranges and a fresh Redis Cluster lay them out).
pub const CONTIGUOUS_ENGINE: &str = "contiguous";

/// A placement engine over shard nodes, as [`Engines`] builds them.
pub type DynPlacement = dyn Placement<Node = ShardNode> + Send + Sync;

pub(crate) type Factory =
    dyn Fn(&[ShardNode]) -> Result<Box<DynPlacement>, Box<dyn Error + Send + Sync>> + Send + Sync;

/// The placement engines a configuration may name in `engine = "..."`, each
/// registered under a name by the application. This crate depends on no engine:
/// pass `scalekit-ring`'s (or your own `Placement`) here.
///
/// ```
/// use scalekit_ring::{Jump, Ring};
/// use scalekit_shard::Engines;
///
/// let engines = Engines::new()
///     .register("ring", |nodes| Ok(Box::new(Ring::with_nodes(nodes.iter().cloned())?)))
///     .register("jump", |nodes| Ok(Box::new(Jump::with_nodes(nodes.iter().cloned())?)));
/// assert_eq!(engines.names().collect::<Vec<_>>(), ["contiguous", "jump", "ring"]);
/// ```
#[derive(Clone, Default)]
pub struct Engines {
    pub(crate) map: BTreeMap<String, Arc<Factory>>,
}

impl fmt::Debug for Engines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

impl Engines {
    /// Only the built-in [`CONTIGUOUS_ENGINE`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers an engine under `name`: a function from the shard nodes (in
    /// configured order) to a placement over them.
    pub fn register<F>(mut self, name: impl Into<String>, factory: F) -> Self
    where
        F: Fn(&[ShardNode]) -> Result<Box<DynPlacement>, Box<dyn Error + Send + Sync>>
            + Send
            + Sync
            + 'static,
    {
        self.map.insert(name.into(), Arc::new(factory));
        self
    }

    /// The names a configuration may use, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        let builtin = (!self.map.contains_key(CONTIGUOUS_ENGINE)).then_some(CONTIGUOUS_ENGINE);
        let mut v: Vec<&str> = self.map.keys().map(String::as_str).chain(builtin).collect();
        v.sort_unstable();
        v.into_iter()
    }
}
