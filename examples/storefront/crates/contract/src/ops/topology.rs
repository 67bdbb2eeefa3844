//! What runs at a stage, for the ops page's picture: browser → [gateway → N
//! instances] → app (with its L1) → SQLite file or PostgreSQL, and Redis L2
//! when the stage has caches.

use serde::{Deserialize, Serialize};

/// What runs at a stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// A gateway in front of several app instances (stage 4 on).
    pub gateway: Option<GatewayNode>,
    /// The caches in each app process: an L1 in the process.
    pub l1: bool,
    /// The shared L2 cache, if any (`"Redis"`).
    pub l2: Option<String>,
    /// Where the data lives.
    pub database: DatabaseNode,
}

/// The gateway and the instances behind it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayNode {
    /// App instances behind the gateway.
    pub instances: u32,
}

/// The database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseNode {
    /// `sqlite` (a file in the app's process) or `postgres` (a server over TCP).
    pub backend: String,
    /// The file name or the server's host and port (never credentials).
    pub place: String,
}

impl Default for Topology {
    /// Stage 1: the app with SQLite in its process.
    fn default() -> Self {
        Self {
            gateway: None,
            l1: false,
            l2: None,
            database: DatabaseNode {
                backend: "sqlite".into(),
                place: "storefront.db".into(),
            },
        }
    }
}
