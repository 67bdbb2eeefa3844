//! The storefront's capacity model: a stage's machines as a queueing network,
//! solved by mean value analysis, to say how many concurrent customers a
//! topology carries and which machine stops it.
//!
//! The evolution runs each stage on miniature machines (a fraction of a core
//! each) and measures, per kind of machine, the CPU seconds a request costs
//! there. This crate turns those demands into predictions for any number of
//! machines of any size: the miniature runs check it (predicted against
//! measured at two machine counts), and the same demands projected to real
//! machines say how far each stage's topology goes.
//!
//! * [`network`]: [`Network`] and its [`Station`]s (queues with cores, delays),
//!   the bottleneck and the asymptotic bounds.
//! * [`mva`]: exact and approximate mean value analysis of the closed network
//!   (customers who think, then ask), and the most customers within a response
//!   time objective.
//! * [`open`]: the open model (M/M/c stations at a given arrival rate).
//!
//! ```
//! use storefront_capacity::{mva, Network};
//! // Customers think 5 s between requests; each request costs 2 ms on one of
//! // four app machines (chosen evenly) and 1 ms on the database.
//! let mut net = Network::new(5.0)?;
//! for i in 0..4 {
//!     net = net.queue(format!("app {i}"), 0.002 / 4.0, 1)?;
//! }
//! let net = net.queue("db", 0.001, 1)?;
//! assert_eq!(net.bottleneck().unwrap().name, "db");
//! let users = mva::max_users(&net, 0.2);
//! // About 1,000 requests a second at most (the database): some 5,000 users.
//! assert!((4_000..5_300).contains(&users), "{users}");
//! # Ok::<(), storefront_capacity::ModelError>(())
//! ```
//!
//! Written here rather than taken from a crate: no maintained Rust crate solves
//! closed queueing networks, and the model is part of what the storefront
//! teaches (each stage's limit, and what the next stage removes).

pub mod mva;
pub mod network;
pub mod open;

pub use network::{Kind, ModelError, Network, Station};
