//! The scalekit storefront: a complete shop (catalog, accounts, cart, checkout, order
//! history, search) served as HTML pages and a JSON API, that walks the architecture
//! evolution stage by stage. Run it with `cargo run --release -p storefront`, then
//! open <http://127.0.0.1:8080>.
//!
//! ```text
//! storefront serve [--stage N] [--addr 127.0.0.1:8080]   run a stage (1 by default)
//! storefront seed [--products 100000] [--users 1000]     fill the database
//! storefront stages                                      what each stage adds and needs
//! storefront services [up | status | down]               PostgreSQL primary + replica, Redis
//! storefront loadgen [--rate R | --concurrency C]         user journeys against a shop
//! storefront evolve [--stages 1-3]                        the stages compared: docs/evolution.md
//! ```
//!
//! | module | what |
//! | --- | --- |
//! | [`store`] | the [`Store`](store::Store) trait, SQLite and PostgreSQL backends, migrations |
//! | [`app`] | the axum router: pages, `/api`, `/livez`, `/readyz` |
//! | [`config`] | stage folders (`stages/NN-name/`: `stage.toml`, `about.md`, deploy files) |
//! | [`seed`] | a made-up catalog and accounts, in batches |
//! | [`cache`] | stage 3: product pages, listings and search results in L1 + Redis |
//! | [`gateway`] | stage 4: the reverse proxy in front of N app processes, and the processes |
//! | [`ops`] | the ops page, `/metrics`, request and database counters |
//! | [`loadgen`] | the load generator, `evolve` and `bench-http` |
//! | [`server`] | the HTTP/1 server: connection cap, timeouts, drain on shutdown |
//!
//! ## Why these crates
//!
//! - **axum** and **tokio**: the HTTP stack the kit's tower layers are built for.
//! - **sqlx**: one async API over SQLite and PostgreSQL, bound parameters everywhere,
//!   migrations embedded in the binary (`migrate!`). The queries are plain strings
//!   checked by the tests against both databases (not `query!`, which needs a live
//!   database or an offline cache at build time).
//! - **askama** rather than minijinja: templates are compiled into the binary and
//!   type-checked against the structs that fill them, so a typo in a page is a build
//!   error, not a 500 at run time; output is HTML-escaped by default; and rendering is
//!   plain Rust code, which matters when later stages measure pages per second.
//! - **argon2** (RustCrypto): the password hash OWASP recommends, in pure Rust.
//! - **clap**, **indicatif**, **tracing**: the CLI, the seed progress bar, logs.
//!
//! Written by hand here: only the shop itself, the SVG placeholder images, and small
//! helpers (money and date formatting, percent-encoding) that are not worth a crate.

pub use storefront_cache as cache;
pub use storefront_web as app;
pub mod config;
pub use storefront_gateway as gateway;
pub use storefront_tools::loadgen;
pub mod supervisor;
pub use storefront_ops as ops;
pub mod catalog;
pub mod compose;
pub mod seed;
pub mod topology;
pub use storefront_server as server;
pub mod reshard_cli;
pub use storefront_storage as store;
