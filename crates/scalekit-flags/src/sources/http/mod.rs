//! The HTTP source: a client of Unleash's client API, by concern (a module only
//! imports modules listed before it):
//!
//! | module | what |
//! |---|---|
//! | `conn` | the server's address, our identity, the headers, one request |
//! | `fetch` | the state: full or delta API (detected), ETags, bootstrap file |
//! | `report` | registration and metrics, the unsent bucket and its bound |
//! | `poller` | [`HttpPoller`]: the one-request methods and the task |
//! | `builder` | [`HttpPollerBuilder`] |

mod builder;
mod conn;
mod fetch;
mod poller;
mod report;

pub use builder::HttpPollerBuilder;
pub use fetch::{FeaturesApi, FetchOutcome};
pub use poller::HttpPoller;
pub use report::MetricsOutcome;
