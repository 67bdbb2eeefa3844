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
//!
//! Figures of another shape (a table per database, a phase) say how they are
//! shown: [`Figures::view`] for the page, [`Figures::metrics`] for `/metrics`,
//! and [`Figures::merge`] how two processes' figures add up.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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

    /// The page's section, for figures not of the shape above; `None` draws
    /// them from the shape.
    fn view(&self) -> Option<View> {
        None
    }

    /// `/metrics` lines (OpenMetrics text, without `# EOF`), for figures not of
    /// the shape above; `None` makes them from the shape.
    fn metrics(&self) -> Option<String> {
        None
    }

    /// Adds another process's figures of the same part to these (a cluster's
    /// view, [`Snapshot::merge`](super::Snapshot::merge)); by default these stay
    /// as they are (every process sees the same thing).
    fn merge(&mut self, other: &Self) {
        let _ = other;
    }
}

/// How the ops page shows a part: figures, then a table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// Figures above the table.
    pub figures: Vec<Fact>,
    /// The table's column headings.
    pub columns: Vec<String>,
    /// Its rows, a cell per column.
    pub rows: Vec<Vec<Cell>>,
}

/// One figure of a part: a label and a value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    /// What it is.
    pub label: String,
    /// Its value, for people.
    pub value: String,
    /// `highlight` to stand out, `good`, `warn` or `bad` for a state; empty for none.
    pub class: String,
}

impl Fact {
    /// A plain figure.
    pub fn new(label: &str, value: impl std::fmt::Display) -> Fact {
        Fact {
            label: label.to_owned(),
            value: value.to_string(),
            class: String::new(),
        }
    }
}

/// One cell of a part's table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// Its text.
    pub text: String,
    /// `good`, `warn` or `bad` for a state; empty for none.
    pub class: String,
}

impl Cell {
    /// A plain cell.
    pub fn new(text: impl std::fmt::Display) -> Cell {
        Cell {
            text: text.to_string(),
            class: String::new(),
        }
    }

    /// A cell coloured as `class`.
    pub fn classed(text: impl std::fmt::Display, class: &str) -> Cell {
        Cell {
            text: text.to_string(),
            class: class.to_owned(),
        }
    }
}

/// A label value escaped for the OpenMetrics text format.
///
/// ```
/// assert_eq!(storefront_contract::ops::parts::metric_label("a\"b"), "a\\\"b");
/// ```
pub fn metric_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `other`'s figures of part `F` merged into `into`'s (both as JSON); figures
/// that do not read as `F` are left as they are.
pub fn merge_json<F: Figures>(into: &mut serde_json::Value, other: &serde_json::Value) {
    let (Ok(mut mine), Ok(theirs)) = (
        serde_json::from_value::<F>(into.clone()),
        serde_json::from_value::<F>(other.clone()),
    ) else {
        return;
    };
    mine.merge(&theirs);
    if let Ok(merged) = serde_json::to_value(mine) {
        *into = merged;
    }
}
