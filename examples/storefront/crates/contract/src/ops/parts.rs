//! The figures of a stage's parts (the gateway, and what later stages add): each
//! part has a typed struct here that implements [`Figures`], registers a source
//! of it with the ops recorder, and appears in a [`Snapshot`](super::Snapshot)
//! under its [`Figures::KEY`]. The ops page and `/metrics` show any part the same
//! way, from the shape below, so a new part needs no change in the ops crate.
//!
//! The shape a part's figures serialize to (other fields are kept and ignored):
//!
//! ```json
//! {"instances": [{"name": "app-1", "healthy": true, "breaker": "closed", "requests": 10}],
//!  "totals": {"requests": 10, "rate_limited": 0}}
//! ```
//!
//! `totals` become figures on the page and counters in `/metrics`
//! (`storefront_<key>_<total>_total`); each field of `instances` becomes a table
//! column and a gauge per instance (`storefront_<key>_instance_<field>`, a text
//! field as a `state` label).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The typed figures of one part of a stage (see the module docs).
pub trait Figures: Serialize + DeserializeOwned {
    /// Where they live in a snapshot, and their name in `/metrics`: lower-case
    /// letters, digits and `_`.
    const KEY: &'static str;
    /// The section's title on the ops page.
    const TITLE: &'static str;
    /// Labels for totals whose field name does not read well (`rate_limited` →
    /// "Rate-limit rejections").
    const LABELS: &'static [(&'static str, &'static str)] = &[];
    /// Totals to make stand out on the page.
    const HIGHLIGHT: &'static [&'static str] = &[];
}
