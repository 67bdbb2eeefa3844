//! What a stage file's sections share with the composition root that reads
//! them: a component's crate owns its section's type (serde parses it), checks
//! it, and says what the component adds to the ops page's picture. The stage
//! crate lists the sections, one line each, and calls these for every section
//! a stage file has; it knows nothing else of them.

use crate::ops::topology::Piece;

/// A value in a section that cannot work: the field (`cache.l1_capacity`) and
/// what is wrong with what to write instead.
pub type Invalid = (&'static str, String);

/// One section of a stage file that switches a component on (`[cache]`,
/// `[gateway]`, ...).
///
/// ```
/// use storefront_contract::ops::topology::{Node, Piece, Tier};
/// use storefront_contract::section::{Invalid, Section};
///
/// /// `[search]`: a search engine beside the database.
/// struct SearchConfig { url: String }
///
/// impl Section for SearchConfig {
///     fn check(&self) -> Result<(), Invalid> {
///         if self.url.starts_with("http://") { Ok(()) }
///         else { Err(("search.url", format!("{:?}: use http://host:port", self.url))) }
///     }
///     fn pieces(&self) -> Vec<Piece> {
///         vec![Piece::Node(Tier::Data, Node::new("search", "Search", "full text"))]
///     }
/// }
///
/// let bad = SearchConfig { url: "search:7700".into() };
/// assert_eq!(bad.check().unwrap_err().0, "search.url");
/// ```
pub trait Section {
    /// The section's own check; the first problem found. What ties it to other
    /// sections is the stage crate's to check.
    fn check(&self) -> Result<(), Invalid>;

    /// What the component adds to the picture of the stage (nothing by default).
    fn pieces(&self) -> Vec<Piece> {
        Vec::new()
    }
}
